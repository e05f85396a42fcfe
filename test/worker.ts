/**
 * Slow and bad clients against a running sdserve: each costs only its own
 * connection while another client keeps being answered.
 */
import t, { type Test } from 'tap'
import { execFile, spawn } from 'node:child_process'
import { chmodSync, closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, statSync } from 'node:fs'
import { connect, Socket } from 'node:net'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { cli, freePort, get, getWhenUp, load, root, shortTmp, spawnTracked, waitFor, waitForOutput, type Tracked } from './helpers/proc.js'
import { IncomingMessage } from 'node:http'
import { refusal, reportDue, Worker, WorkerResponse } from '../lib/worker.js'
import { LoggedResponse } from '../lib/http/access-log.js'
import { STARTED } from '../lib/http/request-counters.js'
import { startNginx } from './helpers/nginx.js'
import { needs } from './helpers/needs.js'

const app = join(root, 'examples/frameworks/hello.mjs')
const run = promisify(execFile)

async function start(t: Test, args: string[], appModule = app): Promise<{ child: Tracked; port: number }> {
  const port = await freePort()
  const child = spawnTracked(t, process.execPath, [cli, '-w', '1', '-b', `127.0.0.1:${port}`, ...args, appModule])
  await waitForOutput(child, /\] worker 1 \(pid \d+, generation 1\) serving/)
  return { child, port }
}

/** Send raw bytes (all at once, or in timed pieces) and collect what comes back until the server closes. */
function raw(port: number, pieces: Array<string | Buffer>, gapMs = 0, timeoutMs = 15000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let out = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(out)}`))
    }, timeoutMs)
    socket.on('data', (d: Buffer) => (out += d.toString('latin1')))
    socket.on('error', () => undefined) // a reset after the answer still counts as closed
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(out)
    })
    let i = 0
    const next = (): void => {
      if (socket.destroyed || i >= pieces.length) return
      socket.write(pieces[i++]!)
      setTimeout(next, gapMs)
    }
    socket.on('connect', next)
  })
}

/** One plain request from a well-behaved client; true when it got 200. */
const plainRequest = (port: number) => async (): Promise<boolean> => (await get({ port }).catch(() => undefined))?.status === 200

/**
 * Keep a well-behaved client busy (at most 2000 requests) while fn runs;
 * resolves with its successes and failures (failures must be 0).
 */
async function whileServing(
  port: number,
  fn: () => Promise<void>,
  request: () => Promise<boolean> = plainRequest(port),
): Promise<{ ok: number; failed: number }> {
  let done = false
  const counts = { ok: 0, failed: 0 }
  const client = (async () => {
    for (let i = 0; i < 2000 && !done; i++) {
      if (await request()) counts.ok++
      else counts.failed++
      await new Promise((r) => setTimeout(r, 10))
    }
  })()
  try {
    await fn()
  } finally {
    done = true
    await client
  }
  return counts
}

t.test('a slow-loris client is cut with 408 after --headers-timeout; others are served meanwhile', async (t) => {
  const { child, port } = await start(t, ['--headers-timeout', '1'])
  const pieces = ['GET / HTTP/1.1\r\nHost: x\r\n', ...Array.from({ length: 40 }, () => 'X')]
  let reply = ''
  const counts = await whileServing(port, async () => {
    reply = await raw(port, pieces, 200)
  })
  t.match(reply, /^HTTP\/1\.1 408 Request Timeout/, 'the trickling client gets 408')
  t.equal(counts.failed, 0, 'no request of the other client failed')
  t.ok(counts.ok > 5, `the other client was answered (${counts.ok} times)`)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

t.test('a body trickled past --request-timeout gets 408', async (t) => {
  // A headers timeout longer than the request timeout is capped to it (Node requires that).
  const { child, port } = await start(t, ['--request-timeout', '1', '--headers-timeout', '5'], join(root, 'test/fixtures/body-app.mjs'))
  const reply = await raw(
    port,
    ['POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n', ...Array.from({ length: 40 }, () => 'x')],
    200,
  )
  t.match(reply, /^HTTP\/1\.1 408 Request Timeout/)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

t.test('malformed and oversize requests: 400, 414, 431, each costing only its connection', async (t) => {
  const { child, port } = await start(t, [])
  const manyFields = Array.from({ length: 101 }, (_, i) => `X-F${i}: v\r\n`).join('')
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['garbage', 'HELLO THERE\r\n\r\n', /^HTTP\/1\.1 400 Bad Request/],
    ['binary garbage', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]), /^HTTP\/1\.1 400 Bad Request/],
    ['a bad header line', 'GET / HTTP/1.1\r\nHost x\r\n\r\n', /^HTTP\/1\.1 400 Bad Request/],
    ['a request line over --limit-request-line', `GET /${'a'.repeat(5000)} HTTP/1.1\r\nHost: x\r\n\r\n`, /^HTTP\/1\.1 414 /],
    ['more fields than --limit-request-fields', `GET / HTTP/1.1\r\nHost: x\r\n${manyFields}\r\n`, /^HTTP\/1\.1 431 /],
    ['a field over --limit-request-field_size', `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(9000)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
    ['headers over 16 KiB in all', `GET / HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 5 }, (_, i) => `X-${i}: ${'c'.repeat(4000)}\r\n`).join('')}\r\n`, /^HTTP\/1\.1 431 /],
  ]
  const counts = await whileServing(port, async () => {
    for (const [what, bytes, re] of cases) t.match(await raw(port, [bytes]), re, what)
  })
  t.equal(counts.failed, 0, 'the other client never failed')
  t.equal((await get({ port })).status, 200, 'and the worker still serves')
  t.notMatch(child.output(), /exited with/, 'no worker died')
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

