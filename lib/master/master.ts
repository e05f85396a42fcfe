/**
 * The master (gunicorn's arbiter): it puts the parts together and moves
 * through its phases. The parts: a SocketSet (every listening socket),
 * Generations (the workers), a SystemdReporter (everything systemd hears)
 * and a BinaryUpgrade; phase.ts says what each phase allows.
 *
 * Invariants:
 * - the phase is one value, changed only by enter(), and never leaves stopping;
 * - at most one generation is not yet ready (a reload in progress);
 * - READY=1 is sent only once every worker of the serving generation
 *   listens, and a reload is reported finished only after the new
 *   generation serves and the old one has been told to drain;
 * - a failing app, reload or worker costs that worker or that reload, never
 *   the generation that serves;
 * - a stop that comes at any moment ends with every worker gone, every
 *   socket we made closed, "stopped" last in the log and 'stopped' emitted.
 */
import { EventEmitter } from 'node:events'
import { parseAppSpec } from '../app-spec.js'
import { compileCacheState, describeCompileCache } from '../compile-cache.js'
import { DEFAULTS, workersText, type Config } from '../config.js'
import { WorkerBootError } from '../errors.js'
import { canChangeIdentity, workerIdentity } from '../identity.js'
import { Logger } from '../logger.js'
import { Notifier, oneLine } from '../notify.js'
import { removePidFile, writePidFile } from '../pidfile.js'
import { CMD } from '../protocol.js'
import { promote, reportServing, upgradeOrigin } from '../upgrade.js'
import { version } from '../version.js'
import { BinaryUpgrade } from './binary-upgrade.js'
import { BootPriority } from './boot-priority.js'
import type { MasterEvents } from './events.js'
import { Generations } from './generations.js'
import { ask, rule, type Operation, type Phase, type Rule } from './phase.js'
import { applyProcessSettings, SignalHandlers } from './process-setup.js'
import { sleep, SYSTEM, type Runtime, type Timer } from './runtime.js'
import { ReloadQueue } from './reload-queue.js'
import { SocketSet } from './socket-set.js'
import { Endpoints } from './endpoints.js'
import { acceptQueues } from './accept-queue.js'
import { masterStats, OperationsRecord, type MasterStats } from './stats.js'
import { SystemdReporter, type StatusSnapshot } from './systemd-reporter.js'
import { timingsOf, type Timings } from './timings.js'
import { healthOf, type HealthStatus } from './health.js'
import { spawnWorker } from './spawn-worker.js'

/** Workers booting at once: twice the cores the process may use (the default --workers), at least 2. */
const BOOT_CONCURRENCY = Math.max(2, 2 * DEFAULTS.workers)

export interface MasterOptions {
  /** Re-reads the configuration on reload (SIGHUP); default: keep the current one. */
  reloadConfig?: () => Promise<Config>
  /** Install signal handlers (default true). The library API may turn them off. */
  signals?: boolean
  notifier?: Notifier
  logger?: Logger
  /** Processes, clock and timers (tests pass a fake); default: the system's. */
  runtime?: Runtime
}

export class Master extends EventEmitter<MasterEvents> {
  config: Config
  readonly log: Logger
  private phase: Phase = 'starting'
  private timings: Timings
  private readonly rt: Runtime
  private readonly reloadConfigFn: (() => Promise<Config>) | undefined
  private readonly sockets: SocketSet
  private readonly workers: Generations
  private readonly reporter: SystemdReporter
  private readonly upgrader: BinaryUpgrade
  private readonly priority: BootPriority
  private readonly record: OperationsRecord
  private readonly signals: SignalHandlers | undefined
  private identity: { uid?: number; gid?: number } = {}
  private pidFile: string | undefined
  private monitor: Timer | undefined
  /** The control socket and the metrics server. */
  private endpoints: Endpoints | undefined
  /** The sockets being opened by start(): a stop waits for them, to close them. */
  private opening: Promise<void> | undefined
  private readonly reloads = new ReloadQueue()
  private upgrading: Promise<boolean> | undefined
  private stopping: Promise<number> | undefined
  /** A binary upgrade handed over to a new master: the upgrade itself stops this one. */
  private handedOver = false
  /** Lame duck (`ctl drain`, or the start of a stop with --lame-duck): health checks answer 503. */
  private lameDuck = false
  private health: HealthStatus = 'unhealthy'
  /** Ends a stop's lame duck at once (a fast stop came). */
  private cutLameDuck: (() => void) | undefined

