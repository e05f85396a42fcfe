/**
 * The master's metrics in the Prometheus text exposition format 0.0.4,
 * written by hand from one MasterStats snapshot.
 *
 * Why not prom-client: the values here are counters the workers computed
 * and the master summed (lib/master/ledger.ts); prom-client's Counter and
 * Histogram own their values and can only be incremented or observed, not
 * set from aggregated bucket counts, and its cluster aggregator would put
 * prom-client in every worker and on every request. The format is small,
 * and the tests have promtool and a real Prometheus read it.
 */
import { DURATION_BUCKETS, STATUS_CLASSES } from '../http/request-counters.js'
import { EXIT_REASONS } from './ledger.js'
import type { HealthStatus } from './health.js'
import type { MasterStats, SlotStats, SocketStats } from './stats.js'

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** The worker states sdserve_workers counts, every one present (zeros too). */
const WORKER_STATES = ['booting', 'ready', 'retiring', 'stopping'] as const

type Labels = Record<string, string>
interface Sample {
  /** Appended to the family's name: _bucket, _sum, _count. */
  suffix?: string
  labels?: Labels
  value: number
}

/** The master process's own figures, as every Prometheus client library exports them. */
export interface ProcessSample {
  rssBytes: number
  cpuSeconds: number
  startTimeSeconds: number
}

export function processSample(): ProcessSample {
  const cpu = process.cpuUsage()
  return {
    rssBytes: process.memoryUsage.rss(),
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    // timeOrigin: when this process started, epoch ms.
    startTimeSeconds: performance.timeOrigin / 1000,
  }
}

/** A label value: backslash, double quote and newline escaped (the format's only escapes). */
export function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))
}

/** HELP text: backslash and newline escaped (a double quote stays as it is). */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'))
}

/** A sample value as Go's ParseFloat reads it. */
export function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN'
  if (n === Infinity) return '+Inf'
  if (n === -Infinity) return '-Inf'
  return String(n)
}

