// The scaling phase: what the master costs as the worker count grows. For
// each count N, `sdserve -w N` with no load: the master's idle CPU over a
// few seconds (utime + stime from /proc/PID/stat, as % of one core), its RSS,
// the whole tree's RSS, and the time of one reload (SIGHUP to the master's
// "reloaded: generation G serving" line), median of a few. Also the
// markdown section and an SVG line chart (workers on a log scale).
import { rmSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { CLK_TCK, cpuOfTree, freePort, rssMiB, start, stop, tree } from './proc.mjs'
import { CLI, HANDLER, SERVING, serverEnv, until200 } from './servers.mjs'
import { fmtNum, median } from './stats.mjs'

const RELOADED = /reloaded: generation \d+ serving|reload failed/
/** Generous: 128 Node processes booting on 2 cores take seconds. */
const BOOT_S = 600

/** Wait until the master has exactly `n` children (the old generation gone after a reload). */
async function waitChildren(pid, n, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (tree(pid).filter((p) => p.depth === 1).length === n) return true
    await sleep(50)
  }
  return false
}

async function measure(n, { opts, freshTmp, log }) {
  const port = await freePort()
  const tmp = freshTmp()
  const args = [CLI, '-w', String(n), '-b', `127.0.0.1:${port}`, '--boot-timeout', String(BOOT_S), HANDLER]
  const t0 = process.hrtime.bigint()
  const child = start(process.execPath, args, { env: serverEnv(), cwd: tmp })
  try {
    const master = child.pid
    const alive = () => child.exitCode === null && child.signalCode === null
    await child.waitLines(SERVING, n, BOOT_S * 1000)
    await until200(`http://127.0.0.1:${port}/`, { alive })
    const bootMs = Number(process.hrtime.bigint() - t0) / 1e6
    // Let the boot's after-effects (GC, the first heartbeats) pass.
    await sleep(2000)
    const before = cpuOfTree(master)
    const w0 = process.hrtime.bigint()
    await sleep(opts.scalingIdle * 1000)
    const after = cpuOfTree(master)
    const wall = Number(process.hrtime.bigint() - w0) / 1e9
    let masterS = 0
    let workersS = 0
    for (const [pid, s] of after) {
      const d = s - (before.get(pid) ?? s)
      if (pid === master) masterS += d
      else workersS += d
    }
    const masterRss = rssMiB(master)
    const treeRss = tree(master).reduce((sum, p) => sum + (rssMiB(p.pid) ?? 0), 0)
    const reloadMs = []
    const masterReloadMs = []
    const reloadErrors = []
    for (let i = 0; i < opts.scalingReloads; i++) {
      const from = child.lines.length
      const hup = process.hrtime.bigint()
      process.kill(master, 'SIGHUP')
      const deadline = Date.now() + BOOT_S * 1000
      let done
      while (done === undefined && Date.now() < deadline && alive()) {
        done = child.lines.slice(from).find((l) => RELOADED.test(l.text))
        if (done === undefined) await sleep(5)
      }
      if (done === undefined || /reload failed/.test(done.text)) {
        reloadErrors.push(done?.text ?? 'no "reloaded" line')
        break
      }
      reloadMs.push(Number(done.t - hup) / 1e6)
      const began = child.lines.slice(from).find((l) => /\] reloading$/.test(l.text))
      if (began !== undefined) masterReloadMs.push(Number(done.t - began.t) / 1e6)
      // The old generation drains (no connections: at once) and exits before the next one.
      await waitChildren(master, n, 120000)
      await sleep(1000)
    }
    const point = {
      workers: n,
      bootMs,
      idleS: wall,
      masterCpuPct: (masterS / wall) * 100,
      workersCpuPct: (workersS / wall) * 100,
      masterTicks: Math.round(masterS * CLK_TCK),
      masterRssMiB: masterRss,
      treeRssMiB: treeRss,
      reloadMs,
      reloadMsMedian: median(reloadMs),
      masterReloadMs,
      reloadErrors,
    }
    log(
      `scaling -w ${String(n).padStart(4)}: boot ${(bootMs / 1000).toFixed(1)} s, master idle CPU ${point.masterCpuPct.toFixed(2)}% ` +
        `(workers ${point.workersCpuPct.toFixed(2)}%), master RSS ${fmtNum(masterRss, 1)} MiB, tree ${treeRss.toFixed(0)} MiB, ` +
        `reload ${reloadMs.map((x) => x.toFixed(0)).join(' / ')} ms${reloadErrors.length > 0 ? `, FAILED: ${reloadErrors[0]}` : ''}`,
    )
    return point
  } finally {
    // SIGINT: a graceful stop; 128 workers need a while to go.
    await stop(child, { signal: 'SIGINT', graceMs: 60000 })
    rmSync(tmp, { recursive: true, force: true })
  }
}

