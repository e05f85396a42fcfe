/**
 * A log destination: a file opened for appending, or the process's stdout /
 * stderr (`-`). Shared by the error log (Logger) and the access log.
 *
 * Files: write() copies lines into a buffer of `bufferSize` bytes, which is
 * written with one synchronous write(2) when the next line would not fit, or
 * when its oldest line is `flushMs` old (0: at the end of the current
 * event-loop turn), as nginx's `access_log ... buffer= flush=` does. (Each
 * line is copied at once: a string built by appending lines costs more to
 * flatten, and to keep alive across garbage collections, than the copy.) A
 * synchronous write
 * to a regular file is a copy into the page cache, a few microseconds even
 * for a large batch; an asynchronous fs.write instead costs a threadpool
 * round trip (a queued work item, a thread wake-up, a completion in the
 * event loop), which for a busy worker flushing every turn cost more than
 * the line itself. The catch: a disk that stalls (a hung NFS server) stalls
 * the worker too, as it does nginx. The fd is opened with O_APPEND: lines of
 * several processes appending to the same file never overwrite each other,
 * and each write holds whole lines only. Lines still buffered when the
 * process exits are written by an 'exit' handler; a process killed with
 * SIGKILL loses at most `flushMs` worth of lines.
 *
 * stdout / stderr: written at once with process.stdout/stderr.write, one
 * write(2) per line, unbuffered: on Linux those writes are synchronous for
 * files and pipes (the journal's stream is a socket), the journal stamps
 * each line with the time it arrives (a batch would stamp every line with
 * the time of the last), and the workers and the master share the one
 * stream, where a line written alone (< PIPE_BUF) never interleaves with
 * another process's line.
 */
import { close as fsClose, open as fsOpen, openSync, writeSync } from 'node:fs'

export type LogTarget = 'file' | 'stdout' | 'stderr'

/** The default bufferSize: 64 KiB. */
export const LOG_BUFFER_SIZE = 64 * 1024

export interface LogFileOptions {
  /** Bytes of lines held in memory (files only); default LOG_BUFFER_SIZE. A longer line is written on its own. */
  bufferSize?: number
  /** Write buffered lines at the latest this many milliseconds after the oldest was written; default 0: at the end of the event-loop turn. */
  flushMs?: number
}

function openAppend(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    fsOpen(path, 'a', 0o666, (err, fd) => (err === null ? resolve(fd) : reject(err)))
  })
}

export class LogFile {
  /** The path, or `-`. */
  readonly target: string
  /** Where lines go: a file, or the process's stdout / stderr. */
  readonly kind: LogTarget
  private fd: number
  private readonly flushMs: number
  /** Lines not yet written: the first `used` bytes of `buffer` (allocated for files only). */
  private readonly buffer: Buffer
  private used = 0
  /** The timer (or immediate) that writes the buffer once its oldest line is flushMs old. */
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined
  /** A write error was reported and no write succeeded since: do not report again. */
  private failing = false
  private closed = false
  /** The process is exiting: the event loop will not run again, write at once. */
  private exiting = false
  /** reopen() calls run one after the other. */
  private reopening: Promise<void> = Promise.resolve()
  /** Writes to the file so far (observability, tests). */
  private batches = 0

  private constructor(target: string, kind: LogTarget, fd: number, options: LogFileOptions) {
    this.target = target
    this.kind = kind
    this.fd = fd
    this.flushMs = options.flushMs ?? 0
    this.buffer = Buffer.allocUnsafe(kind === 'file' ? Math.max(1, options.bufferSize ?? LOG_BUFFER_SIZE) : 0)
    if (kind === 'file') process.on('exit', this.onExit)
    else this.stream.on('error', this.onStreamError)
  }

  /**
   * Open `target` for appending (created with mode 0666 & ~umask), or use
   * `fallback` for `-`. A file that cannot be opened (missing directory,
   * EACCES, EISDIR) throws node's system error, which names the path.
   * `options` say how long lines may wait in memory (files only).
   */
  static open(target: string, fallback: 'stdout' | 'stderr', options: LogFileOptions = {}): LogFile {
    if (target === '-') return new LogFile('-', fallback, fallback === 'stdout' ? 1 : 2, options)
    return new LogFile(target, 'file', openSync(target, 'a', 0o666), options)
  }

