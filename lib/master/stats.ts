/**
 * The master's state as `sdserve ctl`, the metrics and library users see
 * it: one snapshot, built from the parts on demand (nothing is kept up to
 * date for it), plus a record of what the master has done (reloads,
 * upgrades, boots), kept from its events.
 */
import type { EventEmitter } from 'node:events'
import { version } from '../version.js'
import type { MasterEvents } from './events.js'
import type { Generations, WorkerStats } from './generations.js'
import { addReport, type ExitReason, type SlotRestarts, type SlotTotals } from './ledger.js'
import type { HealthStatus } from './health.js'
import type { Phase } from './phase.js'

/** How many of an operation went well and how many failed; the last failure's reason. */
export interface Outcomes {
  ok: number
  failed: number
  lastError?: string
}

/** One slot: its counters since the master started (every worker it had), and its live workers now. */
export interface SlotStats {
  id: number
  totals: SlotTotals
  /** Summed over the slot's live workers (two while one replaces the other). */
  rss: number
  inflight: number
  connections: number
  /** The worst of them. */
  loopP99Ms: number
  restarts: SlotRestarts
}

/** A listening socket and its accept queue (undefined where it cannot be read). */
export interface SocketStats {
  text: string
  queued?: number
  backlog?: number
}

export interface MasterStats {
  pid: number
  version: string
  phase: Phase
  /** When the master started (epoch ms), and how long the last generation took to boot. */
  startedAt: number
  lastBootMs: number
  /** The serving generation; the one booting during a reload. */
  generation: number
  pending: number | undefined
  /** The worker count the master keeps (--workers, TTIN/TTOU, `ctl scale`). */
  target: number
  /** What the health endpoint answers (lib/master/health.ts). */
  health: HealthStatus
  workers: (WorkerStats & { restarts: number; lastExit: ExitReason | undefined })[]
  slots: SlotStats[]
  exits: Record<ExitReason, number>
  reloads: Outcomes
  upgrades: Outcomes
  sockets: SocketStats[]
}

/** What the master has done, from its events. */
export class OperationsRecord {
  readonly startedAt = Date.now()
  readonly reloads: Outcomes = { ok: 0, failed: 0 }
  readonly upgrades: Outcomes = { ok: 0, failed: 0 }
  lastBootMs = 0
  private bootStart = 0

  constructor(private readonly now: () => number) {}

  listen(master: EventEmitter<MasterEvents>): this {
    master.on('booting', () => (this.bootStart = this.now()))
    master.on('ready', () => (this.lastBootMs = this.now() - this.bootStart))
    master.on('reload', (r) => {
      if (!r.ok) return outcome(this.reloads, r.error)
      this.reloads.ok++
      this.lastBootMs = this.now() - this.bootStart
    })
    master.on('upgrade-failed', (u) => outcome(this.upgrades, u.error))
    master.on('upgraded', () => this.upgrades.ok++)
    return this
  }
}

function outcome(o: Outcomes, error: string | undefined): void {
  o.failed++
  o.lastError = error
}

/** What masterStats reads. */
export interface StatsSources {
  phase: Phase
  target: number
  pending: number | undefined
  health: HealthStatus
  workers: Generations
  record: OperationsRecord
  sockets: SocketStats[]
}

export function masterStats(s: StatsSources): MasterStats {
  const { workers, record } = s
  const ledger = workers.ledger
  const live = workers.stats()
  const ids = new Set([...ledger.retiredSlots, ...live.map((w) => w.id)])
  const slots = [...ids].sort((a, b) => a - b).map((id) => slotStats(workers, id))
  return {
    pid: process.pid,
    version: version(),
    phase: s.phase,
    startedAt: record.startedAt,
    lastBootMs: record.lastBootMs,
    generation: workers.serving,
    pending: s.pending,
    target: s.target,
    health: s.health,
    workers: live.map((w) => {
      const r = ledger.restarts(w.id)
      return { ...w, restarts: r.restarts, lastExit: r.last }
    }),
    slots,
    exits: Object.fromEntries(ledger.exits) as Record<ExitReason, number>,
    reloads: { ...record.reloads },
    upgrades: { ...record.upgrades },
    sockets: s.sockets,
  }
}

function slotStats(workers: Generations, id: number): SlotStats {
  const slot: SlotStats = { id, totals: workers.ledger.retired(id), rss: 0, inflight: 0, connections: 0, loopP99Ms: 0, restarts: workers.ledger.restarts(id) }
  for (const w of workers.reports()) {
    if (w.id !== id) continue
    slot.rss += w.rss
    if (w.report === undefined) continue
    addReport(slot.totals, w.report)
    slot.inflight += w.report.totals.inflight
    slot.connections += w.report.connections
    slot.loopP99Ms = Math.max(slot.loopP99Ms, w.report.loopP99)
  }
  return slot
}
