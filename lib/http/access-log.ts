/**
 * The access log (gunicorn's --access-logfile / --access-logformat): one
 * line per request, in gunicorn's `%(name)s` format, compiled once into a
 * function of literal and atom parts.
 *
 * | atom | value |
 * |---|---|
 * | `h` | remote address (`remoteOf(req)`; default the peer address; `-` for a UNIX socket peer, which has no address node can show) |
 * | `l` | `-` |
 * | `u` | user name from `Authorization: Basic` (or the entry's `user`) |
 * | `t` | time the line is logged, `[10/Oct/2000:13:55:36 +0200]` (local time, as gunicorn) |
 * | `r` | request line `GET /path?q HTTP/1.1` |
 * | `m` `U` `q` `H` | method, URL path, query string (no `?`), protocol `HTTP/1.1` |
 * | `s` | status (for a request the client cut off: the status the response had then) |
 * | `B` `b` | response body bytes; `b` shows `-` for 0 |
 * | `f` `a` | Referer, User-Agent |
 * | `T` `D` `M` `L` | request time: whole seconds, microseconds, milliseconds, decimal seconds |
 * | `p` | `<pid>` |
 * | `{name}i` `{name}o` | request / response header (case-insensitive) |
 * | `{NAME}e` | environment variable, read when the format is compiled |
 * | `{wsgi.url_scheme}e` | the request's scheme, `http` or `https` (from a trusted proxy's X-Forwarded-Proto or Forwarded), as gunicorn's |
 *
 * A missing or empty value is `-`. Values from the request, the response or
 * the environment are escaped as nginx does, so a line cannot be forged:
 * control characters and bytes 0x7f-0xff become `\xNN`, `"` becomes `\"`
 * and `\` becomes `\\`. `%%` is a literal `%`.
 */
import { ServerResponse, type IncomingMessage, type Server } from 'node:http'
import { ConfigError } from '../errors.js'
import type { LogFile } from '../log-file.js'
import { client } from './proxy.js'

export const DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

export interface AccessLogEntry {
  req: IncomingMessage
  res: ServerResponse
  /** The client address (`-` when unknown). */
  remote: string
  /** process.hrtime.bigint() when the request started and when its response finished or was cut off. */
  startNs: bigint
  endNs: bigint
  /** Response body bytes sent (without headers and chunked framing). */
  bytes: number
  /** The authenticated user, when the app knows better than the Authorization header. */
  user?: string
}

type Atom = (e: AccessLogEntry) => string

// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x1f"\\\x7f-\xff]/

/** Escape a value as nginx does: control characters and bytes 0x7f-0xff as \xNN, `"` and `\` with a backslash. */
export function escapeLogValue(value: string): string {
  if (!UNSAFE.test(value)) return value
  let out = ''
  for (const ch of value) {
    const c = ch.charCodeAt(0)
    if (c === 0x22) out += '\\"'
    else if (c === 0x5c) out += '\\\\'
    else if (c < 0x20 || (c >= 0x7f && c <= 0xff)) out += `\\x${c.toString(16).toUpperCase().padStart(2, '0')}`
    else out += ch
  }
  return out
}

/** A value for the line: `-` when missing or empty, escaped otherwise. */
function show(value: string | number | string[] | undefined): string {
  if (value === undefined) return '-'
  const text = Array.isArray(value) ? value.join(', ') : String(value)
  return text === '' ? '-' : escapeLogValue(text)
}

function urlPath(url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

function urlQuery(url: string): string | undefined {
  const q = url.indexOf('?')
  return q === -1 ? undefined : url.slice(q + 1)
}

/** The user of an `Authorization: Basic` header (its bytes, as header values are). */
function basicUser(e: AccessLogEntry): string | undefined {
  if (e.user !== undefined) return e.user
  const auth = e.req.headers.authorization
  if (auth === undefined || !/^basic /i.test(auth)) return undefined
  const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('latin1')
  const colon = decoded.indexOf(':')
  return colon === -1 ? decoded : decoded.slice(0, colon)
}

/** Status codes and methods whose responses have no body: node discards what the app writes. */
function hasBody(e: AccessLogEntry): boolean {
  const status = e.res.statusCode
  return e.req.method !== 'HEAD' && status !== 204 && status !== 304 && status >= 200
}

function bodyBytes(e: AccessLogEntry): number {
  return hasBody(e) ? e.bytes : 0
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n))

