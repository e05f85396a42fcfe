/**
 * Master.stats() in-process: worker reports summed per slot across
 * replacements, exits by reason, reloads and upgrades, the accept queue of a
 * real listening socket.
 */
import t from 'tap'
import { EventEmitter } from 'node:events'
import { closeSync } from 'node:fs'
import { socketPair } from '../../lib/native.js'
import { acceptQueues } from '../../lib/master/accept-queue.js'
import type { MasterEvents } from '../../lib/master/events.js'
import { OperationsRecord } from '../../lib/master/stats.js'
import { report, settle } from '../helpers/fake-runtime.js'
import { make } from '../helpers/in-process-master.js'

const served = (requests: number, cpuUser = 0) =>
  report({
    requests,
    totals: { responses: [0, requests, 0, 0, 0, 0], buckets: [requests, ...new Array<number>(11).fill(0)], seconds: requests / 100, inflight: 1 },
    connections: 2,
    cpuUser,
    loopP99: 3,
  })

t.test('stats: per-slot totals survive a crash, and the live workers are shown as they report', async (t) => {
  const m = make({ workers: 2 })
  await m.serve()
  const [one, two] = m.rt.children as [NonNullable<(typeof m.rt.children)[0]>, NonNullable<(typeof m.rt.children)[0]>]
  m.rt.memory.set(one.pid!, 50 * 1048576)
  m.rt.advance(500)
  one.beat(served(10, 1000))
  m.rt.advance(500)
  one.beat(served(20, 6000))
  two.beat(served(5))
  m.rt.advance(1000) // the monitor's tick reads RSS
  let s = m.master.stats()
  t.equal(s.phase, 'serving')
  t.equal(s.generation, 1)
  t.equal(s.target, 2)
  t.equal(s.pid, process.pid)
  t.ok(s.lastBootMs >= 0)
  const w1 = s.workers.find((w) => w.id === 1)!
  t.match(w1, { pid: one.pid, state: 'ready', requests: 20, inflight: 1, connections: 2, rss: 50 * 1048576, loopP99Ms: 3, restarts: 0 })
  t.equal(w1.cpuPercent, 1, '5 ms of CPU in 500 ms: 1 %')
  t.equal(w1.uptimeMs, 2000)
  t.equal(w1.lastBeatMs, 1000)
  t.match(s.sockets, [{ text: /^127\.0\.0\.1:\d+$/, queued: 0, backlog: 2048 }], 'the accept queue of the real socket')

  one.exit(null, 'SIGSEGV') // a crash: its last report stays with slot 1
  await settle()
  m.rt.advance(0)
  await settle()
  m.listen()
  await settle()
  const replacement = m.rt.children.at(-1)!
  replacement.beat(served(3))
  s = m.master.stats()
  const slot1 = s.slots.find((x) => x.id === 1)!
  t.equal(slot1.totals.requests, 23, 'the crashed worker 20 and its replacement 3')
  t.same(slot1.totals.responses, [0, 23, 0, 0, 0, 0])
  t.equal(slot1.totals.cpuSeconds, 0.006)
  t.equal(slot1.inflight, 1, 'only the live worker is in flight')
  t.equal(s.exits.crash, 1)
  t.match(s.workers.find((w) => w.id === 1), { pid: replacement.pid, restarts: 1, lastExit: 'crash' })

  const reloaded = m.master.reload()
  await settle()
  m.listen()
  t.equal(await reloaded, true)
  m.setNext(Promise.reject(new Error('broken config')))
  t.equal(await m.master.reload(), false)
  s = m.master.stats()
  t.match(s.reloads, { ok: 1, failed: 1, lastError: /broken config/ })
  await m.exitStopped()
  t.equal(m.master.stats().exits.reload, 2, 'the two live workers of generation 1 drained for the reload')

  const stopped = m.master.stop()
  await m.exitStopped()
  t.equal(await stopped, 0)
  t.equal(m.master.stats().exits.stop, 2)
})

t.test('OperationsRecord: boot time, reloads and upgrades from the events', async (t) => {
  let now = 0
  const master = new EventEmitter<MasterEvents>()
  const record = new OperationsRecord(() => now).listen(master)
  master.emit('booting', { generation: 1, workers: 2, timeoutMs: 1000, first: true })
  now = 120
  master.emit('ready', { generation: 1, workers: 2 })
  t.equal(record.lastBootMs, 120)
  master.emit('booting', { generation: 2, workers: 2, timeoutMs: 1000, first: false })
  now = 200
  master.emit('reload', { ok: true, generation: 2 })
  t.equal(record.lastBootMs, 80)
  master.emit('reload', { ok: false, generation: 2, error: 'boom' })
  master.emit('upgrade-failed', { error: 'no' })
  master.emit('upgraded', { pid: 42 })
  t.same(record.reloads, { ok: 1, failed: 1, lastError: 'boom' })
  t.same(record.upgrades, { ok: 1, failed: 1, lastError: 'no' })
})

t.test('acceptQueues: a socket whose queue cannot be read is listed without one', async (t) => {
  const [a, b] = socketPair('stream')
  t.same(acceptQueues([{ text: 'not listening', fd: a }]), [{ text: 'not listening' }])
  closeSync(a)
  closeSync(b)
})

t.test('stats: reuse-port slot sockets are listed with their slot', async (t) => {
  const m = make({ workers: 2, balance: 'reuse-port' })
  await m.serve()
  const texts = m.master.stats().sockets.map((x) => x.text)
  t.equal(texts.length, 2)
  t.match(texts[1], /^127\.0\.0\.1:\d+ \(slot 2\)$/)
  t.match(m.master.stats().sockets[1], { queued: 0 })
  const stopped = m.master.stop()
  await m.exitStopped()
  t.equal(await stopped, 0)
})
