/** WorkerHandle with fake processes and a fake clock: every state change and race, in-process. */
import t from 'tap'
import { DEFAULTS, type Config } from '../../lib/config.js'
import { AppLoadError, WorkerBootError } from '../../lib/errors.js'
import { Logger } from '../../lib/logger.js'
import { bootMessage } from '../../lib/master/boot-message.js'
import { timingsOf } from '../../lib/master/timings.js'
import { WorkerHandle, type WorkerHooks } from '../../lib/master/worker-handle.js'
import { FakeChild, FakeRuntime, settle } from '../helpers/fake-runtime.js'

const config: Config = { ...DEFAULTS, app: 'app.js', bind: [], config: undefined }

function make(options: { spawned?: boolean } = {}) {
  const rt = new FakeRuntime()
  rt.failSpawn = options.spawned === false
  const lines: string[] = []
  const log = new Logger({ level: 'debug', write: (l) => lines.push(l) })
  const events: string[] = []
  const hooks: WorkerHooks = {
    listening: (w) => events.push(`listening ${w.id}`),
    served: (_, n) => events.push(`served ${n}`),
    retire: (w) => events.push(`retire ${w.id}`),
    exit: (_, code, signal) => events.push(`exit ${code} ${signal}`),
  }
  const child = rt.spawn() as unknown as FakeChild
  const boot = bootMessage(config, timingsOf(config), { id: 2, generation: 3, listeners: [], logLevel: 'info', health: 'ok' })
  const w = new WorkerHandle(child as never, boot, 5000, hooks, log, rt)
  return { rt, lines, events, child, w }
}

t.test('boot: listening makes it ready and resolves booted; heartbeats and retire are counted', async (t) => {
  const { child, w, events, lines, rt } = make()
  t.same(child.acts(), ['boot'])
  t.equal(w.state, 'booting')
  t.ok(w.live)
  child.say({ act: 'listening', description: 'request handler' })
  await w.booted
  t.equal(w.state, 'ready')
  t.ok(w.live)
  t.equal(w.readyAt, rt.now())
  rt.advance(100)
  child.beat({ requests: 5, inflight: [{ method: 'GET', url: '/', ms: 3 }] })
  t.equal(w.lastBeat, rt.now())
  t.same(w.inflight, [{ method: 'GET', url: '/', ms: 3 }])
  child.say({ act: 'retire', requests: 7 })
  child.emit('message', { not: 'ours' })
  child.say({ act: 'unknown-act' })
  t.same(events, ['listening 2', 'served 5', 'served 2', 'retire 2'])
  t.equal(w.requests, 7)
  rt.advance(10000) // the boot deadline passes harmlessly
  t.equal(w.state, 'ready')
  child.exit(0)
  await w.exited
  t.match(lines.join(''), /worker 2 \(pid \d+, generation 3\) exited with code 0/)
  t.equal(rt.pending, 0, 'its exit cleared every timer')
})

t.test('an app that fails to load rejects the boot with AppLoadError', async (t) => {
  const { child, w, lines } = make()
  child.say({ act: 'app-error', message: 'boom', stack: 'Error: boom\n    at x' })
  await t.rejects(w.booted, AppLoadError)
  child.exit(4)
  await w.exited
  t.match(lines.join(''), /the app failed to load: Error: boom/)
})

t.test('a boot that overstays its deadline: rejected and SIGKILLed', async (t) => {
  const { child, w, rt } = make()
  rt.advance(5000)
  await t.rejects(w.booted, new WorkerBootError(`worker 2 (pid ${w.pid}) did not boot within 5000 ms`))
  t.same(child.signals, ['SIGKILL'])
  child.exit(null, 'SIGKILL')
  t.equal(w.killReason, 'boot timeout')
})

t.test('an exit before listening rejects the boot, also when it was told to stop while booting', async (t) => {
  const { child, w, lines } = make()
  w.stop(true, 1000)
  t.equal(w.state, 'stopping')
  child.say({ act: 'listening', description: 'late' })
  t.equal(w.state, 'stopping', 'a worker told to stop stays stopping')
  const second = make()
  second.child.exit(1)
  await t.rejects(second.w.booted, /exited with code 1 before it listened/)
  t.match(second.lines.join(''), /\[ERROR\] worker 2 \(pid \d+, generation 3\) exited with code 1/)
  child.exit(0)
  await w.booted // it did listen
  t.match(lines.join(''), /\[INFO\] worker 2 \(pid \d+\) exited with code 0/)
})

