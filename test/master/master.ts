/**
 * The Master in-process: real sockets, fake worker processes and a fake
 * clock, for the moments a process-level test cannot aim at (a stop in the
 * same tick as the last worker's 'listening', signals while starting).
 */
import t from 'tap'
import { DEFAULTS, type Config } from '../../lib/config.js'
import { timingsOf } from '../../lib/master/timings.js'
import { settle } from '../helpers/fake-runtime.js'
import { make } from '../helpers/in-process-master.js'

t.test('while starting: HUP waits for the start, USR2 is refused, TTIN waits; when stopping, TTIN is ignored', async (t) => {
  const m = make()
  const started = m.master.start()
  await settle()
  t.equal(m.master.stats().phase, 'starting')
  const reloaded = m.master.reload()
  t.equal(await m.master.upgrade(), false)
  m.master.scale(1)
  t.match(m.log(), /reload deferred: the master is starting[\s\S]*binary upgrade refused: still starting[\s\S]*scaling deferred: the master is starting/)
  m.listen()
  await started
  t.equal(m.master.stats().phase, 'reloading', 'the HUP reloads once the start is done')
  m.rt.advance(0)
  await settle()
  t.equal(m.rt.children.length, 4, 'two workers of the start, two of the reload: it re-read --workers 2 before the TTIN slot was filled')
  m.listen()
  t.equal(await reloaded, true)
  t.equal(m.master.stats().generation, 2)
  const stopped = m.master.stop(false)
  m.master.scale(1)
  t.equal(m.master.config.workers, 2, 'TTIN while stopping is ignored')
  await m.exitStopped()
  t.equal(await stopped, 0)
  t.match(m.log(), /stopped\n$/)
})

t.test('a HUP during a start that is stopped: the reload never runs', async (t) => {
  const m = make()
  const started = m.master.start()
  await settle()
  const reloaded = m.master.reload()
  const stopped = m.master.stop(true)
  await m.exitStopped()
  await started
  t.equal(await stopped, 0)
  t.equal(await reloaded, false)
})

t.test('a stop in the same tick as the last worker of a reload listens: the reload is abandoned', async (t) => {
  const m = make({ bootTimeout: 0.5 })
  await m.serve()
  m.setNext({ workers: 1 })
  const reloading = m.master.reload()
  await settle()
  t.equal(m.master.config.workers, 1, 'the re-read config is in use while the reload runs')
  m.listen()
  const stopped = m.master.stop(true)
  t.equal(await reloading, false)
  await m.exitStopped()
  t.equal(await stopped, 0)
  t.match(m.log(), /reload abandoned: stopping/)
  t.equal(m.master.config.workers, 2, 'the config before the reload is back')
})

t.test('a stop in the same tick as the last worker of the start listens: no READY, no generation promoted', async (t) => {
  const m = make()
  const events: string[] = []
  m.master.on('ready', () => events.push('ready'))
  const started = m.master.start()
  await settle()
  m.listen()
  const stopped = m.master.stop(true)
  await m.exitStopped()
  await started
  t.equal(await stopped, 0)
  t.same(events, [], 'never ready')
  t.equal(m.master.stats().generation, 0, 'nothing was promoted')
  t.match(m.log(), /stopped\n$/)
})

t.test('--boot-timeout is a worker boot deadline of its own', async (t) => {
  t.equal(timingsOf({ ...DEFAULTS, bootTimeout: 0.5 }).bootMs, 500)
  t.equal(timingsOf({ ...DEFAULTS, timeout: 1 }).bootMs, 10000, 'unset: --timeout, at least 10 s')
  t.equal(timingsOf({ ...DEFAULTS, timeout: 0 }).bootMs, 30000, 'unset with --timeout 0: 30 s')
  t.same(
    [30, 2, 0.1, 0].map((timeout) => {
      const { heartbeatMs, idleHeartbeatMs } = timingsOf({ ...DEFAULTS, timeout })
      return [heartbeatMs, idleHeartbeatMs]
    }),
    [
      [1000, 7500],
      [500, 500],
      [50, 50],
      [1000, 2000],
    ],
    'heartbeats: idle ones every quarter of --timeout, at most 10 s; without it, within the 3 heartbeats a worker counts as beating',
  )
  const m = make({ bootTimeout: 0.5 })
  const started = m.master.start()
  await settle()
  m.rt.advance(500)
  for (const c of m.rt.children) c.exit(null, 'SIGKILL')
  await t.rejects(started, /worker \d \(pid \d+\) did not boot within 500 ms/)
})

