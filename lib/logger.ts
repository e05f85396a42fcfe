/**
 * The master's error log: one line per event, gunicorn's shape
 * (`[time] [pid] [LEVEL] message`), to stderr.
 */

export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'critical'

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warning: 30, error: 40, critical: 50 }

export interface LoggerOptions {
  level?: LogLevel
  write?: (line: string) => void
}

export class Logger {
  level: LogLevel
  private readonly write: (line: string) => void

  constructor(options: LoggerOptions = {}) {
    this.level = options.level ?? 'info'
    this.write = options.write ?? ((line) => process.stderr.write(line))
  }

  private emit(level: LogLevel, message: string): void {
    if (RANK[level] < RANK[this.level]) return
    this.write(`[${new Date().toISOString()}] [${process.pid}] [${level.toUpperCase()}] ${message}\n`)
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

  /** USR1: reopen log files (stderr is not reopened: it belongs to whoever started us). */
  reopen(): void {
    this.info('reopening log files')
  }
}
