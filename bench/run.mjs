#!/usr/bin/env node
// sdserve's benchmark suite: `npm run bench` (see "## Benchmarks" in README.md).
//
// wrk against a hello-world handler on loopback, every configuration
// interleaved round by round so that ratios hold on a noisy machine, plus
// RSS, start-up time, reload under load (sdserve's SIGHUP and `pm2 reload`),
// and the master's cost as the worker count grows (lib/scaling.mjs). Writes
// bench/results/latest.md, latest.json, latest.svg and latest-scaling.svg.
//
// Environment (defaults in brackets):
//   BENCH_ROUNDS [3]        rounds; each round runs every configuration once, both modes
//   BENCH_SECONDS [10]      length of one wrk run
//   BENCH_WARMUP [1]        seconds of unrecorded wrk load after each start
//   BENCH_CONNECTIONS [64]  wrk -c
//   BENCH_THREADS [1]       wrk -t
//   BENCH_WRK_CPUS []       pin wrk with `taskset -c` (e.g. 1); unpinned by default
//   BENCH_COUNT [1]         0: no worker-count.lua (no per-worker counts)
//   BENCH_ONLY []           comma-separated configuration ids to run
//   BENCH_SKIP []           comma-separated phases to skip: throughput, startup, reload, scaling
//   BENCH_STARTUP_REPS [5]  start-up measurements per configuration
//   BENCH_RELOADS [10]      SIGHUPs per reload run
//   BENCH_RELOAD_INTERVAL [1] seconds between SIGHUPs (PM2: between `pm2 reload`s)
//   BENCH_SCALING_WORKERS [1,2,8,32,128] worker counts of the scaling phase (sdserve -w N)
//   BENCH_SCALING_IDLE [10] seconds over which the master's idle CPU is measured, per count
//   BENCH_SCALING_RELOADS [3] reloads timed per count (the median is reported)
//   BENCH_OUT [bench/results] where latest.{md,json,svg} and latest-scaling.svg go
//   BENCH_SDSERVE_ARGS []   more sdserve options for every sdserve configuration (e.g. "--boot-nice 0")
//   BENCH_NO_INSTALL [0]    1: never apt-get install missing tools
//   BENCH_NOISE_LIMIT []    run a measurement again (after 5 s) when other processes used
//                           more than this many cores during it (BENCH_NOISE_RETRIES [2] times)
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { installCleanup, rssOfServer, cpuOfTree, freePort, machineBusy, start, stop, tree } from './lib/proc.mjs'
import { configurations, launch, shutdown, sdserveHas, nginxBinary, ROOT, CLI, RUN_ORDER, until200, serverEnv, scrapeMetrics, EXTRA_ARGS } from './lib/servers.mjs'
import { runWrk, busiestShare, failures, loadInBackground } from './lib/wrk.mjs'
import { renderMarkdown, renderSvg, analyse } from './lib/report.mjs'
import { ensureNpmTools } from './lib/npm-tools.mjs'
import { pm2Configuration, pm2ReloadUnderLoad } from './lib/pm2.mjs'
import { scaling, renderScalingSvg } from './lib/scaling.mjs'

