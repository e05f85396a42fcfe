/** Generations with fake workers and a fake clock: boots, crashes and backoff, recycling, scaling, heartbeats. */
import t from 'tap'
import { DEFAULTS, type Config } from '../../lib/config.js'
import { Logger } from '../../lib/logger.js'
import { bootMessage } from '../../lib/master/boot-message.js'
import { Generations, type WorkerExit } from '../../lib/master/generations.js'
import type { Operation } from '../../lib/master/phase.js'
import { timingsOf } from '../../lib/master/timings.js'
import { WorkerHandle } from '../../lib/master/worker-handle.js'
import { FakeChild, FakeRuntime, settle } from '../helpers/fake-runtime.js'

function make(options: { workers?: number; slots?: boolean; timeout?: number; maxMemory?: number; bootConcurrency?: number } = {}) {
  const config: Config = { ...DEFAULTS, app: 'app.js', bind: [], config: undefined, timeout: options.timeout ?? 30 }
  const rt = new FakeRuntime()
  const lines: string[] = []
  const log = new Logger({ level: 'debug', write: (l) => lines.push(l) })
  const state = { workers: options.workers ?? 2, allowed: new Set<Operation>(['respawn', 'recycle']), changed: 0 }
  const exits: WorkerExit[] = []
  const children = new Map<number, FakeChild>()
  const g = new Generations({
    spawn: (id, generation, hooks) => {
      const child = rt.spawn() as unknown as FakeChild
      const w = new WorkerHandle(child as never, bootMessage(config, timingsOf(config), { id, generation, listeners: [], logLevel: 'info', health: 'ok' }), 5000, hooks, log, rt)
      children.set(w.pid, child)
      return w
    },
    timings: () => timingsOf(config),
    workers: () => state.workers,
    maxMemory: () => options.maxMemory ?? 0,
    ...(options.bootConcurrency === undefined ? {} : { bootConcurrency: () => options.bootConcurrency! }),
    hasSlots: () => options.slots === true,
    allows: (op) => state.allowed.has(op),
    changed: () => state.changed++,
    exited: (e) => exits.push(e),
    log,
    rt,
  })
  /** The newest child of slot id (the last spawned). */
  const newest = (id: number): FakeChild => {
    const w = [...g.stats()].filter((s) => s.id === id).at(-1)!
    return children.get(w.pid)!
  }
  const listenAll = (): void => {
    for (const s of g.stats()) if (s.state === 'booting') children.get(s.pid)!.say({ act: 'listening', description: 'x' })
  }
  return { g, rt, lines, state, exits, children, newest, listenAll, log: () => lines.join('') }
}

async function serving(m: ReturnType<typeof make>): Promise<void> {
  const started = m.g.start(m.state.workers)
  m.listenAll()
  m.g.promote(await started)
}

t.test('a generation serves once every worker listens; a new one takes over and the old drains', async (t) => {
  const m = make()
  await serving(m)
  t.equal(m.g.serving, 1)
  t.equal(m.g.ready, 2)
  t.equal(m.g.live().length, 2)
  const next = m.g.start(2)
  m.listenAll()
  t.equal(m.g.promote(await next), 2, 'two old workers drain')
  t.same(m.g.stats().map((s) => [s.generation, s.state]), [[1, 'stopping'], [1, 'stopping'], [2, 'ready'], [2, 'ready']])
  for (const s of m.g.stats().filter((s) => s.generation === 1)) m.children.get(s.pid)!.exit(0)
  t.equal(m.g.size, 2)
  t.same(m.exits.map((e) => e.generation), [1, 1])
})

t.test('a generation that fails to boot is stopped whole', async (t) => {
  const m = make()
  const started = m.g.start(2)
  m.newest(1).say({ act: 'app-error', message: 'boom', stack: 'boom' })
  await settle()
  t.same(m.newest(2).acts(), ['boot', 'stop'])
  m.newest(1).exit(4)
  m.newest(2).exit(0)
  await t.rejects(started, /boom/)
})

