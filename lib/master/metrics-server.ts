/**
 * --metrics-bind: an HTTP server in the master that answers Prometheus's
 * scrapes with formatMetrics() of a fresh stats() snapshot. It is the
 * master's own socket, apart from the app's: scrapes never queue behind
 * requests, and the workers do no metrics work beyond their heartbeats.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { parseBind, removeStaleUnixSocket } from '../binds.js'
import { ConfigError } from '../errors.js'
import { listenOn } from '../listen-on.js'
import type { Logger } from '../logger.js'
import { CONTENT_TYPE, formatMetrics } from './metrics.js'
import type { MasterStats } from './stats.js'

const OPTION = 'metrics-bind'
const PATHS = new Set(['/metrics', '/'])
/** Health checks on the metrics bind: for a balancer that checks a separate port. */
const HEALTH_PATH = '/healthz'
/** Scrapers are few: a client that opens connections by the thousand cannot use up the master's fds. */
const MAX_CONNECTIONS = 64

export class MetricsServer {
  private constructor(
    private readonly server: Server,
    /** Where it listens: `127.0.0.1:9100` (the port chosen for :0), `unix:/run/app/metrics.sock`. */
    readonly address: string,
  ) {}

  /** Bind and listen; rejects with the listen error (EADDRINUSE, EACCES...) for the master to report. */
  static async open(bindText: string, stats: () => MasterStats, log: Logger): Promise<MetricsServer> {
    const spec = parseBind(bindText, OPTION)
    if (spec.kind !== 'tcp' && spec.kind !== 'unix') throw new ConfigError(OPTION, bindText, 'HOST:PORT, [IPV6]:PORT or unix:/PATH')
    const server = createServer((req, res) => answer(req, res, stats, log))
    server.maxConnections = MAX_CONNECTIONS
    if (spec.kind === 'unix') {
      await removeStaleUnixSocket(spec.path, OPTION)
      await listenOn(server, { path: spec.path })
      return new MetricsServer(server, spec.text)
    }
    await listenOn(server, { host: spec.host, port: spec.port, ipv6Only: spec.family === 6 })
    // The port the kernel chose for port 0.
    const { port } = server.address() as { port: number }
    return new MetricsServer(server, spec.family === 6 ? `[${spec.host}]:${port}` : `${spec.host}:${port}`)
  }

  /**
   * Stop listening and end every connection: an idle keep-alive scraper must
   * not hold the master's stop. A UNIX socket's file goes with it (libuv
   * unlinks the path it bound when the server closes).
   */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    return closed
  }
}

function answer(req: IncomingMessage, res: ServerResponse, stats: () => MasterStats, log: Logger): void {
  // A server's requests always have a url; the query string is ignored.
  const path = (req.url as string).split('?', 1)[0] as string
  if (path !== HEALTH_PATH && !PATHS.has(path)) return reply(res, 404, 'not found: metrics are at /metrics, health at /healthz\n')
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD')
    return reply(res, 405, 'method not allowed\n')
  }
  let body: string
  try {
    if (path === HEALTH_PATH) {
      // The master's own answer: the workers' health checks say the same (lib/master/health.ts).
      const health = stats().health
      return reply(res, health === 'ok' ? 200 : 503, `${health}\n`)
    }
    body = formatMetrics(stats())
  } catch (err) {
    // A bug in a snapshot must cost one scrape, never the master.
    log.error(`metrics: ${(err as Error).stack ?? String(err)}`)
    return reply(res, 500, 'metrics failed; see the error log\n')
  }
  reply(res, 200, body, CONTENT_TYPE)
}

function reply(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) })
  res.end(body) // node sends no body for HEAD
}