/** `[10/Oct/2000:13:55:36 +0200]` in local time: Apache's and gunicorn's %t. */
export function formatLogTime(date: Date): string {
  const offset = -date.getTimezoneOffset()
  const abs = Math.abs(offset)
  const zone = `${offset < 0 ? '-' : '+'}${pad2(Math.floor(abs / 60))}${pad2(abs % 60)}`
  return (
    `[${pad2(date.getDate())}/${MONTHS[date.getMonth()]!}/${date.getFullYear()}:` +
    `${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())} ${zone}]`
  )
}

/** %(t)s: the clock read once per line, the text built once per second. */
function timeAtom(): Atom {
  let second = -1
  let text = ''
  return () => {
    const now = Date.now()
    const s = Math.floor(now / 1000)
    if (s !== second) {
      second = s
      text = formatLogTime(new Date(now))
    }
    return text
  }
}

const elapsedNs = (e: AccessLogEntry): bigint => e.endNs - e.startNs

const ATOMS: Record<string, () => Atom> = {
  h: () => (e) => show(e.remote),
  l: () => () => '-',
  u: () => (e) => show(basicUser(e)),
  t: timeAtom,
  r: () => (e) => escapeLogValue(`${e.req.method ?? '-'} ${e.req.url ?? '-'} HTTP/${e.req.httpVersion}`),
  m: () => (e) => show(e.req.method),
  U: () => (e) => show(urlPath(e.req.url ?? '')),
  q: () => (e) => show(urlQuery(e.req.url ?? '')),
  H: () => (e) => `HTTP/${e.req.httpVersion}`,
  s: () => (e) => String(e.res.statusCode),
  B: () => (e) => String(bodyBytes(e)),
  b: () => (e) => {
    const n = bodyBytes(e)
    return n === 0 ? '-' : String(n)
  },
  f: () => (e) => show(e.req.headers.referer),
  a: () => (e) => show(e.req.headers['user-agent']),
  T: () => (e) => String(elapsedNs(e) / 1_000_000_000n),
  D: () => (e) => String(elapsedNs(e) / 1000n),
  M: () => (e) => String(elapsedNs(e) / 1_000_000n),
  L: () => (e) => {
    const us = elapsedNs(e) / 1000n
    return `${us / 1_000_000n}.${String(us % 1_000_000n).padStart(6, '0')}`
  },
  p: () => () => `<${process.pid}>`,
}

interface Compiled {
  render: (e: AccessLogEntry) => string
  /** The line with its "\n": the newline is part of the last literal, not one more concatenation per line. */
  renderLine: (e: AccessLogEntry) => string
  /** Does the format show the remote address (worth resolving at request start)? */
  usesRemote: boolean
  /** Does the format show the request time (worth reading the clock twice per request)? */
  usesTime: boolean
}

function compile(format: string, option: string): Compiled {
  const bad = (problem: string): ConfigError =>
    new ConfigError(option, format, `a gunicorn access log format (${problem}; atoms: %(name)s with name one of ${Object.keys(ATOMS).join(' ')} {header}i {header}o {VAR}e, %% for a literal %)`)
  // literals[i] comes before atoms[i]; the last literal (not in the array) ends the line.
  const literals: string[] = []
  const atoms: Atom[] = []
  let usesRemote = false
  let usesTime = false
  let literal = ''
  let i = 0
  while (i < format.length) {
    const pct = format.indexOf('%', i)
    if (pct === -1) {
      literal += format.slice(i)
      break
    }
    literal += format.slice(i, pct)
    const next = format[pct + 1]
    if (next === '%') {
      literal += '%'
      i = pct + 2
      continue
    }
    const close = next === '(' ? format.indexOf(')', pct + 2) : -1
    if (close === -1 || format[close + 1] !== 's')
      throw bad(`malformed directive at offset ${pct}: expected %(name)s or %%`)
    const name = format.slice(pct + 2, close)
    let atom: Atom
    const braced = /^\{([^{}]+)\}([ioe])$/.exec(name)
    if (braced !== null) {
      const [, key, kind] = braced as unknown as [string, string, 'i' | 'o' | 'e']
      if (kind === 'e' && key === 'wsgi.url_scheme') {
        // gunicorn's spelling of the request's scheme: https behind a trusted proxy's X-Forwarded-Proto.
        atom = (e) => client(e.req)?.proto ?? 'http'
      } else if (kind === 'e') {
        const value = show(process.env[key])
        atom = () => value
      } else {
        const header = key.toLowerCase()
        atom = kind === 'i' ? (e) => show(e.req.headers[header]) : (e) => show(e.res.getHeader(header))
      }
    } else {
      const make = Object.hasOwn(ATOMS, name) ? ATOMS[name] : undefined
      if (make === undefined) throw bad(`unknown atom %(${name})s`)
      atom = make()
      if (name === 'h') usesRemote = true
      if (name === 'T' || name === 'D' || name === 'M' || name === 'L') usesTime = true
    }
    literals.push(literal)
    atoms.push(atom)
    literal = ''
    i = close + 2
  }
  return { render: renderer(literals, atoms, literal), renderLine: renderer(literals, atoms, `${literal}\n`), usesRemote, usesTime }
}

