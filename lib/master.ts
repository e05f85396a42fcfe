/**
 * The master (gunicorn's "arbiter"): owns the listening sockets, spawns
 * worker generations, reaps and replaces workers, watches their heartbeats,
 * handles signals, and is the only process that talks to systemd.
 *
 * Invariants:
 * - at most one worker generation is not yet ready (a reload in progress);
 * - READY=1 is sent only once every worker of the serving generation listens,
 *   and a reload is reported finished only after the new generation serves
 *   and the old one has been told to drain;
 * - a socket systemd gave us is never closed or unlinked; the master holds
 *   every listening fd for its whole life, so a worker exiting (crash,
 *   reload, recycle) never drops a connection the kernel has queued;
 * - a failing app, reload or worker costs that worker or that reload, never
 *   the generation that serves.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync } from 'node:fs'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import { ACTIVATION_VARS, inheritedSockets, type InheritedSocket } from './activation.js'
import { parseAppSpec } from './app.js'
import type { Config, ConfigSources } from './config.js'
import type { HeldSignals } from './early-signals.js'
import { AppLoadError, ExitCode, WorkerBootError } from './errors.js'
import { canChangeIdentity, resolveOwner, workerIdentity } from './identity.js'
import { fdStoreMax, isStoredName, storedName } from './fd-store.js'
import { closeListeners, openListeners, openReusePortSocket, type Listener } from './listeners.js'
import { Logger, openErrorLog } from './logger.js'
import { Notifier, oneLine } from './notify.js'
import { removePidFile, renamePidFile, writePidFile } from './pidfile.js'
import { CMD, dispatch, isOurs, type InflightRequest, type MasterMessage, type WorkerMessage } from './protocol.js'
import { awaitSuccessor, promote, reportServing, spawnSuccessor, upgradeOrigin, type HandedSocket } from './upgrade.js'
import { startWatchdog, WATCHDOG_VARS, type Watchdog } from './watchdog.js'
import { version } from './version.js'

const WORKER_MAIN = fileURLToPath(new URL('./worker-main.js', import.meta.url))

/** Crash backoff: first replacement at once, then 100 ms doubling up to 10 s. */
const BACKOFF_MIN_MS = 100
const BACKOFF_MAX_MS = 10000
/** A worker that served this long resets its slot's crash count. */
const STABLE_MS = 10000
/** How long a binary upgrade waits for the rest of a USR2 sent to every process of the unit. */
const UPGRADE_SETTLE_MS = 250
/** A new master of a binary upgrade gets the boot timeout of its workers and this much for its own start. */
const UPGRADE_MARGIN_MS = 10000
/** LISTEN_FDNAMES of the reuse-port slot sockets an old master hands over: sdserve-slot<slot>-<listener index>. */
const SLOT_NAME = /^sdserve-slot(\d+)-(\d+)$/
/**
 * A worker that drains while others take over its clients (reload, recycle,
 * TTOU) closes its keep-alive connections one by one over this long (at most
 * --graceful-timeout). Moving them all at once sent every client of the old
 * generation to new workers whose code is not optimized yet, all in the same
 * few milliseconds: that, more than the new generation's boot, made the p99
 * latency during reloads under keep-alive load.
 */
const HANDOVER_MS = 300

type WorkerState = 'booting' | 'ready' | 'stopping'

interface WorkerRecord {
  /** Slot number, 1..workers: stable across generations (reuse-port mode gives each slot its own socket). */
  id: number
  generation: number
  child: ChildProcess
  pid: number
  state: WorkerState
  readyAt: number
  lastBeat: number
  requests: number
  inflight: InflightRequest[]
  /** Asked to be replaced (max-requests) and a replacement is on its way. */
  retiring: boolean
  /** Why the master killed it, for the exit log. */
  killReason?: string
  booted: Promise<void>
  resolveBoot: () => void
  rejectBoot: (err: Error) => void
  exited: Promise<void>
}

export interface MasterEvents {
  ready: [{ generation: number; workers: number }]
  reload: [{ ok: boolean; generation: number; error?: string }]
  'worker-exit': [{ id: number; pid: number; generation: number; code: number | null; signal: string | null }]
  stopped: [{ code: number }]
}

export interface MasterOptions {
  /** Re-reads the configuration on reload (SIGHUP); default: keep the current one. */
  reloadConfig?: () => Promise<Config>
  /** Install signal handlers (default true). The library API may turn them off. */
  signals?: boolean
  notifier?: Notifier
  logger?: Logger
}

function jitter(max: number): number {
  return max > 0 ? Math.floor(Math.random() * (max + 1)) : 0
}

