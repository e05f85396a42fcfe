/**
 * The connections that outlive a request: upgraded sockets (WebSockets) and
 * event streams (text/event-stream responses). When a worker drains, the
 * app is told first (lib/drain.ts); whatever it leaves open is ended here,
 * each at its own moment spread over a window, so that thousands of clients
 * do not all reconnect to the new workers in the same instant.
 *
 * Invariants:
 * - a socket the app has closed, or has written a WebSocket close frame to,
 *   is never written to; one with data still queued (the app is writing)
 *   is tried again shortly, until the drain's deadline;
 * - a WebSocket is ended with a close frame, 1001 "going away", so the
 *   client sees a clean close, never 1006; another upgraded protocol is
 *   just ended; an event stream is ended with its terminating chunk;
 * - other responses (downloads, uploads, slow requests) are left to finish
 *   within the graceful timeout, as before.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

/** A close frame from a server (unmasked): FIN + opcode 8, 1001 "going away". */
const GOING_AWAY = (() => {
  const reason = Buffer.from('server going away')
  return Buffer.concat([Buffer.from([0x88, 2 + reason.length, 0x03, 0xe9]), reason])
})()

/** How often a socket the app is writing to is tried again. */
const RETRY_MS = 100

/** Set on an upgraded WebSocket socket once a close frame has gone out (the app's, or ours). */
const CLOSE_SENT = Symbol('sdserve.close-sent')
type Upgraded = Duplex & { [CLOSE_SENT]?: boolean }

export class LongLived {
  /** Upgraded sockets, with whether they speak WebSocket. */
  private readonly upgraded = new Map<Upgraded, boolean>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private deadline = 0

  /**
   * Follow a server's upgrades. Node emits 'upgrade' only when the app
   * listens for it, and a listener of ours would change that (an upgrade
   * request nobody handles is served as a plain request), so the server's
   * emit is wrapped instead: one comparison per event.
   */
  watch(server: Server): void {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the server as `this`
    const emit = server.emit
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the wrapper's own `this` is the server
    const tracker = this
    server.emit = function (this: Server, event: string | symbol, req?: unknown, socket?: unknown) {
      if (event === 'upgrade') tracker.add(req as IncomingMessage, socket as Duplex)
      // eslint-disable-next-line prefer-rest-params -- V8 passes `arguments` on without copying it
      return Reflect.apply(emit, this, arguments) as boolean
    } as Server['emit']
  }

  private add(req: IncomingMessage, socket: Upgraded): void {
    // An app's own server also hears the upgrades of the other binds' servers, which pass them on.
    if (this.upgraded.has(socket)) return
    const websocket = String(req.headers.upgrade).toLowerCase() === 'websocket'
    this.upgraded.set(socket, websocket)
    socket.once('close', () => this.upgraded.delete(socket))
    if (!websocket) return
    // Notice the app's own close frame: a second one would break the protocol. Frames start a write
    // (ws writes each frame's header first), so the first byte tells.
    const write = socket.write.bind(socket) as (...args: unknown[]) => boolean
    socket.write = ((chunk: unknown, ...rest: unknown[]): boolean => {
      if (chunk instanceof Uint8Array && chunk[0] === 0x88) socket[CLOSE_SENT] = true
      return write(chunk, ...rest)
    }) as Duplex['write']
  }

  /** How many upgraded sockets are open. */
  get size(): number {
    return this.upgraded.size
  }

  /**
   * End every long-lived connection, each at a random moment within windowMs
   * from now, and give up retrying at deadline (Date.now() clock). Called
   * again with a shorter window (a hurried drain), it reschedules.
   */
  drain(responses: Iterable<ServerResponse>, windowMs: number, deadline: number): void {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.deadline = deadline
    for (const [socket, websocket] of this.upgraded) this.later(Math.random() * windowMs, () => closeUpgraded(socket, websocket))
    for (const res of responses) if (isEventStream(res)) this.later(Math.random() * windowMs, () => endStream(res))
  }

  /** Run attempt after ms; again every RETRY_MS while it says 'later' and the deadline has not come. */
  private later(ms: number, attempt: () => 'done' | 'later'): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      if (attempt() === 'later' && Date.now() + RETRY_MS < this.deadline) this.later(RETRY_MS, attempt)
    }, ms)
    timer.unref()
    this.timers.add(timer)
  }
}

function isEventStream(res: ServerResponse): boolean {
  return /^\s*text\/event-stream/i.test(String(res.getHeader('content-type') ?? ''))
}

function closeUpgraded(socket: Upgraded, websocket: boolean): 'done' | 'later' {
  if (socket.destroyed || socket.writableEnded || socket[CLOSE_SENT] === true) return 'done'
  if (socket.writableLength > 0) return 'later'
  if (websocket) {
    socket[CLOSE_SENT] = true
    socket.write(GOING_AWAY)
  }
  socket.end()
  return 'done'
}

function endStream(res: ServerResponse): 'done' | 'later' {
  if (res.writableEnded || res.destroyed) return 'done'
  if (res.writableLength > 0) return 'later'
  // The stream's end is the connection's: its client reconnects elsewhere.
  res.once('finish', () => res.socket?.end())
  res.end()
  return 'done'
}
