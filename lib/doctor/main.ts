/**
 * `sdserve doctor [--json] [--systemd-version N] UNIT`: check a service unit
 * that runs sdserve (lib/doctor/checks.ts). UNIT is a file (its drop-ins in
 * FILE.d/*.conf are read too) or a unit name, read with `systemctl cat` as
 * systemd sees it, drop-ins included.
 *
 * Exit codes: 0 no error (warnings allowed), 1 errors, 2 bad usage or a unit
 * that cannot be read.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { CliIo } from '../command.js'
import { ExitCode } from '../errors.js'
import { runningSystemdVersion } from '../unit/systemd-version.js'
import { checkUnit, type Finding } from './checks.js'
import { parseSystemctlCat, parseUnitFile, type Unit } from './parse-unit.js'

export function doctorUsage(): string {
  return `Usage: sdserve doctor [--json] [--systemd-version N] UNIT

Check a service unit that runs sdserve: its Type=, NotifyAccess=,
TimeoutStopSec= against the drain, KillMode=, RuntimeDirectory=, WatchdogSec=
against a worker's boot, ExecStart= and Restart=. Each finding comes with a fix.

UNIT: a unit file (and its drop-ins in FILE.d/*.conf), or a unit name such as
app.service, read with \`systemctl cat\` (drop-ins included).

Options:
  --json                 the findings as JSON
  --systemd-version N    the systemd the unit is for (default: systemctl --version's)
  -h, --help             this help

Exit status: 0 no errors, 1 errors, 2 bad usage or a unit that cannot be read.
`
}

/** `systemctl cat -- NAME`'s output; throws with systemctl's message when it fails. */
export function systemctlCat(name: string, systemctl = 'systemctl'): string {
  try {
    return execFileSync(systemctl, ['cat', '--', name], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const e = err as Error & { stderr?: string }
    throw new Error(`systemctl cat ${name}: ${(e.stderr ?? '').trim() || e.message}`, { cause: err })
  }
}

/** A unit file and its drop-ins beside it (FILE.d/*.conf, in systemd's order: by name). */
function readUnitFile(path: string): Unit {
  const files = [path]
  const dropIns = `${path}.d`
  if (existsSync(dropIns)) files.push(...readdirSync(dropIns).filter((f) => f.endsWith('.conf')).sort().map((f) => join(dropIns, f)))
  return { files, assignments: files.flatMap((f) => parseUnitFile(readFileSync(f, 'utf8'), f)) }
}

export interface DoctorDeps {
  systemdVersion: () => number | undefined
  systemctlCat: (name: string) => string
}

const DEFAULT_DEPS: DoctorDeps = { systemdVersion: runningSystemdVersion, systemctlCat }

/** One finding as a line: severity, what, the fix, where. */
export function formatFinding(f: Finding): string {
  const where = f.file === undefined ? '' : ` (${f.file}${f.line === undefined ? '' : `:${f.line}`})`
  return `${f.severity}: ${f.message}: ${f.fix}${where}\n`
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`

export function doctorMain(argv: string[], io: CliIo, deps: DoctorDeps = DEFAULT_DEPS): number {
  let values: { json?: boolean; 'systemd-version'?: string; help?: boolean }
  let positionals: string[]
  try {
    ;({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { json: { type: 'boolean' }, 'systemd-version': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }))
    if (values.help !== true && positionals.length !== 1) throw new Error(`one UNIT is needed (a file or a unit name), got ${positionals.length}`)
    const v = values['systemd-version']
    if (v !== undefined && !/^[0-9]{1,4}$/.test(v)) throw new Error(`--systemd-version must be a systemd version number (252, 257), got ${JSON.stringify(v)}`)
  } catch (err) {
    io.stderr(`sdserve doctor: ${(err as Error).message}\n`)
    return ExitCode.CONFIG
  }
  if (values.help === true) {
    io.stdout(doctorUsage())
    return ExitCode.OK
  }
  const name = positionals[0] as string
  let unit: Unit
  try {
    // A path (or an existing file) is read as a file; anything else is a unit name for systemctl.
    unit = name.includes('/') || existsSync(name) ? readUnitFile(name) : parseSystemctlCat(deps.systemctlCat(name))
  } catch (err) {
    io.stderr(`sdserve doctor: cannot read ${name}: ${(err as Error).message}\n`)
    return ExitCode.CONFIG
  }
  const versionText = values['systemd-version']
  const systemdVersion = versionText === undefined ? deps.systemdVersion() : Number(versionText)
  const findings = checkUnit(unit, systemdVersion === undefined ? {} : { systemdVersion })
  const count = (s: Finding['severity']): number => findings.filter((f) => f.severity === s).length
  const errors = count('error')
  if (values.json === true) {
    io.stdout(`${JSON.stringify({ unit: name, files: unit.files, findings, errors, warnings: count('warning'), notes: count('info') })}\n`)
  } else {
    for (const f of findings) io.stdout(formatFinding(f))
    const summary = findings.length === 0 ? 'no problems found' : `${plural(errors, 'error')}, ${plural(count('warning'), 'warning')}, ${plural(count('info'), 'note')}`
    io.stdout(`${name}: ${summary} (${unit.files.join(', ')})\n`)
  }
  return errors > 0 ? ExitCode.FAILURE : ExitCode.OK
}
