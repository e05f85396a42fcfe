// The configurations under test: how to start each one on 127.0.0.1:PORT,
// how to tell that every worker listens, and how to stop it.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { start, stop, tree } from './proc.mjs'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const CLI = join(ROOT, 'dist/lib/cli.js')
const SERVERS = fileURLToPath(new URL('../servers/', import.meta.url))
export const HANDLER = join(SERVERS, 'handler.mjs')

/**
 * The environment every server gets: ours, less what would change how a
 * server starts or behaves. NODE_EXTRA_CA_CERTS is set in this sandbox and
 * costs ~33 ms per Node start (a production unit does not set it); sdserve
 * must not see a systemd environment or a developer's SDSERVE_CMD_ARGS.
 */
export function serverEnv(extra = {}) {
  const env = { ...process.env, ...extra }
  for (const k of [
    'NODE_EXTRA_CA_CERTS',
    'NODE_OPTIONS',
    'SDSERVE_CMD_ARGS',
    'NOTIFY_SOCKET',
    'LISTEN_PID',
    'LISTEN_FDS',
    'LISTEN_FDNAMES',
    'LISTEN_PIDFDID',
    'WATCHDOG_USEC',
    'WATCHDOG_PID',
  ])
    if (!(k in extra)) delete env[k]
  return env
}

/** One HTTP GET on a fresh connection: { status, headers, body }. */
export function get(url, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

/** GET until a 200 answers (connection refused: retry every intervalMs). Resolves with the response. */
export async function until200(url, { timeoutMs = 20000, intervalMs = 5, alive = () => true } = {}) {
  const deadline = Date.now() + timeoutMs
  let last
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`the server exited before answering ${url}`)
    try {
      const r = await get(url, Math.max(100, deadline - Date.now()))
      if (r.status === 200) return r
      last = new Error(`status ${r.status}`)
    } catch (err) {
      last = err
    }
    await sleep(intervalMs)
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms: ${last?.message}`)
}

function nodeServer(file, args) {
  return (port) => ({ cmd: process.execPath, args: [join(SERVERS, file), String(port), ...args] })
}

/** BENCH_SDSERVE_ARGS: more sdserve options for every sdserve configuration (e.g. --boot-nice 0), split on white space. */
export const EXTRA_ARGS = (process.env.BENCH_SDSERVE_ARGS ?? '').split(/\s+/).filter(Boolean)

/** An sdserve configuration's command: `workers` workers and the options extra(tmp) gives, then BENCH_SDSERVE_ARGS. */
export function sdserve(extra, workers = 2) {
  return (port, tmp) => ({
    cmd: process.execPath,
    args: [CLI, '-w', String(workers), '-b', `127.0.0.1:${port}`, ...extra(tmp), ...EXTRA_ARGS, HANDLER],
    // a directory with no sdserve.config.* of a developer in it
    cwd: tmp,
  })
}

export function nginxBinary() {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin']) {
    const p = join(dir, 'nginx')
    if (dir !== '' && existsSync(p)) return p
  }
  return undefined
}

function nginxConfig(port, tmp) {
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(tmp, d), { recursive: true })
  const conf = join(tmp, 'nginx.conf')
  writeFileSync(
    conf,
    `# written by bench/run.mjs: the ceiling, nginx answering the same body
worker_processes 2;
pid ${tmp}/nginx.pid;
error_log ${tmp}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type text/plain;
  keepalive_timeout 5s;          # as Node's server.keepAliveTimeout
  keepalive_requests 10000000;   # Node does not cap requests per connection either
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  server {
    listen 127.0.0.1:${port} backlog=2048;
    location / {
      add_header X-Worker $pid;
      return 200 "hello from $pid\\n";
    }
  }
}
`,
  )
  return conf
}

/** Does `sdserve --help` list --access-logfile? (It is being added; the bench checks at run time.) */
export function sdserveHas(flag) {
  try {
    return execFileSync(process.execPath, [CLI, '--help'], { encoding: 'utf8', env: serverEnv() }).includes(flag)
  } catch {
    return false
  }
}

/** The ready lines: an sdserve worker's, and a baseline process's; both name the serving process's pid. */
export const SERVING = /worker \d+ \(pid (\d+), generation \d+\) serving/
const LISTENING = /^listening (\d+)/

/**
 * The configurations, in table order. id: short key; label: table text;
 * kind: 'node' (a baseline), 'sdserve' or 'nginx'; workers: processes that
 * serve; ready: output line each serving process prints once it listens.
 */
export function configurations({ accessLog, metrics }) {
  const nginx = nginxBinary()
  return [
    { id: 'single', label: 'single Node process (http.createServer)', kind: 'node', workers: 1, ready: LISTENING, make: nodeServer('single.mjs', []) },
    { id: 'cluster-rr', label: 'Node cluster, round-robin (2 workers)', kind: 'node', workers: 2, ready: LISTENING, make: nodeServer('cluster.mjs', ['rr']) },
    { id: 'cluster-none', label: 'Node cluster, SCHED_NONE (2 workers)', kind: 'node', workers: 2, ready: LISTENING, make: nodeServer('cluster.mjs', ['none']) },
    { id: 'shared-fd', label: 'raw shared socket: parent + 2 children, listen({fd})', kind: 'node', workers: 2, ready: LISTENING, make: nodeServer('shared-fd.mjs', []) },
    { id: 'reuseport', label: '2 processes, SO_REUSEPORT (node-unix-socket)', kind: 'node', workers: 2, ready: LISTENING, make: nodeServer('reuseport.mjs', []) },
    { id: 'sdserve', label: 'sdserve -w 2 (shared)', kind: 'sdserve', workers: 2, ready: SERVING, stopSignal: 'SIGINT', make: sdserve(() => []) },
    {
      id: 'sdserve-reuseport',
      label: 'sdserve -w 2 --balance reuse-port',
      kind: 'sdserve',
      workers: 2,
      ready: SERVING,
      stopSignal: 'SIGINT',
      make: sdserve(() => ['--balance', 'reuse-port']),
    },
    {
      id: 'sdserve-accesslog',
      label: 'sdserve -w 2 (shared) --access-logfile FILE',
      kind: 'sdserve',
      workers: 2,
      ready: SERVING,
      stopSignal: 'SIGINT',
      unavailable: accessLog ? undefined : 'not available yet: `sdserve --help` does not list --access-logfile',
      make: sdserve((tmp) => ['--access-logfile', join(tmp, 'access.log')]),
    },
    {
      id: 'sdserve-metrics',
      label: 'sdserve -w 2 (shared) --metrics-bind, scraped every second',
      kind: 'sdserve',
      workers: 2,
      ready: SERVING,
      stopSignal: 'SIGINT',
      // Port 0: the master logs the port it got; scrapeMetrics() reads it there.
      scrape: true,
      unavailable: metrics ? undefined : 'not available yet: `sdserve --help` does not list --metrics-bind',
      make: sdserve(() => ['--metrics-bind', '127.0.0.1:0']),
    },
    {
      id: 'nginx',
      label: 'nginx, 2 workers, return 200 (ceiling)',
      kind: 'nginx',
      workers: 2,
      stopSignal: 'SIGTERM',
      unavailable: nginx === undefined ? 'nginx is not installed' : undefined,
      make: (port, tmp) => ({ cmd: nginx, args: ['-e', join(tmp, 'error.log'), '-c', nginxConfig(port, tmp), '-g', 'daemon off;'] }),
    },
  ]
}

/**
 * The order the throughput phase starts them in (rotated each round): the
 * pairs the targets compare run next to each other (cluster round-robin,
 * raw shared socket, sdserve, sdserve with its access log or its metrics; the two
 * SO_REUSEPORT setups; PM2, a cluster round-robin underneath), so the machine's other load changes least between them.
 */
export const RUN_ORDER = ['single', 'cluster-none', 'pm2', 'cluster-rr', 'shared-fd', 'sdserve', 'sdserve-accesslog', 'sdserve-metrics', 'sdserve-reuseport', 'reuseport', 'nginx']

/**
 * Start a configuration on port and wait until every worker serves: its
 * ready lines (nginx: its worker processes) and a 200 from the URL.
 * Returns { child, url, port, startedAt (hrtime ns), readyAt }.
 */
export async function launch(config, port, tmp, { env = {} } = {}) {
  // A configuration that is not one process we spawn (PM2's daemon) starts itself.
  if (config.launch !== undefined) return config.launch(port, tmp)
  const { cmd, args, cwd } = config.make(port, tmp)
  const startedAt = process.hrtime.bigint()
  const child = start(cmd, args, { env: serverEnv(env), cwd: cwd ?? tmp })
  const url = `http://127.0.0.1:${port}/`
  const alive = () => child.exitCode === null && child.signalCode === null
  try {
    if (config.ready !== undefined) await child.waitLines(config.ready, config.workers)
    await until200(url, { alive })
    if (config.kind === 'nginx') {
      const deadline = Date.now() + 10000
      while (tree(child.pid).filter((p) => p.depth === 1).length < config.workers && Date.now() < deadline) await sleep(10)
    }
  } catch (err) {
    await stop(child, { signal: 'SIGKILL', graceMs: 0 })
    throw err
  }
  return { child, url, port, startedAt, readyAt: process.hrtime.bigint() }
}