t.test('a crash is replaced at once, again with backoff; a stable worker starts afresh', async (t) => {
  const m = make({ workers: 1 })
  await serving(m)
  m.newest(1).exit(1)
  t.equal(m.g.size, 0)
  m.rt.advance(0)
  t.equal(m.g.size, 1, 'the first replacement comes at once')
  m.newest(1).exit(1)
  m.rt.advance(99)
  t.equal(m.g.size, 0)
  m.rt.advance(1)
  t.equal(m.g.size, 1, 'the second after 100 ms')
  t.match(m.log(), /worker 1 keeps crashing: replacing it in 100 ms/)
  m.newest(1).say({ act: 'listening', description: 'x' })
  await settle()
  m.rt.advance(10000)
  m.newest(1).exit(1)
  m.rt.advance(0)
  t.equal(m.g.size, 1, 'after 10 s of serving, a crash is a first crash again')
  m.newest(1).exit(1) // a replacement that fails to boot
  await settle()
  m.rt.advance(100)
  t.match(m.log(), /replacement for worker 1 failed: worker 1 \(pid \d+\) exited with code 1 before it listened/)
})

t.test('a pending respawn is dropped when its slot is gone, filled, or the phase forbids it', async (t) => {
  const m = make({ workers: 2 })
  await serving(m)
  m.newest(2).exit(1)
  m.state.workers = 1 // TTOU meanwhile
  m.rt.advance(0)
  t.equal(m.g.size, 1)
  m.newest(1).exit(1)
  m.state.allowed.delete('respawn') // a stop began: no replacement at all
  m.rt.advance(0)
  t.equal(m.g.size, 0)
  const n = make({ workers: 1 })
  await serving(n)
  n.newest(1).exit(1) // respawn queued at 0 ms
  n.g.reconcile() // asks for the same slot: one respawn
  n.rt.advance(0)
  t.equal(n.g.size, 1)
  n.newest(1).exit(1)
  n.rt.advance(0) // at once? no: second crash, 100 ms
  n.g.reconcile()
  await settle()
  n.rt.advance(100)
  t.equal(n.g.size, 1, 'a reconcile and a backoff for the same slot spawn one worker')
})

t.test('max-requests: a replacement boots, then the old worker drains; a failed replacement keeps it serving', async (t) => {
  const m = make({ workers: 1 })
  await serving(m)
  const old = m.newest(1)
  old.say({ act: 'retire', requests: 10 })
  old.say({ act: 'retire', requests: 10 }) // asks twice: one recycle
  t.equal(m.g.stats()[0]!.state, 'retiring')
  t.equal(m.g.live().length, 1, 'the replacement is live, the retiring one is not')
  m.newest(1).say({ act: 'listening', description: 'x' })
  await settle()
  t.same(old.acts(), ['boot', 'stop'])
  t.match(m.log(), /worker 1 \(pid \d+\) served 10 requests: recycling it/)
  const again = m.newest(1)
  again.say({ act: 'retire', requests: 20 })
  m.newest(1).exit(1)
  await settle()
  t.equal(m.g.stats().find((s) => s.pid === again.pid)!.state, 'ready')
  t.match(m.log(), /replacement failed .*; the old worker keeps serving/)
  m.state.allowed.delete('recycle')
  again.say({ act: 'retire', requests: 30 })
  t.equal(m.g.stats().find((s) => s.pid === again.pid)!.state, 'ready', 'no recycling while the phase forbids it')
})

t.test('reconcile: missing slots are spawned, extra ones drain', async (t) => {
  const m = make({ workers: 2 })
  await serving(m)
  m.state.workers = 3
  m.g.reconcile()
  m.rt.advance(0)
  t.equal(m.g.size, 3)
  m.listenAll()
  m.state.workers = 1
  m.g.reconcile()
  t.same(m.g.stats().map((s) => s.state), ['ready', 'stopping', 'stopping'])
})