// Node 22 and later refuse more fields than maxHeadersCount in the parser; Node 20 hands them over, and
// refusal() must count them itself. This asks it directly, so every Node version checks that count.
t.test('refusal(): 414, 431 for too many or too long fields, else nothing', async (t) => {
  const limits = { headersTimeoutMs: 0, requestTimeoutMs: 0, requestLine: 20, fields: 2, fieldSize: 10, connections: 0 }
  const req = (url: string, rawHeaders: string[]): IncomingMessage => ({ method: 'GET', url, rawHeaders }) as unknown as IncomingMessage
  t.equal(refusal(req('/ok', ['Host', 'x', 'A', 'b']), limits), undefined)
  t.equal(refusal(req('/a-long-path', []), limits), 414, 'GET /a-long-path HTTP/1.1 is 25 bytes')
  t.equal(refusal(req('/', ['Host', 'x', 'A', 'b', 'C', 'd']), limits), 431, 'three fields')
  t.equal(refusal(req('/', ['Host', 'xxxxxxx']), limits), 431, 'a field of 13 bytes')
  t.equal(refusal(req('/', ['Host', 'xxxxxxx']), { ...limits, fieldSize: 0 }), undefined, 'no field size limit')
})

t.test("a worker's error log lines start with which worker it is", async (t) => {
  const id = process.env.SDSERVE_WORKER_ID
  t.teardown(() => {
    if (id === undefined) delete process.env.SDSERVE_WORKER_ID
    else process.env.SDSERVE_WORKER_ID = id
  })
  process.env.SDSERVE_WORKER_ID = '7'
  t.equal(new Worker().log.prefix, 'worker 7: ', 'SDSERVE_WORKER_ID, as the master sets it')
  delete process.env.SDSERVE_WORKER_ID
  t.equal(new Worker().log.prefix, 'worker ?: ', 'a process the master did not start')
})

