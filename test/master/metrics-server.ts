/** MetricsServer over real HTTP, on loopback TCP and on UNIX sockets. */
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, lstatSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { join } from 'node:path'
import { Logger } from '../../lib/logger.js'
import { CONTENT_TYPE } from '../../lib/master/metrics.js'
import { MetricsServer } from '../../lib/master/metrics-server.js'
import type { MasterStats } from '../../lib/master/stats.js'
import { masterStats } from '../helpers/master-stats.js'
import { get, shortTmp, type Reply } from '../helpers/proc.js'

function logger() {
  const lines: string[] = []
  return { lines, log: new Logger({ level: 'debug', write: (l) => lines.push(l) }) }
}

/** One request with any method, on a fresh connection. */
function send(port: number, method: string, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent: false, timeout: 10_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }))
    })
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end()
  })
}

async function open(t: Test, bind: string, stats: () => MasterStats = () => masterStats()) {
  const { lines, log } = logger()
  const server = await MetricsServer.open(bind, stats, log)
  t.teardown(() => server.close())
  const port = Number(/:(\d+)$/.exec(server.address)?.[1])
  return { server, lines, port }
}

t.test('TCP: GET and HEAD of /metrics and /, 404 elsewhere, 405 for other methods', async (t) => {
  const { server, port } = await open(t, '127.0.0.1:0')
  t.match(server.address, /^127\.0\.0\.1:[1-9]\d*$/, 'the address has the port chosen for :0')
  for (const path of ['/metrics', '/', '/metrics?x=1']) {
    const r = await get({ port, path })
    t.equal(r.status, 200, `GET ${path}`)
    t.equal(r.headers['content-type'], CONTENT_TYPE)
    t.match(r.body, /^# HELP sdserve_requests_total /)
    t.match(r.body, /^sdserve_info\{version="0\.1\.0"\} 1$/m)
  }
  const head = await send(port, 'HEAD', '/metrics')
  t.equal(head.status, 200)
  t.equal(head.headers['content-type'], CONTENT_TYPE)
  t.ok(Number(head.headers['content-length']) > 0, 'HEAD says how long the body would be')
  t.equal(head.body, '', 'and sends none')
  const missing = await get({ port, path: '/other' })
  t.equal(missing.status, 404)
  t.same(await get({ port, path: '/healthz' }).then((r) => [r.status, r.body]), [200, 'ok\n'], "health checks on the metrics bind: the master's answer")
  const post = await send(port, 'POST', '/metrics')
  t.equal(post.status, 405)
  t.equal(post.headers.allow, 'GET, HEAD')
  const del = await send(port, 'DELETE', '/')
  t.equal(del.status, 405)
})

t.test('IPv6 loopback: the address in brackets', async (t) => {
  const { server, port } = await open(t, '[::1]:0')
  t.match(server.address, /^\[::1\]:\d+$/)
  const r = await new Promise<number>((resolve, reject) => {
    request({ host: '::1', port, path: '/metrics', agent: false }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
      .on('error', reject)
      .end()
  })
  t.equal(r, 200)
})

t.test('a stats() that throws: 500 and a log line; the server goes on', async (t) => {
  let fail: unknown = new Error('snapshot broke')
  const { port, lines } = await open(t, '127.0.0.1:0', () => {
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- a snapshot that throws a non-Error must be reported too
    if (fail !== undefined) throw fail
    return masterStats()
  })
  const r = await get({ port, path: '/metrics' })
  t.equal(r.status, 500)
  t.match(lines.join(''), /\[ERROR\] metrics: Error: snapshot broke/)
  fail = 'not an Error'
  t.equal((await get({ port, path: '/metrics' })).status, 500)
  t.match(lines.join(''), /\[ERROR\] metrics: not an Error/)
  fail = undefined
  t.equal((await get({ port, path: '/metrics' })).status, 200)
})

t.test('UNIX socket: serves, replaces a stale socket file, removes its own on close', async (t) => {
  const dir = shortTmp(t)
  const path = join(dir, 'metrics.sock')
  // A stale socket: what a killed process leaves (libuv unlinks the path only on a clean close).
  const killed = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`], {
    timeout: 10_000,
  })
  t.equal(killed.signal, 'SIGKILL')
  t.ok(lstatSync(path).isSocket(), 'a stale socket file is there')
  const { lines, log } = logger()
  const server = await MetricsServer.open(`unix:${path}`, () => masterStats(), log)
  t.equal(server.address, `unix:${path}`)
  const r = await get({ socketPath: path, path: '/metrics' })
  t.equal(r.status, 200)
  t.equal(r.headers['content-type'], CONTENT_TYPE)
  await server.close()
  t.notOk(existsSync(path), 'its socket file is gone after close')
  t.same(lines, [])
})

t.test('UNIX socket: a live server or a regular file at the path is refused', async (t) => {
  const dir = shortTmp(t)
  const live = join(dir, 'live.sock')
  const other = createNetServer()
  await new Promise<void>((resolve) => other.listen(live, resolve))
  t.teardown(() => new Promise<void>((resolve) => other.close(() => resolve())))
  const { log } = logger()
  await t.rejects(MetricsServer.open(`unix:${live}`, () => masterStats(), log), { code: 'EADDRINUSE' })
  const file = join(dir, 'file')
  writeFileSync(file, 'keep me')
  await t.rejects(MetricsServer.open(`unix:${file}`, () => masterStats(), log), { message: /metrics-bind/ })
  t.ok(existsSync(file), 'a regular file is never removed')
})

t.test('bind failures reject with the system error; binds that are not its own are refused', async (t) => {
  const { server } = await open(t, '127.0.0.1:0')
  const { log } = logger()
  await t.rejects(MetricsServer.open(server.address, () => masterStats(), log), { code: 'EADDRINUSE', syscall: 'listen' })
  await t.rejects(MetricsServer.open('unix:/nonexistent-dir/metrics.sock', () => masterStats(), log), { message: /^listen E/ })
  await t.rejects(MetricsServer.open('fd://3', () => masterStats(), log), { message: /metrics-bind/ })
  await t.rejects(MetricsServer.open('nonsense', () => masterStats(), log), { message: /metrics-bind/ })
})

t.test('close() returns while a keep-alive scraper holds an idle connection', async (t) => {
  const { log } = logger()
  const server = await MetricsServer.open('127.0.0.1:0', () => masterStats(), log)
  const port = Number(/:(\d+)$/.exec(server.address)?.[1])
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const r = await get({ port, path: '/metrics', agent })
  t.equal(r.status, 200)
  t.equal(Object.values(agent.freeSockets).flat().length, 1, 'the connection stays open, idle')
  await server.close()
  t.pass('close() returned')
  await t.rejects(get({ port, path: '/metrics' }), { code: 'ECONNREFUSED' }, 'nothing listens any more')
})

t.test('/healthz on the metrics bind: 503 with the status when it is not ok', async (t) => {
  const { port } = await open(t, '127.0.0.1:0', () => masterStats({ health: 'lame-duck' }))
  t.same(await get({ port, path: '/healthz' }).then((r) => [r.status, r.body]), [503, 'lame-duck\n'])
})