const env = process.env
const num = (name, dflt) => {
  const v = env[name]
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${JSON.stringify(v)}`)
  return n
}
const list = (name) => (env[name] ?? '').split(',').map((s) => s.trim()).filter(Boolean)

const opts = {
  rounds: Math.max(1, Math.floor(num('BENCH_ROUNDS', 3))),
  // wrk takes whole seconds
  seconds: Math.max(1, Math.round(num('BENCH_SECONDS', 10))),
  warmup: Math.round(num('BENCH_WARMUP', 1)),
  connections: Math.max(1, Math.floor(num('BENCH_CONNECTIONS', 64))),
  threads: Math.max(1, Math.floor(num('BENCH_THREADS', 1))),
  wrkCpus: env.BENCH_WRK_CPUS || undefined,
  count: env.BENCH_COUNT !== '0',
  only: list('BENCH_ONLY'),
  skip: list('BENCH_SKIP'),
  startupReps: Math.max(1, Math.floor(num('BENCH_STARTUP_REPS', 5))),
  reloads: Math.max(1, Math.floor(num('BENCH_RELOADS', 10))),
  reloadInterval: Math.max(0.2, num('BENCH_RELOAD_INTERVAL', 1)),
  out: env.BENCH_OUT ?? fileURLToPath(new URL('./results/', import.meta.url)),
  // BENCH_SDSERVE_ARGS, as every sdserve configuration gets them: the report names them.
  sdserveArgs: EXTRA_ARGS.join(' '),
  noInstall: env.BENCH_NO_INSTALL === '1',
  noiseLimit: env.BENCH_NOISE_LIMIT ? num('BENCH_NOISE_LIMIT', 0) : undefined,
  noiseRetries: Math.floor(num('BENCH_NOISE_RETRIES', 2)),
  scalingWorkers: (list('BENCH_SCALING_WORKERS').length > 0 ? list('BENCH_SCALING_WORKERS') : ['1', '2', '8', '32', '128']).map((w) => {
    const n = Number(w)
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new Error(`BENCH_SCALING_WORKERS: ${JSON.stringify(w)} is not a worker count (1 to 1024)`)
    return n
  }),
  scalingIdle: Math.max(1, num('BENCH_SCALING_IDLE', 10)),
  scalingReloads: Math.max(1, Math.floor(num('BENCH_SCALING_RELOADS', 3))),
}

const log = (...a) => console.error(...a)
installCleanup(log)

// ---------------------------------------------------------------- prerequisites

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

function ensureTools() {
  const missing = []
  if (!have('wrk')) missing.push('wrk')
  if (nginxBinary() === undefined) missing.push('nginx-light')
  if (!have('taskset') && opts.wrkCpus) missing.push('util-linux')
  if (missing.length > 0) {
    const isRoot = process.getuid?.() === 0
    if (isRoot && !opts.noInstall && have('apt-get')) {
      log(`bench: installing ${missing.join(' ')} with apt-get`)
      const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
      const install = () => spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env: aptEnv })
      // A fresh machine has no package lists yet: update, then try again.
      if (install().status !== 0) {
        spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env: aptEnv })
        install()
      }
    }
  }
  if (!have('wrk')) {
    log('bench: wrk is needed: install it (Debian: `apt-get install wrk`), or run `npm run bench` as root to let the bench install it')
    process.exit(1)
  }
  if (nginxBinary() === undefined) log('bench: nginx is not installed (Debian: `apt-get install nginx-light`): the nginx ceiling is skipped')
  if (!have('python3')) log('bench: python3 is not installed: READY=1 is timed from sdserve\'s "serving" log lines instead of sd_notify')
  // node-unix-socket for the SO_REUSEPORT baseline, pm2 for PM2 cluster mode (npm install --no-save)
  ensureNpmTools(log, opts.only.length > 0 && !opts.only.includes('pm2') ? ['node-unix-socket'] : undefined)
  if (!existsSync(CLI)) {
    log('bench: dist/ is missing: running `npm run build`')
    const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' })
    if (r.status !== 0) process.exit(1)
  }
}

function machineInfo() {
  // stdout, else stderr, whatever the exit status (`wrk --version` exits 1, `nginx -v` prints to stderr)
  const sh = (cmd, args) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    return (r.stdout?.trim() || r.stderr?.trim()) || undefined
  }
  const newest = (dir) => {
    let t = 0
    for (const f of readdirSync(dir)) if (f.endsWith('.ts') || f.endsWith('.js')) t = Math.max(t, statSync(join(dir, f)).mtimeMs)
    return t
  }
  const distTime = statSync(CLI).mtimeMs
  const libTime = newest(join(ROOT, 'lib'))
  return {
    date: new Date().toISOString(),
    cores: cpus().length,
    cpu: cpus()[0]?.model,
    kernel: sh('uname', ['-r']),
    node: process.version,
    wrk: sh('wrk', ['--version'])?.split('\n')[0]?.replace(/\s+Copyright.*$/, ''),
    nginx: nginxBinary() ? sh(nginxBinary(), ['-v']) : undefined,
    sdserve: JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version,
    commit: sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    distStale: libTime > distTime + 1000,
    distBuilt: new Date(distTime).toISOString(),
    loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  }
}

// ---------------------------------------------------------------- helpers

const tmpRoot = mkdtempSync(join(tmpdir(), 'sdserve-bench-'))
process.on('exit', () => rmSync(tmpRoot, { recursive: true, force: true }))
let tmpSeq = 0
const freshTmp = () => {
  const d = join(tmpRoot, String(++tmpSeq))
  mkdirSync(d)
  return d
}

const MODES = [
  { id: 'ka', label: 'keep-alive', close: false },
  { id: 'close', label: 'Connection: close', close: true },
]

function wrkOpts(extra) {
  return { connections: opts.connections, threads: opts.threads, cpus: opts.wrkCpus, count: opts.count, ...extra }
}

/** CPU seconds of the master (depth 0) and of the rest of the tree between two cpuOfTree() snapshots. */
function cpuDelta(rootPid, before, after) {
  let master = 0
  let workers = 0
  for (const [pid, t] of after) {
    const d = t - (before.get(pid) ?? 0)
    if (pid === rootPid) master += d
    else workers += d
  }
  return { master, workers, total: master + workers }
}

const fmtK = (x) => (x === undefined ? 'n/a' : `${(x / 1000).toFixed(1)}k`)

// ---------------------------------------------------------------- throughput

async function throughput(configs, result) {
  const rank = (c) => (RUN_ORDER.includes(c.id) ? RUN_ORDER.indexOf(c.id) : RUN_ORDER.length)
  const active = configs.filter((c) => !c.unavailable).sort((a, b) => rank(a) - rank(b))
  const total = opts.rounds * active.length
  let n = 0
  for (let round = 1; round <= opts.rounds; round++) {
    // Rotate the order each round so that no configuration always runs first or after the same one.
    const shift = (round - 1) % active.length
    const order = [...active.slice(shift), ...active.slice(0, shift)]
    const modes = round % 2 === 1 ? MODES : [...MODES].reverse()
    for (const config of order) {
      n++
      const port = await freePort()
      const tmp = freshTmp()
      let server
      try {
        server = await launch(config, port, tmp)
        await sleep(500)
        const rssIdle = rssOfServer(server.child.pid)
        if (opts.warmup > 0) await runWrk(wrkOpts({ url: server.url, seconds: opts.warmup, count: false }))
        const rss = { config: config.id, round, idle: rssIdle, after: {} }
        for (const mode of modes) {
          let r, cpu, otherCores, scraped
          for (let attempt = 0; ; attempt++) {
            await sleep(300)
            const before = cpuOfTree(server.child.pid)
            const busy0 = machineBusy()
            const t0 = process.hrtime.bigint()
            // A configuration with metrics is scraped throughout the wrk run, as Prometheus would.
            const scraper = config.scrape ? scrapeMetrics(server) : undefined
            r = await runWrk(wrkOpts({ url: server.url, seconds: opts.seconds, close: mode.close }))
            scraped = await scraper?.stop()
            const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
            cpu = cpuDelta(server.child.pid, before, cpuOfTree(server.child.pid))
            // What else ran on the machine meanwhile (other people's work, steal), in cores.
            otherCores = (machineBusy() - busy0 - cpu.total - (r.wrkCpuS ?? 0)) / elapsed
            if (opts.noiseLimit === undefined || otherCores <= opts.noiseLimit || attempt >= opts.noiseRetries) break
            log(`  ${config.id} ${mode.id}: ${otherCores.toFixed(2)} cores of other load (limit ${opts.noiseLimit}): waiting 5 s and running it again`)
            await sleep(5000)
          }
          rss.after[mode.id] = rssOfServer(server.child.pid)
          const run = {
            config: config.id,
            mode: mode.id,
            round,
            rps: r.rps,
            requests: r.requests,
            latency: r.latency,
            errors: r.errors,
            non2xx: r.non2xx,
            failures: failures(r),
            workers: r.workers,
            share: busiestShare(r),
            cpu,
            usPerReq: r.requests > 0 ? (cpu.total * 1e6) / r.requests : undefined,
            wrkCpuS: r.wrkCpuS,
            otherCores,
            scraped,
            wrk: r.args,
          }
          result.runs.push(run)
          log(
            `[${n}/${total}] round ${round} ${config.id.padEnd(18)} ${mode.id.padEnd(5)} ${fmtK(r.rps).padStart(7)} req/s` +
              `  p99 ${r.latency.p99?.toFixed(2)} ms  cpu ${run.usPerReq?.toFixed(1)} us/req` +
              (run.share !== undefined ? `  busiest ${(run.share * 100).toFixed(1)}%` : '') +
              (scraped !== undefined ? `  scrapes ${scraped.scrapes}${scraped.failed > 0 ? ` (${scraped.failed} FAILED)` : ''}` : '') +
              `  other load ${otherCores.toFixed(2)} cores` +
              (run.failures > 0 ? `  FAILED ${run.failures}` : ''),
          )
        }
        result.rss.push(rss)
      } catch (err) {
        log(`[${n}/${total}] round ${round} ${config.id}: ${err.message}`)
        result.errors.push({ phase: 'throughput', config: config.id, round, error: err.message })
      } finally {
        await shutdown(config, server)
        rmSync(tmp, { recursive: true, force: true })
      }
    }
  }
}

// ---------------------------------------------------------------- start-up

// A tiny sd_notify receiver (Node cannot bind AF_UNIX datagram sockets):
// prints "BOUND", then "<CLOCK_MONOTONIC ns> <line>" for every line of every
// datagram. process.hrtime.bigint() reads the same clock. Exits when stdin
// closes (its parent died) or after 120 s.
const RECEIVER = `
import os, select, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('BOUND', flush=True)
end = time.monotonic() + 120
while time.monotonic() < end:
    r, _, _ = select.select([s, sys.stdin], [], [], 1)
    if sys.stdin in r and os.read(sys.stdin.fileno(), 1) == b'':
        break
    if s in r:
        data = s.recv(65536)
        t = time.monotonic_ns()
        for line in data.decode('utf-8', 'replace').split('\\n'):
            if line:
                print(t, line, flush=True)
`

async function timedStart(config, python) {
  const port = await freePort()
  const tmp = freshTmp()
  let receiver
  let child
  const extraEnv = {}
  try {
    if (config.kind === 'sdserve' && python) {
      const sock = join(tmp, 'notify.sock')
      receiver = start('python3', ['-c', RECEIVER, sock], { stdin: 'pipe' })
      await receiver.waitLines(/^BOUND$/, 1, 10000)
      extraEnv.NOTIFY_SOCKET = sock
    }
    const { cmd, args, cwd } = config.make(port, tmp)
    const url = `http://127.0.0.1:${port}/`
    const t0 = process.hrtime.bigint()
    child = start(cmd, args, { env: serverEnv(extraEnv), cwd: cwd ?? tmp })
    const alive = () => child.exitCode === null && child.signalCode === null
    await until200(url, { intervalMs: 2, alive })
    const first = process.hrtime.bigint()
    const ms = (t) => Number(t - t0) / 1e6
    const out = { config: config.id, firstResponseMs: ms(first) }
    if (config.ready !== undefined) {
      const lines = await child.waitLines(config.ready, config.workers)
      out.allWorkersMs = ms(lines[config.workers - 1].t)
    }
    if (receiver !== undefined) {
      const [line] = await receiver.waitLines(/ READY=1$/, 1, 20000)
      out.readyMs = Number(BigInt(line.text.split(' ')[0]) - t0) / 1e6
    } else if (config.kind === 'sdserve') {
      out.readyMs = out.allWorkersMs // the fallback: sdserve sends READY=1 once every worker serves
      out.readyFrom = 'log'
    }
    return out
  } finally {
    if (child !== undefined) await shutdown(config, { child })
    if (receiver !== undefined) await stop(receiver, { graceMs: 1000 })
    rmSync(tmp, { recursive: true, force: true })
  }
}

