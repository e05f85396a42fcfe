// PM2 cluster mode as a configuration (`pm2 start pm2-app.cjs -i 2`), and
// its counterpart of the reload-under-load phase (`pm2 reload` instead of a
// SIGHUP). PM2 runs as its usual daemon (the "God daemon", cluster mode and
// reload need it) under a PM2_HOME in the run's tmp dir, so a user's own PM2
// is never touched; `pm2 kill` stops it, and whatever is left of its process
// tree is killed after that.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { adopt, rssOfServer, start, stop, tree } from './proc.mjs'
import { ROOT, serverEnv, until200 } from './servers.mjs'
import { runWrk, failures, loadInBackground } from './wrk.mjs'

export const PM2_VERSION = '7.0.4'
const PM2_CLI = join(ROOT, 'node_modules/pm2/bin/pm2')
const APP = fileURLToPath(new URL('../servers/pm2-app.cjs', import.meta.url))
const NAME = 'bench'

export const pm2Installed = () => existsSync(PM2_CLI)

/** Run the pm2 CLI to its end: { code, ms, output }. */
async function pm2(args, env, timeoutMs = 60000) {
  const t0 = process.hrtime.bigint()
  const child = start(process.execPath, [PM2_CLI, ...args], { env })
  const timer = setTimeout(() => void stop(child, { signal: 'SIGKILL', graceMs: 0 }), timeoutMs)
  const { code, signal } = await child.exited
  clearTimeout(timer)
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  await stop(child, { graceMs: 0 })
  return { code: code ?? signal, ms, output: child.output(10) }
}

