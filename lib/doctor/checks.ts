/**
 * What `sdserve doctor` says about a service unit that runs sdserve: each
 * check reads the unit's settings and the sdserve options on its ExecStart=
 * and returns findings, each with a one-line fix. The rules are those the
 * units of `sdserve unit` follow (lib/unit/generate.ts).
 */
import { dirname } from 'node:path'
import { splitCommand } from '../unit/command-line.js'
import { MARGIN_S, NOTIFY_RELOAD_SINCE } from '../unit/generate.js'
import { drainOf, sdserveArgs, timersOf, watchdogFloorOf, type SdserveTimers } from '../unit/sdserve-args.js'
import { effective, setting, type Assignment, type Unit } from './parse-unit.js'
import { formatSeconds, parseTimeSpan } from './time-span.js'

/** error: the unit does not work as it should (exit 1); warning: it may not; info: it could do better. */
export type Severity = 'error' | 'warning' | 'info'

export interface Finding {
  severity: Severity
  /** Which check: type, notify-access, exec-reload, exec-start, timeout-stop, kill-mode, runtime-directory, watchdog, restart, boot-nice. */
  check: string
  message: string
  /** One line: what to set. */
  fix: string
  file?: string
  line?: number
}

export interface CheckContext {
  /** The systemd the unit runs under, when known. */
  systemdVersion?: number
}

/** systemd's DefaultTimeoutStopSec= (system.conf), when the unit sets neither TimeoutStopSec= nor TimeoutSec=. */
const DEFAULT_TIMEOUT_STOP_MS = 90_000

/** A finding located at the assignment it is about, if any. */
function finding(severity: Severity, check: string, at: Assignment | undefined, message: string, fix: string): Finding {
  return { severity, check, message, fix, ...(at === undefined ? {} : { file: at.file, line: at.line }) }
}

/** A number of seconds as the messages say it: "30 s". */
const s = (seconds: number): string => `${seconds} s`

/** What the unit's ExecStart= runs: sdserve's timers, or a finding that it runs something else. */
function execStart(unit: Unit, out: Finding[]): { timers: SdserveTimers; at: Assignment | undefined } {
  const at = setting(unit, 'Service', 'ExecStart')
  const args = at === undefined ? undefined : sdserveArgs(splitCommand(at.value))
  if (at === undefined) out.push(finding('error', 'exec-start', at, 'no ExecStart=', 'ExecStart=/path/to/app/node_modules/.bin/sdserve [OPTIONS] APP'))
  else if (args === undefined)
    out.push(finding('error', 'exec-start', at, `ExecStart= does not run sdserve: ${at.value}`, 'ExecStart=/path/to/app/node_modules/.bin/sdserve [OPTIONS] APP'))
  // Without sdserve on the command line, its defaults: the other checks still say what they can.
  return { timers: timersOf(args ?? []), at }
}

function checkType(unit: Unit, ctx: CheckContext, out: Finding[]): void {
  const at = setting(unit, 'Service', 'Type')
  const type = at?.value ?? 'simple'
  const version = ctx.systemdVersion
  const canReload = version === undefined || version >= NOTIFY_RELOAD_SINCE
  const best = version !== undefined && version < NOTIFY_RELOAD_SINCE ? 'Type=notify' : 'Type=notify-reload (systemd 253 and later) or Type=notify'
  if (type === 'notify-reload') {
    if (!canReload) out.push(finding('error', 'type', at, `Type=notify-reload needs systemd ${NOTIFY_RELOAD_SINCE}, this is ${version}`, 'Type=notify and ExecReload=/bin/kill -s HUP $MAINPID'))
    return
  }
  if (type !== 'notify') {
    const what = at === undefined ? 'no Type= (simple)' : `Type=${type}`
    out.push(finding('error', 'type', at, `${what}: systemd neither waits for sdserve's READY=1 nor hears of its reloads`, best))
    return
  }
  if (version !== undefined && version >= NOTIFY_RELOAD_SINCE)
    out.push(finding('info', 'type', at, `Type=notify on systemd ${version}: Type=notify-reload is available, and \`systemctl reload\` then waits for the new workers`, 'Type=notify-reload, without ExecReload='))
  if (setting(unit, 'Service', 'ExecReload') === undefined)
    out.push(finding('warning', 'exec-reload', at, 'Type=notify without ExecReload=: `systemctl reload` is refused', 'ExecReload=/bin/kill -s HUP $MAINPID'))
}

