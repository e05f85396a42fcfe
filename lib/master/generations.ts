/**
 * The workers, by generation (gunicorn's arbiter loop, Puma's cluster): it
 * starts a generation and waits for it to serve, replaces a worker that
 * crashed (with backoff), recycles one that asked (max-requests), scales
 * the serving generation to a count (TTIN/TTOU), and kills one whose event
 * loop stopped beating.
 *
 * Invariants:
 * - `serving` is the newest generation that booted completely; only its
 *   workers are replaced, recycled or scaled;
 * - a slot has at most one live worker in the serving generation, plus a
 *   retiring one while its replacement boots;
 * - a generation that fails to boot is stopped whole, and costs nothing to
 *   the generation that serves;
 * - nothing is spawned that the master's phase does not allow (`allows`).
 */
import type { Logger } from '../logger.js'
import { Ledger, type ExitReason } from './ledger.js'
import type { Operation } from './phase.js'
import type { Runtime, Timer } from './runtime.js'
import { BACKOFF_MAX_MS, BACKOFF_MIN_MS, HANDOVER_MS, HURRY_MS, MAX_DRAINING_GENERATIONS, STABLE_MS, type Timings } from './timings.js'
import type { WorkerReport } from '../protocol.js'
import type { WorkerHandle, WorkerHooks, WorkerState } from './worker-handle.js'

/** A worker that exited: its slot, pid and generation, and how it ended. */
export interface WorkerExit {
  id: number
  pid: number
  generation: number
  code: number | null
  signal: string | null
  reason: ExitReason
}

export interface GenerationsOptions {
  /** Start the worker of slot id in a generation. */
  spawn(id: number, generation: number, hooks: WorkerHooks): WorkerHandle
  timings(): Timings
  /** How many slots the serving generation has (--workers, changed by TTIN/TTOU and reloads). */
  workers(): number
  /** --max-worker-memory in bytes; 0: no limit. */
  maxMemory(): number
  /** How many workers of a generation boot at once; default: all. */
  bootConcurrency?(): number
  /** Per-slot sockets exist: the leaving slots of a TTOU are handed over to slot 1. */
  hasSlots(): boolean
  /** May this happen now? (the master's phase table) */
  allows(operation: Operation): boolean
  /** Something STATUS= shows has changed. */
  changed(): void
  exited(exit: WorkerExit): void
  log: Logger
  rt: Runtime
}

export interface WorkerStats {
  id: number
  pid: number
  generation: number
  state: WorkerState
  /** Milliseconds since it was spawned, and since its last heartbeat. */
  uptimeMs: number
  lastBeatMs: number
  requests: number
  /** Requests in flight and open connections, at its last heartbeat. */
  inflight: number
  connections: number
  /** Resident memory in bytes (0 until read), CPU in percent of one core, event-loop delay in ms. */
  rss: number
  cpuPercent: number
  loopP99Ms: number
  loopMaxMs: number
}

export class Generations {
  /** The newest generation started. */
  generation = 0
  /** The generation that serves. */
  serving = 0
  /** Requests served by every worker so far. */
  served = 0
  private readonly workers = new Map<number, WorkerHandle>()
  private readonly crashes = new Map<number, number>()
  private readonly respawns = new Map<number, Timer>()
  /** stopAll() was called: no generation spawns any more workers. */
  private closing = false
  private readonly hooks: WorkerHooks
  /** What exited workers did, per slot, and why they exited. */
  readonly ledger = new Ledger()

  constructor(private readonly o: GenerationsOptions) {
    this.hooks = {
      listening: () => o.changed(),
      served: (_, requests) => (this.served += requests),
      retire: (w) => void this.recycle(w, `served ${w.requests} requests`, 'max-requests'),
      exit: (w, code, signal) => this.onExit(w, code, signal),
    }
  }

  private spawn(id: number, generation: number): WorkerHandle {
    const w = this.o.spawn(id, generation, this.hooks)
    if (w.pid !== 0) this.workers.set(w.pid, w)
    return w
  }