t.test('a config file that never finishes loading holds a stop no longer than the graceful timeout', async (t) => {
  const m = make({ gracefulTimeout: 3 })
  await m.serve()
  m.setNext(new Promise<Config>(() => undefined))
  void m.master.reload()
  await settle()
  const stopped = m.master.stop(true)
  await m.exitStopped()
  let done = false
  void stopped.then(() => (done = true))
  await settle()
  t.notOk(done, 'the stop waits for the reload a while')
  m.rt.advance(3000)
  t.equal(await stopped, 0)
  t.match(m.log(), /stopped\n$/)
})

t.test('--drain-window: half the graceful timeout by default, at most 5 s, never past the graceful timeout', async (t) => {
  t.equal(timingsOf({ ...DEFAULTS }).drainWindowMs, 5000, 'graceful 30 s: 5 s')
  t.equal(timingsOf({ ...DEFAULTS, gracefulTimeout: 4 }).drainWindowMs, 2000, 'graceful 4 s: 2 s')
  t.equal(timingsOf({ ...DEFAULTS, drainWindow: 12 }).drainWindowMs, 12000)
  t.equal(timingsOf({ ...DEFAULTS, gracefulTimeout: 3, drainWindow: 12 }).drainWindowMs, 3000)
})

t.test('health: the workers hear each change; a stop with --lame-duck answers 503 first; a fast stop cuts it short', async (t) => {
  const m = make({ lameDuck: 5, healthPath: '/healthz' })
  const statuses: string[] = []
  m.master.on('health', ({ status }) => statuses.push(status))
  await m.serve()
  m.rt.advance(1000) // the monitor's tick
  t.same(statuses, ['ok'])
  const worker = m.rt.children[0]!
  t.same(worker.sent.at(-1), { cmd: 'SDSERVE', act: 'health', status: 'ok' })
  m.master.setLameDuck(true)
  m.master.setLameDuck(true)
  m.master.setLameDuck(false)
  t.same(statuses, ['ok', 'lame-duck', 'ok'], 'ctl drain and resume; only changes are told')

  const stopped = m.master.stop()
  await settle()
  t.equal(statuses.at(-1), 'lame-duck')
  t.equal(m.master.stats().phase, 'serving', 'everything is still served')
  t.same(worker.acts().filter((a) => a === 'stop'), [], 'no worker drains yet')
  m.rt.advance(4999)
  await settle()
  t.same(worker.acts().filter((a) => a === 'stop'), [])
  m.rt.advance(1)
  await settle()
  t.same(worker.sent.at(-1), { cmd: 'SDSERVE', act: 'stop', graceful: true, timeoutMs: 30000, handoverMs: 0, windowMs: 5000, reason: 'stop' })
  await m.exitStopped()
  t.equal(await stopped, 0)
  t.match(m.log(), /lame duck for 5 s: health checks answer 503, everything else is served; then a graceful stop/)

  const fast = make({ lameDuck: 5 })
  await fast.serve()
  const cut = fast.master.stop()
  await settle()
  fast.master.stop(false)
  await settle()
  t.same((fast.rt.children[0]!.sent.at(-1) as { graceful: boolean }).graceful, false, 'INT during the lame duck: a fast stop at once')
  await fast.exitStopped()
  t.equal(await cut, 0)
})

t.test('scaleTo (sdserve ctl scale): the count it has already is done; refused once stopping', async (t) => {
  const { master } = make()
  t.equal(master.scaleTo(2), true, 'already 2: nothing to do')
  const stopped = master.stop()
  t.equal(master.scaleTo(3), false, 'refused')
  t.equal(master.stats().target, 2, 'the target is unchanged')
  t.equal(await stopped, 0)
})