function family(out: string[], name: string, type: 'counter' | 'gauge' | 'histogram', help: string, samples: Sample[]): void {
  out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`)
  for (const s of samples) {
    const labels = Object.entries(s.labels ?? {})
    const text = labels.length === 0 ? '' : `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`
    out.push(`${name}${s.suffix ?? ''}${text} ${formatValue(s.value)}`)
  }
}

/** A histogram's samples from per-bucket counts (DURATION_BUCKETS, then +Inf; not cumulative). */
function histogram(buckets: number[], sum: number): Sample[] {
  const samples: Sample[] = []
  let cumulative = 0
  DURATION_BUCKETS.forEach((le, i) => {
    cumulative += buckets[i] as number
    samples.push({ suffix: '_bucket', labels: { le: String(le) }, value: cumulative })
  })
  cumulative += buckets[DURATION_BUCKETS.length] as number
  samples.push({ suffix: '_bucket', labels: { le: '+Inf' }, value: cumulative })
  samples.push({ suffix: '_sum', value: sum }, { suffix: '_count', value: cumulative })
  return samples
}

export function formatMetrics(stats: MasterStats, proc: ProcessSample = processSample()): string {
  const out: string[] = []
  requestFamilies(out, stats.slots)
  workerFamilies(out, stats)
  masterFamilies(out, stats)
  processFamilies(out, proc)
  return `${out.join('\n')}\n`
}

/** What the workers counted of their requests, per slot, and the durations of all of them. */
function requestFamilies(out: string[], slots: SlotStats[]): void {
  family(
    out,
    'sdserve_requests_total',
    'counter',
    'Requests ended, by worker slot and status class (aborted: the client went before the response ended).',
    slots.flatMap((s) => STATUS_CLASSES.map((code, i) => ({ labels: { worker: String(s.id), code }, value: s.totals.responses[i] as number }))),
  )
  // Every slot's buckets have the same bounds (DURATION_BUCKETS, then +Inf): emptyTotals() makes them.
  const buckets = [...DURATION_BUCKETS.map(() => 0), 0]
  let seconds = 0
  for (const s of slots) {
    s.totals.buckets.forEach((n, i) => (buckets[i] = (buckets[i] as number) + n))
    seconds += s.totals.seconds
  }
  family(out, 'sdserve_request_duration_seconds', 'histogram', 'Request durations, every worker together.', histogram(buckets, seconds))
}

/** The workers' own figures per slot, and their exits. */
function workerFamilies(out: string[], stats: MasterStats): void {
  const perSlot = (value: (s: SlotStats) => number): Sample[] => stats.slots.map((s) => ({ labels: { worker: String(s.id) }, value: value(s) }))
  family(out, 'sdserve_requests_in_flight', 'gauge', 'Requests started and not yet ended, at the last heartbeat.', perSlot((s) => s.inflight))
  family(out, 'sdserve_connections_open', 'gauge', 'Open client connections, at the last heartbeat.', perSlot((s) => s.connections))
  family(out, 'sdserve_worker_resident_memory_bytes', 'gauge', "The slot's live workers' resident memory.", perSlot((s) => s.rss))
  family(out, 'sdserve_worker_cpu_seconds_total', 'counter', "CPU time of the slot's workers, user and system, gone ones included.", perSlot((s) => s.totals.cpuSeconds))
  family(
    out,
    'sdserve_worker_event_loop_delay_p99_seconds',
    'gauge',
    "The 99th percentile of the event-loop delay since the previous heartbeat (the worst of the slot's live workers).",
    perSlot((s) => s.loopP99Ms / 1000),
  )
  family(
    out,
    'sdserve_worker_exits_total',
    'counter',
    'Workers that exited, by reason.',
    EXIT_REASONS.map((reason) => ({ labels: { reason }, value: stats.exits[reason] })),
  )
  family(
    out,
    'sdserve_workers',
    'gauge',
    'Live workers, by state.',
    WORKER_STATES.map((state) => ({ labels: { state }, value: stats.workers.filter((w) => w.state === state).length })),
  )
  family(out, 'sdserve_workers_target', 'gauge', 'The worker count the master keeps.', [{ value: stats.target }])
  family(
    out,
    'sdserve_health',
    'gauge',
    'What the health endpoint answers: 1 for the current status, 0 for the others.',
    HEALTH_STATUSES.map((status) => ({ labels: { status }, value: stats.health === status ? 1 : 0 })),
  )
}

const HEALTH_STATUSES: readonly HealthStatus[] = ['ok', 'lame-duck', 'unhealthy']

/** What the master has done, and its listening sockets. */
function masterFamilies(out: string[], stats: MasterStats): void {
  const outcomes = (o: MasterStats['reloads']): Sample[] => [
    { labels: { result: 'ok' }, value: o.ok },
    { labels: { result: 'failed' }, value: o.failed },
  ]
  family(out, 'sdserve_reloads_total', 'counter', 'Reloads (SIGHUP), by result.', outcomes(stats.reloads))
  family(out, 'sdserve_upgrades_total', 'counter', 'Binary upgrades (SIGUSR2), by result.', outcomes(stats.upgrades))
  family(out, 'sdserve_generation', 'gauge', 'The generation of workers that serves.', [{ value: stats.generation }])
  family(out, 'sdserve_master_start_time_seconds', 'gauge', 'When the master started, in seconds since the epoch.', [{ value: stats.startedAt / 1000 }])
  family(out, 'sdserve_boot_duration_seconds', 'gauge', "How long the last generation's workers took to boot.", [{ value: stats.lastBootMs / 1000 }])
  // A socket whose accept queue cannot be read (no native addon) has no samples rather than a false zero.
  const readable = stats.sockets.filter((s): s is Required<SocketStats> => s.queued !== undefined && s.backlog !== undefined)
  family(
    out,
    'sdserve_listen_queue_length',
    'gauge',
    "Connections waiting in the listening socket's accept queue.",
    readable.map((s) => ({ labels: { socket: s.text }, value: s.queued })),
  )
  family(
    out,
    'sdserve_listen_queue_max',
    'gauge',
    "The listening socket's accept queue limit (its backlog).",
    readable.map((s) => ({ labels: { socket: s.text }, value: s.backlog })),
  )
  family(out, 'sdserve_info', 'gauge', 'The running sdserve version.', [{ labels: { version: stats.version }, value: 1 }])
}

/** The master process, under the names every Prometheus client library uses. */
function processFamilies(out: string[], proc: ProcessSample): void {
  family(out, 'process_resident_memory_bytes', 'gauge', "The master's resident memory in bytes.", [{ value: proc.rssBytes }])
  family(out, 'process_cpu_seconds_total', 'counter', "The master's CPU time, user and system, in seconds.", [{ value: proc.cpuSeconds }])
  family(out, 'process_start_time_seconds', 'gauge', 'When the master process started, in seconds since the epoch.', [{ value: proc.startTimeSeconds }])
}
