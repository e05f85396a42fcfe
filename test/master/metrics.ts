/** formatMetrics on hand-made snapshots: names, types, labels, the histogram, and promtool's verdict. */
import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { DURATION_BUCKETS, STATUS_CLASSES } from '../../lib/http/request-counters.js'
import { EXIT_REASONS, emptyTotals } from '../../lib/master/ledger.js'
import { escapeHelp, escapeLabel, formatMetrics, formatValue, processSample, type ProcessSample } from '../../lib/master/metrics.js'
import type { MasterStats } from '../../lib/master/stats.js'
import { masterStats, slotStats } from '../helpers/master-stats.js'
import { report, settle } from '../helpers/fake-runtime.js'
import { make } from '../helpers/in-process-master.js'
import { needs } from '../helpers/needs.js'

const proc: ProcessSample = { rssBytes: 50_000_000, cpuSeconds: 1.5, startTimeSeconds: 1_700_000_000.25 }

/** The samples of a text exposition: `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const m = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    m.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return m
}

/** name → type, from the TYPE lines; fails on a family with no HELP line before its TYPE line. */
function types(t: Test, text: string): Map<string, string> {
  const m = new Map<string, string>()
  const lines = text.split('\n')
  lines.forEach((line, i) => {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type === null) return
    t.match(lines[i - 1], new RegExp(`^# HELP ${type[1]} \\S`), `${type[1]} has HELP`)
    m.set(type[1] as string, type[2] as string)
  })
  return m
}

function busyStats(): MasterStats {
  const one = emptyTotals()
  one.responses = [0, 90, 3, 5, 2, 1]
  one.buckets = [10, 20, 30, 10, 10, 10, 5, 3, 2, 1, 0, 0]
  one.seconds = 42.5
  one.cpuSeconds = 3.25
  const two = emptyTotals()
  two.responses = [1, 10, 0, 0, 0, 0]
  two.buckets = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]
  two.seconds = 12
  return masterStats({
    slots: [slotStats(1, { totals: one, rss: 40e6, inflight: 3, connections: 7, loopP99Ms: 12.5 }), slotStats(2, { totals: two })],
    exits: { ...masterStats().exits, crash: 2, reload: 4 },
    reloads: { ok: 2, failed: 1, lastError: 'boot failed' },
    upgrades: { ok: 1, failed: 0 },
    workers: [
      { id: 1, pid: 11, generation: 3, state: 'ready', uptimeMs: 1, lastBeatMs: 1, requests: 101, inflight: 3, connections: 7, rss: 40e6, cpuPercent: 1, loopP99Ms: 12.5, loopMaxMs: 20, restarts: 0, lastExit: undefined },
      { id: 2, pid: 12, generation: 3, state: 'ready', uptimeMs: 1, lastBeatMs: 1, requests: 11, inflight: 0, connections: 0, rss: 0, cpuPercent: 0, loopP99Ms: 0, loopMaxMs: 0, restarts: 1, lastExit: 'crash' },
      { id: 2, pid: 10, generation: 2, state: 'stopping', uptimeMs: 1, lastBeatMs: 1, requests: 0, inflight: 0, connections: 0, rss: 0, cpuPercent: 0, loopP99Ms: 0, loopMaxMs: 0, restarts: 0, lastExit: undefined },
    ],
    generation: 3,
    target: 2,
    sockets: [{ text: '127.0.0.1:8000', queued: 4, backlog: 2048 }, { text: 'unix:/run/a "b"\\c.sock', queued: 0, backlog: 128 }, { text: 'fd://3' }],
  })
}

t.test('every family has HELP and TYPE, with the names and types the README lists', async (t) => {
  const text = formatMetrics(busyStats(), proc)
  t.same(Object.fromEntries(types(t, text)), {
    sdserve_requests_total: 'counter',
    sdserve_request_duration_seconds: 'histogram',
    sdserve_requests_in_flight: 'gauge',
    sdserve_connections_open: 'gauge',
    sdserve_worker_resident_memory_bytes: 'gauge',
    sdserve_worker_cpu_seconds_total: 'counter',
    sdserve_worker_event_loop_delay_p99_seconds: 'gauge',
    sdserve_worker_exits_total: 'counter',
    sdserve_reloads_total: 'counter',
    sdserve_upgrades_total: 'counter',
    sdserve_generation: 'gauge',
    sdserve_workers: 'gauge',
    sdserve_workers_target: 'gauge',
    sdserve_health: 'gauge',
    sdserve_master_start_time_seconds: 'gauge',
    sdserve_boot_duration_seconds: 'gauge',
    sdserve_listen_queue_length: 'gauge',
    sdserve_listen_queue_max: 'gauge',
    sdserve_info: 'gauge',
    process_resident_memory_bytes: 'gauge',
    process_cpu_seconds_total: 'counter',
    process_start_time_seconds: 'gauge',
  })
  t.ok(text.endsWith('\n'), 'the last line ends with a newline')
})

