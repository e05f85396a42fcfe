/**
 * The worker: the child side of the process model. It receives its listening
 * sockets as inherited fds and a boot message over IPC, loads the app, serves
 * it on every socket, reports heartbeats and request counts, and on stop
 * closes its listeners, finishes in-flight requests, closes idle keep-alive
 * connections and exits.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createServer as createNetServer, Server as NetServerClass, type Server as NetServer, type Socket } from 'node:net'
import { appErrorStack, loadApp, type AppTarget } from './app.js'
import { AccessLog, LoggedResponse, responseClosed } from './http/access-log.js'
import { RequestCounters, STARTED } from './http/request-counters.js'
import { LongLived } from './http/long-lived.js'
import { beginDrain, type DrainReason } from './drain.js'
import type { HealthStatus } from './master/health.js'
import { AllowList, clientAddress, PROXIED, resolveClient, socketPeer } from './http/proxy.js'
import { ExitCode } from './errors.js'
import { flushCompileCache } from './compile-cache.js'
import { listenOn } from './listen-on.js'
import { LogFile } from './log-file.js'
import { Logger, openErrorLog } from './logger.js'
import { readProxyHeader } from './http/proxy-protocol.js'
import {
  CMD,
  dispatch,
  isOurs,
  LISTENER_FD_START,
  type MasterMessage,
  type ProxySettings,
  type RequestLimits,
  type WorkerMessage,
  type WorkerReport,
} from './protocol.js'

type BootMessage = Extract<MasterMessage, { act: 'boot' }>

/**
 * How long access log lines wait in memory (a file; stdout is written line
 * by line): up to 64 KiB or 100 ms, whichever comes first, as nginx's
 * `access_log ... buffer=64k flush=100ms`. A busy worker makes one write(2)
 * per 64 KiB of lines instead of one per event-loop turn (on Connection:
 * close, nearly one per request).
 */
const ACCESS_LOG_BUFFER = { bufferSize: 64 * 1024, flushMs: 100 }

/** net.Server's own close(): stops accepting without http.Server's closing of idle connections. */
function stopAccepting(server: NetServer): void {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- applied to the server itself
  Reflect.apply(NetServerClass.prototype.close, server, [])
}

/** What each line of a worker's error log starts with: which worker says it. */
function logPrefix(): string {
  return `worker ${process.env.SDSERVE_WORKER_ID ?? '?'}: `
}

/** Send the master a message; done runs once it is written (or could not be). */
function send(message: WorkerMessage, done: () => void = () => undefined): void {
  // The master may already be gone; a worker never dies of a failed report.
  if (process.connected && process.send !== undefined) process.send(message, undefined, {}, () => done())
  else done()
}

type Listener = (req: IncomingMessage, res: ServerResponse) => void

/**
 * How often the event-loop delay is sampled, while the worker has connections:
 * 50 wake-ups a second are 0.3% of a core, which idle workers (a hundred of
 * them on a large host) need not spend.
 */
const LOOP_RESOLUTION_MS = 20

/**
 * An event-loop delay statistic in ms: the histogram holds each sampling
 * timer's whole interval in ns, so the delay is what exceeds the resolution
 * (an empty histogram's max and percentiles are 0).
 */
function loopDelayMs(ns: number): number {
  return Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS)
}

/** What a heartbeat reported: requests so far, open connections, and when (Date.now()). */
export interface Reported {
  requests: number
  connections: number
  at: number
}

/**
 * Whether a heartbeat is due: always while busy or after a change since the
 * last one; when idle (no request, no connection came or went), only once
 * idleMs have passed.
 */
export function reportDue(last: Reported, now: Reported, busy: boolean, idleMs: number): boolean {
  return busy || now.requests !== last.requests || now.connections !== last.connections || now.at - last.at >= idleMs
}

/** Whether a request's URL is path, with or without a query. */
function isPath(url: string | undefined, path: string): boolean {
  return url === path || (url !== undefined && url.startsWith(path) && url[path.length] === '?')
}

/**
 * The responses of the servers the worker creates: the request counters'
 * start time is a field from the constructor on, and the access log counts
 * body bytes in the class's write() and end() (LoggedResponse), so that
 * recording a request does not change the response's shape.
 */
export class WorkerResponse extends LoggedResponse {
  [STARTED] = 0
}

/** Set on a draining worker's connections: when (Date.now()) their next response closes them. */
const HANDOVER_AT = Symbol('sdserve.handover-at')