  /**
   * Spawn a whole generation and wait until every worker listens; on failure stop it and throw.
   * At most bootConcurrency() boot at once, the next as one listens: a hundred Node processes
   * starting together on a few cores thrash (each start takes 50 MB and tens of ms of CPU), and
   * take several times longer in all than in turns.
   */
  async start(count: number): Promise<number> {
    const generation = ++this.generation
    const started: WorkerHandle[] = []
    const limit = Math.max(1, this.o.bootConcurrency?.() ?? count)
    try {
      await new Promise<void>((resolve, reject: (err: Error) => void) => {
        let booted = 0
        let failed = false
        const next = (): void => {
          // A stop (stopAll) or a failure ends the generation: nothing more is spawned for it.
          if (this.closing && started.length < count) reject(new Error('stopped while the generation booted'))
          while (!failed && !this.closing && started.length < count && started.length - booted < limit) {
            const w = this.spawn(started.length + 1, generation)
            started.push(w)
            w.booted.then(
              () => (++booted === count ? resolve() : next()),
              (err: unknown) => {
                failed = true
                reject(err as Error) // booted rejects with Errors only
              },
            )
          }
        }
        next()
      })
    } catch (err) {
      // Stop, not SIGKILL: the worker that failed is exiting already, and the others are told to exit now.
      for (const w of started) {
        w.leaving ??= 'boot-failed'
        w.stop(false, 0)
      }
      await Promise.all(started.map((w) => w.exited))
      throw err
    }
    return generation
  }

  /** The new generation serves: the others drain, handing their clients over. Returns how many drain. */
  promote(generation: number): number {
    this.serving = generation
    const old = this.all().filter((w) => w.generation !== generation)
    for (const w of old) this.drain(w, 'reload')
    this.capDraining()
    return old.length
  }

  private drain(w: WorkerHandle, why: ExitReason): void {
    const { gracefulMs, drainWindowMs } = this.o.timings()
    w.leaving ??= why
    w.stop(true, gracefulMs, HANDOVER_MS, drainWindowMs)
  }

  /**
   * Generations may drain side by side (WebSockets keep the old workers
   * alive, and must not hold up the next reload), but at most
   * MAX_DRAINING_GENERATIONS: beyond that the oldest are hurried.
   */
  private capDraining(): void {
    const draining = [...new Set(this.all().filter((w) => w.state === 'stopping').map((w) => w.generation))].sort((a, b) => a - b)
    const hurried = draining.slice(0, Math.max(0, draining.length - MAX_DRAINING_GENERATIONS))
    for (const w of this.all()) if (w.state === 'stopping' && hurried.includes(w.generation)) w.hurry(HURRY_MS)
  }

  private all(): WorkerHandle[] {
    return [...this.workers.values()]
  }

  /** Workers of a generation that are not on their way out. */
  live(generation = this.serving): WorkerHandle[] {
    return this.all().filter((w) => w.generation === generation && w.live)
  }

  /** Workers of the serving generation that listen. */
  get ready(): number {
    return this.all().filter((w) => w.generation === this.serving && w.state === 'ready').length
  }

  private onExit(w: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void {
    this.workers.delete(w.pid)
    const reason = exitReason(w)
    this.ledger.record(w.id, reason, w.report)
    this.o.exited({ id: w.id, pid: w.pid, generation: w.generation, code, signal, reason })
    if (w.state === 'stopping' || w.generation !== this.serving || !this.o.allows('respawn')) return
    // An unexpected exit of a serving worker: replace it, with backoff when the slot keeps crashing.
    const stable = w.readyAt > 0 && this.o.rt.now() - w.readyAt >= STABLE_MS
    const crashes = stable ? 0 : (this.crashes.get(w.id) ?? 0)
    this.crashes.set(w.id, crashes + 1)
    const delay = crashes === 0 ? 0 : Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (crashes - 1))
    if (delay > 0) this.o.log.warn(`worker ${w.id} keeps crashing: replacing it in ${delay} ms`)
    this.respawn(w.id, delay)
    this.o.changed()
  }

