/**
 * The control socket (gunicorn's gunicornc, Puma's control app): a UNIX
 * socket in the master that `sdserve ctl` speaks to (lib/control-protocol.ts).
 *
 * Invariants:
 * - the socket file is created 0600 before it listens, so nobody else can
 *   even connect; and each peer's SO_PEERCRED is checked besides: only root
 *   and the master's own uid are served (anyone else: connection closed, a
 *   log line);
 * - a command that changes state answers once it has finished (reload: the
 *   new generation serves; scale: the count is reached; stop: the master has
 *   stopped), or with why it failed;
 * - a malformed request costs an error answer; an overlong one its connection;
 * - the file is removed at close only if it is still ours (a binary
 *   upgrade's new master has bound its own at the same path).
 */
import { closeSync, lstatSync, statSync, unlinkSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import type { EventEmitter } from 'node:events'
import { MAX_REQUEST_BYTES, parseRequest, type ControlAnswer, type ControlRequest } from '../control-protocol.js'
import type { Logger } from '../logger.js'
import { listenOn } from '../listen-on.js'
import { listenUnix, peerCredentials } from '../native.js'
import { MAX_WORKERS } from '../config/options.js'
import type { MasterEvents } from './events.js'
import type { MasterStats } from './stats.js'

/** What the control socket asks of the master. */
export interface Controllable extends EventEmitter<MasterEvents> {
  stats(): MasterStats
  reload(): Promise<boolean>
  scaleTo(workers: number): boolean
  reopenLogs(): void
  setLameDuck(on: boolean): void
  upgrade(): Promise<boolean>
  stop(graceful?: boolean): Promise<number>
}

/** At most this many ctl connections at once: a stuck script cannot eat the master's fds. */
const MAX_CONNECTIONS = 16

export class ControlServer {
  private readonly clients = new Set<Socket>()
  /** Connections waiting for the master to stop: answered at close(). */
  private readonly awaitingStop = new Set<Socket>()

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly inode: number,
    private readonly master: Controllable,
    private readonly log: Logger,
  ) {
    server.on('connection', (socket) => this.accept(socket))
  }

  /** Bind the socket (replacing a stale file, or a predecessor's in a binary upgrade) and serve. */
  static async open(path: string, master: Controllable, log: Logger): Promise<ControlServer> {
    removeSocketFile(path)
    const fd = listenUnix(path, { backlog: MAX_CONNECTIONS, mode: 0o600 })
    const server = createServer()
    server.maxConnections = MAX_CONNECTIONS
    try {
      await listenOn(server, { fd })
      /* c8 ignore next 4 -- listening on a socket just made fails only when out of resources */
    } catch (err) {
      closeSync(fd)
      throw err
    }
    log.info(`control socket: ${path}`)
    return new ControlServer(path, server, statSync(path).ino, master, log)
  }

  private accept(socket: Socket): void {
    let uid = -1
    try {
      // node keeps an accepted socket's fd on its handle; without one, peerCredentials throws and the peer is refused.
      ;({ uid } = peerCredentials((socket as Socket & { _handle: { fd: number } })._handle.fd))
    } catch (err) {
      this.log.warn(`control socket: cannot read a peer's credentials: ${(err as Error).message}`)
    }
    if (uid !== 0 && uid !== process.getuid?.()) {
      this.log.warn(`control socket: refused a peer with uid ${uid}: only root and uid ${process.getuid?.()} are served`)
      socket.destroy()
      return
    }
    this.clients.add(socket)
    socket.on('close', () => {
      this.clients.delete(socket)
      this.awaitingStop.delete(socket)
    })
    socket.on('error', () => undefined) // a ctl that went away: its answer is lost, nothing else
    socket.setEncoding('utf8')
    let buffered = ''
    // One connection's requests are answered in order: a script reads answer n for its request n.
    let queue = Promise.resolve()
    const tooLong = (text: string): boolean => Buffer.byteLength(text) > MAX_REQUEST_BYTES
    const onData = (chunk: string): void => {
      buffered += chunk
      let newline: number
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        if (tooLong(line)) return refuse()
        if (line.trim() !== '') queue = queue.then(() => this.handle(socket, line))
      }
      if (tooLong(buffered)) refuse()
    }
    // An overlong request costs the connection: nothing more is read from it, and it closes after the answers due.
    const refuse = (): void => {
      socket.off('data', onData)
      socket.pause()
      queue = queue.then(() => {
        answer(socket, { ok: false, command: '', error: `request longer than ${MAX_REQUEST_BYTES} bytes` })
        socket.destroySoon()
      })
    }
    socket.on('data', onData)
  }

  private async handle(socket: Socket, line: string): Promise<void> {
    let request: ControlRequest
    try {
      request = parseRequest(line, MAX_WORKERS)
    } catch (err) {
      return answer(socket, { ok: false, command: '', error: (err as Error).message })
    }
    this.log.info(`control socket: ${request.command}${request.command === 'scale' ? ` ${request.workers}` : ''}`)
    let result: ControlAnswer | undefined
    try {
      result = await this.run(request, socket)
    } catch (err) {
      // A master that throws must not take the control socket (or the process, as an unhandled rejection) with it.
      this.log.error(`control socket: ${request.command} failed: ${(err as Error).message}`)
      result = { ok: false, command: request.command, error: (err as Error).message }
    }
    answer(socket, result)
  }

  /** Run one command; undefined: the answer comes later (stop: at close()). */
  private async run(request: ControlRequest, socket: Socket): Promise<ControlAnswer | undefined> {
    const m = this.master
    switch (request.command) {
      case 'status':
        return { ok: true, command: 'status', stats: m.stats() }
      case 'workers': {
        const stats = m.stats()
        return { ok: true, command: 'workers', target: stats.target, workers: stats.workers }
      }
      case 'reload':
        return this.reload()
      case 'scale':
        return this.scale(request.workers, socket)
      case 'drain':
      case 'resume':
        // Lame duck: health checks answer 503 (drain) or as before (resume); everything is still served.
        m.setLameDuck(request.command === 'drain')
        return { ok: true, command: request.command, health: m.stats().health }
      case 'reopen-logs':
        m.reopenLogs()
        return { ok: true, command: 'reopen-logs' }
      case 'upgrade':
        return this.upgrade()
      case 'stop':
        this.awaitingStop.add(socket)
        void m.stop(true)
        return undefined
    }
  }

  private async reload(): Promise<ControlAnswer> {
    let outcome: MasterEvents['reload'][0] | undefined
    const listener = (r: MasterEvents['reload'][0]): void => void (outcome = r)
    this.master.on('reload', listener)
    const ok = await this.master.reload().finally(() => this.master.off('reload', listener))
    if (ok && outcome !== undefined) return { ok: true, command: 'reload', generation: outcome.generation }
    return { ok: false, command: 'reload', error: outcome?.error ?? `refused: the master is ${this.master.stats().phase}` }
  }

  /** Scale, and answer once the serving generation has that many workers ready and no more. */
  private async scale(workers: number, socket: Socket): Promise<ControlAnswer | undefined> {
    if (!this.master.scaleTo(workers)) return { ok: false, command: 'scale', error: `refused: the master is ${this.master.stats().phase}` }
    const reached = (): boolean => {
      const s = this.master.stats()
      const live = s.workers.filter((w) => w.generation === s.generation && (w.state === 'ready' || w.state === 'booting'))
      return s.phase === 'stopping' || (live.length === workers && live.every((w) => w.state === 'ready'))
    }
    // 'status' comes at every change and about once a second, 'phase' at a stop; a ctl that went away ends the wait.
    while (!reached()) {
      if (socket.destroyed) return undefined
      await this.change(socket)
    }
    if (this.master.stats().phase === 'stopping') return { ok: false, command: 'scale', error: 'the master is stopping' }
    return { ok: true, command: 'scale', workers }
  }

  /** Resolves at the master's next 'status' or 'phase', or when the ctl goes away; leaves no listener behind. */
  private change(socket: Socket): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.master.off('status', done).off('phase', done)
        socket.off('close', done)
        resolve()
      }
      this.master.on('status', done).on('phase', done)
      socket.on('close', done)
    })
  }

  private async upgrade(): Promise<ControlAnswer> {
    let error: string | undefined
    let handedOver!: (pid: number) => void
    // The upgrade's promise resolves only once this master has stopped after the hand-over: answer at the hand-over.
    const upgraded = new Promise<number>((resolve) => (handedOver = resolve))
    const onUpgraded = (u: { pid: number }): void => handedOver(u.pid)
    const onFailed = (f: { error: string }): void => void (error = f.error)
    this.master.on('upgraded', onUpgraded).on('upgrade-failed', onFailed)
    const pid = await Promise.race([upgraded, this.master.upgrade().then(() => 0)])
    this.master.off('upgraded', onUpgraded).off('upgrade-failed', onFailed)
    if (pid !== 0) return { ok: true, command: 'upgrade', pid }
    return { ok: false, command: 'upgrade', error: error ?? `refused: the master is ${this.master.stats().phase}` }
  }

  /**
   * Stop serving: answer whoever waits for the stop, close every connection,
   * remove the file if ours. handedOver: a binary upgrade's new master owns
   * the path now (it may be binding it this very moment), so the file is left alone.
   */
  async close(handedOver = false): Promise<void> {
    // While our socket is still bound its inode cannot be reused: a file with the same inode is ours.
    try {
      if (!handedOver && statSync(this.path).ino === this.inode) unlinkSync(this.path)
    } catch {
      // Gone already (removed by hand, or by a new master that replaced it).
    }
    for (const socket of this.awaitingStop) answer(socket, { ok: true, command: 'stop' })
    for (const socket of this.clients) socket.end()
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    for (const socket of this.clients) socket.destroySoon()
    await closed
  }
}

function answer(socket: Socket, a: ControlAnswer | undefined): void {
  if (a !== undefined && socket.writable) socket.write(`${JSON.stringify(a)}\n`)
}

/** Remove a socket file left by an earlier master; anything else at the path is left for bind to refuse. */
function removeSocketFile(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path)
  } catch {
    // Nothing there.
  }
}
