/**
 * How an app learns that its worker has begun to drain: an AbortSignal and
 * a listener, both saying why (reload, stop, recycle, scale, upgrade) and by
 * when the worker will be gone. A WebSocket app closes its sockets with 1001
 * "going away"; an event stream sends its last event and ends.
 *
 * The state is one per process, kept on globalThis under a registered
 * symbol: the app may import a different copy of sdserve than the one that
 * runs the worker (its own node_modules, and a global `sdserve` command),
 * and both must see the same drain.
 */

/** Why the worker drains: a reload, a stop (or the master went away), a recycle (--max-requests, --max-worker-memory), a TTOU or `ctl scale`, or a binary upgrade's old master leaving. */
export type DrainReason = 'reload' | 'stop' | 'recycle' | 'scale' | 'upgrade'

export interface DrainInfo {
  reason: DrainReason
  /** When (Date.now() clock) the worker exits at the latest: whatever is still open then is cut. */
  deadline: number
}

interface DrainState {
  controller: AbortController
  info: DrainInfo | undefined
  listeners: Set<(info: DrainInfo) => void>
}

const KEY = Symbol.for('sdserve.drain')

function state(): DrainState {
  const g = globalThis as { [KEY]?: DrainState }
  return (g[KEY] ??= { controller: new AbortController(), info: undefined, listeners: new Set() })
}

/** Aborted when this worker begins to drain; its `reason` is the DrainInfo. Never aborted outside a worker. */
export function drainSignal(): AbortSignal {
  return state().controller.signal
}

/** Whether this worker is draining, and why; undefined while it serves. */
export function draining(): DrainInfo | undefined {
  return state().info
}

/**
 * Call listener when the worker begins to drain (at once, if it already has).
 * A listener that throws is logged and costs nothing else. Returns a
 * function that removes it.
 */
export function onDrain(listener: (info: DrainInfo) => void): () => void {
  const s = state()
  if (s.info !== undefined) {
    listener(s.info)
    return () => undefined
  }
  s.listeners.add(listener)
  return () => void s.listeners.delete(listener)
}

/**
 * The worker begins to drain: tell the app, once: onDrain listeners first
 * (each guarded: report gets what one throws), then the signal.
 */
export function beginDrain(info: DrainInfo, report: (err: unknown) => void): void {
  const s = state()
  if (s.info !== undefined) return
  s.info = info
  for (const listener of s.listeners) {
    try {
      listener(info)
    } catch (err) {
      report(err)
    }
  }
  s.listeners.clear()
  s.controller.abort(info)
}
