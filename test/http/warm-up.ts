import t from 'tap'
import { join } from 'node:path'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { describeWarmUp, warmUp, WARM_UP_HEADER } from '../../lib/http/warm-up.js'
import { cli, freePort, get, root, shortTmp, spawnTracked, waitForOutput } from '../helpers/proc.js'

t.test('count requests in all, the listed ones in turn, each marked; statuses counted', async (t) => {
  const seen: string[] = []
  const app = (req: IncomingMessage, res: ServerResponse): void => {
    seen.push(`${req.method} ${req.url} ${String(req.headers[WARM_UP_HEADER])}`)
    res.statusCode = req.url === '/missing' ? 404 : 200
    res.end('x')
  }
  const r = await warmUp(app, { requests: ['/', 'POST /api?q=1', '/missing'], count: 7 })
  t.equal(r.sent, 7)
  t.equal(r.failed, 0)
  t.same([...r.statuses].sort(), [
    [200, 5],
    [404, 2],
  ])
  t.same(seen.slice().sort(), ['GET / 1', 'GET / 1', 'GET / 1', 'GET /missing 1', 'GET /missing 1', 'POST /api?q=1 1', 'POST /api?q=1 1'])
  t.match(describeWarmUp(r), /^7 requests in \d+ ms: 200 x5, 404 x2$/)
})

t.test('a request that loses its connection is counted and the rest go on', async (t) => {
  const app = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.url === '/drop') req.socket.destroy()
    else res.end('ok')
  }
  const r = await warmUp(app, { requests: ['/drop', '/'], count: 6 })
  t.equal(r.sent, 6)
  t.equal(r.failed, 3)
  t.same([...r.statuses], [[200, 3]])
  t.match(describeWarmUp(r), /^6 requests in \d+ ms: 200 x3, no response x3 \(socket hang up\)$/)
})

t.test('a request the app never answers ends the warm-up', async (t) => {
  const r = await warmUp(() => undefined, { requests: ['/'], count: 100 }, { timeoutMs: 200 })
  t.ok(r.sent <= 4, `at most one round of requests (${r.sent})`)
  t.equal(r.failed, r.sent)
  t.match(r.error, 'GET /: no response within 200 ms')
  t.match(describeWarmUp({ ...r, sent: 1, failed: 1 }), /^1 request in \d+ ms: no response x1 /)
})

t.test('a socket that cannot be listened on: nothing sent, the error kept', async (t) => {
  const r = await warmUp(() => undefined, { requests: ['/'], count: 3 }, { socketPath: '/nonexistent-dir/warm.sock' })
  t.equal(r.sent, 0)
  t.match(r.error, /EACCES|ENOENT/)
  t.match(describeWarmUp({ ...r, failed: 0 }), /^0 requests in \d+ ms: none answered$/)
})

t.test('the real command: each worker warms up before it listens, unseen by the access log', async (t) => {
  const port = await freePort()
  const app = join(root, 'test/fixtures/apps/warm-app.mjs')
  const args = [cli, '-w', '1', '--log-level', 'debug', '--access-logfile', '-', '-b', `127.0.0.1:${port}`, '--warm-up', '/a', '--warm-up', 'HEAD /b', '--warm-up-count', '5', app]
  const child = spawnTracked(t, process.execPath, args, { cwd: shortTmp(t) })
  await waitForOutput(child, /generation 1\) serving/)
  t.match(child.output(), /warm-up: 5 requests in \d+ ms: 200 x5/)
  const body = JSON.parse((await get({ port, path: '/count' })).body) as { warm: number; other: number; seen: string[] }
  t.same([body.warm, body.other], [5, 1])
  t.same(body.seen.sort(), ['GET /a', 'GET /a', 'GET /a', 'HEAD /b', 'HEAD /b'], 'the requests in turn (in flight four at a time)')
  await waitForOutput(child, /"GET \/count HTTP\/1\.1" 200/)
  t.notMatch(child.output(), /"(GET \/a|HEAD \/b) HTTP/, 'warm-up requests are not access-logged')
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

t.test('a warm-up that fails is a warning, and the worker serves anyway', async (t) => {
  const port = await freePort()
  const app = join(root, 'test/fixtures/apps/warm-app.mjs')
  const child = spawnTracked(t, process.execPath, [cli, '-w', '1', '-b', `127.0.0.1:${port}`, '--warm-up', '/fail', '--warm-up-count', '2', app], { cwd: shortTmp(t) })
  await waitForOutput(child, /generation 1\) serving/)
  t.match(child.output(), /\[WARNING\] worker 1: warm-up: 2 requests in \d+ ms: 500 x2/)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})