t.test('reuse-port TTOU: a new worker 1 takes the leaving slots over before they drain; if it fails they serve on', async (t) => {
  const m = make({ workers: 2, slots: true })
  await serving(m)
  const [one, two] = [m.newest(1), m.newest(2)]
  m.state.workers = 1
  m.g.reconcile()
  t.same(m.g.stats().map((s) => s.state), ['ready', 'retiring', 'booting'])
  m.newest(1).say({ act: 'listening', description: 'x' })
  await settle()
  t.same([one.acts(), two.acts()], [['boot', 'stop'], ['boot', 'stop']])
  const n = make({ workers: 2, slots: true })
  await serving(n)
  n.state.workers = 1
  n.g.reconcile()
  n.newest(1).exit(1)
  await settle()
  t.same(n.g.stats().map((s) => s.state), ['ready', 'ready'])
  t.match(n.log(), /TTOU: worker 1 could not take over the leaving slots .*; they keep serving/)
  n.state.workers = 1
  n.state.allowed.clear()
  const nn = make({ workers: 1, slots: true })
  await serving(nn)
  nn.state.workers = 2
  nn.g.reconcile()
  t.equal(nn.g.size, 1, 'no respawn allowed: nothing is spawned')
})

t.test('heartbeats: a worker silent past --timeout is killed and the log says what it was doing; healthy()', async (t) => {
  const m = make({ workers: 2, timeout: 1 })
  await serving(m)
  t.ok(m.g.healthy())
  m.g.check()
  t.same(m.newest(1).signals, [], 'a fresh heartbeat is fine')
  m.newest(1).beat({ requests: 1, inflight: [{ method: 'GET', url: '/slow', ms: 900 }] })
  m.rt.advance(1001)
  m.g.check()
  t.same([m.newest(1).signals, m.newest(2).signals], [['SIGKILL'], ['SIGKILL']])
  t.notOk(m.g.healthy())
  t.match(m.log(), /worker 1 \(pid \d+\) timed out: no heartbeat for 1001 ms .*in flight at its last heartbeat: GET \/slow \(running 900 ms\)/)
  t.match(m.log(), /worker 2 .*no request was in flight at its last heartbeat/)
  const off = make({ workers: 1, timeout: 0 })
  await serving(off)
  off.rt.advance(100000)
  off.g.check()
  t.same(off.newest(1).signals, [], '--timeout 0: never killed')
  t.notOk(off.g.healthy(), 'but not healthy without heartbeats (3 intervals)')
})

t.test('stopAll: every worker is told, pending respawns are dropped; forEach', async (t) => {
  const m = make({ workers: 2 })
  await serving(m)
  m.newest(2).exit(1)
  const seen: number[] = []
  m.g.forEach((w) => seen.push(w.id))
  t.same(seen, [1])
  const stopped = m.g.stopAll(true, true)
  t.same(m.newest(1).sent.at(-1), { cmd: 'SDSERVE', act: 'stop', graceful: true, timeoutMs: 30000, handoverMs: 300, windowMs: 5000, reason: 'upgrade' }, 'a hand-over to a new master: the app hears upgrade')
  m.newest(1).exit(0)
  t.equal(await stopped, 1)
  m.rt.advance(0)
  t.equal(m.g.size, 0, 'the pending respawn was dropped')
  const fast = make({ workers: 1, timeout: 1 })
  await serving(fast)
  const stopping = fast.g.stopAll(false, false)
  t.same(fast.newest(1).sent.at(-1), { cmd: 'SDSERVE', act: 'stop', graceful: false, timeoutMs: 0, handoverMs: 0, windowMs: 0, reason: 'stop' })
  fast.rt.advance(5000)
  fast.g.check()
  t.same(fast.newest(1).signals, ['SIGKILL'], 'only the backstop: a stopping worker is not killed for its heartbeat')
  fast.newest(1).exit(null, 'SIGKILL')
  await stopping
})