export class Master extends EventEmitter<MasterEvents> {
  config: Config
  private readonly reloadConfigFn: (() => Promise<Config>) | undefined
  private readonly notifier: Notifier
  readonly log: Logger
  private sockets: Listener[] = []
  /** reuse-port mode: per slot, one SO_REUSEPORT socket per TCP listener (by listener index). */
  private readonly slotSockets = new Map<number, Map<number, number>>()
  private readonly workers = new Map<number, WorkerRecord>()
  private generation = 0
  /** The generation that serves (the newest one that booted completely). */
  private serving = 0
  private readonly crashes = new Map<number, number>()
  private readonly respawnTimers = new Map<number, NodeJS.Timeout>()
  private reloading: Promise<boolean> | undefined
  private reloadAgain = false
  private stopping: Promise<number> | undefined
  /** The sockets being opened by start(): a stop waits for them, to close them. */
  private opening: Promise<void> | undefined
  /** Set when a stop (or a failed start) begins: nothing is respawned or reloaded after it. */
  private halting = false
  private stopCode: number = ExitCode.OK
  /** Appended to STATUS= until the next successful reload: why the last one failed. */
  private statusNote = ''
  private served = 0
  private lastStatus = ''
  private monitor: NodeJS.Timeout | undefined
  private watchdog: Watchdog | null = null
  private readonly signalHandlers: Array<[NodeJS.Signals, () => void]> = []
  private readonly useSignals: boolean
  private pidFile: string | undefined
  private identity: { uid?: number; gid?: number } = {}
  /**
   * Not (or no longer) the unit's main process, in a binary upgrade: systemd
   * would refuse our notifications, so none are sent, and the UNIX paths of
   * the sockets belong to the other master.
   */
  private quiet = false
  /** A binary upgrade is running. */
  private upgrading: Promise<boolean> | undefined
  /** The new master of a running binary upgrade, until it is promoted or given up. */
  private successor: ChildProcess | undefined
  /** Where and how this master was started, for a new master in a binary upgrade. */
  private readonly launchCwd = process.cwd()
  private readonly launchArgv = process.argv.slice(1)

  constructor(config: Config, options: MasterOptions = {}) {
    super()
    this.config = config
    this.reloadConfigFn = options.reloadConfig
    this.useSignals = options.signals ?? true
    // The master alone talks to systemd (NotifyAccess=main): workers must not see these.
    this.notifier = options.notifier ?? new Notifier()
    this.log = options.logger ?? new Logger()
  }

  /** Milliseconds a worker may go without a heartbeat; 0 = never killed for it. */
  private get timeoutMs(): number {
    return Math.round(this.config.timeout * 1000)
  }

  /**
   * How long a worker may take to boot (load the app and listen): --timeout,
   * but at least 10 s (loading an app blocks the event loop legitimately, and
   * a busy machine loads slowly), or 30 s with --timeout 0.
   */
  private get bootTimeoutMs(): number {
    return this.timeoutMs > 0 ? Math.max(this.timeoutMs, 10000) : 30000
  }

  private get heartbeatMs(): number {
    return this.timeoutMs > 0 ? Math.max(50, Math.min(1000, Math.floor(this.timeoutMs / 4))) : 1000
  }

  /**
   * Open the sockets, start the first generation and report READY=1 once
   * every worker listens. Resolves when serving, or when a stop that came
   * during the start has finished ('stopped' has then been emitted: a
   * `systemctl stop` while the service starts is a clean stop, not a failed
   * start). Rejects (and cleans up) when startup fails: AppLoadError (exit
   * 4), WorkerBootError (exit 3), others.
   */
  async start(): Promise<void> {
    const config = this.config
    parseAppSpec(config.app) // a malformed APP is a config error (exit 2), before anything is bound
    if (config.umask !== undefined) process.umask(config.umask)
    if (config.chdir !== undefined) process.chdir(config.chdir)
    this.identity = workerIdentity(config)
    /* c8 ignore next 2 -- the tests run as root, and a master run as another user cannot record coverage */
    if ((this.identity.uid !== undefined || this.identity.gid !== undefined) && !canChangeIdentity())
      throw new WorkerBootError('--user and --group need the master to run as root')
    const origin = upgradeOrigin()
    if (origin !== undefined) this.quiet = true
    if (config.pid !== undefined) {
      writePidFile(config.pid)
      this.pidFile = config.pid
    }
    // From here on a stop signal is ours (everything above is synchronous, so none came in between):
    // a stop during the start waits for the sockets, stops the booting workers and ends start().
    this.installSignals()
    try {
      this.opening = this.openSockets(origin?.owned)
      await this.opening
      this.stopCheck()
      this.log.info(`sdserve ${version()} master ${process.pid}: listening on ${this.sockets.map((l) => l.text).join(', ')}`)
      this.extendTimeout(this.bootTimeoutMs)
      this.status(`starting ${config.workers} workers`)
      const generation = await this.startGeneration(config.workers)
      this.stopCheck()
      this.serving = generation
      this.monitor = setInterval(() => this.check(), Math.min(1000, this.heartbeatMs))
      this.monitor.unref()
      if (origin !== undefined) {
        this.log.info(`binary upgrade: serving; telling the old master (pid ${origin.from})`)
        await reportServing()
        this.stopCheck()
        this.quiet = false
      }
      this.watchdog = startWatchdog({
        notifier: this.notifier,
        unsetEnv: true,
        healthy: () => this.healthy(),
        onSkip: (reason) => this.log.warn(`watchdog ping skipped: ${reason}`),
      })
      this.ready()
      this.emit('ready', { generation, workers: config.workers })
    } catch (err) {
      // A stop during the start (a worker told to stop while it booted fails its generation's
      // boot, too): the stop finishes the job, and start() ends without an error.
      if (this.stopping !== undefined) {
        await this.stopping
        return
      }
      this.log.error(`startup failed: ${(err as Error).message}`)
      await this.shutdown(false)
      this.sendFailure(err as Error)
      throw err
    }
  }

  /** Between the steps of a start or reload: once a stop has begun, go no further (the stop cleans up). */
  private stopCheck(): void {
    if (this.halting) throw new Error('stopping')
  }

