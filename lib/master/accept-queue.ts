/**
 * The accept queue of each listening socket: connections the kernel has
 * completed that no worker has accepted yet. It is the saturation signal:
 * when every worker is busy, it grows before any latency metric moves.
 */
import { listenQueue } from '../native.js'
import type { SocketStats } from './stats.js'

/** Each socket's queue; a socket whose queue cannot be read (no netlink for UNIX sockets) has none. */
export function acceptQueues(sockets: { text: string; fd: number }[]): SocketStats[] {
  return sockets.map(({ text, fd }) => {
    try {
      return { text, ...listenQueue(fd) }
    } catch {
      return { text }
    }
  })
}