/** Least-squares line through (x, y): { slope, intercept }. */
function fit(points) {
  const n = points.length
  if (n < 2) return undefined
  const mx = points.reduce((s, p) => s + p.x, 0) / n
  const my = points.reduce((s, p) => s + p.y, 0) / n
  const sxx = points.reduce((s, p) => s + (p.x - mx) ** 2, 0)
  if (sxx === 0) return undefined
  const slope = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0) / sxx
  return { slope, intercept: my - slope * mx }
}

/** Run the phase: { points, heartbeatMs, fit, linear }. */
export async function scaling({ opts, freshTmp, log, result }) {
  const points = []
  for (const n of opts.scalingWorkers) {
    try {
      points.push(await measure(n, { opts, freshTmp, log }))
    } catch (err) {
      log(`scaling -w ${n}: ${err.message}`)
      result.errors.push({ phase: 'scaling', config: `sdserve -w ${n}`, error: err.message })
    }
    await sleep(1000)
  }
  const xy = points.filter((p) => p.reloadMsMedian !== undefined).map((p) => ({ x: p.workers, y: p.reloadMsMedian }))
  // "No worse than linear": the reload time per worker does not grow from one count to the next (10% slack for noise).
  let linear
  for (let i = 1; i < xy.length; i++) {
    const ok = xy[i].y / xy[i].x <= (xy[i - 1].y / xy[i - 1].x) * 1.1
    linear = (linear ?? true) && ok
  }
  return { points, fit: fit(xy), linear }
}

// ---------------------------------------------------------------- report

/** The master-idle-CPU target of issue 16, for the targets table. */
export function scalingTarget(result) {
  const points = result.scaling?.points ?? []
  const top = points.length === 0 ? undefined : points.reduce((a, b) => (b.workers > a.workers ? b : a))
  const at128 = points.find((p) => p.workers === 128)
  return {
    name: 'sdserve master idle CPU with 128 workers',
    target: '<= 1% of a core',
    measured:
      at128 !== undefined
        ? `${at128.masterCpuPct.toFixed(2)}%`
        : top !== undefined
          ? `not run at 128 (${top.masterCpuPct.toFixed(2)}% at ${top.workers})`
          : 'not run',
    met: at128 === undefined ? undefined : at128.masterCpuPct <= 1,
  }
}

