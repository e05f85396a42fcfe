/**
 * Messages between the master and its workers over the IPC channel: one
 * discriminated union, namespaced with cmd 'SDSERVE' (node core reserves
 * cmd values starting with NODE_).
 */

import type { DrainReason } from './drain.js'
import type { RequestTotals } from './http/request-counters.js'
import type { HealthStatus } from './master/health.js'
import type { LogFormat, LogLevel } from './logger.js'

export const CMD = 'SDSERVE'

/** Where a worker finds each listening socket: fd = LISTENER_FD_START + index. */
export const LISTENER_FD_START = 4

export interface ListenerInfo {
  name: string
  /** How the address is written in logs: `127.0.0.1:8000`, `unix:/run/app.sock`. */
  text: string
}

/** Whom a worker believes about the client (see lib/http/proxy.ts). */
export interface ProxySettings {
  forwardedAllowIps: string
  /** Remove forwarded headers sent by peers that are not trusted. */
  strip: boolean
  /** Every connection starts with a PROXY protocol header, from a peer in proxyAllowIps. */
  protocol: boolean
  proxyAllowIps: string
}

/** What a worker refuses from slow or misbehaving clients. 0 disables a limit. */
export interface RequestLimits {
  headersTimeoutMs: number
  requestTimeoutMs: number
  requestLine: number
  fields: number
  fieldSize: number
  connections: number
}

/** --error-logfile ('-': stderr), --log-level, --log-format. */
export interface ErrorLogSettings {
  file: string
  level: LogLevel
  format: LogFormat
}

export interface InflightRequest {
  method: string
  url: string
  /** How long it had been running when the heartbeat was sent. */
  ms: number
}

/** What a heartbeat tells of the worker: cumulative totals, and the event loop since the last one. */
export interface WorkerReport {
  requests: number
  totals: RequestTotals
  /** Open connections. */
  connections: number
  /** process.cpuUsage(): microseconds of CPU since the worker started. */
  cpuUser: number
  cpuSystem: number
  /** Event-loop delay since the last heartbeat (monitorEventLoopDelay), in milliseconds. */
  loopP99: number
  loopMax: number
  inflight: InflightRequest[]
}

export type MasterMessage =
  | {
      cmd: typeof CMD
      act: 'boot'
      id: number
      generation: number
      app: string
      cwd: string
      listeners: ListenerInfo[]
      /**
       * listen() backlog for every socket, inherited ones included: node's
       * listen({ fd }) calls listen(2) again, with 511 unless told otherwise,
       * which would shrink a systemd socket's Backlog= or sdserve's --backlog.
       */
      backlog: number
      keepAliveMs: number
      /** Requests after which the worker asks to be replaced; 0 = never. */
      maxRequests: number
      heartbeatMs: number
      /** How often it reports while nothing changes (Timings.idleHeartbeatMs). */
      idleHeartbeatMs: number
      /** How long a stop may take when the worker is sent SIGTERM directly (KillMode=control-group). */
      gracefulTimeoutMs: number
      /** Over how long it ends the long-lived connections its app left open, on a SIGTERM stop. */
      drainWindowMs: number
      limits: RequestLimits
      proxy: ProxySettings
      /** The access log: a file path or '-' (stdout), and gunicorn's format; undefined: none. */
      accessLog: { file: string; format: string } | undefined
      /** The error log, as the master's: the worker's own lines (refused clients, log reopen failures) follow it. */
      errorLog: ErrorLogSettings
      /** --health-path: answered by the worker, with the master's view of the host; undefined: none. */
      health: { path: string; log: boolean; status: HealthStatus } | undefined
      /** --warm-up: requests sent to the app before listening, `count` in all; undefined: none. */
      warmUp: { requests: string[]; count: number } | undefined
    }
  | {
      cmd: typeof CMD
      act: 'stop'
      graceful: boolean
      timeoutMs: number
      /**
       * Other workers take over this one's clients (a reload, a recycle, TTOU): its keep-alive
       * connections are closed one by one over this many milliseconds rather than all at once.
       */
      handoverMs: number
      /** Over how long the WebSockets and event streams its app left open are ended, each at its own moment. */
      windowMs: number
      /** What the app is told (lib/drain.ts). */
      reason: DrainReason
    }
  | { cmd: typeof CMD; act: 'reopen-logs' }
  | { cmd: typeof CMD; act: 'health'; status: HealthStatus }

export type WorkerMessage =
  | { cmd: typeof CMD; act: 'listening'; description: string }
  | { cmd: typeof CMD; act: 'app-error'; message: string; stack: string }
  | ({ cmd: typeof CMD; act: 'heartbeat' } & WorkerReport)
  | { cmd: typeof CMD; act: 'retire'; requests: number }

type Act<M, A> = Extract<M, { act: A }>

/** True for any message of ours (anything else on the channel is the app's). */
export function isOurs(message: unknown): message is { cmd: typeof CMD; act: string } {
  return typeof message === 'object' && message !== null && (message as { cmd?: unknown }).cmd === CMD
}

/** Call the handler for the message's act, if there is one: dispatch through a table. */
export function dispatch<M extends { act: string }>(
  message: M,
  handlers: { [A in M['act']]?: (message: Act<M, A>) => void },
): boolean {
  const handler = handlers[message.act as M['act']] as ((m: M) => void) | undefined
  if (handler === undefined) return false
  handler(message)
  return true
}
