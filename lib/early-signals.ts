/**
 * The master's signals, held from the first moment the sdserve command runs
 * until the master installs its own handlers. Without this, a `systemctl
 * stop` or `reload` while the configuration loads would meet Node's default
 * actions: TERM, INT, HUP, USR1 and USR2 end the process by the signal, and
 * TTIN and TTOU stop it.
 */

/** Signals that ask for a stop: the command then exits 0 without starting anything. */
const STOP = ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const
/** Signals that mean nothing before there are workers: a reload before the start reads the same files. */
const IGNORED = ['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGTTIN', 'SIGTTOU'] as const

export interface HeldSignals {
  /** The first stop signal that came, if any. */
  readonly stop: NodeJS.Signals | undefined
  /** Hand the signals over: call right after the master installed its own handlers. */
  release(): void
}

export function holdSignals(): HeldSignals {
  let stop: NodeJS.Signals | undefined
  const handlers: Array<[NodeJS.Signals, () => void]> = [
    ...STOP.map((s): [NodeJS.Signals, () => void] => [s, () => (stop ??= s)]),
    ...IGNORED.map((s): [NodeJS.Signals, () => void] => [s, () => undefined]),
  ]
  for (const [signal, fn] of handlers) process.on(signal, fn)
  return {
    get stop() {
      return stop
    },
    release() {
      for (const [signal, fn] of handlers) process.off(signal, fn)
      handlers.length = 0
    },
  }
}
