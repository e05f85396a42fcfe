/**
 * --metrics-bind end to end: the sdserve command serves its metrics, a real
 * Prometheus scrapes them, and the counters add up to exactly the requests
 * made, through a worker's crash too.
 */
import t, { type Test } from 'tap'
import { writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { createServer, type Server as NetServer } from 'node:net'
import { join } from 'node:path'
import { ready, start, type Server } from '../helpers/master-process.js'
import { needs } from '../helpers/needs.js'
import { combineLoads, describeLoad, freePort, get, load, shortTmp, spawnTracked, waitFor, waitForOutput } from '../helpers/proc.js'

const N = 300

/** Exactly N requests, half on new connections, half on kept-alive ones; every one must succeed. */
async function exactLoad(t: Test, s: Server): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 4 })
  const never = (): boolean => false
  const r = combineLoads(
    await Promise.all([
      load({ port: s.port, concurrency: 4, maxRequests: N / 2, until: never }),
      load({ port: s.port, agent, concurrency: 4, maxRequests: N / 2, until: never }),
    ]),
  )
  agent.destroy()
  t.equal(r.ok, N, describeLoad(r))
}

/** One metrics sample's value from the text exposition (undefined: absent). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

/** The sum of every sample of a family whose name is exactly name. */
function sum(text: string, name: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0)
}

/** A worker's pid from the master's "serving" lines. */
function workerPid(s: Server, id: number): number {
  const m = new RegExp(`\\] worker ${id} \\(pid (\\d+), generation 1\\) serving`).exec(s.child.output())
  if (m === null) throw new Error(`no worker ${id} in:\n${s.child.output()}`)
  return Number(m[1])
}

async function crashWorker(s: Server): Promise<void> {
  process.kill(workerPid(s, 1), 'SIGKILL')
  await waitForOutput(s.child, /exited with signal SIGKILL/)
  await waitFor(() => s.count(/serving request handler/) >= 3, 'a replacement worker')
}

t.test('scraped directly: the counters add up to the requests made and survive a crash', async (t) => {
  const mport = await freePort()
  const s = await start(t, ['--metrics-bind', `127.0.0.1:${mport}`])
  await ready(s)
  t.match(s.child.output(), new RegExp(`metrics: listening on 127\\.0\\.0\\.1:${mport}`))
  await exactLoad(t, s)
  const scrape = async (): Promise<string> => {
    const r = await get({ port: mport, path: '/metrics' })
    if (r.status !== 200) throw new Error(`metrics answered ${r.status}`)
    return r.body
  }
  // Heartbeats carry the totals about once a second.
  await waitFor(async () => sum(await scrape(), 'sdserve_requests_total') === N, `sdserve_requests_total = ${N}`)
  const before = await scrape()
  t.equal(sample(before, 'sdserve_request_duration_seconds_count'), N)
  t.equal(sample(before, 'sdserve_requests_total{worker="1",code="2xx"}')! + sample(before, 'sdserve_requests_total{worker="2",code="2xx"}')!, N)
  t.equal(sample(before, 'sdserve_workers{state="ready"}'), 2)
  t.equal(sample(before, 'sdserve_workers_target'), 2)
  t.equal(sample(before, 'sdserve_generation'), 1)
  t.ok(sample(before, `sdserve_listen_queue_max{socket="127.0.0.1:${s.port}"}`)! > 0, 'the accept queue limit is read')
  t.ok(sample(before, 'process_resident_memory_bytes')! > 0)
  await crashWorker(s)
  const after = await scrape()
  t.equal(sample(after, 'sdserve_worker_exits_total{reason="crash"}'), 1)
  t.equal(sum(after, 'sdserve_requests_total'), N, 'the crashed worker counts as before')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
  await t.rejects(get({ port: mport, path: '/metrics' }), { code: 'ECONNREFUSED' }, 'closed at the stop')
})

t.test('on a UNIX socket; a taken address fails the start', async (t) => {
  const dir = shortTmp(t)
  const path = join(dir, 'metrics.sock')
  const s = await start(t, ['--metrics-bind', `unix:${path}`])
  await ready(s)
  const r = await get({ socketPath: path, path: '/metrics' })
  t.equal(r.status, 200)
  t.match(r.body, /^sdserve_workers_target 2$/m)
  const taken = await freePort()
  const blocker = await new Promise<NetServer>((resolve) => {
    const b = createServer()
    b.listen(taken, '127.0.0.1', () => resolve(b))
  })
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())))
  const failing = await start(t, ['--metrics-bind', `127.0.0.1:${taken}`])
  t.equal(await failing.child.exited, 1)
  t.match(failing.child.output(), /startup failed: listen EADDRINUSE: address already in use 127\.0\.0\.1:\d+/)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

/** Prometheus's HTTP API: the value of an instant query that returns one series, or undefined. */
function query(port: number, promql: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: `/api/v1/query?query=${encodeURIComponent(promql)}`, agent: false, timeout: 10_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => {
        // Until it is ready, Prometheus answers 503 in plain text.
        if (res.statusCode !== 200) return resolve(undefined)
        const r = JSON.parse(body) as { data: { result: { value: [number, string] }[] } }
        const v = r.data.result[0]?.value[1]
        resolve(v === undefined ? undefined : Number(v))
      })
    })
    req.on('timeout', () => req.destroy(new Error('query timed out')))
    req.on('error', reject)
    req.end()
  })
}

t.test('a real Prometheus scrapes it: sum(sdserve_requests_total) is exactly the requests made', needs(['prometheus']), async (t) => {
  const mport = await freePort()
  const s = await start(t, ['--metrics-bind', `127.0.0.1:${mport}`])
  await ready(s)
  const dir = shortTmp(t)
  const config = join(dir, 'prometheus.yml')
  writeFileSync(
    config,
    `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sdserve\n    static_configs:\n      - targets: ['127.0.0.1:${mport}']\n`,
  )
  const pport = await freePort()
  const prom = spawnTracked(t, 'prometheus', [
    `--config.file=${config}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${pport}`,
  ])
  const ask = (promql: string) => query(pport, promql).catch(() => undefined)
  // Bounded: Prometheus starts, then scrapes once a second.
  await waitFor(async () => (await ask('up{job="sdserve"}')) === 1, 'Prometheus scraping sdserve', 30_000)
  await exactLoad(t, s)
  await waitFor(async () => (await ask('sum(sdserve_requests_total)')) === N, `sum(sdserve_requests_total) = ${N} in Prometheus`, 30_000)
  t.equal(await ask('sum(sdserve_request_duration_seconds_count)'), N, 'the histogram counted every request')
  t.equal(await ask('sdserve_workers{state="ready"}'), 2)
  await crashWorker(s)
  await waitFor(async () => (await ask('sdserve_worker_exits_total{reason="crash"}')) === 1, 'the crash in Prometheus', 30_000)
  t.equal(await ask('sum(sdserve_requests_total)'), N, 'the total did not go down')
  t.equal(await ask('sum(resets(sdserve_requests_total[5m]))'), 0, 'no counter reset seen by Prometheus')
  prom.kill('SIGTERM')
  await prom.exited
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})