  private respawn(id: number, delay: number): void {
    if (this.respawns.has(id)) return // a crash and a reconcile asking for the same slot at once
    const timer = this.o.rt.after(
      delay,
      () => {
        this.respawns.delete(id)
        // The slot may have gone (TTOU) or been filled (a reload), or a stop begun, while we waited.
        if (!this.o.allows('respawn') || id > this.o.workers() || this.live().some((w) => w.id === id)) return
        this.spawn(id, this.serving).booted.then(
          () => this.o.changed(),
          (err: unknown) => this.o.log.error(`replacement for worker ${id} failed: ${(err as Error).message}`),
        )
      },
      true,
    )
    this.respawns.set(id, timer)
  }

  /** max-requests, max-worker-memory: start a replacement in the same slot, then drain the old worker. */
  private async recycle(w: WorkerHandle, why: string, reason: ExitReason): Promise<void> {
    if (w.state !== 'ready' || !this.o.allows('recycle')) return // asked once; a stop may have begun
    w.state = 'retiring'
    this.o.log.info(`worker ${w.id} (pid ${w.pid}) ${why}: recycling it`)
    try {
      await this.spawn(w.id, w.generation).booted
      this.drain(w, reason)
    } catch (err) {
      if (w.state === 'retiring') w.state = 'ready'
      this.o.log.error(`worker ${w.id}: replacement failed (${(err as Error).message}); the old worker keeps serving`)
    }
  }

  /** Bring the serving generation to its slot count: spawn missing slots, drain extra ones. */
  reconcile(): void {
    const count = this.o.workers()
    const live = this.live()
    const extra = live.filter((w) => w.id > count)
    if (extra.length > 0) {
      if (this.o.hasSlots()) void this.handOver(extra)
      else for (const w of extra) this.drain(w, 'scale')
    }
    for (let id = 1; id <= count; id++) if (!live.some((w) => w.id === id)) this.respawn(id, 0)
    this.o.changed()
  }

  /**
   * reuse-port TTOU: the leaving workers' slot sockets stay open, so first a
   * new worker 1 boots that serves them too; only then do the leaving
   * workers (and the old worker 1) drain. Nothing queued on a slot is lost.
   */
  private async handOver(leaving: WorkerHandle[]): Promise<void> {
    for (const w of leaving) w.state = 'retiring'
    const previous = this.live().find((w) => w.id === 1)
    try {
      await this.spawn(1, this.serving).booted
      if (previous !== undefined) this.drain(previous, 'scale')
      for (const w of leaving) this.drain(w, 'scale')
    } catch (err) {
      for (const w of leaving) if (w.state === 'retiring') w.state = 'ready'
      this.o.log.error(`TTOU: worker 1 could not take over the leaving slots (${(err as Error).message}); they keep serving`)
    }
  }

  /** Once a second or so: heartbeats (--timeout) and memory (--max-worker-memory). */
  check(): void {
    this.checkHeartbeats()
    this.checkMemory()
  }

  /**
   * With --max-worker-memory, every worker's RSS is read; one over it is recycled: its
   * replacement boots, then it drains. Without, RSS is read only when asked for (stats):
   * a read of /proc per worker per second was half of an idle master's CPU at 128 workers.
   */
  private checkMemory(): void {
    const limit = this.o.maxMemory()
    if (limit === 0) return
    for (const w of this.workers.values()) {
      if (w.state === 'ready' && this.readRss(w) > limit)
        void this.recycle(w, `uses ${mib(w.rss)}, over --max-worker-memory ${mib(limit)}`, 'memory')
    }
  }

  /** A worker's RSS read now (the last one read, when it is gone). */
  private readRss(w: WorkerHandle): number {
    w.rss = this.o.rt.rss(w.pid) ?? w.rss
    return w.rss
  }