  constructor(config: Config, options: MasterOptions = {}) {
    super()
    this.config = config
    this.timings = timingsOf(config)
    this.rt = options.runtime ?? SYSTEM
    this.reloadConfigFn = options.reloadConfig
    this.log = options.logger ?? new Logger()
    this.reporter = new SystemdReporter(options.notifier ?? new Notifier(), this.log, () => this.snapshot(), () => this.workers.healthy()).listen(this)
    this.sockets = new SocketSet(this.log, this.reporter)
    this.upgrader = new BinaryUpgrade(this.log, this.rt)
    this.priority = new BootPriority(this.log, this.rt.priority)
    this.record = new OperationsRecord(() => this.rt.now()).listen(this)
    this.workers = new Generations({
      spawn: (id, generation, hooks) => {
        const { config, timings, identity, log, rt } = this
        const sockets = this.sockets.forSlot(id, config.workers, config.backlog)
        const worker = spawnWorker({ id, generation, sockets, config, timings, identity, health: this.health, hooks, log, rt })
        // The first generation boots at full priority: no one serves yet.
        this.priority.booting(worker.pid, this.phase !== 'starting', config.bootNice)
        const booted = (): void => this.priority.booted(worker.pid)
        worker.booted.then(booted, booted)
        return worker
      },
      timings: () => this.timings,
      workers: () => this.config.workers,
      maxMemory: () => this.config.maxWorkerMemory,
      bootConcurrency: () => BOOT_CONCURRENCY,
      hasSlots: () => this.sockets.hasSlots,
      allows: (operation) => rule(this.phase, operation) === 'run',
      changed: () => this.emit('status'),
      exited: (exit) => this.emit('worker-exit', exit),
      log: this.log,
      rt: this.rt,
    })
    if (options.signals ?? true) this.signals = new SignalHandlers(this)
    this.on('status', () => this.updateHealth())
  }

  /** Tell the workers when what the health endpoint should answer changes (healthOf in health.ts). */
  private updateHealth(): void {
    const serving = this.phase !== 'starting' && this.phase !== 'stopping'
    const status = healthOf({ serving, lameDuck: this.lameDuck, beating: this.workers.beatingServing, target: this.config.workers })
    if (status === this.health) return
    this.health = status
    this.log.info(`health: ${status}`)
    this.workers.forEach((w) => w.send({ cmd: CMD, act: 'health', status }))
    this.emit('health', { status })
  }

  /** `sdserve ctl drain` / `resume`: lame duck on or off; everything is still served. */
  setLameDuck(on: boolean): void {
    this.lameDuck = on
    this.updateHealth()
  }

  private enter(phase: Phase): void {
    if (this.phase === phase || this.phase === 'stopping') return
    const previous = this.phase
    this.phase = phase
    this.emit('phase', { phase, previous })
  }

  /** A stop has begun: whatever runs goes no further. */
  private get halted(): boolean {
    return this.phase === 'stopping'
  }

  /** The phase's rule for an operation; a refusal is logged. */
  private ask(operation: Operation, what: string): Rule {
    const r = ask(this.phase, operation, (why) => this.log.warn(`${what} refused: ${why}`))
    if (r === 'defer') this.log.info(`${what} deferred: the master is ${this.phase}`)
    return r
  }

  /**
   * Open the sockets, start the first generation, READY=1 once every worker
   * listens. Resolves when serving, or once a stop that came meanwhile has
   * finished (a `systemctl stop` while starting is a clean stop). Rejects,
   * after cleaning up, when the start fails: AppLoadError (exit 4),
   * WorkerBootError (exit 3), a system error (exit 1).
   */
  async start(): Promise<void> {
    const config = this.config
    parseAppSpec(config.app) // a malformed APP is a config error (exit 2), before anything is bound
    applyProcessSettings(config)
    this.identity = workerIdentity(config)
    /* c8 ignore next 2 -- the tests run as root, and a master run as another user cannot record coverage */
    if ((this.identity.uid !== undefined || this.identity.gid !== undefined) && !canChangeIdentity())
      throw new WorkerBootError('--user and --group need the master to run as root')
    const origin = upgradeOrigin()
    if (origin !== undefined) this.reporter.main = false // until the old master hands over
    if (config.pid !== undefined) writePidFile((this.pidFile = config.pid))
    // From here on a stop signal is ours (everything above is synchronous, so none came in between).
    this.signals?.install()
    try {
      this.opening = this.sockets.open(config, origin?.owned).then(async () => {
        this.endpoints = await Endpoints.open(config, this, this.log, origin !== undefined)
      })
      await this.opening
      if (!this.halted) await this.serveFirst(origin?.from)
    } catch (err) {
      // A stop during the start fails the booting generation too: the stop finishes the job.
      if (this.stopping === undefined) {
        this.log.error(`startup failed: ${(err as Error).message}`)
        await this.shutdown(false)
        this.emit('failed', { error: err as Error })
        throw err
      }
    }
    await this.stopping
  }

