#!/usr/bin/env node
// What a freshly started worker's first requests cost: the CPU per request of
// a new process over consecutive batches of keep-alive requests, until its
// code is optimised. It is why a reload under load shows a p99 spike (each
// reload starts workers that serve their first thousand requests cold) and
// what `--warm-up` moves off the clients' path.
//
//   node bench/cold-worker.mjs      (run with the Node to measure)
//
// Configurations, each started afresh in every round: a single Node process
// (http.createServer, the baseline: Node's own cold cost), sdserve -w 1, and
// sdserve -w 1 --warm-up / (500 warm-up requests before it listens, the
// default count) and with --warm-up-count 4000. CPU is
// the serving process's on-CPU time of all its threads (V8's compiler threads
// included), from /proc/PID/task/*/schedstat (nanoseconds); the median over
// the rounds is reported per batch.
//
//   BENCH_COLD_BATCHES [250,250,500,1000,2000,4000,8000]  requests per batch, in order
//   BENCH_COLD_ROUNDS [3]                                 rounds
//   BENCH_COLD_CONNECTIONS [4]                            keep-alive connections
//   BENCH_SDSERVE_ARGS []                                 more sdserve options, as for bench/run.mjs
import { Agent, request } from 'node:http'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, installCleanup } from './lib/proc.mjs'
import { configurations, launch, SERVING, sdserve, shutdown } from './lib/servers.mjs'
import { median } from './lib/stats.mjs'

const list = (name, fallback) => (process.env[name] ?? fallback).split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0)
const BATCHES = list('BENCH_COLD_BATCHES', '250,250,500,1000,2000,4000,8000')
const ROUNDS = Math.max(1, Number(process.env.BENCH_COLD_ROUNDS ?? 3) || 3)
const CONNECTIONS = Math.max(1, Number(process.env.BENCH_COLD_CONNECTIONS ?? 4) || 4)

/** One worker: the bench's sdserve configuration with -w 1 and these options. */
const oneWorker = (options) => ({ label: ['sdserve -w 1', ...options].join(' '), kind: 'sdserve', workers: 1, ready: SERVING, stopSignal: 'SIGINT', make: sdserve(() => options, 1) })
const CONFIGS = [
  configurations({ accessLog: false, metrics: false }).find((c) => c.id === 'single'),
  oneWorker([]),
  oneWorker(['--warm-up', '/']),
  oneWorker(['--warm-up', '/', '--warm-up-count', '4000']),
]

/** Nanoseconds on CPU of every thread of pid. */
function cpuNs(pid) {
  let ns = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
    } catch {
      // a thread that ended meanwhile
    }
  }
  return ns
}

/** n GETs over `connections` kept-alive connections, each waiting for its answer. */
async function batch(port, agent, n) {
  let left = n
  const one = () =>
    new Promise((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume()
        res.on('end', resolve)
      })
        .on('error', reject)
        .end()
    })
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (left-- > 0) await one()
    }),
  )
}

async function measure(config) {
  const port = await freePort()
  const tmp = mkdtempSync(join(tmpdir(), 'sdserve-cold-'))
  const server = await launch(config, port, tmp)
  try {
    // Both ready lines name the process that serves: sdserve's worker, or the baseline itself.
    const line = server.child.lines.find((l) => config.ready.test(l.text))
    const pid = Number(/(?:pid|listening) (\d+)/.exec(line.text)[1])
    const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS })
    const perRequest = []
    for (const n of BATCHES) {
      const before = cpuNs(pid)
      await batch(port, agent, n)
      perRequest.push((cpuNs(pid) - before) / n / 1000)
    }
    agent.destroy()
    return perRequest
  } finally {
    await shutdown(config, server)
    rmSync(tmp, { recursive: true, force: true })
  }
}

installCleanup()
const results = CONFIGS.map(() => BATCHES.map(() => []))
for (let round = 0; round < ROUNDS; round++) {
  for (const [i, config] of CONFIGS.entries()) {
    const perRequest = await measure(config)
    perRequest.forEach((us, b) => results[i][b].push(us))
    console.error(`round ${round + 1}/${ROUNDS}: ${config.label} done`)
  }
}

let from = 0
const ranges = BATCHES.map((n) => `${from + 1}-${(from += n)}`)
const medians = results.map((batches) => batches.map(median))
// The warm rate: the lower of the last two batches (one alone swings with the machine's other load).
const warm = (m) => Math.min(...m.slice(-2))
const coldBatches = Math.max(1, BATCHES.length - 2)
const coldRequests = BATCHES.slice(0, coldBatches).reduce((a, b) => a + b, 0)
const firstCost = (m) => m.slice(0, coldBatches).reduce((sum, us, b) => sum + (us - warm(m)) * BATCHES[b], 0) / 1000
console.log(`# A new worker's first requests (${process.version}, ${ROUNDS} rounds, ${CONNECTIONS} keep-alive connections)\n`)
console.log('CPU µs per request of the serving process, median over the rounds, by request range since it started serving.\n')
console.log(`| configuration | ${ranges.join(' | ')} | first ${coldRequests}: CPU above the warm rate, ms |`)
console.log(`|---|${ranges.map(() => '---|').join('')}---|`)
for (const [i, config] of CONFIGS.entries()) {
  console.log(`| ${config.label} | ${medians[i].map((us) => us.toFixed(0)).join(' | ')} | ${firstCost(medians[i]).toFixed(0)} |`)
}
const [single, plain, warmed, warmedLong] = medians
const ratio = (a, b) => `${(firstCost(a) / firstCost(b)).toFixed(2)}x`
console.log(
  `\nCPU above the warm rate (the lower of the last two batches) over the first ${coldRequests} requests served: sdserve / single Node process ${ratio(plain, single)}; ` +
    `with --warm-up / (500 requests before it listens) / without ${ratio(warmed, plain)}; with --warm-up-count 4000 / without ${ratio(warmedLong, plain)}.`,
)