export function renderScalingMarkdown(result) {
  const s = result.scaling
  if (s === undefined || s.points.length === 0) return []
  const o = result.options
  const L = []
  L.push('## Cost as workers grow')
  L.push('')
  L.push(
    `\`sdserve -w N\` serving the hello handler, no load. Master idle CPU: the master's utime + stime (/proc/PID/stat) over ${o.scalingIdle} s, ` +
      `2 s after every worker served, as % of one core (resolution: 1 tick of 10 ms, ${(1 / o.scalingIdle).toFixed(2)}%); the workers' idle CPU beside it, summed. ` +
      `RSS: VmRSS of the master, and the sum over the master and its workers. Reload: SIGHUP to the master's "reloaded: generation G serving" line ` +
      `(the new generation serves), median of ${o.scalingReloads}, the next one once the old generation has exited. Boot: spawn to the last worker's "serving" line and a 200.`,
  )
  L.push('')
  L.push('| workers | master idle CPU % | workers idle CPU % (sum) | master RSS MiB | tree RSS MiB | reload ms (median) | reload ms per worker | reload ms, each | boot s |')
  L.push('|---|---|---|---|---|---|---|---|---|')
  for (const p of s.points)
    L.push(
      `| ${p.workers} | ${p.masterCpuPct.toFixed(2)} | ${p.workersCpuPct.toFixed(2)} | ${fmtNum(p.masterRssMiB, 1)} | ${p.treeRssMiB.toFixed(0)} | ` +
        `${fmtNum(p.reloadMsMedian, 0)} | ${fmtNum(p.reloadMsMedian === undefined ? undefined : p.reloadMsMedian / p.workers, 1)} | ${p.reloadMs.map((x) => x.toFixed(0)).join(', ')}${p.reloadErrors.length > 0 ? ` (failed: ${p.reloadErrors[0]})` : ''} | ${(p.bootMs / 1000).toFixed(1)} |`,
    )
  L.push('')
  const t = scalingTarget(result)
  const verdict = t.met === undefined ? 'not judged' : t.met ? 'met' : '**not met**'
  L.push(`- Target: master idle CPU ${t.target} at 128 workers: ${t.measured}, ${verdict}.`)
  if (s.fit !== undefined)
    L.push(
      `- Reload time, least-squares line: ${s.fit.slope.toFixed(1)} ms per worker + ${s.fit.intercept.toFixed(0)} ms. ` +
        `Target: growing no worse than linearly (the reload time per worker does not grow from one count to the next, 10% slack): ${s.linear === undefined ? 'not judged' : s.linear ? 'met' : '**not met**'}.`,
    )
  L.push('')
  return L
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

function niceMax(max) {
  if (!(max > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(max))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p
  return 10 * p
}

/** A line chart: x = workers (log scale), left axis reload ms, right axis master idle CPU %. */
export function renderScalingSvg(result) {
  const pts = result.scaling.points
  const W = 760
  const H = 420
  const left = 70
  const right = W - 70
  const top = 70
  const bottom = H - 70
  const xs = pts.map((p) => p.workers)
  const lx0 = Math.log2(Math.min(...xs))
  const lx1 = Math.max(lx0 + 1, Math.log2(Math.max(...xs)))
  const X = (w) => left + ((Math.log2(w) - lx0) / (lx1 - lx0)) * (right - left)
  const msMax = niceMax(Math.max(...pts.map((p) => p.reloadMsMedian ?? 0)))
  const cpuMax = niceMax(Math.max(1, ...pts.map((p) => p.masterCpuPct)))
  const Yms = (v) => bottom - (v / msMax) * (bottom - top)
  const Ycpu = (v) => bottom - (v / cpuMax) * (bottom - top)
  const BLUE = '#2b6cb0'
  const ORANGE = '#c05621'
  const out = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="13">`)
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`)
  out.push(`<text x="16" y="26" font-size="17" font-weight="bold">sdserve: the master's cost as workers grow</text>`)
  out.push(`<text x="16" y="48" fill="#444">${esc(`${result.machine.date.slice(0, 10)}, ${result.machine.cores} cores, Node ${result.machine.node}; no load; reload: median of ${result.options.scalingReloads}`)}</text>`)
  for (let i = 0; i <= 5; i++) {
    const y = bottom - (i / 5) * (bottom - top)
    out.push(`<line x1="${left}" y1="${y.toFixed(1)}" x2="${right}" y2="${y.toFixed(1)}" stroke="#e3e3e3"/>`)
    out.push(`<text x="${left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end" fill="${BLUE}" font-size="11">${esc(((msMax * i) / 5).toFixed(0))}</text>`)
    out.push(`<text x="${right + 6}" y="${(y + 4).toFixed(1)}" fill="${ORANGE}" font-size="11">${esc(((cpuMax * i) / 5).toFixed(2))}</text>`)
  }
  for (const w of xs) {
    out.push(`<line x1="${X(w).toFixed(1)}" y1="${top}" x2="${X(w).toFixed(1)}" y2="${bottom}" stroke="#f0f0f0"/>`)
    out.push(`<text x="${X(w).toFixed(1)}" y="${bottom + 18}" text-anchor="middle" fill="#666" font-size="11">${w}</text>`)
  }
  out.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#888"/>`)
  out.push(`<text x="${(left + right) / 2}" y="${bottom + 38}" text-anchor="middle" fill="#444">workers (log scale)</text>`)
  out.push(`<text x="18" y="${(top + bottom) / 2}" fill="${BLUE}" transform="rotate(-90 18 ${(top + bottom) / 2})" text-anchor="middle">reload ms</text>`)
  out.push(`<text x="${W - 14}" y="${(top + bottom) / 2}" fill="${ORANGE}" transform="rotate(90 ${W - 14} ${(top + bottom) / 2})" text-anchor="middle">master idle CPU, % of a core</text>`)
  if (cpuMax >= 1) {
    const y = Ycpu(1)
    out.push(`<line x1="${left}" y1="${y.toFixed(1)}" x2="${right}" y2="${y.toFixed(1)}" stroke="${ORANGE}" stroke-dasharray="4 4" opacity="0.6"/>`)
    out.push(`<text x="${right - 4}" y="${(y - 4).toFixed(1)}" text-anchor="end" fill="${ORANGE}" font-size="11">target: 1%</text>`)
  }
  const line = (sel, Y, color) => {
    const ps = pts.filter((p) => sel(p) !== undefined)
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${ps.map((p) => `${X(p.workers).toFixed(1)},${Y(sel(p)).toFixed(1)}`).join(' ')}"/>`)
    for (const p of ps) out.push(`<circle cx="${X(p.workers).toFixed(1)}" cy="${Y(sel(p)).toFixed(1)}" r="3.5" fill="${color}"/>`)
  }
  line((p) => p.reloadMsMedian, Yms, BLUE)
  line((p) => p.masterCpuPct, Ycpu, ORANGE)
  const ly = H - 12
  out.push(`<rect x="${left}" y="${ly - 10}" width="12" height="12" fill="${BLUE}"/><text x="${left + 16}" y="${ly}" font-size="12">reload ms (left)</text>`)
  out.push(`<rect x="${left + 170}" y="${ly - 10}" width="12" height="12" fill="${ORANGE}"/><text x="${left + 186}" y="${ly}" font-size="12">master idle CPU % (right)</text>`)
  out.push('</svg>')
  return `${out.join('\n')}\n`
}