t.test('the samples: per worker and status class, gauges, exits, outcomes, the master', async (t) => {
  const s = samples(formatMetrics(busyStats(), proc))
  t.equal(s.get('sdserve_requests_total{worker="1",code="2xx"}'), 90)
  t.equal(s.get('sdserve_requests_total{worker="1",code="aborted"}'), 1)
  t.equal(s.get('sdserve_requests_total{worker="2",code="1xx"}'), 1)
  t.equal([...s.keys()].filter((k) => k.startsWith('sdserve_requests_total{')).length, 2 * STATUS_CLASSES.length, 'every class of every slot, zeros included')
  t.equal(s.get('sdserve_requests_in_flight{worker="1"}'), 3)
  t.equal(s.get('sdserve_connections_open{worker="1"}'), 7)
  t.equal(s.get('sdserve_worker_resident_memory_bytes{worker="1"}'), 40e6)
  t.equal(s.get('sdserve_worker_cpu_seconds_total{worker="1"}'), 3.25)
  t.equal(s.get('sdserve_worker_event_loop_delay_p99_seconds{worker="1"}'), 0.0125)
  t.equal(s.get('sdserve_requests_in_flight{worker="2"}'), 0)
  for (const reason of EXIT_REASONS) t.ok(s.has(`sdserve_worker_exits_total{reason="${reason}"}`), `exit reason ${reason} present`)
  t.equal(s.get('sdserve_worker_exits_total{reason="crash"}'), 2)
  t.equal(s.get('sdserve_worker_exits_total{reason="reload"}'), 4)
  t.equal(s.get('sdserve_worker_exits_total{reason="memory"}'), 0)
  t.equal(s.get('sdserve_reloads_total{result="ok"}'), 2)
  t.equal(s.get('sdserve_reloads_total{result="failed"}'), 1)
  t.equal(s.get('sdserve_upgrades_total{result="ok"}'), 1)
  t.equal(s.get('sdserve_upgrades_total{result="failed"}'), 0)
  t.equal(s.get('sdserve_generation'), 3)
  t.equal(s.get('sdserve_workers{state="ready"}'), 2)
  t.equal(s.get('sdserve_workers{state="stopping"}'), 1)
  t.equal(s.get('sdserve_workers{state="booting"}'), 0)
  t.equal(s.get('sdserve_workers{state="retiring"}'), 0)
  t.equal(s.get('sdserve_workers_target'), 2)
  t.same(
    ['ok', 'lame-duck', 'unhealthy'].map((status) => s.get(`sdserve_health{status="${status}"}`)),
    [1, 0, 0],
  )
  t.equal(s.get('sdserve_master_start_time_seconds'), 1_700_000_000)
  t.equal(s.get('sdserve_boot_duration_seconds'), 0.25)
  t.equal(s.get('sdserve_listen_queue_length{socket="127.0.0.1:8000"}'), 4)
  t.equal(s.get('sdserve_listen_queue_max{socket="127.0.0.1:8000"}'), 2048)
  t.equal(s.get('sdserve_listen_queue_max{socket="unix:/run/a \\"b\\"\\\\c.sock"}'), 128, 'a socket label escaped')
  t.notOk([...s.keys()].some((k) => k.includes('fd://3')), 'a socket with no queue reading has no samples')
  t.equal(s.get('sdserve_info{version="0.1.0"}'), 1)
  t.equal(s.get('process_resident_memory_bytes'), 50_000_000)
  t.equal(s.get('process_cpu_seconds_total'), 1.5)
  t.equal(s.get('process_start_time_seconds'), 1_700_000_000.25)
})

