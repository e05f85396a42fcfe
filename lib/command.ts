/**
 * The `sdserve` command: parse the configuration, then print help, the
 * version or the configuration, or run the master. lib/cli.ts is the
 * program that runs it.
 *
 * Exit codes (ExitCode): 0 done, 1 an unexpected error, 2 bad configuration
 * or usage (nothing was started), 3 a worker failed to boot, 4 the app
 * failed to load.
 */
import {
  ACTION_FLAGS,
  CONFIG_FILE_NAMES,
  OPTIONS,
  formatConfig,
  loadConfig,
  type Config,
  type ConfigSources,
} from './config.js'
import { parseAppSpec } from './app-spec.js'
import { DEFAULT_BIND } from './binds.js'
import { ErrorCode, ExitCode, SdserveError } from './errors.js'
import { holdSignals, type HeldSignals } from './early-signals.js'
import { version } from './version.js'

export interface CliIo {
  stdout: (s: string) => void
  stderr: (s: string) => void
}

/**
 * What runs the server; lib/master.ts's runMaster unless a test passes another.
 * `held`: the signals held since the command started, released once the master handles its own.
 */
export type RunMaster = (config: Config, sources: ConfigSources, held?: HeldSignals) => Promise<number>

const processIo: CliIo = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
}

/** The --help text. */
export function usage(): string {
  // Wide enough for the longest flag (gunicorn's --limit-request-field_size BYTES) and two spaces.
  const column = Math.max(...OPTIONS.map((o) => `    --${o.flag} ${o.meta}`.length)) + 4
  const line = (left: string, right: string): string => `  ${left.padEnd(column - 2)}${right}\n`
  let text = 'Usage: sdserve [OPTIONS] APP\n       sdserve ctl [--socket PATH] [--json] COMMAND   (sdserve ctl --help)\n'
  text += '       sdserve unit [OPTIONS] APP [-- OPTIONS]        (sdserve unit --help)\n'
  text += '       sdserve doctor [--json] UNIT                   (sdserve doctor --help)\n\n'
  text += 'Serve APP with a master process and a pool of worker processes, for systemd:\n'
  text += 'socket activation, sd_notify (Type=notify-reload), graceful reload and stop.\n'
  text += '`sdserve unit` writes the systemd units and nginx block that serve APP;\n'
  text += '`sdserve doctor` checks a service unit that runs sdserve.\n\n'
  text += 'APP: path/to/app.js (its default export), app.js:name (an export), or\n'
  text += 'app.js:factory() (a function, sync or async, returning the app).\n\n'
  text += 'Options:\n'
  for (const o of OPTIONS) {
    const flags = `${o.short === undefined ? '    ' : `-${o.short}, `}--${o.flag} ${o.meta}`
    text += line(flags, `${o.help} (default: ${o.defaultText})`)
  }
  for (const a of ACTION_FLAGS) text += line(`${'short' in a ? `-${a.short}, ` : '    '}--${a.flag}`, a.help)
  text += '\nBind specs (-b, repeatable; without it: every socket systemd passes, else ' + DEFAULT_BIND + '):\n'
  text += line('HOST:PORT', 'TCP: 127.0.0.1:8000, localhost:8000, *:8000 or :8000 (all IPv4)')
  text += line('[IPV6]:PORT', 'TCP over IPv6: [::1]:8000, [::]:8000')
  text += line('unix:/PATH', 'a UNIX socket (a stale socket file is replaced)')
  text += line('fd://N', 'a listening socket already open as fd N')
  text += line('systemd:NAME', 'the socket systemd passes with FileDescriptorName=NAME')
  text += '\nConfiguration, later wins: defaults < config file (-c FILE, else the first of\n'
  text += `${CONFIG_FILE_NAMES.join(', ')} in the current directory)\n`
  text += '< SDSERVE_CMD_ARGS (options, quoted as in sh) < the command line.\n'
  text += '\nSignals to the master:\n'
  text += line('HUP', 're-read the configuration, start new workers, retire the old ones gracefully')
  text += line('TERM', 'graceful stop (workers get --graceful-timeout to finish)')
  text += line('INT', 'fast stop')
  text += line('QUIT', 'fast stop')
  text += line('TTIN', 'one worker more')
  text += line('TTOU', 'one worker fewer')
  text += line('USR1', 'reopen log files')
  text += line('USR2', 'binary upgrade: start a new master on the same sockets, hand over, exit')
  text += '\nExit status: 0 stopped normally, 1 unexpected error, 2 bad configuration or usage,\n'
  text += '3 a worker failed to boot, 4 the app failed to load.\n'
  return text
}

