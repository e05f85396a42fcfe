/** SystemdReporter: the master's events in, sd_notify messages out (a recording Notifier). */
import t from 'tap'
import { EventEmitter } from 'node:events'
import { AppLoadError, WorkerBootError } from '../../lib/errors.js'
import { Logger } from '../../lib/logger.js'
import type { MasterEvents } from '../../lib/master/events.js'
import { SystemdReporter, type StatusSnapshot } from '../../lib/master/systemd-reporter.js'
import { Notifier, type NotifyResult, type NotifyValue } from '../../lib/notify.js'

class Recording extends Notifier {
  readonly messages: string[] = []
  fail = false
  barrierFails = false
  constructor(enabled = true) {
    super({ socket: enabled ? '@sdserve-test-recording' : undefined })
  }
  override send(fields: ReadonlyArray<readonly [string, NotifyValue]>): NotifyResult {
    if (this.fail) throw new Error('ECONNREFUSED')
    const message = fields.map(([k, v]) => `${k}=${String(v)}`).join('\n')
    this.messages.push(message)
    return { sent: true, message }
  }
  override async barrier(): Promise<NotifyResult> {
    if (this.barrierFails) throw new Error('timed out')
    this.messages.push('BARRIER=1')
    return { sent: true, message: 'BARRIER=1' }
  }
}

function make(enabled = true, healthy = true) {
  const notifier = new Recording(enabled)
  const lines: string[] = []
  const snap: StatusSnapshot = { ready: 2, workers: 2, serving: 1, pending: undefined, served: 0 }
  const master = new EventEmitter<MasterEvents>()
  const reporter = new SystemdReporter(notifier, new Logger({ write: (l) => lines.push(l) }), () => snap, () => healthy)
  reporter.listen(master)
  const sent = (): string[] => notifier.messages.map((m) => m.replace(/MONOTONIC_USEC=\d+/, 'MONOTONIC_USEC=N'))
  return { notifier, lines, snap, master, reporter, sent }
}

t.test('a start, a reload that fails and one that works, status changes, a stop', async (t) => {
  const { master, sent, snap, reporter } = make()
  t.ok(reporter.enabled)
  master.emit('booting', { generation: 1, workers: 2, timeoutMs: 10000, first: true })
  master.emit('ready', { generation: 1, workers: 2 })
  master.emit('status')
  snap.served = 5
  master.emit('status')
  master.emit('reloading', { generation: 2 })
  master.emit('booting', { generation: 2, workers: 2, timeoutMs: 0, first: false })
  master.emit('reload', { ok: false, generation: 1, error: 'boom' })
  snap.pending = 3
  master.emit('status')
  snap.pending = undefined
  master.emit('reload', { ok: true, generation: 3 })
  master.emit('stopping', { graceful: true, workers: 2, timeoutMs: 30000 })
  master.emit('status')
  master.emit('stopping', { graceful: false, workers: 2, timeoutMs: 30000 })
  await reporter.barrier()
  t.same(sent(), [
    'EXTEND_TIMEOUT_USEC=15000000',
    'STATUS=starting 2 workers',
    'READY=1\nSTATUS=2 of 2 workers serving (generation 1), 0 requests served',
    'STATUS=2 of 2 workers serving (generation 1), 5 requests served',
    'RELOADING=1\nMONOTONIC_USEC=N\nSTATUS=reloading: starting generation 2',
    'READY=1\nSTATUS=2 of 2 workers serving (generation 1), 5 requests served; last reload failed: boom',
    'STATUS=2 of 2 workers serving (generation 1, reloading to generation 3), 5 requests served; last reload failed: boom',
    'READY=1\nSTATUS=2 of 2 workers serving (generation 1), 5 requests served',
    'STOPPING=1\nSTATUS=stopping: draining 2 workers',
    'EXTEND_TIMEOUT_USEC=35000000',
    'STOPPING=1\nSTATUS=stopping: stopping 2 workers',
    'BARRIER=1',
  ])
})

