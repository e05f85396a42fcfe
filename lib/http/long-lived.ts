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
  /** Upgraded sockets, with what they write when they speak WebSocket (undefined: another protocol). */
  private readonly upgraded = new Map<Upgraded, OutgoingFrames | undefined>()
  private readonly timers = new Set<NodeJS.Timeout>()
  /** While draining: the drain's deadline, and when its window ends (Date.now() clock); 0 before. */
  private deadline = 0
  private windowEnd = 0

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
    const frames = websocket ? new OutgoingFrames() : undefined
    this.upgraded.set(socket, frames)
    socket.once('close', () => this.upgraded.delete(socket))
    // An upgrade during the drain (on a kept-alive connection): ended within what is left of the window.
    if (this.deadline > 0) this.later(Math.random() * Math.max(0, this.windowEnd - Date.now()), () => closeUpgraded(socket, frames))
    if (frames === undefined) return
    // Notice the app's own close frame: a second one would break the protocol. What is written is
    // followed, the 101 response and then frame by frame (a payload's first byte may look like a
    // close frame's: ws writes headers and payloads apart).
    const write = socket.write.bind(socket) as (...args: unknown[]) => boolean
    socket.write = ((chunk: unknown, ...rest: unknown[]): boolean => {
      if (socket[CLOSE_SENT] !== true && frames.closes(chunk, rest[0])) socket[CLOSE_SENT] = true
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
    this.windowEnd = Date.now() + windowMs
    for (const [socket, frames] of this.upgraded) this.later(Math.random() * windowMs, () => closeUpgraded(socket, frames))
    for (const res of responses) if (isEventStream(res)) this.later(Math.random() * windowMs, () => endStream(res))
  }

  /**
   * A response that began during the drain (on a keep-alive connection not
   * handed over yet): if it turns out to be an event stream, it is ended
   * within what is left of the window, like the others.
   */
  late(res: ServerResponse): void {
    if (this.deadline > 0) this.later(Math.random() * Math.max(0, this.windowEnd - Date.now()), () => (isEventStream(res) ? endStream(res) : 'done'))
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

/**
 * Whether a response is an event stream. Headers given to writeHead() as an
 * object are not kept for getHeader() (only written out): once the head is
 * out, it is what tells.
 */
function isEventStream(res: ServerResponse): boolean {
  const head = (res as ServerResponse & { _header?: string | null })._header
  if (typeof head === 'string') return /^content-type:[ \t]*text\/event-stream/im.test(head)
  return /^\s*text\/event-stream/i.test(String(res.getHeader('content-type') ?? ''))
}

function closeUpgraded(socket: Upgraded, frames: OutgoingFrames | undefined): 'done' | 'later' {
  if (socket.destroyed || socket.writableEnded || socket[CLOSE_SENT] === true) return 'done'
  // Data queued (the app is writing), or the app has not answered the upgrade yet.
  if (socket.writableLength > 0 || frames?.responded === false) return 'later'
  if (frames !== undefined) {
    socket[CLOSE_SENT] = true
    socket.write(GOING_AWAY)
  }
  socket.end()
  return 'done'
}

function endStream(res: ServerResponse): 'done' | 'later' {
  if (res.writableEnded || res.destroyed) return 'done'
  if (res.writableLength > 0) return 'later'
  // The stream's end is the connection's: its client reconnects elsewhere, not on this kept-alive
  // connection to a draining worker. The socket is taken now: at 'finish' the server has detached it.
  const socket = res.socket
  res.end(() => socket?.end())
  return 'done'
}

const RESPONSE_END = Buffer.from('\r\n\r\n')

/**
 * Follows the frames a server writes to a WebSocket: each header says how
 * long its payload is, which is skipped without being read.
 */
class OutgoingFrames {
  /** How much of the end of the 101 response ("\r\n\r\n") has been written: the frames come after. */
  private response = 0
  /** Whether the 101 response is out: frames may follow. */
  get responded(): boolean {
    return this.response === RESPONSE_END.length
  }

  /** Payload bytes of the current frame still to come. */
  private payload = 0
  /** The bytes of a header so far (a header may come in pieces). */
  private head: number[] = []

  /** Whether this write holds (the start of) a close frame. */
  closes(chunk: unknown, encoding: unknown): boolean {
    if (typeof chunk === 'string') {
      const enc = typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8'
      const length = Buffer.byteLength(chunk, enc)
      // A text payload (ws writes strings as they are): skipped without a copy.
      if (length <= this.payload) {
        this.payload -= length
        return false
      }
      chunk = Buffer.from(chunk, enc)
    }
    const bytes = chunk as Uint8Array // a string, a Buffer or a Uint8Array: what a socket takes
    let close = false
    for (let i = 0; i < bytes.length; ) {
      if (this.response < RESPONSE_END.length) {
        const byte = bytes[i++]
        this.response = byte === RESPONSE_END[this.response] ? this.response + 1 : byte === RESPONSE_END[0] ? 1 : 0
        continue
      }
      if (this.payload > 0) {
        const n = Math.min(this.payload, bytes.length - i)
        this.payload -= n
        i += n
        continue
      }
      this.head.push(bytes[i++]!)
      const size = headerSize(this.head)
      if (size === undefined || this.head.length < size) continue
      if ((this.head[0]! & 0x0f) === 0x08) close = true
      this.payload = payloadLength(this.head)
      this.head = []
    }
    return close
  }
}

/** A frame header's size, once its first two bytes are known: 2, the extended length (2 or 8), the mask (4). */
function headerSize(head: number[]): number | undefined {
  if (head.length < 2) return undefined
  const len7 = head[1]! & 0x7f
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (head[1]! & 0x80 ? 4 : 0)
}

function payloadLength(head: number[]): number {
  const len7 = head[1]! & 0x7f
  if (len7 < 126) return len7
  let n = 0
  for (let i = 2; i < (len7 === 126 ? 4 : 10); i++) n = n * 256 + head[i]!
  return n
}
