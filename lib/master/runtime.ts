/**
 * The operating-system calls the master's parts make that a test needs to
 * control (tableflip's env.go): starting a process, the clock, timers, a
 * process's memory and its priority.
 * The parts take a Runtime; production passes SYSTEM, a test a fake whose
 * processes are EventEmitters and whose time moves when the test says.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { SYSTEM_PRIORITY, type PrioritySystem } from './boot-priority.js'

export interface Timer {
  clear(): void
}

export interface Runtime {
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess
  /** Milliseconds, for ages and deadlines (Date.now()). */
  now(): number
  /**
   * Call fn once after ms. A watchdog timer (a backstop, a boot deadline) is
   * unref'd: it must not keep a master alive that has nothing else to do. A
   * timer that is the next step (a respawn after backoff) keeps it alive.
   */
  after(ms: number, fn: () => void, keepsAlive?: boolean): Timer
  /** Call fn every ms; never keeps the process alive. */
  every(ms: number, fn: () => void): Timer
  /** A process's resident memory in bytes; undefined when it is gone. */
  rss(pid: number): number | undefined
  /** Processes' priorities (nice), for boot scheduling; without it, boot scheduling is off. */
  priority?: PrioritySystem
}

/** Bytes of VmRSS in the text of /proc/PID/status; undefined without one (a zombie, a kernel thread). */
export function rssOf(status: string): number | undefined {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]
  return kb === undefined ? undefined : Number(kb) * 1024
}

function procRss(pid: number): number | undefined {
  try {
    return rssOf(readFileSync(`/proc/${pid}/status`, 'utf8'))
  } catch {
    return undefined // exited meanwhile
  }
}

export const SYSTEM: Runtime = {
  spawn: (command, args, options) => spawn(command, args, options),
  now: () => Date.now(),
  after(ms, fn, keepsAlive = false) {
    const t = setTimeout(fn, ms)
    if (!keepsAlive) t.unref()
    return { clear: () => clearTimeout(t) }
  },
  every(ms, fn) {
    const t = setInterval(fn, ms)
    t.unref()
    return { clear: () => clearInterval(t) }
  },
  rss: procRss,
  priority: SYSTEM_PRIORITY,
}

/** A promise that resolves after ms on the runtime's clock; keepsAlive: see Runtime.after. */
export function sleep(rt: Runtime, ms: number, keepsAlive = true): Promise<void> {
  return new Promise((resolve) => rt.after(ms, resolve, keepsAlive))
}
