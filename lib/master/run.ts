/**
 * The sdserve command's serve action: a master from a configuration, run
 * until it stops, and the exit code it ends with.
 */
import type { Config, ConfigSources } from '../config.js'
import type { HeldSignals } from '../early-signals.js'
import { AppLoadError, ExitCode, WorkerBootError } from '../errors.js'
import { openErrorLog, type Logger } from '../logger.js'
import { Master } from './master.js'

/** The error log of a configuration: --error-logfile, --log-level, --log-format. */
export function loggerFor(config: Pick<Config, 'errorLogfile' | 'logLevel' | 'logFormat'>): Logger {
  return openErrorLog({ file: config.errorLogfile, level: config.logLevel, format: config.logFormat })
}

/**
 * Run a master until it stops. Resolves with the process exit code: 0 after
 * a stop, 3 when a worker cannot boot, 4 when the app cannot load, 1 when a
 * socket cannot be bound or the pid file written.
 */
export async function runMaster(config: Config, sources: ConfigSources, held?: HeldSignals): Promise<number> {
  const { loadConfig } = await import('../config.js')
  const logger = loggerFor(config)
  if (held?.stop !== undefined) {
    logger.info(`${held.stop} before the start: nothing started, stopped`)
    return ExitCode.OK
  }
  const master = new Master(config, { reloadConfig: async () => (await loadConfig(sources)).config, logger })
  // Listened for before start(): a stop during the start ends it with 'stopped' already emitted.
  const stopped = new Promise<number>((resolve) => master.once('stopped', ({ code }) => resolve(code)))
  try {
    // start() installs the master's signal handlers before its first await: the held ones go then.
    const starting = master.start()
    held?.release()
    await starting
  } catch (err) {
    if (err instanceof AppLoadError) {
      master.log.error(`failed to load the app ${config.app}: ${err.message}`)
      return ExitCode.APP_LOAD
    }
    if (err instanceof WorkerBootError) {
      master.log.error(`worker failed to boot: ${err.message}`)
      return ExitCode.WORKER_BOOT
    }
    // A socket that cannot be bound (EADDRINUSE, EACCES) or a pid file that cannot be written: logged above.
    if (typeof (err as { syscall?: unknown }).syscall === 'string') return ExitCode.FAILURE
    throw err
  }
  return stopped
}