function checkNotifyAccess(unit: Unit, out: Finding[]): void {
  const at = setting(unit, 'Service', 'NotifyAccess')
  if (at === undefined || at.value === 'main') return
  if (at.value === 'none') out.push(finding('error', 'notify-access', at, "NotifyAccess=none: systemd ignores the master's READY=1 and the start times out", 'NotifyAccess=main'))
  else out.push(finding('warning', 'notify-access', at, `NotifyAccess=${at.value}: only the master notifies, and a worker's app need not be heard`, 'NotifyAccess=main'))
}

function checkTimeoutStop(unit: Unit, timers: SdserveTimers, out: Finding[]): void {
  const at = setting(unit, 'Service', 'TimeoutStopSec') ?? setting(unit, 'Service', 'TimeoutSec')
  const stopMs = at === undefined ? DEFAULT_TIMEOUT_STOP_MS : parseTimeSpan(at.value)
  const drain = drainOf(timers)
  const fix = `set TimeoutStopSec=${formatSeconds((drain + MARGIN_S) * 1000)}`
  if (stopMs === undefined) {
    out.push(finding('warning', 'timeout-stop', at, `${(at as Assignment).key}=${(at as Assignment).value} is not a time span systemd reads`, fix))
    return
  }
  if (stopMs > drain * 1000) return
  const what = at === undefined ? `TimeoutStopSec (systemd's default, ${formatSeconds(stopMs)})` : `${at.key}=${at.value}`
  const how = stopMs === drain * 1000 ? 'is no longer than' : 'is shorter than'
  out.push(finding('error', 'timeout-stop', at, `${what} ${how} the drain (lame duck ${s(timers.lameDuck)} + graceful timeout ${s(timers.gracefulTimeout)})`, fix))
}

/** Whether anything the unit runs sends USR2: binary upgrades. */
function usesUpgrades(unit: Unit): boolean {
  return unit.assignments.some((a) => a.section === 'Service' && a.key.startsWith('Exec') && /\b(SIG)?USR2\b/.test(a.value))
}

function checkKillMode(unit: Unit, out: Finding[]): void {
  const at = setting(unit, 'Service', 'KillMode')
  const mode = at?.value ?? 'control-group'
  if (mode === 'none') out.push(finding('error', 'kill-mode', at, 'KillMode=none: a stop leaves the master and workers running', 'KillMode=mixed'))
  else if (mode === 'process')
    out.push(finding('warning', 'kill-mode', at, "KillMode=process: when the master dies or is killed its workers stay behind, outside systemd's reach", 'KillMode=mixed'))
  else if (mode === 'mixed' && usesUpgrades(unit))
    out.push(
      finding('warning', 'kill-mode', at, "KillMode=mixed with USR2 binary upgrades: the new master is not systemd's child, and the next stop kills every process at once", 'KillMode=control-group (examples/systemd/binary-upgrade.conf)'),
    )
  else if (mode === 'mixed')
    out.push(finding('info', 'kill-mode', at, 'KillMode=mixed: fine, but binary upgrades (USR2) need KillMode=control-group', 'if you upgrade with USR2, add KillMode=control-group in a drop-in'))
}

function checkRuntimeDirectory(unit: Unit, timers: SdserveTimers, exec: Assignment | undefined, out: Finding[]): void {
  const dirs = effective(unit, 'Service', 'RuntimeDirectory').flatMap((a) => a.value.split(/\s+/).map((d) => `/run/${d}`))
  const pidDir = timers.pid === undefined ? undefined : dirname(timers.pid)
  if (pidDir !== undefined && pidDir.startsWith('/run/') && !dirs.includes(pidDir))
    out.push(finding('warning', 'runtime-directory', exec, `--pid ${timers.pid}: nothing makes ${pidDir} (no RuntimeDirectory= for it), so sdserve cannot write its pid file`, `RuntimeDirectory=${pidDir.slice(5)}`))
  if (dirs.length === 0 && timers.controlSocket === undefined)
    out.push(finding('warning', 'runtime-directory', undefined, 'no RuntimeDirectory=: sdserve has no control socket ($RUNTIME_DIRECTORY/sdserve.ctl), so `sdserve ctl` cannot reach it', 'RuntimeDirectory=NAME (or --control-socket PATH)'))
}