/** The line: literals[i] comes before atoms[i]; `last` ends it. */
function renderer(literals: readonly string[], atoms: readonly Atom[], last: string): (e: AccessLogEntry) => string {
  const parts = [...literals, last]
  const n = atoms.length
  return (e) => {
    let line = parts[0]!
    for (let k = 0; k < n; k++) line += atoms[k]!(e) + parts[k + 1]!
    return line
  }
}

/**
 * Compile a gunicorn access log format once into a function of an entry
 * (the line, without "\n"). A malformed `%` directive or an unknown atom is
 * a ConfigError naming `option` and echoing the format.
 */
export function compileAccessLogFormat(format: string, option = 'access-logformat'): (e: AccessLogEntry) => string {
  return compile(format, option).render
}

/** The peer address; a UNIX socket's peer has none (node shows none; gunicorn logs what it can). */
function peerAddress(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? '-'
}

function chunkBytes(chunk: unknown, encoding: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
  if (chunk instanceof Uint8Array) return chunk.byteLength
  return 0
}

type WriteFn = (chunk: unknown, encoding?: unknown, callback?: unknown) => boolean
type EndFn = (chunk?: unknown, encoding?: unknown, callback?: unknown) => ServerResponse

/**
 * What the access log keeps for one response until its line is written: the
 * entry itself, plus (for a response that is not a LoggedResponse) the
 * response's own write() and end(). One object per request; the functions
 * that use it are shared by every response.
 */
interface Tracked extends AccessLogEntry {
  log: AccessLog | undefined
  timed: boolean
  write: WriteFn | undefined
  end: EndFn | undefined
}

const TRACKED = Symbol('sdserve.access-log')

type TrackedResponse = ServerResponse & { [TRACKED]?: Tracked | undefined }

// Called with a response as `this`.
const { write: nodeWrite, end: nodeEnd } = ServerResponse.prototype as unknown as { write: WriteFn; end: EndFn }

// Body bytes: count what the app hands to res.write()/res.end() while the response is open.
// The cheapest correct way: the socket's bytesWritten also holds the headers (known only from
// node internals), the chunked framing and, with keep-alive, other responses' bytes; node
// keeps no count of its own. res.end() writes through node internals, not res.write(), so
// nothing is counted twice; bodies node drops (HEAD, 204, 304) are zeroed when logging.
function countWrite(res: TrackedResponse, t: Tracked | undefined, chunk: unknown, encoding: unknown): void {
  if (t !== undefined && !res.writableEnded && !res.destroyed) t.bytes += chunkBytes(chunk, encoding)
}

function countEnd(res: TrackedResponse, t: Tracked | undefined, chunk: unknown, encoding: unknown): void {
  if (typeof chunk !== 'function') countWrite(res, t, chunk, encoding)
}

/**
 * The response class of the servers sdserve creates (http.createServer's
 * `ServerResponse` option): it counts body bytes in its own write() and
 * end(), on the prototype. Patching each response's write and end, and
 * adding a property to it, gives every logged response a hidden class of
 * its own, which makes node's http code, that handles every response,
 * polymorphic; the track field is here from the constructor on, so every
 * response has the same shape, logged or not. Responses of other classes
 * (an app's own server) are patched one by one instead.
 */
export class LoggedResponse<Request extends IncomingMessage = IncomingMessage> extends ServerResponse<Request> {
  [TRACKED]: Tracked | undefined = undefined
}