t.test('a binary upgrade: its failure is noted in STATUS=; the hand-over sends MAINPID= and then nothing', async (t) => {
  const { master, sent, reporter, notifier, lines } = make()
  master.emit('upgrading')
  master.emit('upgrade-failed', { error: 'no luck' })
  await reporter.handOver(4242)
  t.notOk(reporter.main)
  master.emit('status')
  await reporter.barrier()
  t.same(sent(), [
    'STATUS=upgrading: starting a new master; 2 of 2 workers serving (generation 1), 0 requests served',
    'STATUS=2 of 2 workers serving (generation 1), 0 requests served; last binary upgrade failed: no luck',
    'MAINPID=4242\nSTATUS=handed over to the new master 4242',
    'BARRIER=1',
  ])
  const other = make()
  other.notifier.barrierFails = true
  await other.reporter.barrier()
  t.match(other.lines.join(''), /sd_notify barrier: timed out/)
  t.equal(notifier.messages.length, 4)
  t.same(lines, [])
})

t.test('not the main process: nothing is sent until it serves; failures; the fd store; a failing datagram is logged', async (t) => {
  const { master, sent, reporter, notifier, lines } = make()
  reporter.main = false
  master.emit('booting', { generation: 1, workers: 2, timeoutMs: 10000, first: true })
  t.same(sent(), [])
  t.equal(reporter.watchdogUsec, undefined)
  master.emit('failed', { error: new AppLoadError('app.js', 'boom') })
  reporter.main = true
  master.emit('failed', { error: new AppLoadError('app.js', 'boom') })
  master.emit('failed', { error: new WorkerBootError('no boot') })
  reporter.add(7, 'sdserve-x')
  reporter.remove('sdserve-y')
  t.match(sent(), [/^ERRNO=8\nSTATUS=failed: /, /^ERRNO=5\nSTATUS=failed: no boot$/, /^FDSTORE=1\nFDNAME=sdserve-x$/, /^FDSTOREREMOVE=1\nFDNAME=sdserve-y$/])
  notifier.fail = true
  master.emit('status')
  t.match(lines.join(''), /sd_notify failed: ECONNREFUSED/)
  const off = make(false)
  t.notOk(off.reporter.enabled)
  await off.reporter.barrier()
  t.same(off.sent(), [])
})

t.test('the watchdog runs from READY=1 to STOPPING=1', async (t) => {
  const { master, reporter, lines } = make(true, false)
  process.env.WATCHDOG_USEC = '60000000'
  process.env.WATCHDOG_PID = String(process.pid)
  master.emit('ready', { generation: 1, workers: 2 })
  t.equal(reporter.watchdogUsec, 60000000n)
  t.equal(process.env.WATCHDOG_USEC, undefined, 'consumed: workers and new masters do not inherit it')
  await new Promise((r) => setImmediate(r))
  t.match(lines.join(''), /watchdog ping skipped: health check said no/)
  master.emit('stopping', { graceful: false, workers: 0, timeoutMs: 0 })
})

t.test('a lame duck: STOPPING=1 with why, and systemd gives it time; the drain extends again', async (t) => {
  const { master, sent } = make()
  master.emit('booting', { generation: 1, workers: 2, timeoutMs: 0, first: true })
  master.emit('ready', { generation: 1, workers: 2 })
  master.emit('lame-duck', { ms: 5000 })
  master.emit('status')
  master.emit('stopping', { graceful: true, workers: 2, timeoutMs: 30000 })
  const after = sent().slice(sent().findIndex((m) => m.startsWith('STOPPING=1')))
  t.match(after[0], /^STOPPING=1\nSTATUS=lame duck: health checks answer 503 for 5 s, then draining$/)
  t.match(after[1], /^EXTEND_TIMEOUT_USEC=\d+$/)
  t.ok(Number(after[1]!.split('=')[1]) >= 5_000_000, 'at least the lame duck')
  t.match(after[2], /^STOPPING=1\nSTATUS=stopping: draining 2 workers$/, 'no status update in between')
})