function checkWatchdog(unit: Unit, timers: SdserveTimers, out: Finding[]): void {
  const at = setting(unit, 'Service', 'WatchdogSec')
  if (at === undefined) return
  const floor = watchdogFloorOf(timers)
  const fix = `set WatchdogSec=${formatSeconds((floor + MARGIN_S) * 1000)}`
  const ms = parseTimeSpan(at.value)
  if (ms === undefined) out.push(finding('warning', 'watchdog', at, `WatchdogSec=${at.value} is not a time span systemd reads`, fix))
  // 0 and infinity: no watchdog.
  else if (ms > 0 && ms !== Infinity && ms <= floor * 1000) {
    const why = timers.boot >= timers.timeout ? `a worker's boot (--boot-timeout, ${s(timers.boot)})` : `--timeout (${s(timers.timeout)})`
    // systemd arms the watchdog once the start-up is complete, so this bites only when no worker serves
    // while a replacement boots (a lone worker that crashed, or all of them): a warning, not an error.
    out.push(
      finding('warning', 'watchdog', at, `WatchdogSec=${at.value} is not longer than ${why}: if no worker serves while a replacement boots, systemd kills the service first`, fix),
    )
  }
}

function checkRestart(unit: Unit, out: Finding[]): void {
  const at = setting(unit, 'Service', 'Restart')
  if (at === undefined || at.value === 'no')
    out.push(finding('warning', 'restart', at, `${at === undefined ? 'no Restart=' : 'Restart=no'}: a master that crashes or misses the watchdog stays down`, 'Restart=on-failure'))
}

const YES = /^(1|yes|true|on)$/i

/**
 * The lowest nice value LimitNICE= lets a process set, as systemd reads it:
 * +N or -N is a nice value, a bare number the raw limit (0-40, nice 20 - N;
 * 0 is as 1), infinity no limit; of SOFT:HARD the soft one counts. Undefined
 * when it is none of those (systemd then ignores the line and says so).
 */
export function niceFloorOf(limitNice: string): number | undefined {
  const soft = (limitNice.split(':')[0] as string).trim()
  if (soft === 'infinity') return -20
  if (/^[+-][0-9]+$/.test(soft)) return Number(soft)
  if (/^[0-9]+$/.test(soft)) return 20 - Math.max(Number(soft), 1)
  return undefined
}

/**
 * --boot-nice lowers a booting worker and raises it back once it listens:
 * as another user than root, that takes a LimitNICE= down to the master's
 * nice value or CAP_SYS_NICE, else sdserve leaves boot scheduling off.
 */
function checkBootNice(unit: Unit, timers: SdserveTimers, exec: Assignment | undefined, out: Finding[]): void {
  if (timers.bootNice <= 0) return
  const user = setting(unit, 'Service', 'User')?.value
  const dynamic = YES.test(setting(unit, 'Service', 'DynamicUser')?.value ?? '')
  if (!dynamic && (user === undefined || user === 'root' || user === '0')) return
  if (effective(unit, 'Service', 'AmbientCapabilities').some((a) => !a.value.startsWith('~') && /\bCAP_SYS_NICE\b/.test(a.value))) return
  const base = Number(setting(unit, 'Service', 'Nice')?.value ?? 0) || 0
  const limit = setting(unit, 'Service', 'LimitNICE')
  const floor = limit === undefined ? 19 : niceFloorOf(limit.value)
  if (floor === undefined || floor <= base) return
  const who = dynamic ? 'DynamicUser=yes' : `User=${user as string}`
  const has = limit === undefined ? 'no LimitNICE=' : `LimitNICE=${limit.value}`
  const want = `LimitNICE=${base >= 0 ? '+' : ''}${base}`
  out.push(
    finding(
      'warning',
      'boot-nice',
      limit ?? exec,
      `--boot-nice ${timers.bootNice} with ${who} and ${has}: a worker at a lower priority could not come back to nice ${base}, so sdserve leaves boot scheduling off`,
      `${want} (or AmbientCapabilities=CAP_SYS_NICE)`,
    ),
  )
}

/** Every finding about the unit, in the order of the README's list. */
export function checkUnit(unit: Unit, ctx: CheckContext = {}): Finding[] {
  if (!unit.assignments.some((a) => a.section === 'Service'))
    return [finding('error', 'service', undefined, 'no [Service] section: not a service unit', 'point sdserve doctor at the .service unit')]
  const out: Finding[] = []
  const { timers, at } = execStart(unit, out)
  checkType(unit, ctx, out)
  checkNotifyAccess(unit, out)
  checkTimeoutStop(unit, timers, out)
  checkKillMode(unit, out)
  checkRuntimeDirectory(unit, timers, at, out)
  checkWatchdog(unit, timers, out)
  checkRestart(unit, out)
  checkBootNice(unit, timers, at, out)
  return out
}
