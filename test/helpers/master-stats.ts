/** Hand-made MasterStats for the metrics tests: every field set, any of them overridden. */
import { emptyTotals, EXIT_REASONS, type ExitReason } from '../../lib/master/ledger.js'
import type { MasterStats, SlotStats } from '../../lib/master/stats.js'

export function slotStats(id: number, over: Partial<SlotStats> = {}): SlotStats {
  return { id, totals: emptyTotals(), rss: 0, inflight: 0, connections: 0, loopP99Ms: 0, restarts: { restarts: 0, last: undefined }, ...over }
}

export function masterStats(over: Partial<MasterStats> = {}): MasterStats {
  return {
    pid: 1234,
    version: '0.1.0',
    phase: 'serving',
    startedAt: 1_700_000_000_000,
    lastBootMs: 250,
    generation: 1,
    pending: undefined,
    target: 2,
    health: 'ok',
    workers: [],
    slots: [slotStats(1), slotStats(2)],
    exits: Object.fromEntries(EXIT_REASONS.map((r) => [r, 0])) as Record<ExitReason, number>,
    reloads: { ok: 0, failed: 0 },
    upgrades: { ok: 0, failed: 0 },
    sockets: [],
    ...over,
  }
}
