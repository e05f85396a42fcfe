/**
 * What a unit's command line tells about the sdserve it runs: whether it runs
 * sdserve at all, and the options the unit's own timers must fit around (the
 * drain a stop waits for, the boot the watchdog must outlast, the pid file and
 * control socket that need a RuntimeDirectory=). Both `sdserve unit` and
 * `sdserve doctor` size TimeoutStopSec= and WatchdogSec= from these.
 */
import { basename } from 'node:path'
import { DEFAULTS, OPTIONS } from '../config/options.js'
import { timingsOf } from '../master/timings.js'

/** The long flags that take a value, and the one-letter ones mapped to their long flag. */
const VALUE_FLAGS = new Set(OPTIONS.filter((o) => o.boolean !== true).map((o) => o.flag))
const SHORT_FLAGS = new Map(OPTIONS.flatMap((o) => (o.short === undefined ? [] : [[o.short, o.flag] as const])))

/** The drain sdserve is given on a stop by default: no lame duck. */
export const DEFAULT_LAME_DUCK = DEFAULTS.lameDuck

/** The options of a command line, or undefined when it does not run sdserve. */
export function sdserveArgs(argv: readonly string[]): string[] | undefined {
  let i = 0
  // env VAR=value ... sdserve
  if (basename(argv[0] ?? '') === 'env') for (i = 1; i < argv.length && /^-|=/.test(argv[i] as string); i++);
  const program = basename(argv[i] ?? '')
  if (program === 'sdserve') return argv.slice(i + 1)
  if (/^node(js)?[0-9]*$/.test(program)) {
    // node [node options] /path/to/sdserve or .../sdserve/dist/lib/cli.js
    for (i++; i < argv.length && (argv[i] as string).startsWith('-'); i++);
    const script = argv[i] ?? ''
    if (basename(script) === 'sdserve' || /(^|\/)sdserve\/dist\/lib\/cli\.js$/.test(script)) return argv.slice(i + 1)
  }
  return undefined
}

/** Each option given (long flag -> its last value), the rest ignored. Values of switches are 'true'. */
export function optionValues(args: readonly string[]): Map<string, string> {
  const values = new Map<string, string>()
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    if (arg === '--') break
    let flag: string | undefined
    let value: string | undefined
    const long = /^--([^=]+)(?:=(.*))?$/s.exec(arg)
    if (long !== null) {
      flag = long[1]
      value = long[2]
    } else if (/^-[^-]/.test(arg)) {
      flag = SHORT_FLAGS.get(arg[1] as string)
      if (arg.length > 2) value = arg.slice(2)
    }
    if (flag === undefined) continue
    if (value === undefined && VALUE_FLAGS.has(flag)) value = args[++i]
    values.set(flag, value ?? 'true')
  }
  return values
}

/** The timers and paths of an sdserve command line that its unit must fit. */
export interface SdserveTimers {
  /** Seconds a stop first answers health checks 503 (--lame-duck). */
  lameDuck: number
  /** Seconds the workers get to finish on a stop (--graceful-timeout). */
  gracefulTimeout: number
  /** Seconds of a blocked event loop before a worker is killed (--timeout; 0: never). */
  timeout: number
  /** Seconds a worker may take to boot: --boot-timeout, else what sdserve derives from --timeout. */
  boot: number
  /** How much lower a worker of a reload boots (--boot-nice; 0: off), which the unit must let it come back from. */
  bootNice: number
  /** --pid, if given. */
  pid?: string
  /** --control-socket, if given. */
  controlSocket?: string
}

/** A number of seconds, or the default when the text is not one (sdserve itself rejects such a value at start). */
function secondsOr(text: string | undefined, fallback: number): number {
  return text !== undefined && /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : fallback
}

/** The timers of sdserve's options, defaults filled in. */
export function timersOf(args: readonly string[]): SdserveTimers {
  const v = optionValues(args)
  const timeout = secondsOr(v.get('timeout'), DEFAULTS.timeout)
  const gracefulTimeout = secondsOr(v.get('graceful-timeout'), DEFAULTS.gracefulTimeout)
  const bootText = v.get('boot-timeout')
  const bootTimeout = bootText === undefined ? undefined : secondsOr(bootText, 0) || undefined
  const boot = timingsOf({ ...DEFAULTS, timeout, gracefulTimeout, bootTimeout }).bootMs / 1000
  const pid = v.get('pid')
  const controlSocket = v.get('control-socket')
  return {
    lameDuck: secondsOr(v.get('lame-duck'), DEFAULT_LAME_DUCK),
    gracefulTimeout,
    timeout,
    boot,
    bootNice: secondsOr(v.get('boot-nice'), DEFAULTS.bootNice),
    ...(pid === undefined ? {} : { pid }),
    ...(controlSocket === undefined ? {} : { controlSocket }),
  }
}

/** Seconds a graceful stop may take: the lame duck, then the drain. */
export const drainOf = (t: SdserveTimers): number => t.lameDuck + t.gracefulTimeout

/** Seconds the watchdog must outlast: a worker's boot, and a blocked worker's --timeout. */
export const watchdogFloorOf = (t: SdserveTimers): number => Math.max(t.boot, t.timeout)
