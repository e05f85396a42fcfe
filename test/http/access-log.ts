import t, { type Test } from 'tap'
import { createServer, request, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError } from '../../lib/errors.js'
import {
  AccessLog,
  compileAccessLogFormat,
  DEFAULT_ACCESS_LOG_FORMAT,
  escapeLogValue,
  formatLogTime,
  LoggedResponse,
  responseClosed,
  type AccessLogEntry,
} from '../../lib/http/access-log.js'
import { LogFile } from '../../lib/log-file.js'
import { AllowList, resolveClient } from '../../lib/http/proxy.js'
import { get, shortTmp, waitFor } from '../helpers/proc.js'

const SEED_FORMAT = '%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
const TIME = String.raw`\[\d\d/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]`

interface Served {
  port: number
  lines: string[]
  /** Resolves with the n-th line (1-based) once it is logged. */
  line(n: number): Promise<string>
}

/** An http.Server on 127.0.0.1:0 with an access log collecting lines, closed at teardown. */
async function serve(
  t: Test,
  handler: RequestListener,
  format = DEFAULT_ACCESS_LOG_FORMAT,
  remoteOf?: (req: IncomingMessage) => string,
  Response?: typeof ServerResponse,
): Promise<Served> {
  const lines: string[] = []
  const server = Response === undefined ? createServer(handler) : createServer({ ServerResponse: Response }, handler)
  new AccessLog({ write: (l) => lines.push(l) }, format).attach(server, remoteOf)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const line = async (n: number): Promise<string> => {
    await waitFor(() => lines.length >= n, `access log line ${n}`)
    return lines[n - 1]!
  }
  return { port: (server.address() as AddressInfo).port, lines, line }
}

/** A fake entry for rendering atoms without a server. */
function entry(
  req: Partial<IncomingMessage> & { headers?: IncomingMessage['headers'] } = {},
  res: { statusCode?: number; headers?: Record<string, string | number | string[]> } = {},
  extra: Partial<AccessLogEntry> = {},
): AccessLogEntry {
  const headers = res.headers ?? {}
  return {
    req: { method: 'GET', url: '/', httpVersion: '1.1', headers: {}, ...req } as IncomingMessage,
    res: { statusCode: res.statusCode ?? 200, getHeader: (name: string) => headers[name] } as unknown as ServerResponse,
    remote: '192.0.2.1',
    startNs: 0n,
    endNs: 0n,
    bytes: 0,
    ...extra,
  }
}

const render = (format: string, e: AccessLogEntry): string => compileAccessLogFormat(format)(e)

/**
 * A test run twice: on a server with node's ServerResponse (each response's
 * write and end patched) and on one with LoggedResponse (the worker's
 * servers: the class counts).
 */
function bothClasses(name: string, fn: (t: Test, Response: typeof ServerResponse | undefined) => Promise<void>): void {
  t.test(name, (t) => fn(t, undefined))
  t.test(`${name} (LoggedResponse)`, (t) => fn(t, LoggedResponse))
}

t.test("the seed's format, a real server and client, through a LogFile", async (t) => {
  const path = join(shortTmp(t), 'access.log')
  const file = LogFile.open(path, 'stdout')
  const server = createServer((_req, res) => res.end('hello'))
  new AccessLog(file, SEED_FORMAT).attach(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as AddressInfo).port
  const reply = await get({
    port,
    path: '/hello?x=1',
    headers: { 'x-forwarded-for': '203.0.113.7', referer: 'http://example.com/from', 'user-agent': 'test-agent/1.0' },
  })
  t.equal(reply.body, 'hello')
  await waitFor(async () => {
    await file.flush()
    return readFileSync(path, 'utf8') !== ''
  }, 'the access log line')
  await file.close()
  t.match(
    readFileSync(path, 'utf8'),
    new RegExp(`^203\\.0\\.113\\.7 - - ${TIME} "GET /hello\\?x=1 HTTP/1\\.1" 200 5 "http://example\\.com/from" "test-agent/1\\.0"\\n$`),
  )
})