t.test('the limits can be raised', async (t) => {
  const { child, port } = await start(t, ['--limit-request-line', '0', '--limit-request-field_size', '0', '--limit-request-fields', '200'])
  const manyFields = Array.from({ length: 150 }, (_, i) => `X-F${i}: v\r\n`).join('')
  t.match(await raw(port, [`GET /${'a'.repeat(5000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`]), /^HTTP\/1\.1 200 /)
  t.match(await raw(port, [`GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ${'b'.repeat(9000)}\r\n\r\n`]), /^HTTP\/1\.1 200 /)
  t.match(await raw(port, [`GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${manyFields}\r\n`]), /^HTTP\/1\.1 200 /)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

t.test('--worker-connections: a worker holds at most N connections', async (t) => {
  const { child, port } = await start(t, ['--worker-connections', '2', '--keep-alive', '30'])
  // Two idle keep-alive connections fill the worker.
  const held = [connect(port, '127.0.0.1'), connect(port, '127.0.0.1')]
  t.teardown(() => {
    for (const s of held) s.destroy()
  })
  await Promise.all(held.map((s) => new Promise((r) => s.once('connect', r))))
  const third = await raw(port, ['GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'])
  t.equal(third, '', 'a third connection is closed without an answer')
  for (const s of held) s.destroy()
  await new Promise((r) => setTimeout(r, 100))
  t.equal((await getWhenUp({ port })).status, 200, 'once they are gone, requests are served again')
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

t.test('--keep-alive 0 closes every connection after its response', async (t) => {
  const { child, port } = await start(t, ['--keep-alive', '0'])
  const reply = await raw(port, ['GET / HTTP/1.1\r\nHost: x\r\n\r\n'])
  t.match(reply, /^HTTP\/1\.1 200 /)
  t.match(reply, /\r\nConnection: close\r\n/i)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

const clientApp = join(root, 'test/fixtures/client-app.mjs')

interface Seen {
  client: { address: string; proto: string; host?: string; trusted: boolean }
  xff: string | null
  forwarded: string | null
  proto: string | null
}

t.test('forwarded headers: believed from trusted peers, removed from others (or kept with --untrusted-forwarded keep)', async (t) => {
  const spoof = { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', forwarded: 'for=198.51.100.9' }
  const trusted = await start(t, [], clientApp)
  const a = JSON.parse((await get({ port: trusted.port, headers: spoof })).body) as Seen
  t.match(a, { client: { address: '198.51.100.9', proto: 'http', trusted: true }, xff: '203.0.113.7', forwarded: 'for=198.51.100.9' }, 'default: 127.0.0.1 is trusted; Forwarded wins')
  const b = JSON.parse((await get({ port: trusted.port, headers: { 'x-forwarded-for': '10.0.0.1, 203.0.113.7', 'x-forwarded-proto': 'https' } })).body) as Seen
  t.match(b.client, { address: '203.0.113.7', proto: 'https', trusted: true }, 'X-Forwarded-For: the right-most untrusted hop')

  const untrusted = await start(t, ['--forwarded-allow-ips', '192.0.2.0/24'], clientApp)
  const c = JSON.parse((await get({ port: untrusted.port, headers: spoof })).body) as Seen
  t.same(c, { client: { address: '127.0.0.1', proto: 'http', host: `127.0.0.1:${untrusted.port}`, trusted: false }, xff: null, forwarded: null, proto: null }, 'not believed, and removed')

  const keep = await start(t, ['--forwarded-allow-ips', '192.0.2.0/24', '--untrusted-forwarded', 'keep'], clientApp)
  const d = JSON.parse((await get({ port: keep.port, headers: spoof })).body) as Seen
  t.match(d, { client: { address: '127.0.0.1', trusted: false }, xff: '203.0.113.7', forwarded: 'for=198.51.100.9' }, 'kept but not believed')

  const bad = spawnTracked(t, process.execPath, [cli, '--forwarded-allow-ips', '10.0.0.0/33', clientApp])
  t.equal(await bad.exited, 2)
  t.match(bad.output(), /forwarded-allow-ips/)
  for (const s of [trusted, untrusted, keep]) s.child.kill('SIGTERM')
})

t.test('PROXY protocol v1 and v2: the header names the client; malformed or from a disallowed peer costs its connection', async (t) => {
  const s = await start(t, ['--proxy-protocol', '--forwarded-allow-ips', '192.0.2.1', '--headers-timeout', '0'], clientApp)
  const request = 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
  const v1 = await raw(s.port, [`PROXY TCP4 198.51.100.4 192.0.2.9 40000 80\r\n${request}`])
  t.match(v1, /"address":"198\.51\.100\.4"/, 'v1: the client from the header')
  // v2: signature, PROXY over TCP4, 12 address bytes: 203.0.113.5:1234 -> 192.0.2.10:80
  const v2 = Buffer.concat([
    Buffer.from('0d0a0d0a000d0a515549540a', 'hex'),
    Buffer.from([0x21, 0x11, 0x00, 0x0c, 203, 0, 113, 5, 192, 0, 2, 10, 0x04, 0xd2, 0x00, 0x50]),
    Buffer.from(request),
  ])
  t.match(await raw(s.port, [v2]), /"address":"203\.0\.113\.5"/, 'v2: the client from the header')
  t.match(await raw(s.port, [`PROXY TCP4 198.51.100.4 192.0.2.9 40000 80\r\n`, request.slice(0, 10), request.slice(10)], 50), /"address":"198\.51\.100\.4"/, 'in pieces')
  // v2 LOCAL (a load balancer's health check): the connection's own peer.
  const local = Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), Buffer.from([0x20, 0x00, 0x00, 0x00]), Buffer.from(request)])
  t.match(await raw(s.port, [local]), /"address":"127\.0\.0\.1"/, 'v2 LOCAL: the connection itself')
  // v2 PROXY over AF_UNIX: a UNIX socket client behind the balancer.
  const path = (p: string): Buffer => Buffer.concat([Buffer.from(p), Buffer.alloc(108 - p.length)])
  const unixHeader = Buffer.concat([
    Buffer.from('0d0a0d0a000d0a515549540a', 'hex'),
    Buffer.from([0x21, 0x31, 0x00, 216]),
    path('/run/client.sock'),
    path('/run/lb.sock'),
    Buffer.from(request),
  ])
  t.match(await raw(s.port, [unixHeader]), /"address":"unix"/, 'v2 AF_UNIX: a UNIX socket client')
  const proxiedRequest = async (): Promise<boolean> =>
    (await raw(s.port, [`PROXY TCP4 198.51.100.4 192.0.2.9 40000 80\r\n${request}`]).catch(() => '')).startsWith('HTTP/1.1 200')
  const counts = await whileServing(
    s.port,
    async () => {
      t.equal(await raw(s.port, ['PROXY TCP4 999.1.1.1 192.0.2.9 1 2\r\n' + request]), '', 'a malformed header: closed, no answer')
      t.equal(await raw(s.port, [request]), '', 'no header: closed')
    },
    proxiedRequest,
  )
  t.equal(counts.failed, 0, 'others keep being served')
  t.match(s.child.output(), /closed a connection from 127\.0\.0\.1: .*/)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)

  const refused = await start(t, ['--proxy-protocol', '--proxy-allow-ips', '192.0.2.1'], clientApp)
  t.equal(await raw(refused.port, [`PROXY TCP4 198.51.100.4 192.0.2.9 40000 80\r\n${request}`]), '', 'a peer not in --proxy-allow-ips: closed')
  await waitForOutput(refused.child, /PROXY protocol header refused from 127\.0\.0\.1: not in --proxy-allow-ips/)
  refused.child.kill('SIGTERM')
  t.equal(await refused.child.exited, 0)

  const sock = join(shortTmp(t), 'p.sock')
  const unixChild = spawnTracked(t, process.execPath, [cli, '-w', '1', '-b', `unix:${sock}`, '--proxy-protocol', '--proxy-allow-ips', '192.0.2.1', clientApp])
  await waitForOutput(unixChild, /serving/)
  await get({ socketPath: sock }).catch(() => undefined)
  await waitForOutput(unixChild, /PROXY protocol header refused from a UNIX socket peer: not in --proxy-allow-ips/)
  unixChild.kill('SIGTERM')
  t.equal(await unixChild.exited, 0)
})


t.test("the seed's access log format, behind a real nginx on a UNIX socket", needs(['curl', 'nginx']), async (t) => {
  const dir = shortTmp(t)
  chmodSync(dir, 0o755) // nginx's worker runs as www-data
  const sock = join(dir, 'app.sock')
  const logFile = join(dir, 'access.log')
  const format = '%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" client=%(h)s'
  const child = spawnTracked(t, process.execPath, [
    cli, '-w', '2', '-b', `unix:${sock}`, '--unix-socket-mode', '666', '--access-logfile', logFile, '--access-logformat', format, app,
  ])
  await waitForOutput(child, /worker 2 \(pid \d+, generation 1\) serving/)
  const nginx = await startNginx(t, `unix:${sock}`)
  const { stdout } = await run('curl', [
    '-sS', '--max-time', '10', '-H', 'X-Forwarded-For: 203.0.113.50', '-H', 'Referer: http://example.test/from', '-A', 'seed-agent/1.0',
    `http://127.0.0.1:${nginx.port}/hello?x=1`,
  ])
  t.match(stdout, /hello/)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
  // (the other line is startNginx's readiness probe, which nginx passed on too)
  const lines = readFileSync(logFile, 'utf8').trim().split('\n').filter((l) => l.includes('/hello?x=1'))
  t.equal(lines.length, 1)
  t.match(
    lines[0],
    /^203\.0\.113\.50, 127\.0\.0\.1 - - \[\d{2}\/\w{3}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET \/hello\?x=1 HTTP\/1\.0" 200 \d+ "http:\/\/example\.test\/from" "seed-agent\/1\.0" client=203\.0\.113\.50$/,
    'X-Forwarded-For as nginx set it; the client is the right-most hop that is not a trusted proxy',
  )
})

t.test('USR1 with a rotated access log loses no line', async (t) => {
  const dir = shortTmp(t)
  const logFile = join(dir, 'access.log')
  const { child, port } = await start(t, ['--access-logfile', logFile, '-w', '2'])
  let stop = false
  const traffic = load({ port, concurrency: 4, maxRequests: 3000, until: () => stop })
  await waitFor(() => existsSync(logFile) && statSync(logFile).size > 2000, 'some lines logged')
  renameSync(logFile, `${logFile}.1`) // logrotate
  child.kill('SIGUSR1') // its postrotate
  await waitFor(() => existsSync(logFile) && statSync(logFile).size > 2000, 'lines in the new file')
  stop = true
  const result = await traffic
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
  t.equal(result.failed, 0)
  const count = (f: string): number => readFileSync(f, 'utf8').split('\n').filter((l) => l !== '').length
  t.equal(count(`${logFile}.1`) + count(logFile), result.ok, `every request logged once (${result.ok})`)
  t.ok(count(`${logFile}.1`) > 0 && count(logFile) > 0, 'lines on both sides of the rotation')
})

t.test("--error-logfile and --log-format json, the workers' lines too", async (t) => {
  const dir = shortTmp(t)
  const errorLog = join(dir, 'error.log')
  const port = await freePort()
  // A PROXY header from a peer not in --proxy-allow-ips: the worker logs the refusal.
  const child = spawnTracked(t, process.execPath, [
    cli, '-w', '1', '-b', `127.0.0.1:${port}`, '--error-logfile', errorLog, '--log-format', 'json', '--log-level', 'debug',
    '--proxy-protocol', '--proxy-allow-ips', '192.0.2.1', app,
  ])
  await waitFor(() => existsSync(errorLog) && readFileSync(errorLog, 'utf8').includes('serving'), 'the serving line in the error log')
  t.equal(await raw(port, ['PROXY TCP4 198.51.100.4 192.0.2.9 40000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n']), '', 'refused: closed')
  await waitFor(() => readFileSync(errorLog, 'utf8').includes('PROXY protocol header refused'), 'the refusal in the error log')
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
  const lines = readFileSync(errorLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { level: string; message: string; pid: number })
  t.ok(lines.some((l) => l.level === 'debug' && /spawned/.test(l.message)), 'debug lines at --log-level debug')
  t.ok(lines.some((l) => l.level === 'info' && /^stopped$/.test(l.message)), 'the last words are in the file')
  const refusal = lines.find((l) => /PROXY protocol header refused from 127\.0\.0\.1/.test(l.message))
  t.equal(refusal?.level, 'warning', "the worker's line is a JSON object with its level")
  const workerPid = Number(/worker 1 \(pid (\d+)/.exec(lines.map((l) => l.message).join('\n'))?.[1])
  t.equal(refusal?.pid, workerPid, "with the worker's pid")
  t.ok(lines.every((l) => l.pid === child.pid || l.pid === workerPid), 'every line is from the master or its worker')
  t.notMatch(child.output(), /serving|refused/, 'nothing of it on stderr')
})

t.test('access and error logs that cannot be reopened are reported; the worker keeps serving', async (t) => {
  const dir = shortTmp(t)
  mkdirSync(join(dir, 'logs'))
  const port = await freePort()
  const child = spawnTracked(t, process.execPath, [
    cli, '-w', '1', '-b', `127.0.0.1:${port}`, '--access-logfile', join(dir, 'logs/access.log'), '--error-logfile', join(dir, 'logs/error.log'), app,
  ])
  t.equal((await getWhenUp({ port })).status, 200)
  renameSync(join(dir, 'logs'), join(dir, 'gone'))
  child.kill('SIGUSR1')
  // The error log is still the old file (now in gone/): the worker's lines go there, as the master's.
  await waitFor(() => /cannot reopen the access log: .*ENOENT/.test(readFileSync(join(dir, 'gone/error.log'), 'utf8')), "the worker's access log line")
  await waitFor(() => /worker 1: cannot reopen the error log: .*ENOENT/.test(readFileSync(join(dir, 'gone/error.log'), 'utf8')), "the worker's error log line")
  t.equal((await get({ port })).status, 200)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

t.test('a worker run as --user that may not open the error log writes to stderr (as root)', { skip: process.getuid?.() !== 0 && 'needs root' }, async (t) => {
  const dir = shortTmp(t)
  chmodSync(dir, 0o700) // the master (root) may write here, the worker (nobody) may not
  const errorLog = join(dir, 'error.log')
  const port = await freePort()
  // Without tap's coverage hooks in the environment: they cannot write their files as nobody.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NODE_') && !k.startsWith('_TAPJS')))
  const child = spawnTracked(t, process.execPath, [cli, '-w', '1', '-b', `127.0.0.1:${port}`, '--user', 'nobody', '--error-logfile', errorLog, app], { env })
  t.equal((await getWhenUp({ port })).status, 200, 'the worker serves')
  await waitForOutput(child, /\[WARNING\] worker 1: cannot open the error log, writing to stderr: .*EACCES/)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
  t.match(readFileSync(errorLog, 'utf8'), /\[INFO\] stopped\n$/, "the master's lines are in the file")
})

t.test("under the journal, a worker's line carries its priority prefix, as the master's do", async (t) => {
  const dir = shortTmp(t)
  const stderr = join(dir, 'stderr')
  const fd = openSync(stderr, 'w')
  const st = fstatSync(fd)
  const port = await freePort()
  // stderr is "the journal's stream": JOURNAL_STREAM names its device and inode, as systemd sets it.
  const child = spawn(process.execPath, [cli, '-w', '1', '-b', `127.0.0.1:${port}`, '--proxy-protocol', '--proxy-allow-ips', '192.0.2.1', app], {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` },
  })
  closeSync(fd)
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  t.teardown(() => void child.kill('SIGKILL'))
  const text = (): string => readFileSync(stderr, 'utf8')
  await waitFor(() => text().includes('serving'), 'the worker serving')
  t.equal(await raw(port, ['PROXY TCP4 198.51.100.4 192.0.2.9 40000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n']), '', 'refused: closed')
  await waitFor(() => text().includes('PROXY protocol header refused'), 'the refusal logged')
  child.kill('SIGTERM')
  t.equal(await exited, 0)
  t.match(text(), /^<4>\[[^\]]+\] \[\d+\] \[WARNING\] worker 1: PROXY protocol header refused from 127\.0\.0\.1/m, "the worker's warning: <4>")
  t.match(text(), /^<6>\[[^\]]+\] \[\d+\] \[INFO\] stopped$/m, "the master's info: <6>")
})

t.test('heartbeats: every one while busy or after a change, an idle worker only every idleMs', async (t) => {
  const last = { requests: 10, connections: 2, at: 1000 }
  t.equal(reportDue(last, { requests: 10, connections: 2, at: 1999 }, false, 1000), false, 'idle, within idleMs')
  t.equal(reportDue(last, { requests: 10, connections: 2, at: 2000 }, false, 1000), true, 'idle, idleMs later')
  t.equal(reportDue(last, { requests: 11, connections: 2, at: 1001 }, false, 1000), true, 'a request came')
  t.equal(reportDue(last, { requests: 10, connections: 1, at: 1001 }, false, 1000), true, 'a connection went')
  t.equal(reportDue(last, { requests: 10, connections: 2, at: 1001 }, true, 1000), true, 'a request in flight')
})

t.test("a worker's response has the request counters' field from its construction on, so counting does not change its shape", async (t) => {
  const socket = new Socket()
  t.teardown(() => socket.destroy())
  const res = new WorkerResponse(new IncomingMessage(socket))
  t.ok(res instanceof LoggedResponse, 'the access log counts its body bytes')
  t.ok(Object.getOwnPropertySymbols(res).includes(STARTED), 'an own field before any request is counted')
  t.equal(res[STARTED], 0)
})