  private async serveFirst(upgradedFrom: number | undefined): Promise<void> {
    this.log.info(`sdserve ${version()} master ${process.pid}: listening on ${this.sockets.text}; ${workersText(this.config.workers)}`)
    this.log.debug(describeCompileCache(compileCacheState()))
    const generation = await this.bootGeneration(true)
    if (upgradedFrom !== undefined && !this.halted) {
      this.log.info(`binary upgrade: serving; telling the old master (pid ${upgradedFrom})`)
      await reportServing()
    }
    if (this.halted) return
    this.workers.promote(generation)
    this.monitor = this.rt.every(Math.min(1000, this.timings.heartbeatMs), () => {
      this.workers.check()
      this.emit('status')
    })
    this.enter('serving')
    this.emit('ready', { generation, workers: this.config.workers })
    this.workers.reconcile() // a TTIN or TTOU during the start, or a worker lost meanwhile
    this.reloads.settle(() => this.reload()) // a HUP during the start
  }

  /** Start a generation of config.workers and make it the serving one once every worker listens. */
  private async bootGeneration(first: boolean): Promise<number> {
    const workers = this.config.workers
    this.emit('booting', { generation: this.workers.generation + 1, workers, timeoutMs: this.timings.bootMs, first })
    return this.workers.start(workers)
  }

  /**
   * Reload (SIGHUP): RELOADING=1, re-read the config, start a new generation
   * that loads the app afresh, wait until it serves, drain the old one,
   * READY=1. A generation that fails to boot is stopped and the old one keeps
   * serving; STATUS= and the log say why. Resolves true on success.
   */
  reload(): Promise<boolean> {
    const r = this.ask('reload', 'reload')
    if (r === 'queue') return this.reloads.queue()
    if (r === 'defer') return this.reloads.defer()
    if (r !== 'run') return Promise.resolve(false)
    this.enter('reloading')
    return this.reloads.run(
      () => this.reloadOnce(),
      () => !this.halted,
      () => {
        this.enter('serving')
        if (!this.halted) this.workers.reconcile()
      },
    )
  }

  private async reloadOnce(): Promise<boolean> {
    this.log.info('reloading')
    this.emit('reloading', { generation: this.workers.generation + 1 })
    const previous = this.config
    try {
      if (this.reloadConfigFn !== undefined) this.adopt(await this.reloadConfigFn())
      if (this.halted) return this.abandonReload(previous)
      const generation = await this.bootGeneration(false)
      // A stop while the new generation booted: the stop drains every worker, and systemd hears STOPPING=1, not READY=1.
      if (this.halted) return this.abandonReload(previous)
      const old = this.workers.promote(generation)
      this.log.info(`reloaded: generation ${generation} serving, ${old} old workers draining`)
      this.emit('reload', { ok: true, generation })
      return true
    } catch (err) {
      if (this.halted) return this.abandonReload(previous)
      this.useConfig(previous)
      const reason = oneLine((err as Error).message)
      this.log.error(`reload failed, generation ${this.workers.serving} keeps serving: ${reason}`)
      this.emit('reload', { ok: false, generation: this.workers.serving, error: reason })
      return false
    }
  }

  private abandonReload(previous: Config): false {
    this.useConfig(previous)
    this.log.info('reload abandoned: stopping')
    return false
  }

  /** A configuration re-read on reload; what the master itself binds stays until a restart. */
  private adopt(next: Config): void {
    const previous = this.config
    const fixed = { bind: previous.bind, balance: previous.balance, controlSocket: previous.controlSocket, metricsBind: previous.metricsBind }
    const changed = Object.entries(fixed).filter(([k, v]) => JSON.stringify(next[k as keyof typeof fixed]) !== JSON.stringify(v))
    if (changed.length > 0) this.log.warn(`changes to ${changed.map(([k]) => k).join(', ')} need a restart; they stay as they are`)
    this.useConfig({ ...next, ...fixed })
  }

  private useConfig(config: Config): void {
    this.config = config
    this.timings = timingsOf(config)
    this.identity = workerIdentity(config)
  }

  /** TTIN / TTOU: one worker more or fewer (never fewer than one). */
  scale(delta: number): void {
    if (this.config.workers + delta < 1) return this.log.warn('TTOU: already down to one worker')
    this.scaleTo(this.config.workers + delta)
  }

  /** `sdserve ctl scale N`: N workers until a reload re-reads the configured count (as TTIN/TTOU). False when refused. */
  scaleTo(workers: number): boolean {
    const r = this.ask('scale', 'scaling')
    if (r !== 'run' && r !== 'defer') return false
    if (workers === this.config.workers) return true
    this.config = { ...this.config, workers }
    this.log.info(`scaling to ${workers} workers`)
    if (r === 'run') this.workers.reconcile()
    return true
  }

