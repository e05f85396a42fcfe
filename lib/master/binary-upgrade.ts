/**
 * The old master's side of a binary upgrade (USR2): start a new master with
 * the same command line on our sockets and wait until it serves, or roll
 * back. The pid file follows gunicorn: ours is renamed <pid file>.oldbin
 * while the new master runs, and gets its name back on a rollback. The
 * protocol between the two masters is lib/upgrade.ts.
 *
 * Invariants:
 * - a new master that fails, or is too slow to serve, is stopped: no
 *   orphan is left, and the old master serves on;
 * - a stop during the upgrade stops the new master too (abort()).
 */
import type { ChildProcess } from 'node:child_process'
import type { Logger } from '../logger.js'
import { oneLine } from '../notify.js'
import { renamePidFile } from '../pidfile.js'
import { awaitSuccessor, spawnSuccessor, type HandedSocket } from '../upgrade.js'
import { sleep, type Runtime } from './runtime.js'
import { UPGRADE_MARGIN_MS, UPGRADE_SETTLE_MS } from './timings.js'

export interface UpgradeRequest {
  pidFile: string | undefined
  sockets(): HandedSocket[]
  bootMs: number
  gracefulMs: number
  watchdogUsec: bigint | undefined
  /** A stop has begun: give up. */
  halted(): boolean
  /** It failed while this master serves on (not called when a stop ended it). */
  failed(reason: string): void
}

export type UpgradeResult =
  | { ok: true; successor: ChildProcess; pid: number; pidFile: string | undefined }
  | { ok: false }

export class BinaryUpgrade {
  /** The new master, until it serves or is given up. */
  private successor: ChildProcess | undefined
  /** Where and how this master was started, for the new one. */
  private readonly launch = { cwd: process.cwd(), argv: process.argv.slice(1) }

  constructor(
    private readonly log: Logger,
    private readonly rt: Runtime,
  ) {}

  async run(request: UpgradeRequest): Promise<UpgradeResult> {
    // `systemctl kill -s USR2` signals every process of the unit, one after the other: a new
    // master started at once could get the same USR2 before it can handle it, and die of it.
    await sleep(this.rt, UPGRADE_SETTLE_MS)
    if (request.halted()) {
      this.log.warn('binary upgrade abandoned: stopping')
      return { ok: false }
    }
    const { pidFile } = request
    const oldbin = pidFile === undefined ? undefined : `${pidFile}.oldbin`
    let renamed = false
    try {
      if (pidFile !== undefined && oldbin !== undefined) {
        renamePidFile(pidFile, oldbin)
        renamed = true
      }
      const child = spawnSuccessor(request.sockets(), {
        argv: this.launch.argv,
        cwd: this.launch.cwd,
        env: process.env,
        // The variables were consumed at start; the running watchdog knows the timeout.
        watchdogUsec: request.watchdogUsec,
      })
      this.successor = child
      const pid = await awaitSuccessor(child, request.bootMs + UPGRADE_MARGIN_MS)
      this.successor = undefined
      return { ok: true, successor: child, pid, pidFile: oldbin }
    } catch (err) {
      await this.reap(request.gracefulMs)
      this.successor = undefined
      if (renamed) renamePidFile(oldbin!, pidFile!)
      const reason = oneLine((err as Error).message)
      if (request.halted()) {
        this.log.warn(`binary upgrade given up, stopping: ${reason}`)
        return { ok: false }
      }
      this.log.error(`binary upgrade failed, this master (pid ${process.pid}) keeps serving: ${reason}`)
      request.failed(reason)
      return { ok: false }
    }
  }

  /** A new master still alive when the upgrade failed: stop it, kill it if it overstays. */
  private async reap(gracefulMs: number): Promise<void> {
    const child = this.successor
    /* c8 ignore next 6 -- a new master alive past its own boot timeout (which stops it first) plus 10 s: a backstop */
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      const killer = this.rt.after(gracefulMs + 1000, () => child.kill('SIGKILL'))
      await exited.finally(() => killer.clear())
    }
  }

  /** A stop during the upgrade: the new master goes too (run() then rolls back). */
  abort(): void {
    this.successor?.kill('SIGTERM')
  }
}