t.test('the default format (gunicorn): remote address, basic auth user, request line', async (t) => {
  t.equal(DEFAULT_ACCESS_LOG_FORMAT, '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"')
  const s = await serve(t, (_req, res) => {
    res.statusCode = 404
    res.end('not here')
  })
  await get({ port: s.port, path: '/missing', headers: { authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` } })
  t.match(await s.line(1), new RegExp(`^127\\.0\\.0\\.1 - alice ${TIME} "GET /missing HTTP/1\\.1" 404 8 "-" "-"\\n$`))
})

t.test('every atom, from a real request', async (t) => {
  const atoms = ['h', 'l', 'u', 't', 'r', 'm', 'U', 'q', 'H', 's', 'B', 'b', 'f', 'a', 'T', 'D', 'M', 'L', 'p', '{X-Test}i', '{x-reply}o', '{SDS_ACCESS_TEST}e']
  process.env.SDS_ACCESS_TEST = 'from env'
  t.teardown(() => delete process.env.SDS_ACCESS_TEST)
  const s = await serve(
    t,
    (_req, res) => {
      res.setHeader('X-Reply', 'yes')
      res.statusCode = 201
      res.end('created!')
    },
    atoms.map((a) => `%(${a})s`).join('|'),
  )
  await get({
    port: s.port,
    path: '/some/path?a=1&b=2',
    headers: { 'x-test': 'header value', referer: 'ref', 'user-agent': 'ua', authorization: `basic ${Buffer.from('bob').toString('base64')}` },
  })
  const values = (await s.line(1)).slice(0, -1).split('|')
  const got = Object.fromEntries(atoms.map((a, i) => [a, values[i]]))
  t.equal(got.h, '127.0.0.1', 'h: remote address')
  t.equal(got.l, '-', 'l: always -')
  t.equal(got.u, 'bob', 'u: basic auth user (no colon: the whole value)')
  t.match(got.t, new RegExp(`^${TIME}$`), 't: time')
  t.equal(got.r, 'GET /some/path?a=1&b=2 HTTP/1.1', 'r: request line')
  t.equal(got.m, 'GET', 'm: method')
  t.equal(got.U, '/some/path', 'U: path')
  t.equal(got.q, 'a=1&b=2', 'q: query')
  t.equal(got.H, 'HTTP/1.1', 'H: protocol')
  t.equal(got.s, '201', 's: status')
  t.equal(got.B, '8', 'B: body bytes')
  t.equal(got.b, '8', 'b: body bytes')
  t.equal(got.f, 'ref', 'f: referer')
  t.equal(got.a, 'ua', 'a: user agent')
  t.match(got.T, /^\d+$/, 'T: seconds')
  t.match(got.D, /^\d+$/, 'D: microseconds')
  t.match(got.M, /^\d+$/, 'M: milliseconds')
  t.match(got.L, /^\d+\.\d{6}$/, 'L: decimal seconds')
  t.equal(Number(got.D), Math.floor(Number(got.L) * 1e6 + 0.5), 'D and L agree')
  t.equal(got.p, `<${process.pid}>`, 'p: <pid>')
  t.equal(got['{X-Test}i'], 'header value', '{header}i: request header, any case')
  t.equal(got['{x-reply}o'], 'yes', '{header}o: response header')
  t.equal(got['{SDS_ACCESS_TEST}e'], 'from env', '{VAR}e: environment variable')
})

t.test('request times and time formats, exactly', async (t) => {
  const e = entry({}, {}, { startNs: 1_000n, endNs: 1_000n + 2_345_678_901n })
  t.equal(render('%(T)s %(D)s %(M)s %(L)s', e), '2 2345678 2345 2.345678')
  t.equal(render('%(L)s', entry({}, {}, { startNs: 5n, endNs: 5n + 1_000n })), '0.000001')
  const tz = process.env.TZ
  t.teardown(() => {
    if (tz === undefined) delete process.env.TZ
    else process.env.TZ = tz
  })
  const when = new Date(Date.UTC(2000, 9, 10, 13, 55, 36))
  process.env.TZ = 'UTC'
  t.equal(formatLogTime(when), '[10/Oct/2000:13:55:36 +0000]')
  process.env.TZ = 'Asia/Kolkata'
  t.equal(formatLogTime(when), '[10/Oct/2000:19:25:36 +0530]')
  process.env.TZ = 'America/St_Johns'
  t.equal(formatLogTime(new Date(Date.UTC(2000, 0, 2, 3, 4, 5))), '[01/Jan/2000:23:34:05 -0330]')
  // %(t)s: the time of logging; rendered twice in a row (the text is kept for the second).
  const fn = compileAccessLogFormat('%(t)s')
  const a = fn(entry())
  const b = fn(entry())
  const c = fn(entry())
  t.match(a, /^\[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d -0[23]30\]$/)
  t.ok(a === b || b === c, 'the same second renders the same text')
})

t.test("missing or empty values are '-'", async (t) => {
  const e = entry({ method: undefined, url: undefined, headers: { referer: '', 'x-list': ['', ''] as unknown as string } }, { statusCode: 200 })
  t.equal(render('%(u)s|%(f)s|%(a)s|%(q)s|%(U)s|%(m)s|%(r)s|%({x-none}i)s|%({x-none}o)s|%({SDS_SURELY_UNSET_VAR}e)s', e), '-|-|-|-|-|-|- - HTTP/1.1|-|-|-')
  t.equal(render('%(h)s', entry({}, {}, { remote: '' })), '-')
  t.equal(render('%(q)s', entry({ url: '/p?' })), '-', 'an empty query')
  t.equal(render('%(b)s %(B)s', entry({}, {}, { bytes: 0 })), '- 0')
  t.equal(render('%({x-list}i)s', entry({ headers: { 'x-list': ['a', 'b'] as unknown as string } })), 'a, b')
  t.equal(render('%({set-cookie}o)s|%({content-length}o)s', entry({}, { headers: { 'set-cookie': ['a=1', 'b=2'], 'content-length': 12 } })), 'a=1, b=2|12')
  t.equal(render('%(u)s', entry({}, {}, { user: 'given' })), 'given', "the entry's user wins")
  t.equal(render('%(u)s', entry({ headers: { authorization: 'Bearer abc' } })), '-', 'not basic auth')
  t.equal(render('%(u)s', entry({ headers: { authorization: `Basic ${Buffer.from(':pw').toString('base64')}` } })), '-', 'an empty user')
})

t.test('values are escaped: a line cannot be forged', async (t) => {
  t.equal(escapeLogValue('plain value'), 'plain value')
  t.equal(escapeLogValue('a"b\\c\td\n\r\x00\x1f\x7f\x80\xffé€'), 'a\\"b\\\\c\\x09d\\x0A\\x0D\\x00\\x1F\\x7F\\x80\\xFF\\xE9€')
  t.equal(render('%(u)s', entry({ headers: { authorization: `Basic ${Buffer.from('ev"il\n:x').toString('base64')}` } })), 'ev\\"il\\x0A')
  t.equal(render('%({SDS_ESCAPE_VAR}e)s', entry()), '-')
  process.env.SDS_ESCAPE_VAR = 'a"b'
  t.teardown(() => delete process.env.SDS_ESCAPE_VAR)
  t.equal(render('%({SDS_ESCAPE_VAR}e)s', entry()), 'a\\"b')
  t.equal(render('%(h)s', entry({}, {}, { remote: '1.2.3.4"x' })), '1.2.3.4\\"x')
  // A raw request: '"' and '\' in the URL, a tab and UTF-8 bytes in the User-Agent.
  const s = await serve(t, (_req, res) => res.end('ok'))
  await new Promise<void>((resolve, reject) => {
    const socket = connect(s.port, '127.0.0.1', () => {
      socket.write(
        Buffer.concat([
          Buffer.from('GET /a"b\\c?x="y" HTTP/1.1\r\nHost: x\r\nReferer: r"\r\nUser-Agent: a"b\\c\td'),
          Buffer.from([0xc3, 0xa9]),
          Buffer.from('\r\nConnection: close\r\n\r\n'),
        ]),
      )
    })
    socket.on('data', () => undefined)
    socket.on('error', reject)
    socket.on('close', () => resolve())
  })
  t.match(await s.line(1), new RegExp(String.raw`^127\.0\.0\.1 - - ${TIME} "GET /a\\"b\\\\c\?x=\\"y\\" HTTP/1\.1" 200 2 "r\\"" "a\\"b\\\\c\\x09d\\xC3\\xA9"\n$`))
})

bothClasses('body bytes: chunked, content-length, HEAD, 304, 204, writes after the end', async (t, Response) => {
  const s = await serve(
    t,
    (req, res) => {
      res.on('error', () => undefined) // writes after the end
      switch (req.url) {
        case '/chunked':
          res.write('abc')
          res.write('é', 'utf8')
          res.write('ffff', 'hex', () => undefined)
          res.write(Buffer.from('xyz'), () => undefined)
          res.end('!', 'latin1', () => undefined)
          break
        case '/length':
          res.setHeader('Content-Length', 10)
          res.end(Buffer.alloc(10))
          break
        case '/head':
          res.end('a body node drops')
          break
        case '/304':
          res.statusCode = 304
          res.end('dropped too')
          break
        case '/204':
          res.statusCode = 204
          res.write('dropped')
          res.end()
          break
        default:
          res.end('done', () => undefined)
          res.write('too late')
          res.end('too late')
          res.end(() => undefined)
      }
    },
    '%(U)s %(s)s %(B)s %(b)s %({content-length}o)s',
    undefined,
    Response,
  )
  const chunked = await get({ port: s.port, path: '/chunked' })
  t.equal(chunked.headers['transfer-encoding'], 'chunked')
  t.equal(await s.line(1), '/chunked 200 11 11 -\n', '3 + 2 (é) + 2 (hex) + 3 + 1, without the chunked framing')
  await get({ port: s.port, path: '/length' })
  t.equal(await s.line(2), '/length 200 10 10 10\n')
  await new Promise<void>((resolve, reject) => {
    const req = request({ port: s.port, host: '127.0.0.1', method: 'HEAD', path: '/head', agent: false }, (res) => {
      res.resume()
      res.on('end', resolve)
    })
    req.on('error', reject)
    req.end()
  })
  t.match(await s.line(3), /^\/head 200 0 - /)
  const notModified = await get({ port: s.port, path: '/304' })
  t.equal(notModified.status, 304)
  t.match(await s.line(4), /^\/304 304 0 - /)
  await get({ port: s.port, path: '/204' })
  t.match(await s.line(5), /^\/204 204 0 - /)
  await get({ port: s.port, path: '/after' })
  t.match(await s.line(6), /^\/after 200 4 4 /, 'writes after the end are not counted')
  const fn = compileAccessLogFormat('%(B)s')
  t.equal(fn(entry({}, { statusCode: 101 }, { bytes: 5 })), '0', '1xx: no body')
  t.equal(fn(entry({ method: 'HEAD' }, {}, { bytes: 5 })), '0')
})

bothClasses('keep-alive and pipelined requests: one line each, each with its own bytes', async (t, Response) => {
  const s = await serve(t, (req, res) => res.end(String(req.url).slice(1)), '%(U)s %(B)s', undefined, Response)
  await new Promise<void>((resolve, reject) => {
    const socket = connect(s.port, '127.0.0.1', () => {
      socket.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /bbbb HTTP/1.1\r\nHost: x\r\n\r\nGET /cc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    })
    socket.on('data', () => undefined)
    socket.on('error', reject)
    socket.on('close', () => resolve())
  })
  await s.line(3)
  t.same(s.lines, ['/a 1\n', '/bbbb 4\n', '/cc 2\n'])
})

bothClasses('a client that disconnects mid-response: logged with the status and bytes sent so far', async (t, Response) => {
  let closed!: () => void
  const serverSawClose = new Promise<void>((resolve) => (closed = resolve))
  const s = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('partial')
    res.on('close', () => {
      res.write('never sent') // the response is destroyed: not counted
      closed()
    })
  }, '%(s)s %(B)s "%(r)s" %(h)s', undefined, Response)
  await new Promise<void>((resolve, reject) => {
    const req = request({ port: s.port, host: '127.0.0.1', path: '/slow', agent: false }, (res) => {
      res.once('data', () => {
        req.destroy()
        resolve()
      })
    })
    req.on('error', () => undefined)
    req.on('close', () => undefined)
    req.once('error', reject)
    req.end()
  })
  await serverSawClose
  t.equal(await s.line(1), '200 7 "GET /slow HTTP/1.1" 127.0.0.1\n')
  t.equal(s.lines.length, 1, 'one line')
})

bothClasses("a response whose 'close' is emitted again (by an app): still one line", async (t, Response) => {
  let again!: () => void
  const emittedAgain = new Promise<void>((resolve) => (again = resolve))
  const s = await serve(t, (_req, res) => {
    res.once('close', () =>
      setImmediate(() => {
        res.emit('close')
        again()
      }),
    )
    res.end('once')
  }, '%(s)s %(B)s', undefined, Response)
  await get({ port: s.port })
  await emittedAgain
  t.same(s.lines, ['200 4\n'])
})

t.test('remoteOf gives the client address; a UNIX socket peer is -', async (t) => {
  const asked: string[] = []
  const s = await serve(t, (_req, res) => res.end(), '%(h)s', (req) => {
    asked.push(String(req.url))
    return '198.51.100.9'
  })
  await get({ port: s.port, path: '/x' })
  t.equal(await s.line(1), '198.51.100.9\n')
  t.same(asked, ['/x'])
  // A format without %(h)s does not resolve the address.
  const calls: string[] = []
  const quiet = await serve(t, (_req, res) => res.end(), '%(s)s', () => {
    calls.push('called')
    return 'x'
  })
  await get({ port: quiet.port })
  t.equal(await quiet.line(1), '200\n')
  t.same(calls, [])
  // UNIX socket.
  const lines: string[] = []
  const server = createServer((_req, res) => res.end('unix'))
  new AccessLog({ write: (l) => lines.push(l) }).attach(server)
  const socketPath = join(shortTmp(t), 'app.sock')
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
  t.teardown(() => server.close())
  const reply = await get({ socketPath })
  t.equal(reply.body, 'unix')
  await waitFor(() => lines.length === 1, 'the unix line')
  t.match(lines[0], new RegExp(`^- - - ${TIME} "GET / HTTP/1\\.1" 200 4 "-" "-"\\n$`))
})

t.test('%({wsgi.url_scheme}e)s: the scheme a trusted proxy forwarded, as gunicorn logs it', async (t) => {
  const allow = AllowList.parse('127.0.0.1', 'forwarded-allow-ips')
  const s = await serve(t, (req, res) => {
    resolveClient(req, allow)
    res.end()
  }, '%({wsgi.url_scheme}e)s')
  await get({ port: s.port, headers: { 'x-forwarded-proto': 'https' } })
  await get({ port: s.port })
  t.equal(await s.line(1), 'https\n')
  t.equal(await s.line(2), 'http\n')
  // Without the worker's resolution (no client record): http.
  const bare = await serve(t, (_req, res) => res.end(), '%({wsgi.url_scheme}e)s')
  await get({ port: bare.port, headers: { 'x-forwarded-proto': 'https' } })
  t.equal(await bare.line(1), 'http\n')
})

t.test('literals and %%', async (t) => {
  t.equal(render('', entry()), '')
  t.equal(render('just text', entry()), 'just text')
  t.equal(render('100%% %(s)s%%', entry()), '100% 200%')
  t.equal(render('%(s)s', entry()), '200')
  t.equal(render('%(s)s%(s)s', entry()), '200200')
  const log = new AccessLog({ write: (l) => t.equal(l, '[200]\n') }, '[%(s)s]')
  log.log(entry())
})

t.test('a bad format is a ConfigError naming the option and echoing the format', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['%(x)s', /unknown atom %\(x\)s/],
    ['%(hh)s', /unknown atom %\(hh\)s/],
    ['%(constructor)s', /unknown atom/],
    ['%()s', /unknown atom %\(\)s/],
    ['%({}i)s', /unknown atom/],
    ['%({a}x)s', /unknown atom/],
    ['%(h)d', /malformed directive at offset 0/],
    ['%(h)', /malformed directive at offset 0/],
    ['ok %(h', /malformed directive at offset 3/],
    ['%s', /malformed directive/],
    ['100%', /malformed directive at offset 3/],
    ['% (h)s', /malformed directive/],
  ]
  for (const [format, re] of bad) {
    const err = t.throws(() => compileAccessLogFormat(format)) as ConfigError
    t.ok(err instanceof ConfigError, format)
    t.equal(err.option, 'access-logformat')
    t.equal(err.value, format)
    t.match(err.message, re)
    t.match(err.message, new RegExp(`^access-logformat must be a gunicorn access log format \\(.*\\), got ${JSON.stringify(format).replace(/[()%\\[\]{}]/g, '\\$&')}$`))
  }
  t.throws(() => compileAccessLogFormat('%(x)s', '--access-logformat'), { option: '--access-logformat', message: /^--access-logformat must be/ })
  t.throws(() => new AccessLog({ write: () => undefined }, '%(nope)s'), { name: 'ConfigError', option: 'access-logformat' })
})

