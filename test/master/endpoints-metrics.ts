/**
 * Endpoints with --metrics-bind: the metrics server opens with the control
 * socket, a failure leaves neither open, and a binary upgrade's takeover
 * retries only what is still missing. A fake master: only stats() and its
 * events matter here.
 */
import t, { type Test } from 'tap'
import { EventEmitter } from 'node:events'
import { existsSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { DEFAULTS, type Config } from '../../lib/config.js'
import { Logger } from '../../lib/logger.js'
import type { Controllable } from '../../lib/master/control-server.js'
import { Endpoints } from '../../lib/master/endpoints.js'
import { masterStats } from '../helpers/master-stats.js'
import { freePort, get, shortTmp, sleep, waitFor } from '../helpers/proc.js'

function fakeMaster(): Controllable {
  const master = new EventEmitter() as unknown as Controllable
  master.stats = () => masterStats()
  return master
}

function setup(t: Test, options: Partial<Config>) {
  const dir = shortTmp(t)
  const config: Config = { ...DEFAULTS, app: 'app.js', bind: [], config: undefined, controlSocket: join(dir, 'ctl'), ...options }
  const lines: string[] = []
  const log = new Logger({ level: 'debug', write: (l) => lines.push(l) })
  return { config, dir, lines, log, master: fakeMaster() }
}

function occupy(port: number): Promise<Server> {
  return new Promise((resolve) => {
    const s = createServer()
    s.listen(port, '127.0.0.1', () => resolve(s))
  })
}

t.test('both open at a start and close at the stop', async (t) => {
  const port = await freePort()
  const { config, log, lines, master } = setup(t, { metricsBind: `127.0.0.1:${port}` })
  const endpoints = await Endpoints.open(config, master, log, false)
  t.ok(existsSync(config.controlSocket as string), 'the control socket is there')
  const r = await get({ port, path: '/metrics' })
  t.equal(r.status, 200)
  t.match(lines.join(''), `metrics: listening on 127.0.0.1:${port}`)
  await endpoints.close()
  t.notOk(existsSync(config.controlSocket as string))
  await t.rejects(get({ port, path: '/metrics' }), { code: 'ECONNREFUSED' })
})

t.test('a metrics address taken at a start: the start fails and the control socket goes too', async (t) => {
  const port = await freePort()
  const blocker = await occupy(port)
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())))
  const { config, log, master } = setup(t, { metricsBind: `127.0.0.1:${port}` })
  await t.rejects(Endpoints.open(config, master, log, false), { code: 'EADDRINUSE' })
  t.notOk(existsSync(config.controlSocket as string), 'no control socket left behind')
})

t.test("a binary upgrade's takeover: the old master's metrics address frees up, only metrics is retried", async (t) => {
  const port = await freePort()
  let blocker: Server | undefined = await occupy(port)
  t.teardown(() => new Promise<void>((resolve) => (blocker === undefined ? resolve() : blocker.close(() => resolve()))))
  const { config, log, lines, master } = setup(t, { metricsBind: `127.0.0.1:${port}` })
  const endpoints = await Endpoints.open(config, master, log, true)
  t.notOk(existsSync(config.controlSocket as string), 'nothing before the promotion')
  master.emit('ready', { generation: 1, workers: 2 })
  await waitFor(() => existsSync(config.controlSocket as string), 'the control socket')
  // The old master lets its metrics address go a little later: after a few of the retries (100 ms apart).
  await sleep(350)
  t.notMatch(lines.join(''), 'metrics: listening on', 'not while the address is taken')
  await new Promise<void>((resolve) => blocker?.close(() => resolve()))
  blocker = undefined
  await waitFor(() => lines.join('').includes('metrics: listening on'), 'the metrics server after the retry')
  t.equal((await get({ port, path: '/metrics' })).status, 200)
  t.equal(lines.join('').match(/control socket: /g)?.length, 1, 'the control socket was opened once')
  await endpoints.close()
})

t.test('a takeover that fails otherwise than EADDRINUSE gives up at once with an error line', async (t) => {
  const { config, log, lines, master } = setup(t, { metricsBind: 'unix:/nonexistent-dir/metrics.sock' })
  const endpoints = await Endpoints.open(config, master, log, true)
  master.emit('ready', { generation: 1, workers: 2 })
  await waitFor(() => lines.join('').includes('[ERROR]'), 'the error line')
  t.match(lines.join(''), /cannot open the control socket or metrics after the upgrade: listen E/)
  await endpoints.close()
})

t.test('closed while the takeover binds metrics: the metrics server does not stay open', async (t) => {
  const port = await freePort()
  const s = setup(t, { controlSocket: 'none', metricsBind: `127.0.0.1:${port}` })
  const e = await Endpoints.open(s.config, s.master, s.log, true)
  s.master.emit('ready', { generation: 1, workers: 2 })
  await e.close() // while MetricsServer.open() is still listening
  await sleep(50)
  await t.rejects(get({ port, path: '/metrics' }), { code: 'ECONNREFUSED' })
})