export async function shutdown(config, server) {
  if (config.shutdown !== undefined) return config.shutdown(server)
  await stop(server?.child, { signal: config.stopSignal ?? 'SIGTERM', graceMs: 5000 })
}

/**
 * Scrape a server's metrics once a second, as Prometheus would (one kept-alive
 * connection), from the address its master logged, until stop(). stop()
 * resolves with { scrapes, failed }.
 */
export function scrapeMetrics(server, intervalMs = 1000) {
  const line = server.child.lines.find((l) => /metrics: listening on /.test(l.text))
  const m = line === undefined ? null : /metrics: listening on (\S+):(\d+)/.exec(line.text)
  if (m === null) throw new Error('the master did not log its metrics address')
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const url = `http://${m[1]}:${m[2]}/metrics`
  let done = false
  let scrapes = 0
  let failed = 0
  const loop = (async () => {
    while (!done) {
      try {
        const r = await new Promise((resolve, reject) => {
          const req = request(url, { agent, timeout: 5000 }, (res) => {
            res.resume()
            res.on('end', () => resolve(res.statusCode))
          })
          req.on('timeout', () => req.destroy(new Error('scrape timed out')))
          req.on('error', reject)
          req.end()
        })
        if (r === 200) scrapes++
        else failed++
      } catch {
        failed++
      }
      await sleep(intervalMs)
    }
  })()
  return {
    stop: async () => {
      done = true
      await loop
      agent.destroy()
      return { scrapes, failed }
    },
  }
}
