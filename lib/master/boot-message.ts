/**
 * What a worker is told when it starts: its slot, its sockets, the app and
 * every setting it serves by, with durations in milliseconds (from Timings).
 * A worker reads nothing else: no config file, no command line.
 */
import type { Config } from '../config.js'
import type { LogLevel } from '../logger.js'
import { CMD, type ListenerInfo, type MasterMessage } from '../protocol.js'
import type { HealthStatus } from './health.js'
import type { Timings } from './timings.js'

export type BootMessage = Extract<MasterMessage, { act: 'boot' }>

function jitter(max: number): number {
  return max > 0 ? Math.floor(Math.random() * (max + 1)) : 0
}

export function bootMessage(
  config: Config,
  timings: Timings,
  worker: { id: number; generation: number; listeners: ListenerInfo[]; logLevel: LogLevel; health: HealthStatus },
): BootMessage {
  return {
    cmd: CMD,
    act: 'boot',
    id: worker.id,
    generation: worker.generation,
    app: config.app,
    cwd: process.cwd(),
    listeners: worker.listeners,
    backlog: config.backlog,
    keepAliveMs: timings.keepAliveMs,
    maxRequests: config.maxRequests > 0 ? config.maxRequests + jitter(config.maxRequestsJitter) : 0,
    heartbeatMs: timings.heartbeatMs,
    idleHeartbeatMs: timings.idleHeartbeatMs,
    gracefulTimeoutMs: timings.gracefulMs,
    drainWindowMs: timings.drainWindowMs,
    limits: {
      headersTimeoutMs: timings.headersTimeoutMs,
      requestTimeoutMs: timings.requestTimeoutMs,
      requestLine: config.limitRequestLine,
      fields: config.limitRequestFields,
      fieldSize: config.limitRequestFieldSize,
      connections: config.workerConnections,
    },
    accessLog: config.accessLogfile === undefined ? undefined : { file: config.accessLogfile, format: config.accessLogformat },
    errorLog: { file: config.errorLogfile, level: worker.logLevel, format: config.logFormat },
    health: config.healthPath === undefined ? undefined : { path: config.healthPath, log: config.logHealthChecks, status: worker.health },
    warmUp: config.warmUp.length === 0 ? undefined : { requests: config.warmUp, count: config.warmUpCount },
    proxy: {
      forwardedAllowIps: config.forwardedAllowIps,
      strip: config.untrustedForwarded === 'strip',
      protocol: config.proxyProtocol,
      proxyAllowIps: config.proxyAllowIps,
    },
  }
}
