/**
 * The service watchdog, as sd_watchdog_enabled(3) defines it: WATCHDOG_USEC
 * is the timeout, WATCHDOG_PID (when set) names the one process that pings.
 * Pings go out at half the interval, and only while a health check says yes:
 * a wedged service must stop pinging so that systemd can act.
 */
import { ConfigError } from './errors.js'
import { notifier, type Notifier } from './notify.js'

/** The variables of the service watchdog: they concern only the process they were set for. */
export const WATCHDOG_VARS = ['WATCHDOG_USEC', 'WATCHDOG_PID'] as const

export interface WatchdogEnv {
  env?: NodeJS.ProcessEnv
  pid?: number
  /** Unset WATCHDOG_USEC and WATCHDOG_PID (default false), so children do not act on them. */
  unsetEnv?: boolean
}

/** The watchdog timeout in µs for this process, or null when no watchdog is asked of it. */
export function watchdogUsec(options: WatchdogEnv = {}): bigint | null {
  const env = options.env ?? process.env
  const usecText = env.WATCHDOG_USEC
  const pidText = env.WATCHDOG_PID
  if (options.unsetEnv === true) for (const v of WATCHDOG_VARS) Reflect.deleteProperty(env, v)
  if (usecText === undefined) return null
  if (!/^[0-9]{1,20}$/.test(usecText) || BigInt(usecText) === 0n || BigInt(usecText) > 0xffffffffffffffffn)
    throw new ConfigError('WATCHDOG_USEC', usecText, 'a positive integer number of microseconds')
  if (pidText !== undefined) {
    if (!/^[0-9]{1,10}$/.test(pidText) || Number(pidText) === 0)
      throw new ConfigError('WATCHDOG_PID', pidText, 'a positive integer pid')
    if (Number(pidText) !== (options.pid ?? process.pid)) return null
  }
  return BigInt(usecText)
}

export interface WatchdogOptions extends WatchdogEnv {
  /** Asked before each ping; no ping while it answers false (or throws, or rejects). */
  healthy?: () => boolean | Promise<boolean>
  notifier?: Notifier
  /** Called with each skipped ping's reason, for the log. */
  onSkip?: (reason: string) => void
}

export interface Watchdog {
  readonly usec: bigint
  readonly intervalMs: number
  stop(): void
}

/** Start pinging, or return null when systemd asked for no watchdog. The timer does not keep the process alive. */
export function startWatchdog(options: WatchdogOptions = {}): Watchdog | null {
  const usec = watchdogUsec(options)
  if (usec === null) return null
  const n = options.notifier ?? notifier()
  const healthy = options.healthy ?? (() => true)
  // setInterval holds at most 2^31-1 ms; a longer watchdog is pinged more often than needed, never less.
  const intervalMs = Math.min(2 ** 31 - 1, Math.max(1, Number(usec / 2000n)))
  let busy = false
  const tick = async (): Promise<void> => {
    if (busy) return // a slow health check must not pile up
    busy = true
    try {
      let ok: boolean
      try {
        ok = await healthy()
      } catch (err) {
        options.onSkip?.(`health check failed: ${(err as Error).message}`)
        return
      }
      if (!ok) {
        options.onSkip?.('health check said no')
        return
      }
      try {
        n.watchdog()
      } catch (err) {
        options.onSkip?.(`ping failed: ${(err as Error).message}`)
      }
    } finally {
      busy = false
    }
  }
  const timer = setInterval(() => void tick(), intervalMs)
  timer.unref()
  void tick()
  return {
    usec,
    intervalMs,
    stop: () => { clearInterval(timer); },
  }
}
