/**
 * A Runtime (lib/master/runtime.ts) under the test's control: spawned
 * processes are FakeChild objects the test drives (messages, exits), and
 * time moves only when the test calls advance().
 */
import { EventEmitter } from 'node:events'
import type { ChildProcess } from 'node:child_process'
import type { Runtime, Timer } from '../../lib/master/runtime.js'
import type { WorkerReport } from '../../lib/protocol.js'

/** A heartbeat's report: nothing served, nothing in flight, unless the test says otherwise. */
export function report(fields: Partial<WorkerReport> = {}): WorkerReport {
  return {
    requests: 0,
    totals: { responses: [0, 0, 0, 0, 0, 0], buckets: new Array<number>(12).fill(0), seconds: 0, inflight: 0 },
    connections: 0,
    cpuUser: 0,
    cpuSystem: 0,
    loopP99: 0,
    loopMax: 0,
    inflight: [],
    ...fields,
  }
}

let nextPid = 1000

export class FakeChild extends EventEmitter {
  pid: number | undefined
  connected = true
  exitCode: number | null = null
  signalCode: NodeJS.Signals | null = null
  readonly sent: unknown[] = []
  readonly signals: NodeJS.Signals[] = []
  /** The next send() calls its callback with this error. */
  failSend: Error | undefined

  constructor(spawned = true) {
    super()
    this.pid = spawned ? nextPid++ : undefined
    if (!spawned) this.connected = false
  }

  send(message: unknown, callback?: (err: Error | null) => void): boolean {
    this.sent.push(message)
    callback?.(this.failSend ?? null)
    return true
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    this.signals.push(signal)
    return true
  }

  /** A heartbeat with a report (see report()). */
  beat(fields: Partial<WorkerReport> = {}): void {
    this.say({ act: 'heartbeat', ...report(fields) })
  }

  /** The worker says something over IPC. */
  say(message: Record<string, unknown>): void {
    this.emit('message', { cmd: 'SDSERVE', ...message })
  }

  /** The process exits ('close' follows its last message). */
  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    this.exitCode = code
    this.signalCode = signal
    this.connected = false
    this.emit('close', code, signal)
  }

  /** Acts that reached it: 'boot', 'stop', ... */
  acts(): string[] {
    return this.sent.map((m) => (m as { act: string }).act)
  }
}

interface Pending {
  at: number
  fn: () => void
  every?: number
  cleared: boolean
  keepsAlive: boolean
}

export class FakeRuntime implements Runtime {
  time = 1_000_000
  readonly children: FakeChild[] = []
  private readonly timers: Pending[] = []
  /** spawn() makes children that failed to spawn (no pid). */
  failSpawn = false
  /** rss() answers from here: bytes by pid. */
  readonly memory = new Map<number, number>()

  rss(pid: number): number | undefined {
    return this.memory.get(pid)
  }

  spawn(): ChildProcess {
    const child = new FakeChild(!this.failSpawn)
    this.children.push(child)
    return child as unknown as ChildProcess
  }

  now(): number {
    return this.time
  }

  after(ms: number, fn: () => void, keepsAlive = false): Timer {
    const p: Pending = { at: this.time + ms, fn, cleared: false, keepsAlive }
    this.timers.push(p)
    return { clear: () => (p.cleared = true) }
  }

  every(ms: number, fn: () => void): Timer {
    const p: Pending = { at: this.time + ms, fn, every: ms, cleared: false, keepsAlive: false }
    this.timers.push(p)
    return { clear: () => (p.cleared = true) }
  }

  /** Timers still to fire. */
  get pending(): number {
    return this.timers.filter((p) => !p.cleared).length
  }

  /** Move the clock by ms, firing every timer that comes due, in order. */
  advance(ms: number): void {
    const end = this.time + ms
    for (let guard = 0; guard < 10000; guard++) {
      const due = this.timers.filter((p) => !p.cleared && p.at <= end).sort((a, b) => a.at - b.at)[0]
      if (due === undefined) break
      this.time = due.at
      if (due.every !== undefined) due.at += due.every
      else due.cleared = true
      due.fn()
    }
    this.time = end
  }
}

/** Let promise callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve))
}
