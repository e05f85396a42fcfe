/**
 * Boot scheduling (--boot-nice): a worker that boots while others serve (a
 * reload, a replacement, a scale-up) runs at a lower priority until it
 * listens. Its start (Node's own, compiling the app, a warm-up) costs tens
 * of milliseconds of CPU; at a lower priority that CPU comes from idle time
 * before it comes from the workers serving requests, whose latency is what
 * a reload must not hurt. The first generation boots at full priority: no
 * one serves yet, and the start should be quick.
 *
 * The master lowers the worker's priority right after spawning it and
 * raises it back when the worker listens. Raising it back needs root,
 * CAP_SYS_NICE, or an RLIMIT_NICE that allows the master's own nice value
 * (systemd: LimitNICE=+0); without those a worker could never come back,
 * so boot scheduling stays off and the master warns, once.
 */
import { getPriority, setPriority } from 'node:os'
import { readdirSync, readFileSync } from 'node:fs'
import type { Logger } from '../logger.js'

/** What is asked of the system (tests pass a fake). */
export interface PrioritySystem {
  getPriority(pid?: number): number
  setPriority(pid: number, priority: number): void
  /** The threads of a process (their ids), for setPriority: on Linux a nice value is a thread's, not the process's. */
  threads(pid: number): number[]
  /** Why this process may not set a priority as high as `nice`, or undefined when it may. */
  whyNotRaiseTo(nice: number): string | undefined
}

const CAP_SYS_NICE = 23

/** /proc/self/limits's "Max nice priority" soft limit, or 0 when it cannot be read. */
export function niceLimit(limits: string): number {
  const m = /^Max nice priority\s+(\d+|unlimited)/m.exec(limits)
  if (m === null) return 0
  return m[1] === 'unlimited' ? 40 : Number(m[1])
}

/** Whether /proc/self/status's effective capabilities hold CAP_SYS_NICE. */
export function hasSysNice(status: string): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)/im.exec(status)
  return m !== null && (BigInt(`0x${m[1]}`) & (1n << BigInt(CAP_SYS_NICE))) !== 0n
}

const read = (path: string): string => {
  try {
    return readFileSync(path, 'utf8')
    /* c8 ignore next 3 -- /proc is always there on Linux */
  } catch {
    return ''
  }
}

/**
 * Why a process may not set a priority as high as `nice`, or undefined when it
 * may: as root, with RLIMIT_NICE n (nice values down to 20 - n), or with
 * CAP_SYS_NICE.
 */
export function whyNotRaise(nice: number, euid: number | undefined, limits: string, status: string): string | undefined {
  const limit = niceLimit(limits)
  if (euid === 0 || limit >= 20 - nice || hasSysNice(status)) return undefined
  return `uid ${euid ?? '?'}, RLIMIT_NICE ${limit} (nice ${20 - Math.max(limit, 1)} at best), no CAP_SYS_NICE`
}

export const SYSTEM_PRIORITY: PrioritySystem = {
  getPriority: (pid) => getPriority(pid),
  setPriority: (pid, priority) => setPriority(pid, priority),
  whyNotRaiseTo: (nice) => whyNotRaise(nice, process.geteuid?.(), read('/proc/self/limits'), read('/proc/self/status')),
  threads: (pid) => {
    try {
      return readdirSync(`/proc/${pid}/task`).map(Number)
    } catch {
      return [] // gone
    }
  },
}

/** Processes whose priority is never changed: they have no threads to set. */
export const NO_PRIORITY: PrioritySystem = {
  getPriority: () => 0,
  setPriority: () => undefined,
  whyNotRaiseTo: () => undefined,
  threads: () => [],
}

export class BootPriority {
  /** The master's own nice value: what a worker comes back to. */
  private readonly base: number
  /** Whether a worker could come back to it; undefined: not known yet. */
  private allowed: boolean | undefined
  /** Workers lowered and not yet raised back. */
  private readonly lowered = new Set<number>()

  private readonly sys: PrioritySystem

  /** sys undefined (a test's fake processes): boot scheduling is off. */
  constructor(
    private readonly log: Logger,
    sys: PrioritySystem | undefined,
  ) {
    this.sys = sys ?? NO_PRIORITY
    this.base = this.sys.getPriority()
  }

  /** A worker was just spawned: while others serve, it boots `nice` lower (--boot-nice). */
  booting(pid: number, othersServe: boolean, nice: number): void {
    if (nice === 0 || !othersServe || pid === 0) return
    if (this.allowed === undefined) {
      const why = this.sys.whyNotRaiseTo(this.base)
      this.allowed = why === undefined
      // Warned, once: --boot-nice was asked for and does nothing.
      if (why !== undefined)
        this.log.warn(
          `--boot-nice ${nice} is off: a worker at a lower priority could not come back to nice ${this.base} (${why}); ` +
            'root, CAP_SYS_NICE or LimitNICE=+0 would allow it (systemd sets LimitNICE= only where it holds CAP_SYS_RESOURCE)',
        )
    }
    const lower = Math.min(19, this.base + nice)
    if (this.allowed && lower > this.base && this.set(pid, lower)) this.lowered.add(pid)
  }

  /** The worker listens (or is gone): back to the master's priority. */
  booted(pid: number): void {
    if (!this.lowered.delete(pid)) return
    this.set(pid, this.base)
  }

  /**
   * Every thread of the worker: setpriority(2) on a pid changes its main thread
   * only, and Node's V8 and libuv threads (compiling, collecting garbage) would
   * keep the lower priority for the worker's life. Threads made later inherit
   * the value of the thread that makes them.
   */
  private set(pid: number, nice: number): boolean {
    const threads = this.sys.threads(pid)
    for (const tid of threads) {
      try {
        this.sys.setPriority(tid, nice)
      } catch (err) {
        // ESRCH: that thread (or the worker) is already gone; anything else is logged, and the worker keeps its priority.
        if ((err as { info?: { code?: string } }).info?.code === 'ESRCH') continue
        this.log.warn(`cannot set the priority of worker pid ${pid} to nice ${nice}: ${(err as Error).message}`)
        return false
      }
    }
    return threads.length > 0
  }
}