t.test('--max-worker-memory: a worker over it is recycled, its replacement first; one under it, or gone, is left alone', async (t) => {
  const m = make({ workers: 2, maxMemory: 100 * 1048576 })
  await serving(m)
  const [one, two] = [m.newest(1), m.newest(2)]
  m.rt.memory.set(one.pid!, 101 * 1048576)
  m.rt.memory.set(two.pid!, 100 * 1048576)
  m.g.check()
  m.g.check() // asked again while its replacement boots: one recycle
  t.same(m.g.stats().map((s) => s.state), ['retiring', 'ready', 'booting'])
  t.match(m.log(), /worker 1 \(pid \d+\) uses 101 MiB, over --max-worker-memory 100 MiB: recycling it/)
  m.newest(1).say({ act: 'listening', description: 'x' })
  await settle()
  t.same(one.acts(), ['boot', 'stop'])
  t.same(two.acts(), ['boot'], 'at the limit is not over it')
  m.rt.memory.delete(two.pid!)
  m.g.check()
  t.same(two.acts(), ['boot'], 'a worker whose memory cannot be read (gone) is left alone')
})

t.test('at most bootConcurrency workers boot at once, the next as one listens', async (t) => {
  const m = make({ workers: 5, bootConcurrency: 2 })
  const started = m.g.start(5)
  const booting = (): number[] => m.g.stats().filter((s) => s.state === 'booting').map((s) => s.id)
  t.same(booting(), [1, 2])
  m.newest(2).say({ act: 'listening', description: 'x' })
  await settle()
  t.same(booting(), [1, 3])
  m.listenAll()
  await settle()
  t.same(booting(), [4, 5])
  m.listenAll()
  t.equal(await started, 1)
  t.equal(m.g.stats().length, 5)
})

t.test('a stop while a generation boots in turns: nothing more is spawned, and the start fails', async (t) => {
  const m = make({ workers: 4, bootConcurrency: 2 })
  const started = m.g.start(4)
  const stopping = m.g.stopAll(true, false)
  // One listens after all (it was told to stop as it got there): no third one is spawned for it.
  m.newest(1).say({ act: 'listening', description: 'x' })
  await settle()
  for (const c of m.children.values()) c.exit(0, null)
  await t.rejects(started, /^stopped while the generation booted$/)
  await stopping
  t.equal(m.children.size, 2, 'two spawned, no more')
})

t.test('without --max-worker-memory, memory is read only when asked for', async (t) => {
  const m = make({ workers: 1 })
  await serving(m)
  const pid = m.newest(1).pid!
  const reads: number[] = []
  const rss = m.rt.rss.bind(m.rt)
  m.rt.rss = (pid) => {
    reads.push(pid)
    return rss(pid)
  }
  m.rt.memory.set(pid, 50 * 1048576)
  m.g.check()
  t.same(reads, [], 'not by the checks')
  t.same(
    m.g.stats().map((s) => s.rss),
    [50 * 1048576],
  )
  t.same(
    m.g.reports().map((r) => r.rss),
    [50 * 1048576],
  )
  t.equal(reads.length, 2, 'by stats and reports')
})

t.test('generations drain side by side, at most two: a third reload hurries the oldest', async (t) => {
  const m = make({ workers: 1 })
  await serving(m)
  for (let generation = 2; generation <= 5; generation++) {
    const next = m.g.start(1)
    m.listenAll()
    m.g.promote(await next)
  }
  const stopMessages = (generation: number) =>
    m.g
      .stats()
      .filter((s) => s.generation === generation)
      .flatMap((s) => m.children.get(s.pid)!.sent.filter((x) => (x as { act: string }).act === 'stop')) as { timeoutMs: number }[]
  t.same(
    m.g.stats().map((s) => [s.generation, s.state]),
    [[1, 'stopping'], [2, 'stopping'], [3, 'stopping'], [4, 'stopping'], [5, 'ready']],
    'no drain held up a reload',
  )
  t.same(stopMessages(1).map((x) => x.timeoutMs), [30000, 2000, 2000], 'the oldest was hurried at each reload that made too many (4 and 5)')
  t.same(stopMessages(2).map((x) => x.timeoutMs), [30000, 2000], 'hurried at 5')
  t.same(stopMessages(3).map((x) => x.timeoutMs), [30000], 'the two newest drain at their own pace')
  t.same(stopMessages(4).map((x) => x.timeoutMs), [30000])
})
