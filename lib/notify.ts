/**
 * sd_notify(3) without libsystemd: one AF_UNIX datagram of KEY=VALUE lines to
 * $NOTIFY_SOCKET. NOTIFY_SOCKET unset means "not under systemd": every call
 * then returns { sent: false } and does nothing.
 */
import { Socket } from 'node:net'
import { closeSync } from 'node:fs'
import { InvalidArgumentError, NotifyError, show } from './errors.js'
import { isValidFdName, SUN_PATH_MAX } from './limits.js'
import { loadAddon, pipe, sendNotifyDatagram } from './native.js'

/** systemd reads at most this many bytes of one notification (NOTIFY_BUFFER_MAX, PIPE_BUF). */
export const NOTIFY_MESSAGE_MAX = 4096

export type NotifyValue = string | number | bigint

const UINT64_MAX = 0xffffffffffffffffn

export interface NotifyResult {
  /** False when NOTIFY_SOCKET is unset: the process is not supervised by systemd. */
  sent: boolean
  /** The exact datagram, for logs and tests. */
  message: string
}

/** CLOCK_MONOTONIC in microseconds, as MONOTONIC_USEC wants it (hrtime is CLOCK_MONOTONIC on Linux). */
export function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n
}


function checkLine(key: string, value: string): void {
  if (!/^[A-Z][A-Z0-9_]*$/.test(key)) throw new NotifyError(`notify field name must be upper-case KEY, got ${show(key)}`)
  if (value.includes('\n') || value.includes('\0'))
    throw new NotifyError(`${key} must be one line without NUL bytes, got ${show(value)}`)
}

function positiveInteger(key: string, value: NotifyValue, allowZero = false): string {
  const ok =
    (typeof value === 'number' && Number.isSafeInteger(value) && (value > 0 || (allowZero && value === 0))) ||
    (typeof value === 'bigint' && (value > 0n || (allowZero && value === 0n)) && value <= UINT64_MAX)
  if (!ok) throw new NotifyError(`${key} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${show(value)}`)
  return String(value)
}

/** Collapse text into one STATUS-safe line (newlines and control characters become spaces). */
export function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]+/g, ' ').trim()
}

export interface NotifierOptions {
  /** The address; default process.env.NOTIFY_SOCKET. undefined or '' means not under systemd. */
  socket?: string | undefined
}

/**
 * Talks to one NOTIFY_SOCKET. Constructing it with an address validates the
 * address and loads the native addon, so a broken install fails at startup,
 * loudly, instead of silently never sending READY=1.
 */
export class Notifier {
  readonly socket: string | undefined

  constructor(options: NotifierOptions = {}) {
    const socket = 'socket' in options ? options.socket : process.env.NOTIFY_SOCKET
    if (socket === undefined || socket === '') {
      this.socket = undefined
      return
    }
    if (socket.startsWith('vsock:'))
      throw new NotifyError(`NOTIFY_SOCKET=${socket}: AF_VSOCK notification sockets are not supported`)
    if (!socket.startsWith('/') && !socket.startsWith('@'))
      throw new NotifyError(`NOTIFY_SOCKET must be an absolute path or an @abstract name, got ${show(socket)}`)
    if (Buffer.byteLength(socket) > SUN_PATH_MAX || socket.length < 2)
      throw new NotifyError(`NOTIFY_SOCKET must be 2 to ${SUN_PATH_MAX} bytes long, got ${show(socket)}`)
    loadAddon()
    this.socket = socket
  }

  /** True when there is a systemd to talk to. */
  get enabled(): boolean {
    return this.socket !== undefined
  }

  /**
   * Send fields as one datagram, in order, with optional fds (SCM_RIGHTS).
   * Throws NotifyError for a malformed message and a system error when the
   * datagram cannot be delivered.
   */
  send(fields: ReadonlyArray<readonly [string, NotifyValue]>, fds: number[] = []): NotifyResult {
    if (fields.length === 0) throw new NotifyError('a notification needs at least one field')
    const lines = fields.map(([key, value]) => {
      const text = String(value)
      checkLine(key, text)
      return `${key}=${text}`
    })
    const message = lines.join('\n')
    const bytes = Buffer.from(message)
    if (bytes.length > NOTIFY_MESSAGE_MAX)
      throw new NotifyError(`a notification must be at most ${NOTIFY_MESSAGE_MAX} bytes, got ${bytes.length}`)
    if (this.socket === undefined) return { sent: false, message }
    sendNotifyDatagram(this.socket, bytes, fds)
    return { sent: true, message }
  }

  /** READY=1: startup (or a reload) finished and the service is serving. */
  ready(status?: string): NotifyResult {
    return this.send(withStatus([['READY', 1]], status))
  }

