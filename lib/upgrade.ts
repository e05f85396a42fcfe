/**
 * Binary upgrade (USR2): an old master starts its successor (the same command
 * line, with the node binary and the code now on disk), hands it every
 * listening socket, and learns when it serves. nginx's and gunicorn's USR2,
 * with the hand-over made automatic and told to systemd (MAINPID=).
 *
 * The sockets travel as they come from systemd: fds 3.. with LISTEN_FDS,
 * LISTEN_FDNAMES and LISTEN_PID, so the new master takes them through the
 * ordinary activation path. LISTEN_PID (and WATCHDOG_PID) must be the new
 * process's own pid, which node cannot know before it forks: /bin/sh sets
 * them to its own pid, which exec keeps, then execs node.
 *
 * The handshake runs over the IPC channel: the new master says
 * `upgrade-ready` once its workers serve; the old one tells systemd
 * MAINPID=<new>, answers `upgrade-promote` and retires. Until promoted, the
 * new master is not the unit's main process and sends systemd nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { CMD } from './protocol.js'
import { ACTIVATION_VARS } from './activation.js'
import { WATCHDOG_VARS } from './watchdog.js'

/** Set in a new master's environment: `<old master pid>;<fds it now owns, comma-separated>`. */
export const UPGRADE_ENV = 'SDSERVE_UPGRADE'

export interface HandedSocket {
  fd: number
  /** Its LISTEN_FDNAMES name (a valid FDNAME). */
  name: string
  /** Created by sdserve (not systemd): the new master closes it and removes its UNIX path at exit. */
  owned: boolean
}

export type UpgradeMessage =
  | { cmd: typeof CMD; act: 'upgrade-ready'; pid: number }
  | { cmd: typeof CMD; act: 'upgrade-promote' }

const isUpgradeMessage = (m: unknown, act: UpgradeMessage['act']): boolean =>
  typeof m === 'object' && m !== null && (m as { cmd?: unknown }).cmd === CMD && (m as { act?: unknown }).act === act

// What must carry the new process's own pid, set by the shell that becomes it.
const EXEC_WITH_OWN_PID =
  'LISTEN_PID=$$; export LISTEN_PID; if [ -n "${WATCHDOG_USEC:-}" ]; then WATCHDOG_PID=$$; export WATCHDOG_PID; fi; exec "$0" "$@"'

export interface SuccessorOptions {
  /** The command line after node's own options (process.argv.slice(1)). */
  argv: string[]
  /** The directory the old master was started in (before any --chdir). */
  cwd: string
  env: NodeJS.ProcessEnv
  /** The service watchdog's timeout, passed on (the old master consumed WATCHDOG_USEC). */
  watchdogUsec?: bigint | undefined
}

/** Start the new master with the sockets at fds 3.. and an IPC channel after them. */
export function spawnSuccessor(sockets: HandedSocket[], options: SuccessorOptions): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...options.env }
  for (const k of [...ACTIVATION_VARS, ...WATCHDOG_VARS]) Reflect.deleteProperty(env, k)
  env.LISTEN_FDS = String(sockets.length)
  env.LISTEN_FDNAMES = sockets.map((s) => s.name).join(':')
  if (options.watchdogUsec !== undefined) env.WATCHDOG_USEC = String(options.watchdogUsec)
  const owned = sockets.flatMap((s, i) => (s.owned ? [String(3 + i)] : []))
  env[UPGRADE_ENV] = `${process.pid};${owned.join(',')}`
  return spawn('/bin/sh', ['-c', EXEC_WITH_OWN_PID, process.execPath, ...process.execArgv, ...options.argv], {
    stdio: ['inherit', 'inherit', 'inherit', ...sockets.map((s) => s.fd), 'ipc'],
    env,
    cwd: options.cwd,
  })
}

/**
 * Resolves with the new master's pid once it reports its workers serving;
 * rejects when it exits first or takes longer than timeoutMs.
 */
export function awaitSuccessor(child: ChildProcess, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | undefined, pid?: number): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      child.off('error', onError)
      if (err !== undefined) reject(err)
      else resolve(pid!)
    }
    const onMessage = (m: unknown): void => {
      if (isUpgradeMessage(m, 'upgrade-ready')) done(undefined, (m as { pid: number }).pid)
    }
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      done(new Error(`the new master exited with ${signal ?? `code ${code}`} before it served`))
    /* c8 ignore next -- spawning /bin/sh fails only when out of memory or pids */
    const onError = (err: Error): void => done(new Error(`the new master could not be started: ${err.message}`))
    const timer = setTimeout(() => done(new Error(`the new master did not serve within ${timeoutMs} ms`)), timeoutMs)
    child.on('message', onMessage)
    child.once('exit', onExit)
    child.once('error', onError)
  })
}

/** Tell the new master it is the main process now, and let it go its own way. */
export function promote(child: ChildProcess): void {
  if (child.connected) {
    child.send({ cmd: CMD, act: 'upgrade-promote' } satisfies UpgradeMessage)
    child.disconnect()
  }
  child.unref()
}

export interface UpgradeOrigin {
  /** The old master's pid. */
  from: number
  /** Inherited fds the old master had created, which this master now owns. */
  owned: Set<number>
}

/**
 * In a new master: where it came from, from SDSERVE_UPGRADE (which it
 * unsets); undefined for a master started any other way, or when the
 * variable is malformed or there is no channel to the old master.
 */
export function upgradeOrigin(env: NodeJS.ProcessEnv = process.env): UpgradeOrigin | undefined {
  const text = env[UPGRADE_ENV]
  Reflect.deleteProperty(env, UPGRADE_ENV)
  const m = /^([0-9]{1,10});([0-9]{1,10}(?:,[0-9]{1,10})*)?$/.exec(text ?? '')
  if (m === null || process.send === undefined) return undefined
  return { from: Number(m[1]), owned: new Set((m[2] ?? '').split(',').filter((s) => s !== '').map(Number)) }
}

/**
 * In a new master whose workers serve: tell the old master, and resolve once
 * it promotes us (or its channel closes: it is gone, and we are on our own).
 */
export function reportServing(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off('message', onMessage)
      process.off('disconnect', done)
      if (process.connected) process.disconnect()
      resolve()
    }
    const onMessage = (m: unknown): void => {
      if (isUpgradeMessage(m, 'upgrade-promote')) done()
    }
    process.on('message', onMessage)
    process.once('disconnect', done)
    process.send?.({ cmd: CMD, act: 'upgrade-ready', pid: process.pid } satisfies UpgradeMessage)
  })
}
