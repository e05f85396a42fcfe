/**
 * The master's process: its umask and working directory, and the signals
 * it answers (gunicorn's set: HUP reload, TERM graceful stop, INT and QUIT
 * fast stop, TTIN/TTOU one worker more or fewer, USR1 reopen logs, USR2
 * binary upgrade).
 */
import type { Config } from '../config.js'

export interface SignalActions {
  reload(): unknown
  stop(graceful: boolean): unknown
  scale(delta: number): unknown
  reopenLogs(): unknown
  upgrade(): unknown
}

/** --umask and --chdir, applied to the master (and so inherited by workers). */
export function applyProcessSettings(config: Pick<Config, 'umask' | 'chdir'>): void {
  if (config.umask !== undefined) process.umask(config.umask)
  if (config.chdir !== undefined) process.chdir(config.chdir)
}

export class SignalHandlers {
  private readonly installed: Array<[NodeJS.Signals, () => void]> = []

  constructor(private readonly actions: SignalActions) {}

  install(): void {
    const a = this.actions
    const on = (signal: NodeJS.Signals, fn: () => void): void => {
      process.on(signal, fn)
      this.installed.push([signal, fn])
    }
    // The promises they return settle in the master, which logs what went wrong.
    on('SIGHUP', () => void a.reload())
    on('SIGTERM', () => void a.stop(true))
    on('SIGINT', () => void a.stop(false))
    on('SIGQUIT', () => void a.stop(false))
    on('SIGTTIN', () => void a.scale(1))
    on('SIGTTOU', () => void a.scale(-1))
    on('SIGUSR1', () => void a.reopenLogs())
    on('SIGUSR2', () => void a.upgrade())
  }

  remove(): void {
    for (const [signal, fn] of this.installed) process.off(signal, fn)
    this.installed.length = 0
  }
}