  /**
   * Binary upgrade (SIGUSR2): a new master with the same command line on our
   * sockets; once it serves, systemd hears MAINPID= and this one drains and
   * exits. On failure it is stopped and this one serves on (STATUS= says why).
   */
  upgrade(): Promise<boolean> {
    if (this.ask('upgrade', 'binary upgrade') !== 'run') return Promise.resolve(false)
    this.enter('upgrading')
    this.upgrading = this.upgradeOnce().finally(() => {
      this.upgrading = undefined
      this.enter('serving')
    })
    return this.upgrading
  }

  private async upgradeOnce(): Promise<boolean> {
    this.log.info('binary upgrade: starting a new master')
    this.emit('upgrading')
    const result = await this.upgrader.run({
      pidFile: this.pidFile,
      sockets: () => this.sockets.handed(),
      bootMs: this.timings.bootMs,
      gracefulMs: this.timings.gracefulMs,
      watchdogUsec: this.reporter.watchdogUsec,
      halted: () => this.halted,
      failed: (error) => this.emit('upgrade-failed', { error }),
    })
    if (!result.ok) return false
    this.log.info(`binary upgrade: new master ${result.pid} serves; handing over and stopping`)
    await this.reporter.handOver(result.pid)
    this.handedOver = true
    this.pidFile = result.pidFile
    promote(result.successor)
    this.emit('upgraded', { pid: result.pid })
    await this.stop(true)
    return true
  }

  /** USR1: reopen the log files (after logrotate moved them), the workers' too. */
  reopenLogs(): void {
    this.log.reopen()
    this.workers.forEach((w) => w.send({ cmd: CMD, act: 'reopen-logs' }))
  }

  /**
   * Stop: graceful (TERM) drains every worker up to --graceful-timeout, fast
   * (INT, QUIT) tells them to exit now. Resolves with the exit code (0).
   */
  stop(graceful = true): Promise<number> {
    if (!graceful) this.cutLameDuck?.()
    this.stopping ??= (async () => {
      const lameMs = this.timings.lameDuckMs
      if (graceful && lameMs > 0 && this.phase !== 'starting') graceful = await this.lameDuckFor(lameMs)
      this.enter('stopping')
      // Sockets still being opened are closed once they are open.
      await this.opening?.catch(() => undefined)
      await this.shutdown(graceful)
      this.emit('stopped', { code: 0 })
      return 0
    })()
    return this.stopping
  }

  /** A stop's lame duck: health 503 for ms while serving. Resolves false when a fast stop cut it short. */
  private async lameDuckFor(ms: number): Promise<boolean> {
    this.log.info(`lame duck for ${ms / 1000} s: health checks answer 503, everything else is served; then a graceful stop`)
    this.emit('lame-duck', { ms })
    this.setLameDuck(true)
    const cut = new Promise<false>((resolve) => (this.cutLameDuck = () => resolve(false)))
    return Promise.race([sleep(this.rt, ms, true).then(() => true), cut])
  }

  private async shutdown(graceful: boolean): Promise<void> {
    this.enter('stopping')
    this.monitor?.clear()
    // A stop during a binary upgrade gives it up: the new master goes too (and the pid file is ours again).
    this.upgrader.abort()
    if (!this.handedOver) await this.upgrading
    this.log.info(`${graceful ? 'graceful' : 'fast'} stop: ${this.workers.size} workers`)
    this.emit('stopping', { graceful, workers: this.workers.size, timeoutMs: this.timings.gracefulMs })
    // After a binary upgrade the new master's workers take the clients over, as in a reload.
    await this.workers.stopAll(graceful, graceful && !this.reporter.main)
    // A reload still reading the config file gives up once it has read it, so "stopped" is the last
    // word; a config file that never finishes loading holds the stop no longer than a drain would.
    await Promise.race([this.reloads.current, sleep(this.rt, this.timings.gracefulMs, false)])
    this.sockets.close(this.reporter.main)
    if (this.pidFile !== undefined) removePidFile(this.pidFile)
    this.signals?.remove()
    this.reloads.settle(() => Promise.resolve(false)) // a HUP during a start that did not serve
    await this.endpoints?.close()
    await this.reporter.barrier()
    this.log.info('stopped')
  }

  private snapshot(): StatusSnapshot {
    const w = this.workers
    const pending = this.reloads.current !== undefined ? w.generation : undefined
    return { ready: w.ready, workers: this.config.workers, serving: w.serving, pending, served: w.served }
  }

  /** A snapshot for `sdserve ctl`, the metrics, the library API and tests. */
  stats(): MasterStats {
    const { phase, workers, record } = this
    const sockets = acceptQueues(this.sockets.all())
    return masterStats({ phase, target: this.config.workers, pending: this.snapshot().pending, health: this.health, workers, record, sockets })
  }
}