Object.defineProperties(LoggedResponse.prototype, {
  write: {
    configurable: true,
    writable: true,
    value: function write(this: LoggedResponse, chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
      countWrite(this, this[TRACKED], chunk, encoding)
      return nodeWrite.call(this, chunk, encoding, callback)
    },
  },
  end: {
    configurable: true,
    writable: true,
    value: function end(this: LoggedResponse, chunk?: unknown, encoding?: unknown, callback?: unknown): ServerResponse {
      countEnd(this, this[TRACKED], chunk, encoding)
      return nodeEnd.call(this, chunk, encoding, callback)
    },
  },
})

// A response of another class: its own write() and end() are replaced.
function countingWrite(this: TrackedResponse, chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
  const t = this[TRACKED]!
  countWrite(this, t, chunk, encoding)
  return t.write!.call(this, chunk, encoding, callback)
}

function countingEnd(this: TrackedResponse, chunk?: unknown, encoding?: unknown, callback?: unknown): ServerResponse {
  const t = this[TRACKED]!
  countEnd(this, t, chunk, encoding)
  return t.end!.call(this, chunk, encoding, callback)
}

/**
 * A tracked response is over ('close' follows 'finish' on the next tick and
 * also comes alone when the connection is cut off): write its line.
 */
export function responseClosed(res: ServerResponse): void {
  const t = (res as TrackedResponse)[TRACKED]
  const log = t?.log
  // Node emits 'close' once; an app may emit it again.
  if (log === undefined) return
  t!.log = undefined
  if (t!.timed) t!.endNs = process.hrtime.bigint()
  log.logLine(t!)
}

function onResponseClose(this: ServerResponse): void {
  responseClosed(this)
}

export class AccessLog {
  private readonly file: Pick<LogFile, 'write'>
  private readonly render: (e: AccessLogEntry) => string
  private readonly usesRemote: boolean
  private readonly usesTime: boolean

  /** `file` is a LogFile (or anything with its write()); a bad format throws ConfigError('access-logformat'). */
  constructor(file: Pick<LogFile, 'write'>, format: string = DEFAULT_ACCESS_LOG_FORMAT) {
    this.file = file
    const compiled = compile(format, 'access-logformat')
    this.render = compiled.renderLine
    this.usesRemote = compiled.usesRemote
    this.usesTime = compiled.usesTime
  }

  /** Write the line of one request. */
  log(entry: AccessLogEntry): void {
    this.logLine(entry)
  }

  /** @internal the line of a tracked response. */
  logLine(entry: AccessLogEntry): void {
    this.file.write(this.render(entry))
  }

  /**
   * Log every request of `server`: one line when its response finishes, or
   * when the connection closes first (a client that went away). `remoteOf`
   * gives the client address (e.g. from trusted proxy headers); it runs when
   * the request starts, while the socket is still there.
   */
  attach(server: Server, remoteOf: (req: IncomingMessage) => string = peerAddress): void {
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => this.track(req, res, remoteOf))
  }

  /**
   * Log one request: call it when the request starts, before the app writes
   * anything (the worker calls it once it knows the client from trusted
   * proxy headers). `remoteOf` gives what %(h)s shows; it is called now, and
   * only when the format shows %(h)s. With `listen` false the caller calls
   * responseClosed(res) on the response's 'close' itself (the worker, from
   * the one 'close' listener it has anyway).
   */
  track(req: IncomingMessage, res: ServerResponse, remoteOf: (req: IncomingMessage) => string, listen = true): void {
    const remote = this.usesRemote ? remoteOf(req) : '-'
    // The clock is read only for a format that shows the request time.
    const startNs = this.usesTime ? process.hrtime.bigint() : 0n
    const own = res instanceof LoggedResponse
    const tracked: Tracked = {
      req,
      res,
      remote,
      startNs,
      endNs: startNs,
      bytes: 0,
      log: this,
      timed: this.usesTime,
      // Called with the response as `this` (countingWrite, countingEnd): no bound copies per request.
      // eslint-disable-next-line @typescript-eslint/unbound-method
      write: own ? undefined : (res.write as WriteFn),
      // eslint-disable-next-line @typescript-eslint/unbound-method
      end: own ? undefined : (res.end as EndFn),
    }
    ;(res as TrackedResponse)[TRACKED] = tracked
    if (!own) {
      res.write = countingWrite as ServerResponse['write']
      res.end = countingEnd as ServerResponse['end']
    }
    if (listen) res.on('close', onResponseClose)
  }
}
