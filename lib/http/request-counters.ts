/**
 * What a worker counts of its requests, for the master's metrics and
 * `sdserve ctl workers`: responses by status class, a duration histogram,
 * requests in flight. Per request it costs one clock read, one shared
 * 'close' listener and a few additions; everything else happens on the
 * heartbeat (snapshot()), which sends cumulative totals: the master sums
 * them, and a lost heartbeat loses nothing but freshness.
 */
import type { ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'

/**
 * Upper bounds of the duration histogram, in seconds: Prometheus's default
 * buckets (client_golang's DefBuckets, prom-client's defaults), which suit
 * a web service's latencies. The last bucket (+Inf) is implicit.
 */
export const DURATION_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Status classes as the metrics label them; `aborted`: the client went before the response ended. */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'aborted'] as const
export type StatusClass = (typeof STATUS_CLASSES)[number]

/** A worker's totals since it started, sent on every heartbeat. */
export interface RequestTotals {
  /** Ended requests, by STATUS_CLASSES index. */
  responses: number[]
  /** Ended requests by duration: counts per DURATION_BUCKETS bound (not cumulative), then the +Inf bucket. */
  buckets: number[]
  /** The sum of the ended requests' durations, in seconds. */
  seconds: number
  /** Requests started and not yet ended. */
  inflight: number
}

/**
 * The start time (performance.now()) a counted response carries. A response
 * class may declare it as a field (the worker's does), so that counting
 * does not add a property to each response, which would change its hidden
 * class.
 */
export const STARTED = Symbol('sdserve.started')
type CountedResponse = ServerResponse & { [STARTED]: number }

export class RequestCounters {
  private readonly responses = STATUS_CLASSES.map(() => 0)
  private readonly buckets = [...DURATION_BUCKETS.map(() => 0), 0]
  private seconds = 0
  /** Responses not ended yet: a drain ends the event streams among them (lib/http/long-lived.ts). */
  private readonly open = new Set<ServerResponse>()

  /**
   * Called with each ended response, after it is counted, from the same
   * 'close' listener: one listener per response for what the worker does
   * when a response is over (its access log line).
   */
  afterEnd: ((res: ServerResponse) => void) | undefined = undefined

  /** Count a request when it starts; its response's 'close' ends it. */
  start(res: ServerResponse): void {
    this.open.add(res)
    ;(res as CountedResponse)[STARTED] = performance.now()
    res.on('close', this.onClose)
  }

  /** One listener for every response, called with the response as `this`: no closure per request. */
  private readonly onClose: (this: ServerResponse) => void

  constructor() {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the listener's own `this` is the response
    const counters = this
    this.onClose = function (this: ServerResponse) {
      counters.end(this)
      counters.afterEnd?.(this)
    }
  }

  /** Add one ended request (a response's 'close'). */
  end(res: ServerResponse): void {
    this.open.delete(res)
    const seconds = (performance.now() - (res as CountedResponse)[STARTED]) / 1000
    this.seconds += seconds
    let b = 0
    while (b < DURATION_BUCKETS.length && seconds > (DURATION_BUCKETS[b] as number)) b++
    ;(this.buckets[b] as number)++
    const cls = res.writableFinished ? Math.min(4, Math.max(0, Math.floor(res.statusCode / 100) - 1)) : 5
    ;(this.responses[cls] as number)++
  }

  snapshot(): RequestTotals {
    return { responses: [...this.responses], buckets: [...this.buckets], seconds: this.seconds, inflight: this.open.size }
  }

  /** The responses in flight. */
  get inFlight(): Iterable<ServerResponse> {
    return this.open.values()
  }
}
