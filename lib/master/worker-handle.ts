/**
 * One worker process as the master sees it (Puma's WorkerHandle): the
 * process, its state, its boot, its heartbeats, and how it is stopped or
 * killed. It knows nothing of generations or sockets beyond its own.
 *
 * Invariants:
 * - state moves booting → ready ⇄ retiring → stopping, and never back from
 *   stopping: a worker told to stop while it boots stays stopping when its
 *   'listening' arrives (its exit is expected);
 * - `booted` settles once: resolved when the worker listens, rejected when
 *   its app fails to load, its boot times out, or it exits before listening;
 * - `exited` resolves once the process is gone and its last IPC message was
 *   handled ('close', not 'exit': an app-error must be seen first);
 * - its timers never keep the master alive, and its exit clears them.
 */
import type { ChildProcess } from 'node:child_process'
import { AppLoadError, WorkerBootError } from '../errors.js'
import type { Logger } from '../logger.js'
import { CMD, dispatch, isOurs, type InflightRequest, type MasterMessage, type WorkerMessage, type WorkerReport } from '../protocol.js'
import type { DrainReason } from '../drain.js'
import type { BootMessage } from './boot-message.js'
import type { ExitReason } from './ledger.js'
import type { Runtime, Timer } from './runtime.js'
import { BACKSTOP_MS } from './timings.js'

/** retiring: still serving, and a replacement for it is on its way (max-requests, TTOU hand-over). */
export type WorkerState = 'booting' | 'ready' | 'retiring' | 'stopping'

/** What a draining worker's app is told, from why the master let it go. */
function drainReason(leaving: ExitReason | undefined): DrainReason {
  switch (leaving) {
    case 'reload':
    case 'scale':
    case 'upgrade':
      return leaving
    case 'max-requests':
    case 'memory':
      return 'recycle'
    default:
      return 'stop'
  }
}

/** What the handle reports to its owner. */
export interface WorkerHooks {
  listening(worker: WorkerHandle): void
  /** A heartbeat or a retire request counted this many new requests. */
  served(worker: WorkerHandle, requests: number): void
  /** max-requests reached: the worker asks to be replaced. */
  retire(worker: WorkerHandle): void
  exit(worker: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void
}

export class WorkerHandle {
  /** Slot number, 1..workers: stable across generations (reuse-port gives each slot its own socket). */
  readonly id: number
  readonly generation: number
  readonly pid: number
  /** The APP spec it loads, for its load error. */
  private readonly app: string
  state: WorkerState = 'booting'
  /** When it was spawned and when it listened (runtime clock); readyAt is 0 until then. */
  readonly spawnedAt: number
  readyAt = 0
  lastBeat: number
  requests = 0
  inflight: InflightRequest[] = []
  /** Its last heartbeat's report; undefined until the first. */
  report: WorkerReport | undefined
  /** CPU use between its last two heartbeats, in percent of one core. */
  cpuPercent = 0
  /** Resident memory in bytes, as the master last read it (0: not yet). */
  rss = 0
  /** Why the master killed it, for the exit log. */
  killReason: string | undefined
  /** Why the master told it to go, for the exit metrics (undefined: it was not told). */
  leaving: ExitReason | undefined
  readonly booted: Promise<void>
  readonly exited: Promise<void>
  private settleBoot!: (err?: Error) => void
  private readonly timers: Timer[] = []

  constructor(
    private readonly child: ChildProcess,
    boot: BootMessage,
    bootMs: number,
    private readonly hooks: WorkerHooks,
    private readonly log: Logger,
    private readonly rt: Runtime,
  ) {
    this.id = boot.id
    this.generation = boot.generation
    this.app = boot.app
    this.pid = child.pid ?? 0 // undefined when spawn() itself failed (out of memory or pids)
    this.spawnedAt = this.lastBeat = rt.now()
    this.booted = new Promise<void>((resolve, reject) => {
      this.settleBoot = (err) => (err === undefined ? resolve() : reject(err))
    })
    this.booted.catch(() => undefined) // observed by whoever awaits it; never an unhandled rejection
    let exited!: () => void
    this.exited = new Promise<void>((resolve) => (exited = resolve))
    child.on('message', (message: unknown) => {
      if (isOurs(message)) this.onMessage(message as WorkerMessage)
    })
    child.on('error', (err) => this.log.error(`worker ${this.id}: ${err.message}`))
    child.on('close', (code, signal) => {
      for (const t of this.timers) t.clear()
      this.onExit(code, signal)
      exited()
    })
    this.timers.push(
      rt.after(bootMs, () => {
        if (this.state !== 'booting') return
        this.settleBoot(new WorkerBootError(`worker ${this.id} (pid ${this.pid}) did not boot within ${bootMs} ms`))
        this.kill('SIGKILL', 'boot timeout')
      }),
    )
    if (child.pid === undefined) {
      this.settleBoot(new WorkerBootError(`worker ${this.id} could not be spawned`))
      return
    }
    child.send(boot)
    this.log.debug(`worker ${this.id} (pid ${this.pid}, generation ${this.generation}) spawned`)
  }