/**
 * Servers for every listener. A handler app gets servers of ours; an app's own
 * http.Server takes the first socket and servers of ours the rest, calling its
 * request listeners. Either way each server has one 'request' listener, the
 * worker's, which checks the request before the app sees it.
 */
function makeServers(target: AppTarget, app: Listener, count: number, limits: RequestLimits, onRequest: (app: Listener) => Listener): Server[] {
  const listener = onRequest(app)
  const servers: Server[] = []
  for (let i = 0; i < count; i++) {
    let server: Server
    if (target.kind === 'server' && i === 0) server = target.server
    else {
      // Timeouts are checked every second instead of Node's default 30 s, so a slow client is cut on time.
      // WorkerResponse: every response has one hidden class, whatever the worker records on it.
      server = createServer({ connectionsCheckingInterval: 1000, ServerResponse: WorkerResponse as unknown as typeof ServerResponse })
      if (target.kind === 'server') {
        const user = target.server
        server.on('upgrade', (req, socket, head) => user.emit('upgrade', req, socket, head))
      }
    }
    server.on('request', listener)
    server.requestTimeout = limits.requestTimeoutMs
    // Node requires headersTimeout <= requestTimeout when both are set.
    server.headersTimeout =
      limits.requestTimeoutMs > 0 && limits.headersTimeoutMs > limits.requestTimeoutMs ? limits.requestTimeoutMs : limits.headersTimeoutMs
    // One more than the limit: Node 20 drops the excess silently, so refusal() sees one too many and
    // answers 431; Node 22 and later fail such a request in the parser and answer 431 themselves.
    server.maxHeadersCount = limits.fields + 1
    if (limits.connections > 0) server.maxConnections = limits.connections
    servers.push(server)
  }
  return servers
}

/** The app as one request listener: its handler, or its own server's request listeners (taken off it). */
function appListener(target: AppTarget): Listener {
  if (target.kind === 'handler') return target.handler
  const own = target.server.listeners('request') as Listener[]
  target.server.removeAllListeners('request')
  return (req, res) => {
    for (const l of own) l.call(target.server, req, res)
  }
}

/** Why a request is refused, or undefined: 414 for a long request line, 431 for too many or too long fields. */
export function refusal(req: IncomingMessage, limits: RequestLimits): 414 | 431 | undefined {
  // "METHOD TARGET HTTP/1.1"
  if (limits.requestLine > 0 && String(req.method).length + String(req.url).length + 10 > limits.requestLine) return 414
  const raw = req.rawHeaders
  if (raw.length > 2 * limits.fields) return 431
  if (limits.fieldSize > 0)
    for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length + raw[i + 1]!.length + 2 > limits.fieldSize) return 431
  return undefined
}

/**
 * --proxy-protocol: a plain TCP server accepts, reads the PROXY header (from
 * an allowed peer only) and hands the connection to the HTTP server, with the
 * header's source standing in for the peer address.
 */
function proxyFront(http: Server, settings: ProxySettings, headerTimeoutMs: number, log: Logger): NetServer {
  const allowed = AllowList.parse(settings.proxyAllowIps, 'proxy-allow-ips')
  return createNetServer((socket: Socket) => {
    const peer = socketPeer(socket)
    if (peer === undefined || !allowed.allows(peer)) {
      log.warn(`PROXY protocol header refused from ${describePeer(peer)}: not in --proxy-allow-ips`)
      socket.destroy()
      return
    }
    readProxyHeader(socket, headerTimeoutMs).then(
      (header) => {
        if (header.command === 'PROXY' && header.source !== undefined)
          (socket as Socket & { [PROXIED]?: unknown })[PROXIED] =
            header.family === 'unix' ? { kind: 'unix' } : { kind: 'inet', address: header.source.address }
        http.emit('connection', socket)
      },
      (err: unknown) => {
        // readProxyHeader has destroyed the connection: it costs only itself.
        log.warn(`closed a connection from ${describePeer(peer)}: ${(err as Error).message}`)
      },
    )
  })
}

function describePeer(peer: ReturnType<typeof socketPeer>): string {
  /* c8 ignore next -- a connection reset before the server saw it */
  if (peer === undefined) return 'an unknown peer'
  return peer.kind === 'unix' ? 'a UNIX socket peer' : peer.address
}

