/**
 * `sdserve unit [options] APP [-- SDSERVE_OPTIONS]`: print, or write with
 * --out DIR, the socket unit, service unit and nginx server block that serve
 * APP with sdserve under systemd (lib/unit/generate.ts).
 *
 * Exit codes: 0 done, 1 the files could not be written, 2 bad usage.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import type { CliIo } from '../command.js'
import { parseAppSpec } from '../app-spec.js'
import { parseBind, type BindSpec } from '../binds.js'
import { DEFAULTS, MAX_SECONDS, MAX_WORKERS } from '../config/options.js'
import { ExitCode } from '../errors.js'
import { formatFiles, generate, type UnitOptions } from './generate.js'
import { DEFAULT_LAME_DUCK, optionValues } from './sdserve-args.js'
import { runningSystemdVersion } from './systemd-version.js'

/** The systemd assumed when none is given and systemctl does not say: Debian 12's. */
export const FALLBACK_SYSTEMD_VERSION = 252

export function unitUsage(): string {
  return `Usage: sdserve unit [OPTIONS] APP [-- SDSERVE_OPTIONS]

Print a socket unit, a service unit and an nginx server block that serve APP
with sdserve under systemd, or write them into a directory with --out.

Options:
  --name NAME               the units' name: NAME.socket, NAME.service, /run/NAME (default: app)
  --dir DIR                 WorkingDirectory= (default: APP's directory)
  --bind SPEC               a ListenStream=: unix:/PATH, HOST:PORT or [IPV6]:PORT; repeatable
                            (default: unix:/run/NAME.sock and 127.0.0.1:8000)
  --proxy-user USER[:GROUP] the proxy's user owns the UNIX sockets (default: group www-data)
  --workers N               sdserve --workers
  --graceful-timeout S      sdserve --graceful-timeout (default: 30)
  --lame-duck S             sdserve --lame-duck (default: 0)
  --timeout S               sdserve --timeout (default: 30)
  --systemd-version N       Type=notify-reload from 253, else Type=notify with ExecReload=
                            (default: systemctl --version's, else ${FALLBACK_SYSTEMD_VERSION})
  --binary-upgrade          add the KillMode=control-group drop-in that USR2 upgrades need
  --sdserve PATH            the sdserve executable (default: DIR/node_modules/.bin/sdserve)
  --out DIR                 write NAME.socket, NAME.service, nginx-NAME.conf (and
                            NAME.service.d/binary-upgrade.conf) into DIR instead of printing them
  -h, --help                this help

Options after -- go to sdserve's command line as they are.

Exit status: 0 done, 1 the files could not be written, 2 bad usage.
`
}

/** A usage error: its message names the option. */
class UsageError extends Error {}

/** A number of seconds from 0 to MAX_SECONDS, for option `name`. */
function secondsOption(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text) || Number(text) > MAX_SECONDS)
    throw new UsageError(`--${name} must be a number of seconds from 0 to ${MAX_SECONDS}, got ${JSON.stringify(text)}`)
  return Number(text)
}

/** A systemd unit name (without its suffix) that is also a fine directory and nginx name. */
const UNIT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/
/** A user or group name as useradd takes it, or a number. */
const USER = /^[A-Za-z_][A-Za-z0-9_.-]*\$?$|^[0-9]+$/
/** sdserve options `unit` sets itself: given after -- too, they would contradict the unit's timers or sockets. */
const OWN_FLAGS = ['bind', 'workers', 'timeout', 'graceful-timeout', 'lame-duck']

interface UnitArgs {
  options: UnitOptions
  out?: string
}