async function startup(configs, result) {
  const python = have('python3')
  const floor = { id: 'node-e0', label: 'node -e 0 (a Node start, the floor)', kind: 'floor' }
  const active = configs.filter((c) => !c.unavailable && c.id !== 'cluster-none' && c.id !== 'sdserve-accesslog' && c.id !== 'sdserve-metrics' && c.make !== undefined)
  for (let rep = 1; rep <= opts.startupReps; rep++) {
    const t0 = process.hrtime.bigint()
    const p = start(process.execPath, ['-e', '0'], { env: serverEnv() })
    await p.exited
    await stop(p, { graceMs: 0 })
    result.startup.push({ config: floor.id, rep, exitMs: Number(process.hrtime.bigint() - t0) / 1e6 })
    for (const config of active) {
      try {
        const r = await timedStart(config, python)
        result.startup.push({ ...r, rep })
        log(
          `startup ${rep}/${opts.startupReps} ${config.id.padEnd(18)} first response ${r.firstResponseMs.toFixed(1)} ms` +
            (r.allWorkersMs !== undefined ? `, all workers ${r.allWorkersMs.toFixed(1)} ms` : '') +
            (r.readyMs !== undefined ? `, READY=1 ${r.readyMs.toFixed(1)} ms` : ''),
        )
      } catch (err) {
        log(`startup ${config.id}: ${err.message}`)
        result.errors.push({ phase: 'startup', config: config.id, rep, error: err.message })
      }
      await sleep(100)
    }
  }
}

