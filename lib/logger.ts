/**
 * The error log (gunicorn's --error-logfile / --log-level): one line per
 * event, gunicorn's shape `[time] [pid] [LEVEL] message`, or one JSON object
 * per line, to stderr or a LogFile.
 *
 * Under systemd with stderr connected to the journal (JOURNAL_STREAM), every
 * line starts with the sd-daemon priority prefix (`<3>` error, ...), so
 * journalctl shows and filters levels (`journalctl -p warning`).
 */
import { fstatSync } from 'node:fs'
import { ConfigError } from './errors.js'
import { LogFile } from './log-file.js'

export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'critical'
export type LogFormat = 'text' | 'json'

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warning: 30, error: 40, critical: 50 }
const LEVELS = Object.keys(RANK) as LogLevel[]

/** sd-daemon(3) priority prefixes: SD_CRIT, SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG. */
const PRIORITY: Record<LogLevel, string> = { debug: '<7>', info: '<6>', warning: '<4>', error: '<3>', critical: '<2>' }

/** Parse a log level (case-insensitive): debug, info, warning, error or critical. */
export function parseLogLevel(value: unknown, option = 'log-level'): LogLevel {
  if (typeof value === 'string') {
    const level = value.trim().toLowerCase()
    if (level in RANK) return level as LogLevel
  }
  throw new ConfigError(option, value, `one of ${LEVELS.join(', ')}`)
}

/**
 * True when fd (stderr by default) is the journal's stream: systemd sets
 * JOURNAL_STREAM=DEVICE:INODE for the stream it connects to stdout/stderr,
 * and the fd is still that stream only if fstat() gives the same pair
 * (systemd.exec(5)).
 */
export function journalStderr(env: NodeJS.ProcessEnv = process.env, fd = 2): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '')
  if (m === null) return false
  try {
    const st = fstatSync(fd, { bigint: true })
    return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!)
  } catch {
    return false // fd closed
  }
}

export interface LoggerOptions {
  /** Lines below this level are dropped (default info). */
  level?: LogLevel
  /** Where lines go (each ends with "\n"); default: `file`, else stderr. */
  write?: (line: string) => void
  /** The error log file; default stderr. */
  file?: LogFile
  /** `text` (default): `[time] [pid] [LEVEL] message`; `json`: {"time","pid","level","message"} per line. */
  format?: LogFormat
  /**
   * Prefix lines with the sd-daemon priority (`<3>`...). Default: when the
   * lines go to stderr (or stdout, with file `-`) and that is the journal's
   * stream (journalStderr()); never for a `write` function or a file path.
   */
  journal?: boolean
  /** Put before every message, e.g. `worker 3: `: who speaks, said once for all of a process's lines. */
  prefix?: string
}

export class Logger {
  level: LogLevel
  readonly format: LogFormat
  readonly journal: boolean
  readonly file: LogFile | undefined
  readonly prefix: string
  private readonly write: (line: string) => void

  constructor(options: LoggerOptions = {}) {
    this.level = options.level ?? 'info'
    this.format = options.format ?? 'text'
    this.prefix = options.prefix ?? ''
    const file = (this.file = options.file)
    if (options.write !== undefined) this.write = options.write
    else if (file !== undefined) this.write = (line) => file.write(line)
    else this.write = (line) => process.stderr.write(line)
    this.journal = options.journal ?? Logger.defaultJournal(options)
  }

  private static defaultJournal(options: LoggerOptions): boolean {
    if (options.write !== undefined) return false
    const kind = options.file?.kind ?? 'stderr'
    return kind !== 'file' && journalStderr(process.env, kind === 'stdout' ? 1 : 2)
  }

  /** Would a message at this level be written? (Skip building costly messages.) */
  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.level]
  }

  private emit(level: LogLevel, what: string): void {
    if (RANK[level] < RANK[this.level]) return
    const message = this.prefix + what
    const time = new Date().toISOString()
    if (this.format === 'json') {
      const line = JSON.stringify({ time, pid: process.pid, level, message })
      this.write(this.journal ? `${PRIORITY[level]}${line}\n` : `${line}\n`)
      return
    }
    const line = `[${time}] [${process.pid}] [${level.toUpperCase()}] ${message}\n`
    if (!this.journal) this.write(line)
    // The journal makes one entry per line: a multi-line message (a stack) keeps its priority on every line.
    else this.write(PRIORITY[level] + line.slice(0, -1).replaceAll('\n', `\n${PRIORITY[level]}`) + '\n')
  }

  debug(message: string): void {
    this.emit('debug', message)
  }
  info(message: string): void {
    this.emit('info', message)
  }
  warn(message: string): void {
    this.emit('warning', message)
  }
  error(message: string): void {
    this.emit('error', message)
  }
  critical(message: string): void {
    this.emit('critical', message)
  }

  /**
   * USR1: reopen the log file (logrotate). Returns at once; reopenFile()
   * is the same with a promise. stderr is not reopened: it belongs to
   * whoever started us.
   */
  reopen(): void {
    void this.reopenFile()
  }

  /**
   * Log 'reopening log files' (to the old file), then reopen it. Resolves
   * once lines go to the new file; never rejects: a file that cannot be
   * reopened is logged as an error and the old one stays in use.
   */
  async reopenFile(): Promise<void> {
    this.info('reopening log files')
    if (this.file === undefined) return
    try {
      await this.file.reopen()
    } catch (err) {
      this.error(`cannot reopen the log file, still writing to the old one: ${(err as Error).message}`)
    }
  }

  /** Resolves once every line logged so far is written. */
  async flush(): Promise<void> {
    await this.file?.flush()
  }

  /** Flush and close the log file (stderr stays open). */
  async close(): Promise<void> {
    await this.file?.close()
  }
}

/**
 * The error log that --error-logfile ('-': stderr), --log-level and
 * --log-format describe; the master and every worker open their own (a
 * worker's with its prefix).
 */
export function openErrorLog(settings: { file: string; level: LogLevel; format: LogFormat; prefix?: string }): Logger {
  const file = settings.file === '-' ? undefined : LogFile.open(settings.file, 'stderr')
  const { level, format, prefix } = settings
  return new Logger({ level, format, prefix, ...(file === undefined ? {} : { file }) })
}