/** The ListenStream= sockets: TCP and UNIX binds, with a port. */
function parseBinds(texts: readonly string[]): BindSpec[] {
  return texts.map((text) => {
    let bind: BindSpec
    try {
      bind = parseBind(text, '--bind')
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
    if (bind.kind === 'fd' || bind.kind === 'systemd' || (bind.kind === 'tcp' && bind.port === 0))
      throw new UsageError(`--bind must be a socket systemd can listen on (unix:/PATH, HOST:PORT, [IPV6]:PORT with a port), got ${JSON.stringify(text)}`)
    return bind
  })
}

/** SocketUser= and SocketGroup= of --proxy-user USER[:GROUP]; without it, group www-data (Debian's nginx). */
function parseProxyUser(text: string | undefined): { socketUser?: string; socketGroup: string } {
  if (text === undefined) return { socketGroup: 'www-data' }
  const [user, group] = text.split(':') as [string, string | undefined]
  if (!USER.test(user) || (group !== undefined && !USER.test(group))) throw new UsageError(`--proxy-user must be USER or USER:GROUP, got ${JSON.stringify(text)}`)
  return { socketUser: user, socketGroup: group ?? user }
}

/** parseArgs' options. */
const OPTIONS = {
  name: { type: 'string' },
  dir: { type: 'string' },
  bind: { type: 'string', multiple: true },
  'proxy-user': { type: 'string' },
  workers: { type: 'string' },
  'graceful-timeout': { type: 'string' },
  'lame-duck': { type: 'string' },
  timeout: { type: 'string' },
  'systemd-version': { type: 'string' },
  'binary-upgrade': { type: 'boolean' },
  sdserve: { type: 'string' },
  out: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

function parse(argv: string[], detectVersion: () => number | undefined): UnitArgs | 'help' {
  const dashes = argv.indexOf('--')
  const extra = dashes < 0 ? [] : argv.slice(dashes + 1)
  const { values, positionals } = parseArgs({
    args: dashes < 0 ? argv : argv.slice(0, dashes),
    allowPositionals: true,
    options: OPTIONS,
  })
  if (values.help === true) return 'help'
  if (positionals.length !== 1) throw new UsageError(`one APP is needed (path/to/app.js, app.js:name or app.js:factory()), got ${positionals.length}`)
  const spec = positionals[0] as string
  let module: string
  try {
    module = parseAppSpec(spec).module
  } catch (err) {
    throw new UsageError((err as Error).message)
  }

  const name = values.name ?? 'app'
  if (!UNIT_NAME.test(name)) throw new UsageError(`--name must be letters, digits, _ . and - (a unit name), got ${JSON.stringify(name)}`)
  const modulePath = resolve(module)
  const dir = resolve(values.dir ?? dirname(modulePath))
  // Relative to the working directory when inside it, so that the unit reads as the examples do.
  const inDir = relative(dir, modulePath)
  const app = inDir.startsWith('../') ? spec.replace(module, modulePath) : spec.replace(module, inDir)

  const binds = parseBinds(values.bind ?? [`unix:/run/${name}.sock`, '127.0.0.1:8000'])
  const { socketUser, socketGroup } = parseProxyUser(values['proxy-user'])

  const workers = values.workers
  if (workers !== undefined && workers !== 'auto' && !(/^[0-9]+$/.test(workers) && Number(workers) >= 1 && Number(workers) <= MAX_WORKERS))
    throw new UsageError(`--workers must be an integer from 1 to ${MAX_WORKERS}, or auto, got ${JSON.stringify(workers)}`)

  const versionText = values['systemd-version']
  if (versionText !== undefined && !/^[0-9]{1,4}$/.test(versionText))
    throw new UsageError(`--systemd-version must be a systemd version number (252, 257), got ${JSON.stringify(versionText)}`)
  const systemdVersion = versionText !== undefined ? Number(versionText) : (detectVersion() ?? FALLBACK_SYSTEMD_VERSION)

  const sdserve = values.sdserve ?? join(dir, 'node_modules/.bin/sdserve')
  if (!isAbsolute(sdserve)) throw new UsageError(`--sdserve must be an absolute path (systemd runs it from anywhere), got ${JSON.stringify(sdserve)}`)

  const given = optionValues(extra)
  const own = OWN_FLAGS.find((f) => given.has(f))
  if (own !== undefined) throw new UsageError(`--${own} goes before --: the unit's timers and sockets are sized from it`)

  const options: UnitOptions = {
    name,
    dir,
    app,
    binds,
    ...(socketUser === undefined ? {} : { socketUser }),
    socketGroup,
    ...(workers === undefined ? {} : { workers }),
    gracefulTimeout: secondsOption('graceful-timeout', values['graceful-timeout'], DEFAULTS.gracefulTimeout),
    lameDuck: secondsOption('lame-duck', values['lame-duck'], DEFAULT_LAME_DUCK),
    timeout: secondsOption('timeout', values.timeout, DEFAULTS.timeout),
    systemdVersion,
    binaryUpgrade: values['binary-upgrade'] === true,
    sdserve,
    extra,
  }
  return { options, ...(values.out === undefined ? {} : { out: resolve(values.out) }) }
}

export function unitMain(argv: string[], io: CliIo, detectVersion: () => number | undefined = runningSystemdVersion): number {
  let args: UnitArgs | 'help'
  try {
    args = parse(argv, detectVersion)
  } catch (err) {
    io.stderr(`sdserve unit: ${(err as Error).message}\n`)
    return ExitCode.CONFIG
  }
  if (args === 'help') {
    io.stdout(unitUsage())
    return ExitCode.OK
  }
  const files = generate(args.options)
  if (args.out === undefined) {
    io.stdout(formatFiles(files))
    return ExitCode.OK
  }
  try {
    for (const f of files) {
      const path = join(args.out, f.file)
      mkdirSync(dirname(path), { recursive: true })
      writeFileSync(path, f.text)
      io.stdout(`wrote ${path}\n`)
    }
  } catch (err) {
    io.stderr(`sdserve unit: ${(err as Error).message}\n`)
    return ExitCode.FAILURE
  }
  return ExitCode.OK
}