  /** RELOADING=1 with MONOTONIC_USEC in the same datagram, as Type=notify-reload requires. */
  reloading(status?: string): NotifyResult {
    return this.send(withStatus([['RELOADING', 1], ['MONOTONIC_USEC', monotonicUsec()]], status))
  }

  stopping(status?: string): NotifyResult {
    return this.send(withStatus([['STOPPING', 1]], status))
  }

  /** STATUS=: one line shown by `systemctl status`; a newline is an error. */
  status(text: string): NotifyResult {
    return this.send([['STATUS', text]])
  }

  /** ERRNO=: why the service failed, as an errno number. */
  errno(errno: number, status?: string): NotifyResult {
    return this.send(withStatus([['ERRNO', positiveInteger('ERRNO', errno, true)]], status))
  }

  /** MAINPID=: another process is now the service's main process. */
  mainPid(pid: number): NotifyResult {
    return this.send([['MAINPID', positiveInteger('MAINPID', pid)]])
  }

  /** WATCHDOG=1: keep-alive ping. */
  watchdog(): NotifyResult {
    return this.send([['WATCHDOG', 1]])
  }

  /** WATCHDOG=trigger: ask systemd to act as if the watchdog timed out now. */
  watchdogTrigger(status?: string): NotifyResult {
    return this.send(withStatus([['WATCHDOG', 'trigger']], status))
  }

  /** WATCHDOG_USEC=: change the watchdog timeout at runtime. */
  watchdogUsec(usec: NotifyValue): NotifyResult {
    return this.send([['WATCHDOG_USEC', positiveInteger('WATCHDOG_USEC', usec)]])
  }

  /** EXTEND_TIMEOUT_USEC=: the current start, reload or stop needs this much longer; repeat within it. */
  extendTimeout(usec: NotifyValue): NotifyResult {
    return this.send([['EXTEND_TIMEOUT_USEC', positiveInteger('EXTEND_TIMEOUT_USEC', usec)]])
  }

  /** FDSTORE=1: keep these fds in systemd's fd store under name (needs FileDescriptorStoreMax > 0). */
  fdStore(fds: number[], name: string, options: { poll?: boolean } = {}): NotifyResult {
    if (!isValidFdName(name))
      throw new NotifyError(`FDNAME must be 1 to 255 printable ASCII characters without ':', got ${show(name)}`)
    if (!Array.isArray(fds) || fds.length === 0) throw new NotifyError(`FDSTORE needs at least one fd, got ${show(fds)}`)
    const fields: Array<[string, NotifyValue]> = [
      ['FDSTORE', 1],
      ['FDNAME', name],
    ]
    if (options.poll === false) fields.push(['FDPOLL', 0])
    return this.send(fields, fds)
  }

  /** FDSTOREREMOVE=1: drop the stored fds of that name. */
  fdStoreRemove(name: string): NotifyResult {
    if (!isValidFdName(name))
      throw new NotifyError(`FDNAME must be 1 to 255 printable ASCII characters without ':', got ${show(name)}`)
    return this.send([
      ['FDSTOREREMOVE', 1],
      ['FDNAME', name],
    ])
  }

  /**
   * BARRIER=1: resolves once systemd has processed every message sent before
   * it (it closes the pipe fd that travels with the barrier). Use before exit
   * so that a last STATUS= or MAINPID= is not lost.
   */
  async barrier(timeoutMs = 5000): Promise<NotifyResult> {
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
      throw new InvalidArgumentError('timeoutMs', timeoutMs, 'a positive integer')
    if (this.socket === undefined) return { sent: false, message: 'BARRIER=1' }
    const [readEnd, writeEnd] = pipe()
    let result: NotifyResult
    try {
      result = this.send([['BARRIER', 1]], [writeEnd])
    } catch (err) {
      closeSync(readEnd)
      throw err
    } finally {
      closeSync(writeEnd)
    }
    const reader = new Socket({ fd: readEnd, readable: true, writable: false })
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => { reject(new NotifyError(`BARRIER=1 not acknowledged by ${this.socket} within ${timeoutMs} ms`)); },
          timeoutMs,
        )
        const done = (): void => {
          clearTimeout(timer)
          resolve()
        }
        reader.on('end', done)
        reader.on('close', done)
        reader.on('error', done)
        reader.resume()
      })
    } finally {
      reader.destroy()
    }
    return result
  }
}

function withStatus(
  fields: Array<[string, NotifyValue]>,
  status: string | undefined,
): Array<[string, NotifyValue]> {
  if (status !== undefined) fields.push(['STATUS', status])
  return fields
}

let defaultNotifier: Notifier | undefined

/** The process's Notifier for $NOTIFY_SOCKET, made on first use. */
export function notifier(): Notifier {
  defaultNotifier ??= new Notifier()
  return defaultNotifier
}