export class Worker {
  /** The error log: stderr until the boot message says what the master's is. */
  log = new Logger({ prefix: logPrefix() })
  /** The HTTP servers, one per listening socket. */
  private servers: Server[] = []
  /** What listens on the sockets: the HTTP servers, or PROXY protocol front servers. */
  private listening: NetServer[] = []
  private accessFile: LogFile | undefined
  private accessLog: AccessLog | undefined
  /** Open connections, so that a drain knows when it is done. */
  private open = 0
  private requests = 0
  private maxRequests = 0
  private retireSent = false
  private draining = false
  /** When the drain began (Date.now()), and over how long keep-alive connections are handed over. */
  private drainStart = 0
  private handoverMs = 0
  private noKeepAlive = false
  private heartbeat: NodeJS.Timeout | undefined
  /** What the last heartbeat reported, and when (Date.now()); and how long an idle worker waits between them. */
  private sent: Reported = { requests: -1, connections: -1, at: 0 }
  private idleBeatMs = 0
  private readonly counters = new RequestCounters()
  /** --health-path and what it answers, as the master last said. */
  private health: BootMessage['health']
  /** WebSockets and event streams, ended one by one when draining. */
  private readonly longLived = new LongLived()
  /** The drain's deadline timer (a hurried drain replaces it). */
  private deadline: NodeJS.Timeout | undefined
  private deadlineAt = 0
  /** Event-loop delay between heartbeats, for the metrics and `sdserve ctl workers`. */
  private readonly loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
  /** Whether loopDelay samples: from a connection on, until a heartbeat finds none. */
  private sampling = false
  /** The last request started, for the heartbeat's account of what the worker is doing. */
  private lastReq: IncomingMessage | undefined
  private lastRes: ServerResponse | undefined
  private lastStart = 0

  async boot(message: BootMessage): Promise<void> {
    try {
      this.log = openErrorLog({ ...message.errorLog, prefix: logPrefix() })
      /* c8 ignore start -- a worker run as --user, which cannot record coverage (tested in test/worker.ts) */
    } catch (err) {
      // A worker run as --user may not be allowed to open the master's log file: stderr is still the journal's.
      this.log = new Logger({ level: message.errorLog.level, format: message.errorLog.format, prefix: logPrefix() })
      this.log.warn(`cannot open the error log, writing to stderr: ${(err as Error).message}`)
    }
    /* c8 ignore stop */
    let target: AppTarget
    try {
      target = await loadApp(message.app, message.cwd)
    } catch (err) {
      send({ cmd: CMD, act: 'app-error', message: (err as Error).message, stack: appErrorStack(err as Error) })
      process.exitCode = ExitCode.APP_LOAD
      process.disconnect?.()
      return
    }
    this.maxRequests = message.maxRequests
    this.health = message.health
    this.noKeepAlive = message.keepAliveMs === 0
    const allow = AllowList.parse(message.proxy.forwardedAllowIps)
    if (message.accessLog !== undefined) {
      // Every worker appends whole lines to the same file (O_APPEND); USR1 reopens it.
      this.accessFile = LogFile.open(message.accessLog.file, 'stdout', ACCESS_LOG_BUFFER)
      this.accessLog = new AccessLog(this.accessFile, message.accessLog.format)
      this.counters.afterEnd = responseClosed
    }
    const app = appListener(target)
    this.servers = makeServers(target, app, message.listeners.length, message.limits, (app) =>
      this.listener(app, message.limits, allow, message.proxy.strip),
    )
    if (message.warmUp !== undefined) {
      const { describeWarmUp, warmUp } = await import('./http/warm-up.js')
      const r = await warmUp(app, message.warmUp)
      const failed = r.failed > 0 || [...r.statuses.keys()].some((s) => s >= 500)
      this.log[failed ? 'warn' : 'debug'](`warm-up: ${describeWarmUp(r)}`)
    }
    const headerTimeoutMs = message.limits.headersTimeoutMs > 0 ? message.limits.headersTimeoutMs : 10000
    for (const [i, server] of this.servers.entries()) {
      this.longLived.watch(server)
      if (message.keepAliveMs > 0) server.keepAliveTimeout = message.keepAliveMs
      server.on('connection', this.onConnection)
      const front = message.proxy.protocol ? proxyFront(server, message.proxy, headerTimeoutMs, this.log) : server
      this.listening.push(front)
      await listenOn(front, { fd: LISTENER_FD_START + i, backlog: message.backlog })
    }
    this.idleBeatMs = message.idleHeartbeatMs
    this.heartbeat = setInterval(() => this.beat(), message.heartbeatMs)
    this.heartbeat.unref()
    send({ cmd: CMD, act: 'listening', description: target.description })
    // The next generation boots while this one serves: it finds the app's modules compiled.
    flushCompileCache()
  }

