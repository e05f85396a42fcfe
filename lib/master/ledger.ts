/**
 * What the workers that have exited leave behind, per slot: their request
 * totals, so that a slot's counters never go down when its worker is
 * replaced (Prometheus counters must only grow), and how many exited and
 * why.
 *
 * Invariant: a slot's total is what its exited workers reported last plus
 * what its live workers report now, so a worker is counted once, whether
 * alive or gone.
 */
import { DURATION_BUCKETS, STATUS_CLASSES, type RequestTotals } from '../http/request-counters.js'
import type { WorkerReport } from '../protocol.js'

/** Why a worker exited, as the metrics label it. */
export const EXIT_REASONS = ['crash', 'timeout', 'boot-failed', 'max-requests', 'memory', 'reload', 'scale', 'upgrade', 'stop'] as const
export type ExitReason = (typeof EXIT_REASONS)[number]

/** One slot's counters: what its workers, gone and alive, have done. */
export interface SlotTotals {
  requests: number
  /** By STATUS_CLASSES index. */
  responses: number[]
  /** Per DURATION_BUCKETS bound, then +Inf; not cumulative. */
  buckets: number[]
  seconds: number
  /** CPU seconds, user plus system. */
  cpuSeconds: number
}

export function emptyTotals(): SlotTotals {
  return { requests: 0, responses: STATUS_CLASSES.map(() => 0), buckets: [...DURATION_BUCKETS.map(() => 0), 0], seconds: 0, cpuSeconds: 0 }
}

/** Add a worker's last report to totals (in place). */
export function addReport(into: SlotTotals, report: WorkerReport): SlotTotals {
  into.requests += report.requests
  addTotals(into, report.totals)
  into.cpuSeconds += (report.cpuUser + report.cpuSystem) / 1e6
  return into
}

function addTotals(into: SlotTotals, t: Pick<RequestTotals, 'responses' | 'buckets' | 'seconds'>): void {
  // Every totals has the same classes and buckets (emptyTotals, RequestCounters).
  t.responses.forEach((n, i) => (into.responses[i] = (into.responses[i] as number) + n))
  t.buckets.forEach((n, i) => (into.buckets[i] = (into.buckets[i] as number) + n))
  into.seconds += t.seconds
}

/** One slot's replacements: how many of its workers exited, other than by a stop, and the last reason. */
export interface SlotRestarts {
  restarts: number
  last: ExitReason | undefined
}

export class Ledger {
  private readonly slots = new Map<number, SlotTotals>()
  private readonly restartsBySlot = new Map<number, SlotRestarts>()
  readonly exits = new Map<ExitReason, number>(EXIT_REASONS.map((r) => [r, 0]))

  /** A worker of slot id exited for reason, with its last report (none if it never sent one). */
  record(id: number, reason: ExitReason, report: WorkerReport | undefined): void {
    this.exits.set(reason, (this.exits.get(reason) as number) + 1) // every reason starts at 0
    if (report !== undefined) addReport(this.base(id), report)
    if (reason === 'stop') return
    const r = this.restarts(id)
    this.restartsBySlot.set(id, { restarts: r.restarts + 1, last: reason })
  }

  /** What the exited workers of slot id did (a fresh object the caller may add to). */
  retired(id: number): SlotTotals {
    const base = this.slots.get(id)
    const copy = emptyTotals()
    if (base === undefined) return copy
    copy.requests = base.requests
    addTotals(copy, base)
    copy.cpuSeconds = base.cpuSeconds
    return copy
  }

  restarts(id: number): SlotRestarts {
    return this.restartsBySlot.get(id) ?? { restarts: 0, last: undefined }
  }

  /** Every slot that ever had a worker that exited. */
  get retiredSlots(): number[] {
    return [...this.slots.keys()]
  }

  private base(id: number): SlotTotals {
    let totals = this.slots.get(id)
    if (totals === undefined) this.slots.set(id, (totals = emptyTotals()))
    return totals
  }
}
