/**
 * `sdserve ctl [--socket PATH] [--json] [--timeout SECONDS] COMMAND [N]`:
 * ask a running master something over its control socket.
 *
 * Exit codes: 0 done, 1 the master could not be reached or the command
 * failed (the message says why), 2 bad usage.
 */
import { parseArgs } from 'node:util'
import { COMMANDS, parseRequest, type ControlRequest } from '../control-protocol.js'
import { MAX_WORKERS } from '../config/options.js'
import { CtlError, ExitCode } from '../errors.js'
import { controlSocketPath } from '../control-protocol.js'
import { ask } from './client.js'
import { render } from './render.js'

export interface CtlIo {
  stdout: (s: string) => void
  stderr: (s: string) => void
}

/** How long ctl waits for an answer by default: long enough for a reload of a slow app. */
const DEFAULT_TIMEOUT_S = 120

export function ctlUsage(): string {
  return `Usage: sdserve ctl [--socket PATH] [--json] [--timeout SECONDS] COMMAND

Ask a running sdserve master over its control socket (--control-socket).

Commands:
  status       the master, its generation, requests, reloads, exits, accept queues
  workers      one line per worker: pid, state, uptime, requests, in flight, RSS, CPU, event-loop delay
  reload       start a new generation; answers once it serves, or with its boot error
  scale N      N workers (until a reload restores the configured count); answers once N serve
  drain        lame duck: health checks answer 503, everything is still served (--health-path)
  resume       end the lame duck: health checks answer as before
  reopen-logs  reopen the log files (as USR1)
  upgrade      binary upgrade (as USR2); answers once the new master serves
  stop         graceful stop; answers once the master has stopped

Options:
  --socket PATH       the control socket (default: $SDSERVE_CONTROL_SOCKET, else $RUNTIME_DIRECTORY/sdserve.ctl)
  --json              print the master's answer as JSON
  --timeout SECONDS   give up waiting for an answer after this long (default ${DEFAULT_TIMEOUT_S})
  -h, --help          this help

Exit status: 0 done, 1 the master could not be reached or the command failed, 2 bad usage.
`
}

interface CtlArgs {
  socket: string
  json: boolean
  timeoutMs: number
  request: ControlRequest
}

/** The command line, or a usage error (CtlError with the message). */
function parse(argv: string[], env: NodeJS.ProcessEnv): CtlArgs | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      socket: { type: 'string' },
      json: { type: 'boolean' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help === true) return 'help'
  if (positionals.length === 0) throw new CtlError(`a command is needed: one of ${COMMANDS.join(', ')}`)
  // An empty $SDSERVE_CONTROL_SOCKET is as good as unset.
  const socket = values.socket ?? (env.SDSERVE_CONTROL_SOCKET || controlSocketPath(undefined, env))
  if (socket === undefined || socket === '')
    throw new CtlError('no control socket: pass --socket PATH, the master\'s --control-socket (under systemd with RuntimeDirectory=app: /run/app/sdserve.ctl)')
  const timeout = values.timeout ?? String(DEFAULT_TIMEOUT_S)
  if (!/^[0-9]+(\.[0-9]+)?$/.test(timeout) || Number(timeout) <= 0) throw new CtlError(`--timeout must be a positive number of seconds, got ${JSON.stringify(timeout)}`)
  let request: ControlRequest
  try {
    request = parseRequest(positionals.join(' '), MAX_WORKERS)
  } catch (err) {
    throw new CtlError((err as Error).message)
  }
  return { socket, json: values.json === true, timeoutMs: Number(timeout) * 1000, request }
}

export async function ctlMain(argv: string[], env: NodeJS.ProcessEnv, io: CtlIo): Promise<number> {
  let args: CtlArgs | 'help'
  try {
    args = parse(argv, env)
  } catch (err) {
    io.stderr(`sdserve ctl: ${(err as Error).message}\n`)
    return ExitCode.CONFIG
  }
  if (args === 'help') {
    io.stdout(ctlUsage())
    return ExitCode.OK
  }
  try {
    const answer = await ask(args.socket, args.request, args.timeoutMs)
    if (args.json) io.stdout(`${JSON.stringify(answer)}\n`)
    if (!answer.ok) {
      io.stderr(`sdserve ctl: ${answer.command || args.request.command} failed: ${answer.error}\n`)
      return ExitCode.FAILURE
    }
    if (!args.json) io.stdout(render(answer))
    return ExitCode.OK
  } catch (err) {
    io.stderr(`sdserve ctl: ${(err as Error).message}\n`)
    return ExitCode.FAILURE
  }
}
