/**
 * Everything the master tells systemd (Puma's systemd plugin): it listens
 * to the master's lifecycle events and turns them into sd_notify messages —
 * READY=1, RELOADING=1 (with MONOTONIC_USEC), STOPPING=1, STATUS=, ERRNO=,
 * EXTEND_TIMEOUT_USEC=, MAINPID=, the watchdog's pings and the fd store.
 *
 * Invariants:
 * - nothing is sent while this process is not the unit's main process (a
 *   new master of a binary upgrade until it serves, an old one after the
 *   hand-over): systemd would refuse it (NotifyAccess=main);
 * - nothing but the stop's messages after STOPPING=1: no READY=1, no STATUS=;
 * - STATUS= is sent only when its text changes;
 * - a datagram that fails is logged, never fatal.
 */
import { AppLoadError } from '../errors.js'
import type { Logger } from '../logger.js'
import { oneLine, type Notifier } from '../notify.js'
import { startWatchdog, type Watchdog } from '../watchdog.js'
import type { FdStore } from './socket-set.js'
import type { MasterEvents } from './events.js'
import type { EventEmitter } from 'node:events'

/** What STATUS= shows. */
export interface StatusSnapshot {
  ready: number
  workers: number
  serving: number
  /** The generation a running reload boots, if one runs. */
  pending: number | undefined
  served: number
}

/** EXTEND_TIMEOUT_USEC carries this much over what the master itself waits, for its own work around it. */
const EXTEND_MARGIN_MS = 5000
/** How long the master waits for systemd to have read its last messages (BARRIER=1). */
const BARRIER_MS = 2000

export class SystemdReporter implements FdStore {
  /** This process is the unit's main process (see the invariants). */
  main = true
  private stopping = false
  private lastStatus = ''
  /** Appended to STATUS= until the next successful reload: why the last one (or an upgrade) failed. */
  private note = ''
  private watchdog: Watchdog | null = null

  constructor(
    private readonly notifier: Notifier,
    private readonly log: Logger,
    private readonly snapshot: () => StatusSnapshot,
    private readonly healthy: () => boolean,
  ) {}

  get enabled(): boolean {
    return this.notifier.enabled
  }

  /** The service watchdog's timeout, once it runs (a new master of a binary upgrade needs it). */
  get watchdogUsec(): bigint | undefined {
    return this.watchdog?.usec
  }

  /** Hook every event it reports on. */
  listen(master: EventEmitter<MasterEvents>): this {
    master.on('booting', ({ first, workers, timeoutMs }) => {
      this.extendTimeout(timeoutMs)
      if (first) this.status(`starting ${workers} workers`)
    })
    master.on('ready', () => this.ready())
    master.on('reloading', ({ generation }) => this.send(() => this.notifier.reloading(`reloading: starting generation ${generation}`)))
    master.on('reload', ({ ok, error }) => {
      this.note = ok ? '' : `; last reload failed: ${error}`
      this.sendReady()
    })
    master.on('status', () => this.updateStatus())
    master.on('upgrading', () => this.status(`upgrading: starting a new master; ${this.statusText()}`))
    master.on('upgrade-failed', ({ error }) => {
      this.note = `; last binary upgrade failed: ${error}`
      this.lastStatus = ''
      this.updateStatus()
    })
    master.on('lame-duck', ({ ms }) => {
      // systemd's stop timeout must cover the lame duck, then the drain ('stopping' extends it again).
      this.send(() => this.notifier.stopping(`lame duck: health checks answer 503 for ${ms / 1000} s, then draining`))
      this.stopping = true
      this.extendTimeout(ms)
    })
    master.on('stopping', ({ graceful, workers, timeoutMs }) => {
      this.watchdog?.stop()
      this.send(() => this.notifier.stopping(`stopping: ${graceful ? 'draining' : 'stopping'} ${workers} workers`))
      this.stopping = true
      if (graceful) this.extendTimeout(timeoutMs)
    })
    master.on('failed', ({ error }) => this.send(() => this.notifier.errno(error instanceof AppLoadError ? 8 : 5, oneLine(`failed: ${error.message}`).slice(0, 1000))))
    return this
  }

  /** Serving: from now on this is the main process; the watchdog runs; READY=1. */
  private ready(): void {
    this.main = true
    this.watchdog ??= startWatchdog({
      notifier: this.notifier,
      unsetEnv: true,
      healthy: this.healthy,
      onSkip: (reason) => this.log.warn(`watchdog ping skipped: ${reason}`),
    })
    this.sendReady()
  }

  private sendReady(): void {
    const text = this.statusText()
    this.send(() => this.notifier.ready(text))
    this.lastStatus = text
  }

  /**
   * A binary upgrade's hand-over: systemd must have MAINPID=<pid> before this
   * process, its main process so far, exits. Nothing is sent after it.
   */
  async handOver(pid: number): Promise<void> {
    this.send(() => this.notifier.send([['MAINPID', pid], ['STATUS', `handed over to the new master ${pid}`]]))
    await this.barrier()
    this.main = false
  }

  /** Wait until systemd has read everything sent so far (before exiting). */
  async barrier(): Promise<void> {
    if (this.notifier.enabled && this.main) await this.notifier.barrier(BARRIER_MS).catch((err: unknown) => this.log.warn(`sd_notify barrier: ${(err as Error).message}`))
  }

  add(fd: number, name: string): void {
    this.send(() => this.notifier.fdStore([fd], name))
  }

  remove(name: string): void {
    this.send(() => this.notifier.fdStoreRemove(name))
  }

  private statusText(): string {
    const s = this.snapshot()
    const pending = s.pending !== undefined ? `, reloading to generation ${s.pending}` : ''
    return oneLine(`${s.ready} of ${s.workers} workers serving (generation ${s.serving}${pending}), ${s.served} requests served${this.note}`).slice(0, 2000)
  }

  /** STATUS=: kept current, sent only when it changes; never after STOPPING=1. */
  private updateStatus(): void {
    if (this.stopping) return
    const text = this.statusText()
    if (text === this.lastStatus) return
    this.lastStatus = text
    this.status(text)
  }

  private status(text: string): void {
    this.send(() => this.notifier.status(oneLine(text)))
  }

  /** EXTEND_TIMEOUT_USEC: a start, reload or drain may take this much longer than systemd's own timeout. */
  private extendTimeout(ms: number): void {
    if (ms > 0) this.send(() => this.notifier.extendTimeout((ms + EXTEND_MARGIN_MS) * 1000))
  }

  private send(fn: () => unknown): void {
    if (!this.main) return
    try {
      fn()
    } catch (err) {
      this.log.error(`sd_notify failed: ${(err as Error).message}`)
    }
  }
}
