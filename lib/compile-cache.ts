/**
 * V8's compile cache for sdserve's modules and the app's
 * (module.enableCompileCache, Node 22.1 and later): a module compiled once
 * is read from disk by the next process, so a worker booting in a reload
 * spends less CPU (taken from the workers still serving) and a master
 * starts sooner. It is a quiet optimisation: where it cannot be had, things
 * run as before.
 *
 * The directory: NODE_COMPILE_CACHE when set (Node's own variable), else
 * `node-compile-cache` in the unit's CacheDirectory= ($CACHE_DIRECTORY,
 * which outlives restarts), else Node's default under the temporary
 * directory. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
 *
 * Both programs enable it before importing the rest of sdserve (lib/cli.ts,
 * lib/worker-main.ts): an ES module graph is compiled before any of it runs.
 */
import * as nodeModule from 'node:module'
import { join } from 'node:path'

/** What an attempt gave: the directory, or why there is no cache. */
export type CompileCacheState = { enabled: true; directory: string } | { enabled: false; reason: string }

/** The part of node:module used here (Node 20 has none of it). */
export interface CompileCacheApi {
  enableCompileCache?: (directory?: string) => { status: number; message?: string; directory?: string }
  flushCompileCache?: () => void
  constants?: { compileCacheStatus?: { FAILED: number; ENABLED: number; ALREADY_ENABLED: number; DISABLED: number } }
}

const NODE_API = nodeModule as unknown as CompileCacheApi

let state: CompileCacheState = { enabled: false, reason: 'not enabled' }

/** The directory to ask for: undefined lets Node choose (NODE_COMPILE_CACHE, else its default). */
export function compileCacheDirectory(env: NodeJS.ProcessEnv): string | undefined {
  if (env.NODE_COMPILE_CACHE) return undefined
  // systemd passes one path per CacheDirectory= entry, separated by ':'.
  const cache = env.CACHE_DIRECTORY?.split(':')[0]
  return cache ? join(cache, 'node-compile-cache') : undefined
}

/** Enable the compile cache for this process, once; never throws. */
export function enableCompileCache(env: NodeJS.ProcessEnv = process.env, api: CompileCacheApi = NODE_API): CompileCacheState {
  const enable = api.enableCompileCache
  const statuses = api.constants?.compileCacheStatus
  if (enable === undefined || statuses === undefined) state = { enabled: false, reason: `Node ${process.version} has none (22.1 and later have)` }
  // Code read from the cache reports less precise coverage: a process measured for coverage goes without.
  else if (env.NODE_V8_COVERAGE) state = { enabled: false, reason: 'NODE_V8_COVERAGE is set (coverage is less precise with it)' }
  else {
    const r = enable(compileCacheDirectory(env))
    if ((r.status === statuses.ENABLED || r.status === statuses.ALREADY_ENABLED) && r.directory !== undefined)
      state = { enabled: true, directory: r.directory }
    else if (r.status === statuses.DISABLED) state = { enabled: false, reason: 'NODE_DISABLE_COMPILE_CACHE is set' }
    else state = { enabled: false, reason: r.message ?? 'it could not be enabled' }
  }
  return state
}

/** The state in a log line's words. */
export function describeCompileCache(state: CompileCacheState): string {
  return state.enabled ? `compile cache: ${state.directory}` : `no compile cache: ${state.reason}`
}

/** What enableCompileCache() gave in this process. */
export function compileCacheState(): CompileCacheState {
  return state
}

/**
 * Write what this process compiled so far to the cache now, not at its exit
 * (Node 22.10 and later): a worker does once it serves, so the next
 * generation, booting while it still runs, finds the app's modules there.
 */
export function flushCompileCache(api: CompileCacheApi = NODE_API): void {
  if (state.enabled) api.flushCompileCache?.()
}