// ---------------------------------------------------------------- reload under load

async function reloadUnderLoad(config, result) {
  const port = await freePort()
  const tmp = freshTmp()
  let server
  try {
    server = await launch(config, port, tmp)
    const master = server.child.pid
    if (opts.warmup > 0) await runWrk(wrkOpts({ url: server.url, seconds: opts.warmup, count: false }))
    const seconds = Math.ceil(opts.reloads * opts.reloadInterval + 2)
    for (const mode of MODES) {
      await sleep(300)
      const steady = await runWrk(wrkOpts({ url: server.url, seconds, close: mode.close }))
      await sleep(300)
      const linesBefore = server.child.lines.length
      const load = loadInBackground(wrkOpts({ url: server.url, seconds, close: mode.close }))
      await sleep(1000)
      let sent = 0
      let peakMaster = 0
      const reloaded = () => server.child.lines.slice(linesBefore).filter((l) => /reloaded: generation \d+ serving|reload failed/.test(l.text)).length
      while (sent < opts.reloads && !load.done()) {
        const tick = Date.now()
        process.kill(master, 'SIGHUP')
        sent++
        // One reload at a time: a HUP during a reload is queued and coalesced by sdserve.
        while (reloaded() < sent && !load.done()) await sleep(10)
        peakMaster = Math.max(peakMaster, rssOfServer(master).master ?? 0)
        const left = opts.reloadInterval * 1000 - (Date.now() - tick)
        if (left > 0 && sent < opts.reloads) await sleep(left)
      }
      const during = await load.result
      const fresh = server.child.lines.slice(linesBefore)
      const after = fresh.map((l) => l.text)
      // How long each reload took under load: the master's "reloading" line to its "reloaded" line.
      const durations = []
      let began
      for (const l of fresh) {
        if (/\] reloading$/.test(l.text)) began = l.t
        else if (began !== undefined && /reloaded: generation \d+ serving/.test(l.text)) {
          durations.push(Number(l.t - began) / 1e6)
          began = undefined
        }
      }
      const ok = after.filter((t) => /reloaded: generation \d+ serving/.test(t)).length
      const failedLines = after.filter((t) => /reload failed/.test(t))
      const failed = failedLines.length
      const entry = {
        config: config.id,
        mode: mode.id,
        seconds,
        hupsSent: sent,
        reloadsOk: ok,
        reloadsFailed: failed,
        reloadMs: durations,
        failReasons: [...new Set(failedLines.map((t) => t.replace(/^\[[^\]]*\] \[\d+\] \[\w+\] /, '').replace(/\d+/g, 'N')))],
        steady: { rps: steady.rps, latency: steady.latency, errors: steady.errors, non2xx: steady.non2xx, failures: failures(steady) },
        during: { rps: during.rps, latency: during.latency, errors: during.errors, non2xx: during.non2xx, failures: failures(during), workers: Object.keys(during.workers).length },
        masterRssPeak: peakMaster,
        rssAfter: rssOfServer(master),
      }
      result.reload.push(entry)
      log(
        `reload ${config.id} ${mode.id}: ${ok}/${sent} reloads, steady ${fmtK(steady.rps)} req/s p99 ${steady.latency.p99?.toFixed(2)} ms, ` +
          `during ${fmtK(during.rps)} req/s p99 ${during.latency.p99?.toFixed(2)} ms, failed requests ${entry.during.failures}` +
          ` (steady ${entry.steady.failures})`,
      )
    }
  } catch (err) {
    log(`reload ${config.id}: ${err.message}`)
    result.errors.push({ phase: 'reload', config: config.id, error: err.message })
  } finally {
    await shutdown(config, server)
    rmSync(tmp, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------- main

async function main() {
  ensureTools()
  const accessLog = sdserveHas('--access-logfile')
  let configs = configurations({ accessLog, metrics: sdserveHas('--metrics-bind') })
  // PM2 in table order before the nginx ceiling
  configs.splice(configs.findIndex((c) => c.id === 'nginx'), 0, pm2Configuration())
  if (opts.only.length > 0) configs = configs.filter((c) => opts.only.includes(c.id))
  const machine = machineInfo()
  if (machine.distStale) log('bench: warning: lib/ has files newer than dist/lib/cli.js: run `npm run build` to bench the current code')
  log(
    `bench: ${opts.rounds} round(s) x ${opts.seconds} s, wrk -t${opts.threads} -c${opts.connections}` +
      `${opts.wrkCpus ? ` pinned to CPU ${opts.wrkCpus}` : ' (not pinned)'}, ${configs.filter((c) => !c.unavailable).length} configurations; ` +
      `load average ${machine.loadavg}`,
  )
  for (const c of configs) if (c.unavailable) log(`bench: ${c.id}: ${c.unavailable}`)
  const result = { machine, options: { ...opts, out: undefined }, configs: configs.map(({ id, label, kind, unavailable }) => ({ id, label, kind, unavailable })), runs: [], rss: [], startup: [], reload: [], errors: [] }
  const began = Date.now()
  result.phases = {}
  const phase = (name) => (result.phases[name] = new Date().toISOString())
  if (!opts.skip.includes('throughput')) {
    phase('throughput')
    await throughput(configs, result)
  }
  if (!opts.skip.includes('startup')) {
    phase('startup')
    await startup(configs, result)
  }
  if (!opts.skip.includes('reload')) {
    phase('reload')
    for (const c of configs.filter((x) => (x.id === 'sdserve' || x.id === 'sdserve-reuseport') && !x.unavailable)) await reloadUnderLoad(c, result)
    const pm2 = configs.find((x) => x.id === 'pm2' && !x.unavailable)
    if (pm2 !== undefined) await pm2ReloadUnderLoad(pm2, { opts, modes: MODES, wrkOpts, freshTmp, freePort, log, result })
  }
  if (!opts.skip.includes('scaling')) {
    phase('scaling')
    result.scaling = await scaling({ opts, freshTmp, log, result })
  }
  result.machine.loadavgAfter = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  // Other people rebuild dist/ while we run: say so, since later phases then ran other code.
  const builtAfter = new Date(statSync(CLI).mtimeMs).toISOString()
  if (builtAfter !== machine.distBuilt) {
    result.machine.distRebuilt = builtAfter
    result.machine.commitAfter = machineInfo().commit
    log(`bench: warning: dist/ was rebuilt during the run (${builtAfter}, commit ${result.machine.commitAfter}): later phases ran newer code`)
  }
  result.elapsedS = Math.round((Date.now() - began) / 1000)
  result.analysis = analyse(result)
  mkdirSync(opts.out, { recursive: true })
  const md = renderMarkdown(result)
  writeFileSync(join(opts.out, 'latest.md'), md)
  writeFileSync(join(opts.out, 'latest.json'), `${JSON.stringify(result, null, 2)}\n`)
  const written = ['latest.md', 'latest.json']
  if (result.runs.length > 0) {
    writeFileSync(join(opts.out, 'latest.svg'), renderSvg(result))
    written.push('latest.svg')
  }
  if (result.scaling?.points.length > 0) {
    writeFileSync(join(opts.out, 'latest-scaling.svg'), renderScalingSvg(result))
    written.push('latest-scaling.svg')
  }
  process.stdout.write(md)
  log(`bench: done in ${result.elapsedS} s; wrote ${written.join(', ')} in ${opts.out}`)
  // Nothing may be left running.
  const leftovers = tree(process.pid).filter((p) => p.depth > 0)
  if (leftovers.length > 0) log(`bench: warning: ${leftovers.length} process(es) still running at exit; killing them`)
}

await main()
