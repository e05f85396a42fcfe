/**
 * For an app that runs its own single process: listen on the socket systemd
 * passed (by name, or the first), or bind a fallback when not socket-activated.
 */
import type { AddressInfo, Server } from 'node:net'
import { chmodSync } from 'node:fs'
import { inheritedSockets } from './activation.js'
import { DEFAULT_BACKLOG, DEFAULT_BIND, parseBind, removeStaleUnixSocket } from './binds.js'
import { ConfigError, InvalidArgumentError } from './errors.js'
import { listenOn } from './listen-on.js'
import { formatAddress, socketInfo } from './native.js'

export interface ListenOptions {
  /** The inherited socket to use, by its LISTEN_FDNAMES name (FileDescriptorName=). Default: the first. */
  name?: string
  /** What to bind when the process was not socket-activated (default 127.0.0.1:8000). */
  fallback?: string
  /**
   * listen() backlog, for an inherited socket too: node calls listen(2) on it
   * again, so this replaces the socket unit's Backlog= (default 2048, as sdserve's --backlog).
   */
  backlog?: number
  /** File mode of a fallback UNIX socket, e.g. 0o660. */
  unixMode?: number
}

export interface ListenResult {
  source: 'systemd' | 'fallback'
  /** The LISTEN_FDNAMES name of the inherited socket. */
  name?: string
  /** The listening fd, when the server listens on an inherited or fd:// socket. */
  fd?: number
  /** `127.0.0.1:8000`, `[::1]:8000`, `unix:/run/app.sock`. */
  address: string
}

export async function listen(server: Server, options: ListenOptions = {}): Promise<ListenResult> {
  if (typeof server?.listen !== 'function') throw new InvalidArgumentError('server', server, 'a net.Server or http.Server')
  const backlog = options.backlog ?? DEFAULT_BACKLOG
  const sockets = inheritedSockets()
  if (sockets.length > 0) {
    const chosen = options.name === undefined ? sockets[0] : sockets.find((s) => s.name === options.name)
    if (chosen === undefined)
      throw new ConfigError(
        'name',
        options.name,
        `one of the inherited socket names (${sockets.map((s) => s.name).join(', ')})`,
      )
    await listenOn(server, { fd: chosen.fd, backlog })
    return { source: 'systemd', name: chosen.name, fd: chosen.fd, address: chosen.text }
  }

  const spec = parseBind(options.fallback ?? DEFAULT_BIND, 'fallback')
  switch (spec.kind) {
    case 'tcp':
      await listenOn(server, { host: spec.host, port: spec.port, backlog, ipv6Only: spec.family === 6 })
      break
    case 'unix':
      await removeStaleUnixSocket(spec.path)
      await listenOn(server, { path: spec.path, backlog })
      if (options.unixMode !== undefined) chmodSync(spec.path, options.unixMode)
      return { source: 'fallback', address: spec.text }
    case 'fd':
      await listenOn(server, { fd: spec.fd, backlog })
      return { source: 'fallback', fd: spec.fd, address: formatAddress(socketInfo(spec.fd).address) }
    case 'systemd':
      throw new ConfigError('fallback', spec.text, 'a bind that does not need systemd (no sockets were passed)')
  }
  const bound = server.address() as AddressInfo // a TCP server's address is always an object
  return {
    source: 'fallback',
    address: formatAddress({ kind: 'inet', family: bound.family === 'IPv6' ? 6 : 4, host: bound.address, port: bound.port }),
  }
}
