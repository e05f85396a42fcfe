/**
 * Every duration the master and its workers go by, in milliseconds. The
 * configuration speaks seconds (as gunicorn's does); they are converted
 * here, once per configuration, and the workers get theirs in the boot
 * message.
 */
import type { Config } from '../config.js'

/** A boot gets at least this long: loading an app blocks the event loop legitimately, and a busy machine loads slowly. */
const BOOT_FLOOR_MS = 10000
/** A boot's limit with --timeout 0. */
const BOOT_UNLIMITED_TIMEOUT_MS = 30000

export interface Timings {
  /** A worker without a heartbeat this long is killed; 0: never. */
  timeoutMs: number
  /** A worker that has not listened this long after its spawn is killed. */
  bootMs: number
  /** How often workers report. */
  heartbeatMs: number
  /**
   * How often a worker reports while nothing changes (no request, no
   * connection opened or closed): less often, so that an idle master of many
   * workers is not kept busy reading heartbeats, and still well within
   * --timeout.
   */
  idleHeartbeatMs: number
  /** A draining worker's deadline. */
  gracefulMs: number
  /** How long a graceful stop spends in lame duck first. */
  lameDuckMs: number
  /** Over how long a draining worker ends the WebSockets and event streams its app left open. */
  drainWindowMs: number
  keepAliveMs: number
  headersTimeoutMs: number
  requestTimeoutMs: number
}

/** Crash backoff: the first replacement at once, then this doubling up to BACKOFF_MAX_MS. */
export const BACKOFF_MIN_MS = 100
export const BACKOFF_MAX_MS = 10000
/** A worker that served this long before it crashed starts its slot's backoff afresh. */
export const STABLE_MS = 10000
/** How long a binary upgrade waits for the rest of a USR2 sent to every process of the unit. */
export const UPGRADE_SETTLE_MS = 250
/** A new master of a binary upgrade gets its workers' boot time and this much for its own start. */
export const UPGRADE_MARGIN_MS = 10000
/**
 * A worker that drains while others take over its clients (reload, recycle,
 * TTOU) closes its keep-alive connections one by one over this long (at most
 * --graceful-timeout). Moving them all at once sent every client of the old
 * generation to new workers whose code is not optimized yet, all in the same
 * few milliseconds: that, more than the new generation's boot, made the p99
 * latency during reloads under keep-alive load.
 */
export const HANDOVER_MS = 300
/** The drain window without --drain-window: half the graceful timeout, at most this. */
export const DRAIN_WINDOW_MAX_MS = 5000
/**
 * Generations draining at once, at most: a reload while this many drain
 * (their WebSockets still open) hurries the oldest, which then ends what is
 * left within HURRY_MS.
 */
export const MAX_DRAINING_GENERATIONS = 2
export const HURRY_MS = 2000

/** An idle worker reports at least this often (and at least four times per --timeout). */
export const IDLE_HEARTBEAT_MAX_MS = 10000

/** A worker's own deadline comes first; the master's SIGKILL backstop this much later (graceful, fast). */
export const BACKSTOP_MS = { graceful: 1000, fast: 2000 }

const ms = (seconds: number): number => Math.round(seconds * 1000)

export function timingsOf(
  config: Pick<Config, 'timeout' | 'bootTimeout' | 'gracefulTimeout' | 'drainWindow' | 'lameDuck' | 'keepAlive' | 'headersTimeout' | 'requestTimeout'>,
): Timings {
  const timeoutMs = ms(config.timeout)
  const gracefulMs = ms(config.gracefulTimeout)
  const bootMs =
    config.bootTimeout !== undefined ? ms(config.bootTimeout) : timeoutMs > 0 ? Math.max(timeoutMs, BOOT_FLOOR_MS) : BOOT_UNLIMITED_TIMEOUT_MS
  const heartbeatMs = timeoutMs > 0 ? Math.max(50, Math.min(1000, Math.floor(timeoutMs / 4))) : 1000
  return {
    timeoutMs,
    bootMs,
    heartbeatMs,
    // Without --timeout a worker counts as beating for 3 heartbeats (Generations.beating).
    idleHeartbeatMs: timeoutMs > 0 ? Math.max(heartbeatMs, Math.min(IDLE_HEARTBEAT_MAX_MS, Math.floor(timeoutMs / 4))) : 2 * heartbeatMs,
    gracefulMs,
    lameDuckMs: ms(config.lameDuck),
    drainWindowMs: Math.min(gracefulMs, config.drainWindow !== undefined ? ms(config.drainWindow) : Math.min(DRAIN_WINDOW_MAX_MS, gracefulMs / 2)),
    keepAliveMs: ms(config.keepAlive),
    headersTimeoutMs: ms(config.headersTimeout),
    requestTimeoutMs: ms(config.requestTimeout),
  }
}