t.test('stop: graceful sends the deadline and hand-over; the backstop kills one that overstays; stop twice is once', async (t) => {
  const { child, w, rt } = make()
  child.say({ act: 'listening', description: 'x' })
  w.leaving = 'memory'
  w.stop(true, 2000, 300, 5000)
  t.notOk(w.live)
  w.stop(false, 0)
  t.same(child.sent.at(-1), { cmd: 'SDSERVE', act: 'stop', graceful: true, timeoutMs: 2000, handoverMs: 300, windowMs: 2000, reason: 'recycle' }, 'the window within the deadline')
  rt.advance(2999)
  t.same(child.signals, [])
  rt.advance(1)
  t.same(child.signals, ['SIGKILL'])
  t.equal(w.killReason, 'graceful timeout')
  child.exit(null, 'SIGKILL')
  w.kill('SIGKILL', 'again')
  t.same(child.signals, ['SIGKILL'], 'a process gone is not signalled')
})

t.test('stop without an IPC channel: SIGTERM when graceful; a failed send kills', async (t) => {
  const a = make()
  a.child.connected = false
  a.w.stop(true, 1000)
  t.same(a.child.signals, ['SIGTERM'])
  const b = make()
  b.child.connected = false
  b.w.stop(false, 1000)
  t.same(b.child.signals, [])
  b.rt.advance(2000)
  t.same(b.child.signals, ['SIGKILL'], 'a fast stop has a 2 s backstop')
  const c = make()
  c.child.failSend = new Error('EPIPE')
  c.w.stop(true, 1000)
  t.same(c.child.signals, ['SIGKILL'])
  t.equal(c.w.killReason, 'its IPC channel failed')
  c.w.send({ cmd: 'SDSERVE', act: 'reopen-logs' })
  c.child.connected = false
  c.w.send({ cmd: 'SDSERVE', act: 'reopen-logs' })
  t.same(c.child.acts(), ['boot', 'stop', 'reopen-logs'])
})

t.test('a process that could not be spawned fails its boot; a spawn error is logged', async (t) => {
  const { w, lines, child } = make({ spawned: false })
  await t.rejects(w.booted, /worker 2 could not be spawned/)
  t.equal(w.pid, 0)
  child.emit('error', new Error('EAGAIN'))
  t.match(lines.join(''), /worker 2: EAGAIN/)
  await settle()
})

t.test('the system runtime reads a process\'s resident memory from /proc', async (t) => {
  const { SYSTEM, rssOf } = await import('../../lib/master/runtime.js')
  t.ok((SYSTEM.rss(process.pid) ?? 0) > 1048576, 'this process uses more than a megabyte')
  t.equal(SYSTEM.rss(2 ** 22 + 1), undefined, 'no such process')
  t.equal(rssOf('Name:\tx\nVmRSS:\t  2048 kB\nThreads: 1\n'), 2097152)
  t.equal(rssOf('Name:\tkthreadd\nThreads: 1\n'), undefined, 'a kernel thread or zombie has none')
})

t.test('the app hears why it drains; hurry() shortens the deadline of a draining worker only', async (t) => {
  const reasons: Record<string, string> = {}
  for (const leaving of ['reload', 'scale', 'upgrade', 'max-requests', 'memory', 'stop', 'crash', undefined] as const) {
    const { w, child } = make()
    child.say({ act: 'listening', description: 'x' })
    w.leaving = leaving
    w.stop(true, 1000, 0, 500)
    reasons[String(leaving)] = (child.sent.at(-1) as { reason: string }).reason
  }
  t.same(reasons, { reload: 'reload', scale: 'scale', upgrade: 'upgrade', 'max-requests': 'recycle', memory: 'recycle', stop: 'stop', crash: 'stop', undefined: 'stop' })

  const { w, child, rt } = make()
  child.say({ act: 'listening', description: 'x' })
  w.hurry(2000)
  t.same(child.acts(), ['boot'], 'a worker that is not draining is not hurried')
  w.leaving = 'reload'
  w.stop(true, 60000, 300, 30000)
  w.hurry(2000)
  t.same(child.sent.at(-1), { cmd: 'SDSERVE', act: 'stop', graceful: true, timeoutMs: 2000, handoverMs: 0, windowMs: 1000, reason: 'reload' })
  rt.advance(2999)
  t.same(child.signals, [])
  rt.advance(1)
  t.same(child.signals, ['SIGKILL'], "the hurried deadline's backstop")
})
