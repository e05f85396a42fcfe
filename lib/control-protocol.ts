/**
 * The control socket's protocol, shared by the master's side
 * (lib/master/control-server.ts) and `sdserve ctl` (lib/ctl/): one request
 * per line, one JSON answer per line, so that a script can speak it with
 * socat.
 *
 * A request is a JSON object, `{"command":"scale","workers":3}`, or the
 * same as words, `scale 3`. An answer is `{"ok":true,"command":...}` with
 * the command's fields, or `{"ok":false,"command":...,"error":"why"}`.
 */
import type { HealthStatus } from './master/health.js'
import type { MasterStats } from './master/stats.js'

export const COMMANDS = ['status', 'workers', 'reload', 'scale', 'drain', 'resume', 'reopen-logs', 'upgrade', 'stop'] as const
export type Command = (typeof COMMANDS)[number]

export type ControlRequest = { command: Exclude<Command, 'scale'> } | { command: 'scale'; workers: number }

/** The largest request line the master reads; a longer one costs its connection. */
export const MAX_REQUEST_BYTES = 4096

export type ControlAnswer =
  | { ok: true; command: 'status'; stats: MasterStats }
  | { ok: true; command: 'workers'; target: number; workers: MasterStats['workers'] }
  | { ok: true; command: 'reload'; generation: number }
  | { ok: true; command: 'scale'; workers: number }
  | { ok: true; command: 'reopen-logs' | 'stop' }
  | { ok: true; command: 'drain' | 'resume'; health: HealthStatus }
  | { ok: true; command: 'upgrade'; pid: number }
  | { ok: false; command: string; error: string }

/** A request line as the master reads it; throws a message naming what was wrong. */
export function parseRequest(line: string, maxWorkers: number): ControlRequest {
  const text = line.trim()
  let fields: Record<string, unknown>
  // JSON is an object; anything else that looks like JSON (an array, a string) is told so, not taken as words.
  if (/^[[{"]/.test(text)) {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      throw new Error(`not JSON: ${JSON.stringify(text.slice(0, 80))}`)
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('expected a JSON object')
    fields = parsed as Record<string, unknown>
  } else {
    const [command, ...args] = text.split(/\s+/)
    fields = { command, workers: args[0] }
    if (args.length > (command === 'scale' ? 1 : 0)) throw new Error(`too many words: ${JSON.stringify(text.slice(0, 80))}`)
  }
  const command = fields.command
  if (typeof command !== 'string' || !(COMMANDS as readonly string[]).includes(command))
    throw new Error(`unknown command ${JSON.stringify(command)}: expected one of ${COMMANDS.join(', ')}`)
  if (command !== 'scale') return { command: command as Exclude<Command, 'scale'> }
  return { command, workers: workerCount(fields.workers, maxWorkers) }
}

function workerCount(value: unknown, max: number): number {
  const n = typeof value === 'string' && /^[0-9]+$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > max)
    throw new Error(`scale needs a worker count from 1 to ${max}, got ${JSON.stringify(value ?? null)}`)
  return n
}

/** The control socket's path: --control-socket, else $RUNTIME_DIRECTORY/sdserve.ctl, else none. */
export function controlSocketPath(option: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (option === 'none') return undefined
  if (option !== undefined) return option
  // systemd joins several RuntimeDirectory= paths with ':'; the first is the unit's own.
  const dir = env.RUNTIME_DIRECTORY?.split(':')[0]
  return dir !== undefined && dir !== '' ? `${dir}/sdserve.ctl` : undefined
}