  /** Open (or adopt) every listening socket; the fd store and an old master's slot sockets are sorted out here. */
  private async openSockets(owned: Set<number> | undefined): Promise<void> {
    const config = this.config
    const inherited = inheritedSockets()
    const slots = inherited.filter((s) => SLOT_NAME.test(s.name))
    const sockets = inherited.filter((s) => !SLOT_NAME.test(s.name))
    this.sockets = await openListeners(config.bind, sockets, {
      backlog: config.backlog,
      reusePort: config.balance === 'reuse-port',
      unixSocketMode: config.unixSocketMode,
      unixSocketOwner: config.unixSocketOwner === undefined ? undefined : resolveOwner(config.unixSocketOwner),
      warn: (m) => this.log.warn(m),
      owned,
      stored: (s) => isStoredName(s.name),
    })
    this.dropUnusedStored(sockets)
    this.storeSockets(sockets)
    this.adoptSlots(slots)
    if (config.balance === 'reuse-port' && !this.sockets.some((l) => l.reusePort === true))
      this.log.warn('balance reuse-port applies to TCP binds sdserve creates; every socket here is shared')
  }

  private installSignals(): void {
    if (!this.useSignals) return
    const on = (signal: NodeJS.Signals, fn: () => void): void => {
      process.on(signal, fn)
      this.signalHandlers.push([signal, fn])
    }
    on('SIGHUP', () => void this.reload())
    on('SIGTERM', () => void this.stop(true))
    on('SIGINT', () => void this.stop(false))
    on('SIGQUIT', () => void this.stop(false))
    on('SIGTTIN', () => this.scale(1))
    on('SIGTTOU', () => this.scale(-1))
    on('SIGUSR1', () => this.reopenLogs())
    on('SIGUSR2', () => void this.upgrade())
  }

  /** Stored sockets (fd store or an old master's) that no bind uses any more: out of the store, closed. */
  private dropUnusedStored(inherited: InheritedSocket[]): void {
    for (const s of inherited) {
      if (!isStoredName(s.name) || this.sockets.some((l) => l.fd === s.fd)) continue
      this.log.info(`stored socket ${s.text} is not in --bind any more: closing it`)
      this.send(() => this.notifier.fdStoreRemove(s.name))
      closeSync(s.fd)
    }
  }

  /**
   * With systemd's fd store ($FDSTORE, systemd >= 254), give it the sockets we
   * created, so the next start gets them back with their queued connections.
   * Sockets that came back from the store, or from an old master (which gave
   * them the same names, and stored them if it could), are there already.
   */
  private storeSockets(inherited: InheritedSocket[]): void {
    if (fdStoreMax() === 0 || !this.notifier.enabled) return
    for (const l of this.sockets) {
      const from = inherited.find((s) => s.fd === l.fd)
      if (from !== undefined && isStoredName(from.name)) {
        l.stored = true
        continue
      }
      if (!l.owned) continue
      const name = storedName(l.name)
      if (name === undefined) {
        this.log.warn(`${l.text}: its name cannot be an FDNAME (255 printable ASCII characters at most); not kept in systemd's fd store`)
        continue
      }
      this.send(() => this.notifier.fdStore([l.fd], name))
      l.stored = true
    }
    const stored = this.sockets.filter((l) => l.stored === true).length
    if (stored > 0) this.log.info(`${stored} socket(s) kept in systemd's fd store across restarts`)
  }

  /** reuse-port slot sockets handed over by an old master: the same slots serve them here. */
  private adoptSlots(slots: InheritedSocket[]): void {
    for (const s of slots) {
      const [, slot, index] = SLOT_NAME.exec(s.name)!.map(Number) as [number, number, number]
      const l = this.sockets[index]
      if (l?.reusePort === true && l.tcp !== undefined && s.text === l.text) {
        let map = this.slotSockets.get(slot)
        if (map === undefined) this.slotSockets.set(slot, (map = new Map<number, number>()))
        map.set(index, s.fd)
      } else {
        this.log.warn(`the old master's reuse-port socket ${s.text} (slot ${slot}) has no listener here: closing it`)
        closeSync(s.fd)
      }
    }
  }

  /** The sockets a new master gets in a binary upgrade: every listener, then the reuse-port slot sockets. */
  private handedSockets(): HandedSocket[] {
    const out: HandedSocket[] = this.sockets.map((l, i) => ({
      fd: l.fd,
      name: l.owned ? (storedName(l.name) ?? `sdserve-listener-${i}`) : l.name,
      owned: l.owned,
    }))
    for (const [slot, fds] of this.slotSockets) for (const [index, fd] of fds) out.push({ fd, name: `sdserve-slot${slot}-${index}`, owned: true })
    return out
  }

  /**
   * Binary upgrade (SIGUSR2): start a new master with the same command line
   * on our sockets; once its workers serve, tell systemd it is the main
   * process (MAINPID=), retire gracefully and exit. A new master that fails
   * or is too slow to serve is stopped and we go on serving (a rollback,
   * reported in STATUS= and the log). The pid file follows gunicorn: ours is
   * renamed <pid file>.oldbin while the new master runs.
   */
  upgrade(): Promise<boolean> {
    if (this.halting || this.reloading !== undefined || this.upgrading !== undefined) {
      const why = this.halting ? 'stopping' : this.upgrading !== undefined ? 'an upgrade is running' : 'a reload is running'
      this.log.warn(`binary upgrade refused: ${why}`)
      return Promise.resolve(false)
    }
    this.upgrading = this.upgradeOnce().finally(() => (this.upgrading = undefined))
    return this.upgrading
  }

