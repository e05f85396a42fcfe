/**
 * A log destination: a file opened for appending, or the process's stdout /
 * stderr (`-`). Shared by the error log (Logger) and the access log.
 *
 * Files: write() appends to an in-memory buffer and schedules one
 * asynchronous fs.write per event-loop turn (setImmediate), so a busy worker
 * makes one syscall for many lines, and a slow disk never blocks the event
 * loop. The fd is opened with O_APPEND: lines of several processes appending
 * to the same file never overwrite each other, and each batch holds whole
 * lines only.
 *
 * stdout / stderr: written at once with process.stdout/stderr.write. On
 * Linux those are synchronous for files and pipes (the journal's stream is a
 * socket); one write per line keeps each line a single write(2), so lines of
 * several workers sharing a pipe never interleave (each line < PIPE_BUF).
 */
import { close as fsClose, open as fsOpen, openSync, write as fsWrite, writeSync } from 'node:fs'

export type LogTarget = 'file' | 'stdout' | 'stderr'

interface Waiter {
  seq: number
  resolve: () => void
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
  /** Text not yet handed to a write. */
  private pending = ''
  /** write() calls so far (a sequence number per call). */
  private queued = 0
  /** Every write() up to this sequence number is written (or was dropped by a write error). */
  private written = 0
  /** The sequence number the batch in flight covers (0: none in flight). */
  private inflight = 0
  /** flushSync() wrote everything up to this sequence number. */
  private synced = 0
  private scheduled: NodeJS.Immediate | undefined
  /** Set during reopen(): no batch is dispatched while the fd is being switched. */
  private held = false
  private waiters: Waiter[] = []
  /** A write error was reported and no write succeeded since: do not report again. */
  private failing = false
  private closed = false
  /** The process is exiting: the event loop will not run again, write synchronously. */
  private exiting = false
  /** reopen() calls run one after the other. */
  private reopening: Promise<void> = Promise.resolve()
  /** Batches handed to fs.write (observability, tests). */
  private batches = 0

  private constructor(target: string, kind: LogTarget, fd: number) {
    this.target = target
    this.kind = kind
    this.fd = fd
    if (kind === 'file') process.on('exit', this.onExit)
    else this.stream.on('error', this.onStreamError)
  }

  /**
   * Open `target` for appending (created with mode 0666 & ~umask), or use
   * `fallback` for `-`. A file that cannot be opened (missing directory,
   * EACCES, EISDIR) throws node's system error, which names the path.
   */
  static open(target: string, fallback: 'stdout' | 'stderr'): LogFile {
    if (target === '-') return new LogFile('-', fallback, fallback === 'stdout' ? 1 : 2)
    return new LogFile(target, 'file', openSync(target, 'a', 0o666))
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
    this.queued++
    if (this.exiting) {
      this.writeAllSync(Buffer.from(text))
      this.synced = this.queued
      return
    }
    this.pending += text
    this.schedule()
  }

  /** Resolves once everything written before this call is written. */
  flush(): Promise<void> {
    return this.waitFor(this.queued)
  }

  /**
   * Write what is buffered now, synchronously (for process exit: the
   * LogFile calls it from its own 'exit' handler). A batch already handed to
   * an asynchronous fs.write is left to it.
   */
  flushSync(): void {
    if (this.kind !== 'file') return
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled)
      this.scheduled = undefined
    }
    if (this.pending !== '') {
      const data = Buffer.from(this.pending)
      this.pending = ''
      this.writeAllSync(data)
    }
    this.synced = this.queued
    if (this.inflight === 0) this.settle(this.queued)
  }

  /**
   * Reopen the file (logrotate's postrotate sends USR1): what was written
   * before goes to the old fd, then the path is opened again and lines go
   * to the new file. When the promise resolves, no line is written to the
   * old (rotated) file any more. If the path cannot be opened, the old fd
   * stays in use and the promise rejects with the system error. A no-op for
   * stdout / stderr (they belong to whoever started us).
   */
  reopen(): Promise<void> {
    if (this.kind !== 'file' || this.closed) return Promise.resolve()
    const done = this.reopening.then(() => this.switchFile())
    this.reopening = done.catch(() => undefined)
    return done
  }

  private async switchFile(): Promise<void> {
    await this.flush()
    this.held = true
    try {
      // A batch dispatched after the flush above goes to the old fd too: let it land.
      await this.waitFor(this.inflight)
      const fd = await openAppend(this.target)
      const old = this.fd
      this.fd = fd
      fsClose(old, () => undefined)
    } finally {
      this.held = false
      this.schedule()
    }
  }

  /** Flush, then close the file (stdout / stderr stay open). Later writes are ignored. */
  async close(): Promise<void> {
    if (this.closed) return
    const last = this.queued
    this.closed = true
    if (this.kind !== 'file') {
      this.stream.off('error', this.onStreamError)
      return
    }
    await this.reopening
    await this.waitFor(last)
    process.off('exit', this.onExit)
    await new Promise<void>((resolve) => fsClose(this.fd, () => resolve()))
  }

  private schedule(): void {
    if (this.scheduled === undefined && this.inflight === 0 && !this.held && this.pending !== '')
      this.scheduled = setImmediate(this.dispatch)
  }

  private readonly dispatch = (): void => {
    this.scheduled = undefined
    if (this.inflight !== 0 || this.held || this.pending === '') return
    const data = Buffer.from(this.pending)
    this.pending = ''
    this.inflight = this.queued
    this.batches++
    this.writeAsync(data, 0)
  }

  private writeAsync(data: Buffer, offset: number): void {
    fsWrite(this.fd, data, offset, data.length - offset, null, (err, n) => {
      if (err === null && offset + n < data.length) {
        // A short write (the disk filling up): write the rest, which fails or goes on.
        this.writeAsync(data, offset + n)
        return
      }
      if (err === null) this.failing = false
      else this.report(err)
      const seq = this.inflight
      this.inflight = 0
      this.settle(Math.max(seq, this.synced))
      this.schedule()
    })
  }

  private writeAllSync(data: Buffer): void {
    try {
      for (let offset = 0; offset < data.length; ) offset += writeSync(this.fd, data, offset)
      this.failing = false
    } catch (err) {
      this.report(err as Error)
    }
  }

  private waitFor(seq: number): Promise<void> {
    if (this.written >= seq) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push({ seq, resolve }))
  }

  private settle(seq: number): void {
    this.written = Math.max(this.written, seq)
    if (this.waiters.length === 0) return
    const waiting: Waiter[] = []
    for (const w of this.waiters) {
      if (w.seq <= this.written) w.resolve()
      else waiting.push(w)
    }
    this.waiters = waiting
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
    this.flushSync()
    this.exiting = true
  }
}