function godPid(home) {
  try {
    const pid = Number(readFileSync(join(home, 'pm2.pid'), 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * Start PM2 cluster mode on port and wait until both workers serve. The
 * server's child is the God daemon (adopted: it leads its own process group,
 * its workers are in it), so the throughput phase measures the CPU and RSS of
 * the daemon and its workers, as for any other master.
 */
async function launchPm2(port, tmp) {
  const home = join(tmp, 'pm2')
  mkdirSync(home, { recursive: true })
  const env = serverEnv({ PM2_HOME: home })
  const url = `http://127.0.0.1:${port}/`
  const server = { url, port, home, env, startedAt: process.hrtime.bigint() }
  try {
    const r = await pm2(['start', APP, '-i', '2', '--name', NAME, '--', String(port)], env)
    const pid = godPid(home)
    if (pid !== undefined) server.child = adopt(pid)
    if (r.code !== 0 || pid === undefined) throw new Error(`pm2 start failed (${r.code}, daemon pid ${pid}):\n${r.output}`)
    await until200(url)
    const deadline = Date.now() + 20000
    while (tree(pid).filter((p) => p.depth === 1).length < 2 && Date.now() < deadline) await sleep(20)
  } catch (err) {
    await shutdownPm2(server)
    throw err
  }
  server.readyAt = process.hrtime.bigint()
  return server
}

/** `pm2 kill`, then SIGKILL to whatever of the daemon's tree is still there, then forget PM2_HOME. */
async function shutdownPm2(server) {
  if (server === undefined) return
  const pid = server.child?.pid ?? godPid(server.home)
  const members = pid === undefined ? [] : tree(pid).map((p) => p.pid)
  await pm2(['kill'], server.env, 20000).catch(() => undefined)
  if (server.child !== undefined) await stop(server.child, { signal: 'SIGTERM', graceMs: 2000 })
  for (const p of members) {
    try {
      process.kill(p, 'SIGKILL')
    } catch {
      // gone, as it should be
    }
  }
  rmSync(server.home, { recursive: true, force: true })
}

export function pm2Configuration() {
  return {
    id: 'pm2',
    label: 'PM2 cluster mode, pm2 start -i 2',
    kind: 'pm2',
    workers: 2,
    unavailable: pm2Installed() ? undefined : `the npm package pm2@${PM2_VERSION} could not be installed`,
    launch: launchPm2,
    shutdown: shutdownPm2,
  }
}

/**
 * The reload-under-load phase for PM2: as reloadUnderLoad in run.mjs (steady
 * wrk run, then a wrk run with a reload every interval), the reload being
 * `pm2 reload NAME`; the next one starts once the command has returned.
 * "Reload took" is the time the command took.
 */
export async function pm2ReloadUnderLoad(config, { opts, modes, wrkOpts, freshTmp, freePort, log, result }) {
  const port = await freePort()
  const tmp = freshTmp()
  let server
  try {
    server = await launchPm2(port, tmp)
    if (opts.warmup > 0) await runWrk(wrkOpts({ url: server.url, seconds: opts.warmup, count: false }))
    // `pm2 reload` takes seconds where sdserve's reload takes under one: one
    // unrecorded reload under load, timed, sizes the runs so that every reload
    // falls inside the load, as for sdserve.
    const probeLoad = runWrk(wrkOpts({ url: server.url, seconds: 10, count: false }))
    await sleep(500)
    const probe = await pm2(['reload', NAME], server.env)
    await probeLoad
    const cadence = Math.max(opts.reloadInterval, (1.5 * probe.ms) / 1000)
    const seconds = Math.ceil(opts.reloads * cadence + 2)
    log(`reload ${config.id}: one \`pm2 reload\` under load took ${probe.ms.toFixed(0)} ms; wrk runs ${seconds} s`)
    for (const mode of modes) {
      await sleep(300)
      const steady = await runWrk(wrkOpts({ url: server.url, seconds, close: mode.close }))
      await sleep(300)
      const load = loadInBackground(wrkOpts({ url: server.url, seconds, close: mode.close }))
      await sleep(1000)
      let sent = 0
      let peak = 0
      const took = []
      const failedOutputs = []
      while (sent < opts.reloads && !load.done()) {
        const tick = Date.now()
        sent++
        const r = await pm2(['reload', NAME], server.env)
        if (r.code === 0) took.push(r.ms)
        else failedOutputs.push(`exit ${r.code}: ${r.output.split('\n').pop()}`)
        peak = Math.max(peak, rssOfServer(server.child.pid).master ?? 0)
        const left = opts.reloadInterval * 1000 - (Date.now() - tick)
        if (left > 0 && sent < opts.reloads) await sleep(left)
      }
      const during = await load.result
      const entry = {
        config: config.id,
        mode: mode.id,
        seconds,
        hupsSent: sent,
        reloadsOk: took.length,
        reloadsFailed: failedOutputs.length,
        reloadMs: took,
        reloadTimedBy: 'the `pm2 reload` command',
        failReasons: [...new Set(failedOutputs)],
        steady: { rps: steady.rps, latency: steady.latency, errors: steady.errors, non2xx: steady.non2xx, failures: failures(steady) },
        during: { rps: during.rps, latency: during.latency, errors: during.errors, non2xx: during.non2xx, failures: failures(during), workers: Object.keys(during.workers).length },
        masterRssPeak: peak,
        rssAfter: rssOfServer(server.child.pid),
      }
      result.reload.push(entry)
      log(
        `reload ${config.id} ${mode.id}: ${took.length}/${sent} reloads, steady ${steady.rps.toFixed(0)} req/s p99 ${steady.latency.p99?.toFixed(2)} ms, ` +
          `during ${during.rps.toFixed(0)} req/s p99 ${during.latency.p99?.toFixed(2)} ms, failed requests ${entry.during.failures} (steady ${entry.steady.failures})`,
      )
    }
  } catch (err) {
    log(`reload ${config.id}: ${err.message}`)
    result.errors.push({ phase: 'reload', config: config.id, error: err.message })
  } finally {
    await shutdownPm2(server)
    rmSync(tmp, { recursive: true, force: true })
  }
}