  /** Serving, and not on its way out. */
  get live(): boolean {
    return this.state === 'booting' || this.state === 'ready'
  }

  private onMessage(message: WorkerMessage): void {
    dispatch(message, {
      listening: (m) => {
        if (this.state === 'booting') this.state = 'ready'
        this.readyAt = this.lastBeat = this.rt.now()
        this.log.info(`worker ${this.id} (pid ${this.pid}, generation ${this.generation}) serving ${m.description}`)
        this.settleBoot()
        this.hooks.listening(this)
      },
      'app-error': (m) => {
        this.log.error(`worker ${this.id} (pid ${this.pid}): the app failed to load: ${m.stack}`)
        this.settleBoot(new AppLoadError(this.app, m.message))
      },
      heartbeat: (m) => {
        const now = this.rt.now()
        const cpu = m.cpuUser + m.cpuSystem
        const before = this.report !== undefined ? this.report.cpuUser + this.report.cpuSystem : 0
        if (now > this.lastBeat) this.cpuPercent = Math.max(0, (cpu - before) / 10 / (now - this.lastBeat))
        this.lastBeat = now
        this.count(m.requests)
        this.inflight = m.inflight
        this.report = m
      },
      retire: (m) => {
        this.count(m.requests)
        this.hooks.retire(this)
      },
    })
  }

  private count(total: number): void {
    const fresh = total - this.requests
    this.requests = total
    this.hooks.served(this, fresh)
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    const how = signal !== null ? `signal ${signal}` : `code ${code}`
    const why = this.killReason !== undefined ? ` (${this.killReason})` : ''
    // Also when it was told to stop while booting: whoever waits for its boot must not wait forever.
    if (this.readyAt === 0) this.settleBoot(new WorkerBootError(`worker ${this.id} (pid ${this.pid}) exited with ${how} before it listened`))
    if (this.state === 'stopping') this.log.info(`worker ${this.id} (pid ${this.pid}) exited with ${how}${why}`)
    else this.log.error(`worker ${this.id} (pid ${this.pid}, generation ${this.generation}) exited with ${how}${why}`)
    this.hooks.exit(this, code, signal)
  }

  /** Signal the process, once it is known why; a process already gone is left alone. */
  kill(signal: NodeJS.Signals, reason: string): void {
    this.killReason ??= reason
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
  }

  /**
   * Tell the worker to stop (graceful: drain up to gracefulMs; else exit
   * now), and kill it if it overstays. handoverMs: other workers serve its
   * clients from now on, so its keep-alive connections close one by one over
   * that long.
   */
  stop(graceful: boolean, gracefulMs: number, handoverMs = 0, windowMs = 0): void {
    if (this.state === 'stopping') return
    this.state = 'stopping'
    const timeoutMs = graceful ? gracefulMs : 0
    this.tell(graceful, timeoutMs, handoverMs, windowMs)
    // A worker whose app closed the IPC channel: SIGTERM drains it just the same. A fast stop of such
    // a worker: it is exiting already (it reported a failure), else the backstop kills it.
    if (!this.child.connected && graceful) this.kill('SIGTERM', 'stop')
    this.backstop(timeoutMs, graceful)
  }

  /**
   * A draining worker must be done within timeoutMs from now, sooner than it
   * was told: too many generations drain at once (their WebSockets open).
   */
  hurry(timeoutMs: number): void {
    if (this.state !== 'stopping') return
    this.tell(true, timeoutMs, 0, timeoutMs / 2)
    this.backstop(timeoutMs, true)
  }

  private tell(graceful: boolean, timeoutMs: number, handoverMs: number, windowMs: number): void {
    const reason = drainReason(this.leaving)
    const message: MasterMessage = { cmd: CMD, act: 'stop', graceful, timeoutMs, handoverMs: Math.min(handoverMs, timeoutMs), windowMs: Math.min(windowMs, timeoutMs), reason }
    if (this.child.connected) this.child.send(message, (err) => err && this.kill('SIGKILL', 'its IPC channel failed'))
  }

  private backstop(timeoutMs: number, graceful: boolean): void {
    this.timers.push(this.rt.after(timeoutMs + (graceful ? BACKSTOP_MS.graceful : BACKSTOP_MS.fast), () => this.kill('SIGKILL', 'graceful timeout')))
  }

  /** Pass a message on, if the channel is still open. */
  send(message: MasterMessage): void {
    if (this.child.connected) this.child.send(message)
  }
}