  /** The one request listener of every server: count, refuse what breaks the limits, then the app. */
  private listener(app: Listener, limits: RequestLimits, allow: AllowList, strip: boolean): Listener {
    return (req, res) => {
      if (this.health !== undefined && isPath(req.url, this.health.path)) return this.answerHealth(req, res, this.health)
      this.requests++
      this.counters.start(res)
      if (this.draining) this.longLived.late(res)
      // Who the client is (trusted proxy headers), stored on req for client(req); untrusted ones removed.
      resolveClient(req, allow, { strip })
      // Its line is written from the counters' 'close' listener (afterEnd).
      this.accessLog?.track(req, res, clientAddress, false)
      if (this.noKeepAlive || (this.draining && this.handsOver(req.socket))) res.shouldKeepAlive = false
      this.lastReq = req
      this.lastRes = res
      this.lastStart = Date.now()
      if (this.maxRequests > 0 && this.requests >= this.maxRequests && !this.retireSent) {
        this.retireSent = true
        send({ cmd: CMD, act: 'retire', requests: this.requests })
      }
      const status = refusal(req, limits)
      if (status !== undefined) {
        res.shouldKeepAlive = false
        res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' })
        res.end(status === 414 ? 'Request-URI Too Long\n' : 'Request Header Fields Too Large\n')
        return
      }
      app(req, res)
    }
  }

  /** A health check: answered here, never by the app; not counted, and not logged unless asked. */
  private answerHealth(req: IncomingMessage, res: ServerResponse, health: NonNullable<BootMessage['health']>): void {
    const status = this.draining ? 'draining' : health.status
    if (health.log) this.accessLog?.track(req, res, clientAddress)
    if (this.draining) res.shouldKeepAlive = false
    res.writeHead(status === 'ok' ? 200 : 503, { 'content-type': 'text/plain', 'cache-control': 'no-store' })
    res.end(`${status}\n`)
  }

  /** The master's view of the host changed (lib/master/health.ts). */
  setHealth(status: HealthStatus): void {
    if (this.health !== undefined) this.health.status = status
  }

  /** The heartbeat: this worker is alive, with its totals (done, when it is about to exit). */
  private beat(done?: () => void): void {
    // No connection since the last heartbeat: nothing to measure the event loop for.
    if (this.open === 0 && this.sampling) {
      this.sampling = false
      this.loopDelay.disable()
    }
    const busy = this.lastRes !== undefined && !this.lastRes.writableEnded
    const now = Date.now()
    if (done === undefined && !reportDue(this.sent, { requests: this.requests, connections: this.open, at: now }, busy, this.idleBeatMs)) return
    this.sent = { requests: this.requests, connections: this.open, at: now }
    const inflight = busy && this.lastReq !== undefined ? [{ method: String(this.lastReq.method), url: String(this.lastReq.url), ms: now - this.lastStart }] : []
    const cpu = process.cpuUsage()
    const report: WorkerReport = {
      requests: this.requests,
      totals: this.counters.snapshot(),
      connections: this.open,
      cpuUser: cpu.user,
      cpuSystem: cpu.system,
      loopP99: loopDelayMs(this.loopDelay.percentile(99)),
      loopMax: loopDelayMs(this.loopDelay.max),
      inflight,
    }
    this.loopDelay.reset()
    send({ cmd: CMD, act: 'heartbeat', ...report }, done)
  }

  /** USR1 (logrotate): reopen the access and error logs; a failure is reported, never fatal. */
  reopenLogs(): void {
    this.accessFile?.reopen().catch((err: unknown) => {
      this.log.error(`cannot reopen the access log: ${(err as Error).message}`)
    })
    void this.log.file?.reopen().catch((err: unknown) => {
      this.log.error(`cannot reopen the error log: ${(err as Error).message}`)
    })
  }