/** The exit code for an error sdserve raised on purpose. */
function exitCodeOf(err: SdserveError): number {
  switch (err.code) {
    case ErrorCode.CONFIG:
    case ErrorCode.LISTEN_FDS:
    case ErrorCode.NOTIFY:
      return ExitCode.CONFIG
    case ErrorCode.APP_LOAD:
      return ExitCode.APP_LOAD
    case ErrorCode.WORKER_BOOT:
      return ExitCode.WORKER_BOOT
    default:
      return ExitCode.FAILURE
  }
}

/**
 * Run the sdserve command with argv (process.argv.slice(2)) and env; returns
 * the exit code. Configuration errors print `sdserve: MESSAGE` and return 2
 * before anything is started.
 */
export async function main(argv: string[], env: NodeJS.ProcessEnv, io: CliIo = processIo, runMaster?: RunMaster): Promise<number> {
  // `sdserve ctl ...` talks to a running master; it starts nothing.
  if (argv[0] === 'ctl') return (await import('./ctl/main.js')).ctlMain(argv.slice(1), env, io)
  // `sdserve unit ...` and `sdserve doctor ...` write and check systemd units; they start nothing either.
  if (argv[0] === 'unit') return (await import('./unit/main.js')).unitMain(argv.slice(1), io)
  if (argv[0] === 'doctor') return (await import('./doctor/main.js')).doctorMain(argv.slice(1), io)
  const held = holdSignals()
  const code = await run(argv, env, io, held, runMaster)
  held.release()
  return code
}

/** main() with the signals held: every error becomes an exit code. */
async function run(argv: string[], env: NodeJS.ProcessEnv, io: CliIo, held: HeldSignals, runMaster: RunMaster | undefined): Promise<number> {
  const sources: ConfigSources = { argv, env, cwd: process.cwd() }
  try {
    const { action, config } = await loadConfig(sources)
    switch (action) {
      case 'help':
        io.stdout(usage())
        return ExitCode.OK
      case 'version':
        io.stdout(`sdserve ${version()}\n`)
        return ExitCode.OK
      case 'check-config':
        parseAppSpec(config.app)
        io.stdout(`config OK: ${config.config ?? 'no config file'}\n`)
        return ExitCode.OK
      case 'print-config':
        parseAppSpec(config.app)
        io.stdout(formatConfig(config))
        return ExitCode.OK
      case 'serve': {
        const serve = runMaster ?? (await import('./master.js')).runMaster
        return await serve(config, sources, held)
      }
    }
  } catch (err) {
    // Errors sdserve raises on purpose carry a message meant for the user: a
    // ConfigError (the usual one here: nothing was started), or one from the
    // master that it did not turn into an exit code itself.
    if (err instanceof SdserveError) {
      io.stderr(`sdserve: ${err.message}\n`)
      return exitCodeOf(err)
    }
    io.stderr(`sdserve: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    return ExitCode.FAILURE
  }
}

/**
 * Run the command as the program: process.argv, and an exit code that waits
 * for output still being written.
 */
export function runAsProgram(): void {
  // Not a top-level await: should main() ever be left waiting on nothing, Node would exit 13
  // with a warning about an unsettled await, and systemd would call the stop a failure.
  // No process.exit() either: it could cut off output still being written to a pipe.
  let settled = false
  main(process.argv.slice(2), process.env).then(
    (code) => {
      settled = true
      process.exitCode = code
    },
    /* c8 ignore next 4 -- main() turns every error into an exit code */
    (err: unknown) => {
      settled = true
      process.stderr.write(`sdserve: ${String(err)}\n`)
      process.exitCode = ExitCode.FAILURE
    },
  )
  process.on('exit', () => {
    /* c8 ignore next 4 -- a bug's last line: the event loop emptied while the master still had work to finish */
    if (!settled) {
      process.stderr.write('sdserve: exiting unfinished: something it waited for never settled (a promise in the config file or the app?)\n')
      process.exitCode = ExitCode.FAILURE
    }
  })
}