t.test('LoggedResponse: counts in its own write() and end(), adds nothing to the response; the caller may end the tracking', async (t) => {
  const lines: string[] = []
  const log = new AccessLog({ write: (l) => lines.push(l) }, '%(U)s %(B)s')
  const own: string[] = []
  const server = createServer({ ServerResponse: LoggedResponse }, (req, res) => {
    if (req.url === '/untracked') {
      res.write('not')
      res.end('logged')
      return
    }
    // The caller writes the line itself ('close' listener of its own): listen = false.
    log.track(req, res, () => '-', false)
    res.on('close', () => responseClosed(res))
    res.on('close', () => responseClosed(res)) // twice: still one line
    res.write('ab')
    res.end('cd')
    own.push(...Object.getOwnPropertyNames(res).filter((k) => k === 'write' || k === 'end'))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as AddressInfo
  t.equal((await get({ port, path: '/untracked' })).body, 'notlogged')
  t.equal((await get({ port, path: '/tracked' })).body, 'abcd')
  await waitFor(() => lines.length === 1, 'the line')
  t.same(lines, ['/tracked 4\n'])
  t.same(own, [], 'write and end are the class\'s, not the response\'s own')
  responseClosed({} as ServerResponse) // a response never tracked: nothing
  t.equal(lines.length, 1)
})