  private async upgradeOnce(): Promise<boolean> {
    const pidFile = this.pidFile
    const oldbin = pidFile === undefined ? undefined : `${pidFile}.oldbin`
    this.log.info('binary upgrade: starting a new master')
    this.status(`upgrading: starting a new master; ${this.statusText()}`)
    // `systemctl kill -s USR2` signals every process of the unit, one after the other: a new
    // master started at once could get the same USR2 before it can handle it, and die of it.
    await new Promise((resolve) => setTimeout(resolve, UPGRADE_SETTLE_MS))
    if (this.halting) {
      this.log.warn('binary upgrade abandoned: stopping')
      return false
    }
    let child: ChildProcess | undefined
    let renamed = false
    let pid: number
    try {
      if (pidFile !== undefined && oldbin !== undefined) {
        renamePidFile(pidFile, oldbin)
        renamed = true
      }
      child = spawnSuccessor(this.handedSockets(), {
        argv: this.launchArgv,
        cwd: this.launchCwd,
        env: process.env,
        // The variables were consumed at start; the running watchdog knows the timeout.
        watchdogUsec: this.watchdog?.usec,
      })
      this.successor = child
      pid = await awaitSuccessor(child, this.bootTimeoutMs + UPGRADE_MARGIN_MS)
    } catch (err) {
      const reason = oneLine((err as Error).message)
      /* c8 ignore next 7 -- a new master alive past its own boot timeout (which stops it first) plus 10 s: a backstop */
      if (child !== undefined && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child!.once('exit', resolve))
        child.kill('SIGTERM')
        const killer = setTimeout(() => child!.kill('SIGKILL'), Math.round(this.config.gracefulTimeout * 1000) + 1000)
        await exited
        clearTimeout(killer)
      }
      this.successor = undefined
      if (renamed) renamePidFile(oldbin!, pidFile!)
      if (this.halting) {
        this.log.warn(`binary upgrade given up, stopping: ${reason}`)
        return false
      }
      this.log.error(`binary upgrade failed, this master (pid ${process.pid}) keeps serving: ${reason}`)
      this.statusNote = `; last binary upgrade failed: ${reason}`
      this.lastStatus = ''
      this.updateStatus()
      return false
    }
    this.successor = undefined
    this.log.info(`binary upgrade: new master ${pid} serves; handing over and stopping`)
    this.send(() => this.notifier.send([['MAINPID', pid], ['STATUS', `handed over to the new master ${pid}`]]))
    // systemd must have the new MAINPID before this process, its main process so far, exits.
    if (this.notifier.enabled) await this.notifier.barrier(2000).catch((err: unknown) => this.log.warn(`sd_notify barrier: ${(err as Error).message}`))
    this.quiet = true
    this.pidFile = oldbin
    promote(child)
    await this.stop(true)
    return true
  }

  /** Spawn a whole generation and wait until every worker listens; on failure kill it and throw. */
  private async startGeneration(count: number): Promise<number> {
    const generation = ++this.generation
    const records: WorkerRecord[] = []
    for (let id = 1; id <= count; id++) records.push(this.spawnWorker(id, generation))
    try {
      await Promise.all(records.map((r) => r.booted))
    } catch (err) {
      // Stop, not SIGKILL: the worker that failed is exiting already, and the others are told to exit now.
      for (const r of records) this.stopWorker(r, false)
      await Promise.all(records.map((r) => r.exited))
      throw err
    }
    return generation
  }

  private workerEnv(id: number): NodeJS.ProcessEnv {
    const env = { ...process.env }
    for (const k of ['NOTIFY_SOCKET', ...WATCHDOG_VARS, ...ACTIVATION_VARS]) Reflect.deleteProperty(env, k)
    env.SDSERVE_WORKER_ID = String(id)
    return env
  }

  /** The socket of slot id for listener index: slot 1 uses the listener itself, others get their own. */
  private slotSocket(id: number, index: number, l: Listener): number {
    if (l.reusePort !== true || id === 1) return l.fd
    let slot = this.slotSockets.get(id)
    if (slot === undefined) this.slotSockets.set(id, (slot = new Map<number, number>()))
    let fd = slot.get(index)
    if (fd === undefined) slot.set(index, (fd = openReusePortSocket(l, this.config.backlog)))
    return fd
  }

  /**
   * What a worker in slot id serves: the shared sockets, or its slot's
   * SO_REUSEPORT sockets. Slot sockets are never closed while the master
   * runs (closing a member of a reuse-port group resets the connections
   * queued on it), so slot 1 also serves the sockets of slots that have no
   * worker any more (after TTOU).
   */
  private socketsFor(id: number): Array<{ fd: number; name: string; text: string }> {
    const out = this.sockets.map((l, index) => ({ fd: this.slotSocket(id, index, l), name: l.name, text: l.text }))
    if (id === 1)
      for (const [slot, fds] of this.slotSockets)
        if (slot > this.config.workers)
          for (const [index, fd] of fds) {
            const l = this.sockets[index]!
            out.push({ fd, name: l.name, text: `${l.text} (slot ${slot})` })
          }
    return out
  }

  private spawnWorker(id: number, generation: number): WorkerRecord {
    const config = this.config
    const sockets = this.socketsFor(id)
    const child = spawn(process.execPath, [...process.execArgv, WORKER_MAIN], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...sockets.map((x) => x.fd)],
      env: this.workerEnv(id),
      cwd: process.cwd(),
      ...this.identity,
    })
    let resolveBoot!: () => void
    let rejectBoot!: (err: Error) => void
    const booted = new Promise<void>((resolve, reject) => {
      resolveBoot = resolve
      rejectBoot = reject
    })
    booted.catch(() => undefined) // observed by whoever awaits it; never an unhandled rejection
    let exitedResolve!: () => void
    const exited = new Promise<void>((resolve) => (exitedResolve = resolve))
    const now = Date.now()
    const record: WorkerRecord = {
      id,
      generation,
      child,
      /* c8 ignore next -- pid is undefined only when spawn() itself failed (see below) */
      pid: child.pid ?? 0,
      state: 'booting',
      readyAt: 0,
      lastBeat: now,
      requests: 0,
      inflight: [],
      retiring: false,
      booted,
      resolveBoot,
      rejectBoot,
      exited,
    }
    const bootTimer = setTimeout(() => {
      if (record.state !== 'booting') return
      record.rejectBoot(new WorkerBootError(`worker ${id} (pid ${record.pid}) did not boot within ${this.bootTimeoutMs} ms`))
      this.kill(record, 'SIGKILL', 'boot timeout')
    }, this.bootTimeoutMs)
    bootTimer.unref()
    child.on('message', (message: unknown) => {
      if (isOurs(message)) this.onMessage(record, message as WorkerMessage)
    })
    /* c8 ignore next 3 -- spawning or signalling process.execPath fails only when out of memory or pids */
    child.on('error', (err) => {
      this.log.error(`worker ${id}: ${err.message}`)
    })
    // 'close', not 'exit': it comes after the last IPC message (an app-error must be seen first).
    child.on('close', (code, signal) => {
      clearTimeout(bootTimer)
      this.onExit(record, code, signal)
      exitedResolve()
    })
    /* c8 ignore next 4 -- spawn() of process.execPath fails only when out of memory or pids */
    if (child.pid === undefined) {
      record.rejectBoot(new WorkerBootError(`worker ${id} could not be spawned`))
      return record
    }
    this.workers.set(record.pid, record)
    const boot: MasterMessage = {
      cmd: CMD,
      act: 'boot',
      id,
      generation,
      app: config.app,
      cwd: process.cwd(),
      listeners: sockets.map(({ name, text }) => ({ name, text })),
      backlog: config.backlog,
      keepAliveMs: Math.round(config.keepAlive * 1000),
      maxRequests: config.maxRequests > 0 ? config.maxRequests + jitter(config.maxRequestsJitter) : 0,
      heartbeatMs: this.heartbeatMs,
      gracefulTimeoutMs: Math.round(config.gracefulTimeout * 1000),
      limits: {
        headersTimeoutMs: Math.round(config.headersTimeout * 1000),
        requestTimeoutMs: Math.round(config.requestTimeout * 1000),
        requestLine: config.limitRequestLine,
        fields: config.limitRequestFields,
        fieldSize: config.limitRequestFieldSize,
        connections: config.workerConnections,
      },
      accessLog: config.accessLogfile === undefined ? undefined : { file: config.accessLogfile, format: config.accessLogformat },
      errorLog: { file: config.errorLogfile, level: this.log.level, format: config.logFormat },
      proxy: {
        forwardedAllowIps: config.forwardedAllowIps,
        strip: config.untrustedForwarded === 'strip',
        protocol: config.proxyProtocol,
        proxyAllowIps: config.proxyAllowIps,
      },
    }
    child.send(boot)
    this.log.debug(`worker ${id} (pid ${record.pid}, generation ${generation}) spawned`)
    return record
  }

  private onMessage(record: WorkerRecord, message: WorkerMessage): void {
    dispatch(message, {
      listening: (m) => {
        // A worker told to stop while it booted stays stopping: its exit is expected.
        if (record.state === 'booting') record.state = 'ready'
        record.readyAt = record.lastBeat = Date.now()
        this.log.info(`worker ${record.id} (pid ${record.pid}, generation ${record.generation}) serving ${m.description}`)
        record.resolveBoot()
      },
      'app-error': (m) => {
        this.log.error(`worker ${record.id} (pid ${record.pid}): the app failed to load: ${m.stack}`)
        record.rejectBoot(new AppLoadError(this.config.app, m.message))
      },
      heartbeat: (m) => {
        record.lastBeat = Date.now()
        this.served += m.requests - record.requests
        record.requests = m.requests
        record.inflight = m.inflight
      },
      retire: (m) => {
        this.served += m.requests - record.requests
        record.requests = m.requests
        void this.recycle(record)
      },
    })
  }

  private onExit(record: WorkerRecord, code: number | null, signal: NodeJS.Signals | null): void {
    this.workers.delete(record.pid)
    const how = signal !== null ? `signal ${signal}` : `code ${code}`
    const why = record.killReason !== undefined ? ` (${record.killReason})` : ''
    const expected = record.state === 'stopping'
    // Also when it was told to stop while booting: whoever waits for its boot must not wait forever.
    if (record.readyAt === 0)
      record.rejectBoot(new WorkerBootError(`worker ${record.id} (pid ${record.pid}) exited with ${how} before it listened`))
    if (expected) this.log.info(`worker ${record.id} (pid ${record.pid}) exited with ${how}${why}`)
    else this.log.error(`worker ${record.id} (pid ${record.pid}, generation ${record.generation}) exited with ${how}${why}`)
    this.emit('worker-exit', { id: record.id, pid: record.pid, generation: record.generation, code, signal })
    if (expected || this.halting || record.generation !== this.serving) return
    // An unexpected exit of a serving worker: replace it, with backoff when the slot keeps crashing.
    const stable = record.readyAt > 0 && Date.now() - record.readyAt >= STABLE_MS
    /* c8 ignore next -- a worker that served STABLE_MS before crashing starts its slot's backoff afresh */
    const crashes = stable ? 0 : (this.crashes.get(record.id) ?? 0)
    this.crashes.set(record.id, crashes + 1)
    const delay = crashes === 0 ? 0 : Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (crashes - 1))
    if (delay > 0) this.log.warn(`worker ${record.id} keeps crashing: replacing it in ${delay} ms`)
    this.scheduleRespawn(record.id, delay)
    this.updateStatus()
  }

  private scheduleRespawn(id: number, delay: number): void {
    /* c8 ignore next -- a crash and a reconcile asking for the same slot at once */
    if (this.respawnTimers.has(id)) return
    const timer = setTimeout(() => {
      this.respawnTimers.delete(id)
      // The slot may have gone (TTOU) or been filled (a reload) while we waited.
      /* c8 ignore next 2 -- races between a backoff delay and TTOU or a reload */
      if (this.halting || id > this.config.workers) return
      if (this.live(this.serving).some((r) => r.id === id)) return
      const r = this.spawnWorker(id, this.serving)
      r.booted.then(
        () => this.updateStatus(),
        (err: unknown) => this.log.error(`replacement for worker ${id} failed: ${(err as Error).message}`),
      )
    }, delay)
    this.respawnTimers.set(id, timer)
  }

  /** Workers of a generation that are not on their way out. */
  private live(generation: number): WorkerRecord[] {
    return [...this.workers.values()].filter((r) => r.generation === generation && r.state !== 'stopping' && !r.retiring)
  }

  /** max-requests: start a replacement in the same slot, then drain the old worker. */
  private async recycle(record: WorkerRecord): Promise<void> {
    /* c8 ignore next -- a worker asks once; this guards a retire that races a stop */
    if (record.retiring || record.state !== 'ready' || this.halting) return
    record.retiring = true
    this.log.info(`worker ${record.id} (pid ${record.pid}) served ${record.requests} requests: recycling it`)
    const replacement = this.spawnWorker(record.id, record.generation)
    try {
      await replacement.booted
      this.stopWorker(record, true, true)
    } catch (err) {
      record.retiring = false
      this.log.error(`worker ${record.id}: replacement failed (${(err as Error).message}); the old worker keeps serving`)
    }
  }

  private kill(record: WorkerRecord, signal: NodeJS.Signals, reason: string): void {
    record.killReason ??= reason
    if (record.child.exitCode === null && record.child.signalCode === null) record.child.kill(signal)
  }

  /**
   * Tell a worker to stop; kill it when it overstays the graceful timeout.
   * `handover`: other workers serve its clients from now on (see HANDOVER_MS).
   */
  private stopWorker(record: WorkerRecord, graceful: boolean, handover = false): void {
    if (record.state === 'stopping') return
    record.state = 'stopping'
    const timeoutMs = graceful ? Math.round(this.config.gracefulTimeout * 1000) : 0
    const handoverMs = handover ? Math.min(HANDOVER_MS, timeoutMs) : 0
    const message: MasterMessage = { cmd: CMD, act: 'stop', graceful, timeoutMs, handoverMs }
    if (record.child.connected) record.child.send(message, (err) => err && this.kill(record, 'SIGKILL', 'its IPC channel failed'))
    /* c8 ignore next 2 -- a worker whose app closed the IPC channel: SIGTERM drains it just the same */
    else if (graceful) this.kill(record, 'SIGTERM', 'stop')
    // A fast stop of a worker without IPC: it is exiting already (it reported a failure), else the backstop kills it.
    // The worker exits by itself at its own deadline; this is the backstop.
    const timer = setTimeout(() => this.kill(record, 'SIGKILL', 'graceful timeout'), timeoutMs + (graceful ? 1000 : 2000))
    timer.unref()
    void record.exited.then(() => clearTimeout(timer))
  }

  /** Heartbeats: kill a worker whose event loop has been blocked past --timeout. */
  private check(): void {
    const now = Date.now()
    if (this.timeoutMs > 0)
      for (const r of this.workers.values()) {
        if (r.state !== 'ready' || now - r.lastBeat <= this.timeoutMs) continue
        const doing =
          r.inflight.length > 0
            ? `in flight at its last heartbeat: ${r.inflight.map((i) => `${i.method} ${i.url} (running ${i.ms} ms)`).join(', ')}`
            : 'no request was in flight at its last heartbeat'
        this.log.error(
          `worker ${r.id} (pid ${r.pid}) timed out: no heartbeat for ${now - r.lastBeat} ms (event loop blocked?); killing it; ${doing}`,
        )
        this.kill(r, 'SIGKILL', 'timeout')
        // Still 'ready' until it exits: onExit replaces it.
      }
    this.updateStatus()
  }

  /** For the watchdog: the master runs (this is called) and at least one serving worker has a fresh heartbeat. */
  private healthy(): boolean {
    const limit = this.timeoutMs > 0 ? this.timeoutMs : 3 * this.heartbeatMs
    const now = Date.now()
    return [...this.workers.values()].some((r) => r.state === 'ready' && now - r.lastBeat <= limit)
  }

  /** TTIN / TTOU: one worker more or fewer (never fewer than one). */
  scale(delta: number): void {
    /* c8 ignore next -- TTIN/TTOU during a stop */
    if (this.halting) return
    const workers = Math.max(1, this.config.workers + delta)
    if (workers === this.config.workers) {
      this.log.warn('TTOU: already down to one worker')
      return
    }
    this.config = { ...this.config, workers }
    this.log.info(`scaling to ${workers} workers`)
    this.reconcile()
  }

  /**
   * reuse-port TTOU: the leaving workers' slot sockets stay open, so first a
   * new worker 1 boots that serves them too; only then do the leaving
   * workers (and the old worker 1) drain. Nothing queued on a slot is lost.
   */
  private async handOver(leaving: WorkerRecord[]): Promise<void> {
    for (const r of leaving) r.retiring = true
    const previous = this.live(this.serving).find((r) => r.id === 1)
    const replacement = this.spawnWorker(1, this.serving)
    try {
      await replacement.booted
      if (previous !== undefined) this.stopWorker(previous, true, true)
      for (const r of leaving) this.stopWorker(r, true, true)
      /* c8 ignore start -- the code worker 1 loads has just booted in every other worker */
    } catch (err) {
      for (const r of leaving) r.retiring = false
      this.log.error(`TTOU: worker 1 could not take over the leaving slots (${(err as Error).message}); they keep serving`)
    }
    /* c8 ignore stop */
  }

  /** Bring the serving generation to config.workers: spawn missing slots, drain extra ones. */
  private reconcile(): void {
    if (this.reloading !== undefined || this.halting) return
    const live = this.live(this.serving)
    const extra = live.filter((r) => r.id > this.config.workers)
    if (extra.length > 0) {
      if (this.slotSockets.size > 0) void this.handOver(extra)
      else for (const r of extra) this.stopWorker(r, true, true)
    }
    for (let id = 1; id <= this.config.workers; id++)
      if (!live.some((r) => r.id === id) && !this.respawnTimers.has(id)) this.scheduleRespawn(id, 0)
    this.updateStatus()
  }

  /**
   * Reload (SIGHUP): RELOADING=1, re-read the config, start a new generation
   * that loads the app afresh, wait until it serves, drain the old one,
   * READY=1. A generation that fails to boot is killed and the old one keeps
   * serving; STATUS= and the log say why. Resolves true on success.
   */
  reload(): Promise<boolean> {
    /* c8 ignore next -- HUP during a stop */
    if (this.halting) return Promise.resolve(false)
    if (this.upgrading !== undefined) {
      this.log.warn('reload refused: a binary upgrade is running')
      return Promise.resolve(false)
    }
    if (this.reloading !== undefined) {
      this.reloadAgain = true
      return this.reloading
    }
    const run = async (): Promise<boolean> => {
      let ok: boolean
      do {
        this.reloadAgain = false
        ok = await this.reloadOnce()
        /* c8 ignore next -- a stop during a queued reload */
      } while (this.reloadAgain && !this.halting)
      return ok
    }
    this.reloading = run().finally(() => {
      this.reloading = undefined
      this.reconcile()
    })
    return this.reloading
  }

  private async reloadOnce(): Promise<boolean> {
    this.log.info('reloading')
    this.send(() => this.notifier.reloading(`reloading: starting generation ${this.generation + 1}`))
    const previous = this.config
    try {
      if (this.reloadConfigFn !== undefined) {
        const next = await this.reloadConfigFn()
        if (JSON.stringify(next.bind) !== JSON.stringify(previous.bind) || next.balance !== previous.balance)
          this.log.warn('changes to bind and balance need a restart; the sockets stay as they are')
        this.config = { ...next, bind: previous.bind, balance: previous.balance }
        this.identity = workerIdentity(this.config)
      }
      this.stopCheck()
      this.extendTimeout(this.bootTimeoutMs)
      const generation = await this.startGeneration(this.config.workers)
      // A stop while the new generation booted: the stop drains every worker, and systemd hears STOPPING=1, not READY=1.
      this.stopCheck()
      const old = [...this.workers.values()].filter((r) => r.generation !== generation)
      this.serving = generation
      for (const r of old) this.stopWorker(r, true, true)
      this.log.info(`reloaded: generation ${generation} serving, ${old.length} old workers draining`)
      this.statusNote = ''
      this.ready()
      this.emit('reload', { ok: true, generation })
      return true
    } catch (err) {
      this.config = previous
      if (this.halting) {
        this.log.info('reload abandoned: stopping')
        return false
      }
      const reason = oneLine((err as Error).message)
      this.log.error(`reload failed, generation ${this.serving} keeps serving: ${reason}`)
      this.statusNote = `; last reload failed: ${reason}`
      this.ready()
      this.emit('reload', { ok: false, generation: this.serving, error: reason })
      return false
    }
  }

  private reopenLogs(): void {
    this.log.reopen()
    for (const r of this.workers.values()) if (r.child.connected) r.child.send({ cmd: CMD, act: 'reopen-logs' } satisfies MasterMessage)
  }

  /**
   * Stop: graceful (TERM) drains every worker up to --graceful-timeout, fast
   * (INT, QUIT) tells them to exit now. Resolves with the exit code.
   */
  stop(graceful = true): Promise<number> {
    this.stopping ??= (async () => {
      this.halting = true // seen by start() at its next step: no generation is started after this
      // Sockets still being opened are closed once they are open.
      await this.opening?.catch(() => undefined)
      await this.shutdown(graceful)
      this.emit('stopped', { code: this.stopCode })
      return this.stopCode
    })()
    return this.stopping
  }

  private async shutdown(graceful: boolean): Promise<void> {
    this.halting = true
    clearInterval(this.monitor)
    this.watchdog?.stop()
    for (const t of this.respawnTimers.values()) clearTimeout(t)
    this.respawnTimers.clear()
    // A stop during a binary upgrade gives it up: the new master goes too (and the pid file is ours again).
    if (this.successor !== undefined) {
      this.successor.kill('SIGTERM')
      await this.upgrading
    }
    const records = [...this.workers.values()]
    this.log.info(`${graceful ? 'graceful' : 'fast'} stop: ${records.length} workers`)
    this.send(() => this.notifier.stopping(`stopping: ${graceful ? 'draining' : 'stopping'} ${records.length} workers`))
    if (graceful) this.extendTimeout(Math.round(this.config.gracefulTimeout * 1000))
    // After a binary upgrade the new master's workers take the clients over, as in a reload.
    for (const r of records) this.stopWorker(r, graceful, graceful && this.quiet)
    await Promise.all(records.map((r) => r.exited))
    // A reload still reading the config file gives up once it has read it: "stopped" is the last word.
    await this.reloading
    closeListeners(this.sockets, { unlink: !this.quiet })
    for (const slot of this.slotSockets.values()) for (const fd of slot.values()) closeSync(fd)
    this.slotSockets.clear()
    if (this.pidFile !== undefined) removePidFile(this.pidFile)
    for (const [signal, fn] of this.signalHandlers) process.off(signal, fn)
    this.signalHandlers.length = 0
    if (this.notifier.enabled && !this.quiet) await this.notifier.barrier(2000).catch(() => undefined)
    this.log.info('stopped')
  }

  private ready(): void {
    const text = this.statusText()
    this.send(() => this.notifier.ready(text))
    this.lastStatus = text
  }

  private statusText(): string {
    const ready = [...this.workers.values()].filter((r) => r.generation === this.serving && r.state === 'ready').length
    const pending = this.reloading !== undefined ? `, reloading to generation ${this.generation}` : ''
    const text = `${ready} of ${this.config.workers} workers serving (generation ${this.serving}${pending}), ${this.served} requests served${this.statusNote}`
    return oneLine(text).slice(0, 2000)
  }

  /** STATUS=: kept current, sent only when it changes. */
  private updateStatus(): void {
    /* c8 ignore next -- callers run between start and stop; this guards a late respawn callback */
    if (this.halting) return
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
    if (ms > 0) this.send(() => this.notifier.extendTimeout((ms + 5000) * 1000))
  }

  /** Last words to systemd when startup fails: ERRNO= and STATUS=. */
  private sendFailure(err: Error): void {
    this.send(() => this.notifier.errno(err instanceof AppLoadError ? 8 : 5, oneLine(`failed: ${err.message}`).slice(0, 1000)))
  }

  /** Notify systemd; a failed datagram is logged, never fatal. */
  private send(fn: () => unknown): void {
    if (this.quiet) return
    try {
      fn()
    } catch (err) {
      this.log.error(`sd_notify failed: ${(err as Error).message}`)
    }
  }

  /** A snapshot for the library API and tests. */
  stats(): { generation: number; workers: Array<{ id: number; pid: number; generation: number; state: WorkerState; requests: number }> } {
    return {
      generation: this.serving,
      workers: [...this.workers.values()].map((r) => ({
        id: r.id,
        pid: r.pid,
        generation: r.generation,
        state: r.state,
        requests: r.requests,
      })),
    }
  }
}