  /**
   * Stop accepting, let in-flight requests finish (answered with Connection:
   * close), let idle keep-alive connections end at their timeout, and exit
   * once every connection is gone or timeoutMs has passed. With handoverMs,
   * other workers take over the clients: each keep-alive connection is closed
   * at a random moment within handoverMs instead of at its next response.
   */
  stop(graceful: boolean, timeoutMs: number, handoverMs = 0, windowMs = 0, reason: DrainReason = 'stop'): void {
    if (!graceful) process.exit(0)
    const deadline = Date.now() + timeoutMs
    if (this.draining) {
      // Told again (SIGTERM under KillMode=control-group besides the master's message, or a hurried
      // drain): only a sooner deadline changes anything.
      if (deadline < this.deadlineAt) this.finishBy(deadline, windowMs)
      return
    }
    this.draining = true
    this.drainStart = Date.now()
    this.handoverMs = handoverMs
    // The app first, so that it can close its WebSockets and streams its own way.
    beginDrain({ reason, deadline }, (err) => this.log.error(`an onDrain listener threw: ${(err as Error).stack ?? String(err)}`))
    // Stop accepting, but leave idle keep-alive connections alone: closing one
    // races a client that is sending its next request on it (that request is
    // lost). Instead each connection's next response (after its moment in the
    // handover) says Connection: close (see the request listener), and a
    // connection that stays idle ends at its keep-alive timeout.
    // (http.Server#close would close idle ones at once.)
    for (const l of this.listening) stopAccepting(l)
    this.finishBy(deadline, windowMs)
    this.exitIfDrained()
  }

  /** End the long-lived connections over windowMs, and everything at deadline. */
  private finishBy(deadline: number, windowMs: number): void {
    this.deadlineAt = deadline
    clearTimeout(this.deadline)
    this.longLived.drain(this.counters.inFlight, windowMs, deadline)
    this.deadline = setTimeout(() => {
      for (const server of this.servers) server.closeAllConnections()
      process.exit(0)
    }, deadline - Date.now())
    this.deadline.unref()
  }

  /**
   * Whether a draining worker's response closes its connection: once the
   * connection's moment in the handover has come (drawn at its first response
   * of the drain). The new workers' code is not optimized yet when they take
   * over: clients that arrive one by one let it warm up, where all of them at
   * once queued behind it.
   */
  private handsOver(socket: Socket): boolean {
    const s = socket as Socket & { [HANDOVER_AT]?: number }
    const at = (s[HANDOVER_AT] ??= this.drainStart + Math.random() * this.handoverMs)
    return Date.now() >= at
  }

  // Counting connections costs a counter and a listener shared by all of them: a Set of sockets
  // and a once() wrapper per connection cost a few percent of a Connection: close request.
  private readonly onConnection = (socket: Socket): void => {
    this.open++
    if (!this.sampling) {
      this.sampling = true
      this.loopDelay.enable()
    }
    socket.on('close', this.onConnectionClose)
  }

  private readonly onConnectionClose = (): void => {
    this.open--
    // Once the other 'close' listeners (the response's, which writes its access log line) have run.
    if (this.draining) setImmediate(this.exitIfDrained)
  }

  private readonly exitIfDrained = (): void => {
    if (this.open > 0) return
    clearInterval(this.heartbeat)
    // The last totals first, so that the master's counts miss nothing this worker served.
    this.beat(() => process.exit(0))
  }
}

/* c8 ignore start -- listen({ fd }) on a socket the master checked fails only when out of resources */
/** The app loaded but a socket could not be served: the master reports a boot failure (exit 3). */
function cannotListen(log: Logger, err: unknown): never {
  log.error(`cannot listen: ${(err as Error).message}`)
  process.exit(ExitCode.WORKER_BOOT)
}
/* c8 ignore stop */

/** Run this process as a worker: called by worker-main.js, the file the master spawns. */
export function runWorker(): void {
  const worker = new Worker()
  let stopTimeoutMs = 30000
  let drainWindowMs = 0
  // The master handles these; a signal sent to the whole process group must not stop a worker.
  for (const signal of ['SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGUSR2', 'SIGWINCH'] as const) process.on(signal, () => undefined)
  process.on('SIGTERM', () => worker.stop(true, stopTimeoutMs, 0, drainWindowMs, 'stop'))
  process.on('SIGINT', () => worker.stop(false, 0))
  process.on('SIGQUIT', () => worker.stop(false, 0))
  // The master is gone (killed): finish what is in flight, then go.
  process.on('disconnect', () => worker.stop(true, stopTimeoutMs, 0, drainWindowMs, 'stop'))
  process.on('message', (message: unknown) => {
    /* c8 ignore next -- the master sends only its own messages; anything else on the channel is not for us */
    if (!isOurs(message)) return
    dispatch(message as MasterMessage, {
      boot: (m) => {
        stopTimeoutMs = m.gracefulTimeoutMs
        drainWindowMs = m.drainWindowMs
        worker.boot(m).catch((err: unknown) => cannotListen(worker.log, err))
      },
      stop: (m) => worker.stop(m.graceful, m.timeoutMs, m.handoverMs, m.windowMs, m.reason),
      'reopen-logs': () => worker.reopenLogs(),
      health: (m) => worker.setHealth(m.status),
    })
  })
}