  private get stream(): NodeJS.WriteStream {
    return this.kind === 'stdout' ? process.stdout : process.stderr
  }

  /**
   * Append text: one or more complete lines, each ending with "\n" (as the
   * Logger's `write` option receives them). Never throws; ignored once
   * close() was called.
   */
  write(text: string): void {
    if (this.closed) return
    if (this.kind !== 'file') {
      this.stream.write(text)
      return
    }
    // A line that fits whatever its characters (UTF-8 takes at most 3 bytes per UTF-16 code unit)
    // is copied at once; only a longer one is measured first, which costs one more pass over it.
    if (text.length * 3 <= this.buffer.length - this.used) this.used += this.buffer.write(text, this.used)
    else {
      const size = Buffer.byteLength(text)
      if (this.used + size > this.buffer.length) this.flushSync()
      if (size > this.buffer.length) this.writeAll(Buffer.from(text), size)
      else this.used += this.buffer.write(text, this.used)
    }
    if (this.exiting || this.used === this.buffer.length) this.flushSync()
    else if (this.timer === undefined && this.used > 0)
      this.timer = this.flushMs > 0 ? setTimeout(this.onTimer, this.flushMs).unref() : setImmediate(this.onTimer).unref()
  }

  /** Write what is buffered; resolves once it is written (or dropped by a write error). */
  flush(): Promise<void> {
    this.flushSync()
    return Promise.resolve()
  }

  /**
   * Write what is buffered now, synchronously, as one write(2) (more only
   * when the kernel writes part of it). Never throws: a write error is
   * reported once per run of failures, and the lines are dropped.
   */
  flushSync(): void {
    if (this.used === 0) return
    const length = this.used
    this.used = 0
    this.writeAll(this.buffer, length)
  }

  /** Write the first `length` bytes of data, synchronously; a write error is reported, never thrown. */
  private writeAll(data: Buffer, length: number): void {
    this.batches++
    try {
      // A short write (the disk filling up): write the rest, which fails or goes on.
      for (let offset = 0; offset < length; ) offset += writeSync(this.fd, data, offset, length - offset)
      this.failing = false
    } catch (err) {
      this.report(err as Error)
    }
  }

  /**
   * Reopen the file (logrotate's postrotate sends USR1): the path is opened
   * again (asynchronously: lines written meanwhile are buffered), what was
   * written before goes to the old fd, then lines go to the new file. When
   * the promise resolves, no line is written to the old (rotated) file any
   * more. If the path cannot be opened, the old fd stays in use and the
   * promise rejects with the system error. A no-op for stdout / stderr (they
   * belong to whoever started us).
   */
  reopen(): Promise<void> {
    if (this.kind !== 'file' || this.closed) return Promise.resolve()
    const done = this.reopening.then(() => this.switchFile())
    this.reopening = done.catch(() => undefined)
    return done
  }

  private async switchFile(): Promise<void> {
    const fd = await openAppend(this.target)
    this.flushSync()
    const old = this.fd
    this.fd = fd
    fsClose(old, () => undefined)
  }

  /** Write what is buffered, then close the file (stdout / stderr stay open). Later writes are ignored. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.kind !== 'file') {
      this.stream.off('error', this.onStreamError)
      return
    }
    await this.reopening
    this.flushSync()
    this.clearTimer()
    process.off('exit', this.onExit)
    await new Promise<void>((resolve) => fsClose(this.fd, () => resolve()))
  }

  private clearTimer(): void {
    if (this.timer === undefined) return
    if (this.flushMs > 0) clearTimeout(this.timer as NodeJS.Timeout)
    else clearImmediate(this.timer as NodeJS.Immediate)
    this.timer = undefined
  }

  private readonly onTimer = (): void => {
    this.timer = undefined
    this.flushSync()
  }

  /** A write error (disk full, EIO, EPIPE) drops the batch: reported once per run of failures, never thrown. */
  private report(err: Error): void {
    if (this.failing) return
    this.failing = true
    const where = this.kind === 'file' ? this.target : this.kind
    process.stderr.write(`sdserve: cannot write to log ${where}: ${err.message} (lines are lost until writes succeed again)\n`)
  }

  private readonly onStreamError = (err: Error): void => this.report(err)

  private readonly onExit = (): void => {
    this.exiting = true
    this.flushSync()
  }
}