t.test('the histogram: cumulative buckets, +Inf equal to _count, _sum, summed over slots', async (t) => {
  const s = samples(formatMetrics(busyStats(), proc))
  const bounds = [...DURATION_BUCKETS.map(String), '+Inf']
  const values = bounds.map((le) => s.get(`sdserve_request_duration_seconds_bucket{le="${le}"}`))
  t.same(values, [11, 32, 63, 74, 85, 96, 102, 106, 109, 111, 111, 112])
  for (let i = 1; i < values.length; i++) t.ok((values[i] as number) >= (values[i - 1] as number), `bucket ${bounds[i]} is cumulative`)
  t.equal(s.get('sdserve_request_duration_seconds_count'), values.at(-1), '+Inf == _count')
  t.equal(s.get('sdserve_request_duration_seconds_sum'), 54.5)
  t.equal(s.get('sdserve_request_duration_seconds_count'), 101 + 11, 'as many as the responses counted')
})

t.test('an idle master: zeros present, no slot samples, no queue samples', async (t) => {
  const text = formatMetrics(masterStats({ slots: [] }), proc)
  const s = samples(text)
  t.equal(s.get('sdserve_request_duration_seconds_count'), 0)
  t.equal(s.get('sdserve_request_duration_seconds_bucket{le="+Inf"}'), 0)
  t.equal(s.get('sdserve_worker_exits_total{reason="crash"}'), 0)
  t.notOk([...s.keys()].some((k) => k.startsWith('sdserve_requests_total')))
  t.match(text, /# TYPE sdserve_requests_total counter\n# HELP sdserve_request_duration_seconds/, 'a family with no samples keeps its HELP and TYPE')
})

t.test('escaping: label values (backslash, quote, newline), HELP text, values', async (t) => {
  t.equal(escapeLabel('a\\b"c\nd'), 'a\\\\b\\"c\\nd')
  t.equal(escapeLabel('plain'), 'plain')
  t.equal(escapeHelp('a\\b"c\nd'), 'a\\\\b"c\\nd')
  t.equal(formatValue(NaN), 'NaN')
  t.equal(formatValue(Infinity), '+Inf')
  t.equal(formatValue(-Infinity), '-Inf')
  t.equal(formatValue(1e-7), '1e-7')
  t.equal(formatValue(0.5), '0.5')
  const text = formatMetrics(masterStats({ version: '1.0 "beta"\n\\x' }), proc)
  t.match(text, 'sdserve_info{version="1.0 \\"beta\\"\\n\\\\x"} 1\n')
})

t.test('processSample reads this process', async (t) => {
  const p = processSample()
  t.ok(p.rssBytes > 0)
  t.ok(p.cpuSeconds > 0)
  t.equal(p.startTimeSeconds, performance.timeOrigin / 1000, "this process's start, in seconds")
  t.match(formatMetrics(masterStats()), /^process_resident_memory_bytes \d+$/m, 'the default is this process')
})

t.test("a real Master's snapshot: a crashed worker's requests stay counted, the crash is an exit", async (t) => {
  const m = make({ workers: 2 })
  await m.serve()
  const [one, two] = m.rt.children as [NonNullable<(typeof m.rt.children)[0]>, NonNullable<(typeof m.rt.children)[0]>]
  const served = (n: number) => report({ requests: n, totals: { responses: [0, n, 0, 0, 0, 0], buckets: [n, ...new Array<number>(11).fill(0)], seconds: n / 1000, inflight: 0 } })
  one.beat(served(7))
  two.beat(served(5))
  let s = samples(formatMetrics(m.master.stats(), proc))
  t.equal(s.get('sdserve_requests_total{worker="1",code="2xx"}'), 7)
  t.equal(s.get('sdserve_request_duration_seconds_count'), 12)
  t.equal(s.get('sdserve_workers{state="ready"}'), 2)
  t.ok((s.get('sdserve_listen_queue_max{socket="' + m.master.stats().sockets[0]!.text + '"}') ?? 0) > 0, 'the real socket\'s backlog')
  one.exit(null, 'SIGKILL')
  await settle()
  s = samples(formatMetrics(m.master.stats(), proc))
  t.equal(s.get('sdserve_requests_total{worker="1",code="2xx"}'), 7, 'still counted after the crash')
  t.equal(s.get('sdserve_worker_exits_total{reason="crash"}'), 1)
  m.master.stop().catch(() => undefined)
  await m.exitStopped()
})

t.test('promtool check metrics accepts the output', needs(['promtool']), async (t) => {
  for (const [what, stats] of [
    ['busy', busyStats()],
    ['idle', masterStats({ slots: [] })],
  ] as const) {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: formatMetrics(stats, proc), encoding: 'utf8', timeout: 30_000 })
    t.equal(r.status, 0, `${what}: promtool exits 0: ${r.stdout}${r.stderr}`)
    t.equal(`${r.stdout}${r.stderr}`.trim(), '', `${what}: no problems reported`)
  }
})