  /** Kill a worker whose event loop has been blocked past --timeout. */
  private checkHeartbeats(): void {
    const { timeoutMs } = this.o.timings()
    if (timeoutMs === 0) return
    const now = this.o.rt.now()
    for (const w of this.workers.values()) {
      if (w.state !== 'ready' || now - w.lastBeat <= timeoutMs) continue
      const doing =
        w.inflight.length > 0
          ? `in flight at its last heartbeat: ${w.inflight.map((i) => `${i.method} ${i.url} (running ${i.ms} ms)`).join(', ')}`
          : 'no request was in flight at its last heartbeat'
      this.o.log.error(`worker ${w.id} (pid ${w.pid}) timed out: no heartbeat for ${now - w.lastBeat} ms (event loop blocked?); killing it; ${doing}`)
      w.kill('SIGKILL', 'timeout') // still 'ready' until it exits: its exit replaces it
    }
  }

  /** For the watchdog: at least one serving worker has a fresh heartbeat. */
  healthy(): boolean {
    return this.all().some((w) => this.beating(w))
  }

  /** For the health endpoint: workers of the serving generation that are ready and beat. */
  get beatingServing(): number {
    return this.all().filter((w) => w.generation === this.serving && this.beating(w)).length
  }

  private beating(w: WorkerHandle): boolean {
    const { timeoutMs, heartbeatMs } = this.o.timings()
    const limit = timeoutMs > 0 ? timeoutMs : 3 * heartbeatMs
    return (w.state === 'ready' || w.state === 'retiring') && this.o.rt.now() - w.lastBeat <= limit
  }

  /** Stop every worker (no respawn after this); handover: a new master's workers take their clients. */
  async stopAll(graceful: boolean, handover: boolean): Promise<number> {
    this.closing = true
    for (const t of this.respawns.values()) t.clear()
    this.respawns.clear()
    const all = this.all()
    const { gracefulMs, drainWindowMs } = this.o.timings()
    for (const w of all) {
      w.leaving ??= handover ? 'upgrade' : 'stop'
      w.stop(graceful, gracefulMs, handover ? HANDOVER_MS : 0, drainWindowMs)
    }
    await Promise.all(all.map((w) => w.exited))
    return all.length
  }

  /** How many workers a stop now would stop. */
  get size(): number {
    return this.workers.size
  }

  forEach(fn: (w: WorkerHandle) => void): void {
    for (const w of this.workers.values()) fn(w)
  }

  /** Live workers only: the ledger keeps the ones gone. */
  stats(): WorkerStats[] {
    const now = this.o.rt.now()
    return this.all().map((w) => ({
      id: w.id,
      pid: w.pid,
      generation: w.generation,
      state: w.state,
      uptimeMs: now - w.spawnedAt,
      lastBeatMs: now - w.lastBeat,
      requests: w.requests,
      inflight: w.report?.totals.inflight ?? 0,
      connections: w.report?.connections ?? 0,
      rss: this.readRss(w),
      cpuPercent: w.cpuPercent,
      loopP99Ms: w.report?.loopP99 ?? 0,
      loopMaxMs: w.report?.loopMax ?? 0,
    }))
  }

  /** The live workers' last reports, for the metrics. */
  reports(): { id: number; rss: number; report: WorkerReport | undefined }[] {
    return this.all().map((w) => ({ id: w.id, rss: this.readRss(w), report: w.report }))
  }
}

/** Why a worker exited: the master's reason for telling it to go, else a kill by heartbeat, else a crash. */
function exitReason(w: WorkerHandle): ExitReason {
  if (w.killReason === 'timeout') return 'timeout'
  if (w.readyAt === 0 && w.leaving === undefined) return 'boot-failed'
  return w.leaving ?? 'crash'
}

/** Bytes as the log shows them: `412 MiB`. */
function mib(bytes: number): string {
  return `${Math.round(bytes / 1048576)} MiB`
}