/** The error log of a configuration: --error-logfile, --log-level, --log-format. */
export function loggerFor(config: Pick<Config, 'errorLogfile' | 'logLevel' | 'logFormat'>): Logger {
  return openErrorLog({ file: config.errorLogfile, level: config.logLevel, format: config.logFormat })
}

/**
 * The sdserve command's serve action: run a master until it stops. Resolves
 * with the process exit code: 0 after a stop, 3 when a worker cannot boot,
 * 4 when the app cannot load.
 */
export async function runMaster(config: Config, sources: ConfigSources, held?: HeldSignals): Promise<number> {
  const { loadConfig } = await import('./config.js')
  const logger = loggerFor(config)
  if (held?.stop !== undefined) {
    logger.info(`${held.stop} before the start: nothing started, stopped`)
    return ExitCode.OK
  }
  const master = new Master(config, { reloadConfig: async () => (await loadConfig(sources)).config, logger })
  // Listened for before start(): a stop during the start ends it with 'stopped' already emitted.
  const stopped = new Promise<number>((resolve) => master.once('stopped', ({ code }) => resolve(code)))
  try {
    // start() installs the master's signal handlers before its first await: the held ones go then.
    const starting = master.start()
    held?.release()
    await starting
  } catch (err) {
    if (err instanceof AppLoadError) {
      master.log.error(`failed to load the app ${config.app}: ${err.message}`)
      return ExitCode.APP_LOAD
    }
    if (err instanceof WorkerBootError) {
      master.log.error(`worker failed to boot: ${err.message}`)
      return ExitCode.WORKER_BOOT
    }
    // A socket that cannot be bound (EADDRINUSE, EACCES) or a pid file that cannot be written: logged above.
    if (typeof (err as { syscall?: unknown }).syscall === 'string') return ExitCode.FAILURE
    throw err
  }
  return stopped
}
