/**
 * serve(): the multi-worker server from code. The calling process becomes
 * the master; the app is a module that each worker loads (workers are
 * separate processes, so the app is named, not passed as a function).
 */
import { fileURLToPath } from 'node:url'
import { DEFAULTS, validateOptions, type Config } from './config.js'
import { ConfigError } from './errors.js'
import type { LogLevel } from './logger.js'
import { loggerFor, Master } from './master.js'

export interface ServeOptions extends Partial<Omit<Config, 'app' | 'config'>> {
  /** The app module: a path, a file: URL, or `path:export` / `path:factory()`. */
  app: string | URL
  /** Handle HUP, TERM, INT, QUIT, TTIN, TTOU and USR1 in this process (default true). */
  signals?: boolean
  /** Lines below this level are not logged (default info). */
  logLevel?: LogLevel
}

export interface ServerHandle {
  /** The master; an EventEmitter of 'ready', 'reload', 'worker-exit' and 'stopped'. */
  readonly master: Master
  /** Start a new generation and retire the old one; resolves true once the new one serves. */
  reload(): Promise<boolean>
  /** Stop (graceful by default); resolves with the exit code. */
  close(graceful?: boolean): Promise<number>
  /** One worker more (+1) or fewer (-1). */
  scale(delta: number): void
}

/** True in a process sdserve started as a worker. */
export function isWorker(): boolean {
  return process.env.SDSERVE_WORKER_ID !== undefined
}

export async function serve(options: ServeOptions): Promise<ServerHandle> {
  if (isWorker())
    throw new ConfigError('serve()', 'called in a worker', 'called in the master only (guard it with isWorker())')
  const { app, signals, logLevel, ...rest } = options
  const appSpec = app instanceof URL ? fileURLToPath(app) : app
  const config: Config = { ...DEFAULTS, ...validateOptions({ ...rest, app: appSpec }, 'serve()'), config: undefined } as Config
  const master = new Master(config, { signals: signals ?? true, logger: loggerFor({ ...config, logLevel: logLevel ?? config.logLevel }) })
  await master.start()
  return {
    master,
    reload: () => master.reload(),
    close: (graceful = true) => master.stop(graceful),
    scale: (delta) => master.scale(delta),
  }
}
