// Turning the raw results into numbers that hold on a noisy machine (paired
// ratios per round), the targets of issues 7 and 16, a markdown report and an SVG
// bar chart (no dependency).
import { fmtNum, fmtPct, fmtRange, fmtRps, summary } from './stats.mjs'
import { renderScalingMarkdown, scalingTarget } from './scaling.mjs'

const MODES = ['ka', 'close']
const MODE_LABEL = { ka: 'keep-alive', close: 'Connection: close' }

/** Ratios of configuration a over b, paired round by round. */
const RATIOS = [
  { a: 'sdserve', b: 'shared-fd', label: 'sdserve shared / raw shared socket' },
  { a: 'sdserve', b: 'cluster-rr', label: 'sdserve shared / cluster round-robin' },
  { a: 'sdserve', b: 'cluster-none', label: 'sdserve shared / cluster SCHED_NONE' },
  { a: 'sdserve', b: 'single', label: 'sdserve shared / single process' },
  { a: 'sdserve-reuseport', b: 'reuseport', label: 'sdserve reuse-port / node-unix-socket SO_REUSEPORT' },
  { a: 'sdserve-reuseport', b: 'sdserve', label: 'sdserve reuse-port / sdserve shared' },
  { a: 'sdserve-accesslog', b: 'sdserve', label: 'sdserve access log on / off' },
  { a: 'sdserve-metrics', b: 'sdserve', label: 'sdserve metrics on (scraped every second) / off' },
  { a: 'cluster-rr', b: 'single', label: 'cluster round-robin / single process' },
  { a: 'sdserve', b: 'pm2', label: 'sdserve shared / PM2 cluster' },
  { a: 'sdserve', b: 'nginx', label: 'sdserve shared / nginx' },
]

/**
 * Per round, a's figure over b's, then summarised. 'rps': throughput, a / b.
 * 'cpu': CPU efficiency, b's server CPU per request / a's, so that, as for
 * throughput, above 1 means a does better (less CPU for each request).
 */
function pairedRatio(runs, a, b, mode, what = 'rps') {
  const byRound = (id) => new Map(runs.filter((r) => r.config === id && r.mode === mode).map((r) => [r.round, what === 'rps' ? r.rps : r.usPerReq]))
  const ra = byRound(a)
  const rb = byRound(b)
  const xs = []
  for (const [round, x] of ra) if (rb.has(round)) xs.push(what === 'rps' ? x / rb.get(round) : rb.get(round) / x)
  return summary(xs)
}

export function analyse(result) {
  const { runs, rss, startup, reload } = result
  const perConfig = {}
  for (const c of result.configs) {
    const entry = { label: c.label, kind: c.kind, unavailable: c.unavailable }
    for (const mode of MODES) {
      const rs = runs.filter((r) => r.config === c.id && r.mode === mode)
      entry[mode] = {
        rps: summary(rs.map((r) => r.rps)),
        p99: summary(rs.map((r) => r.latency.p99)),
        usPerReq: summary(rs.map((r) => r.usPerReq)),
        masterCpuS: summary(rs.map((r) => r.cpu.master)),
        share: summary(rs.map((r) => r.share)),
        otherCores: summary(rs.map((r) => r.otherCores)),
        failures: rs.reduce((s, r) => s + r.failures, 0),
      }
    }
    const mem = rss.filter((m) => m.config === c.id)
    const maxOf = (xs) => (xs.length === 0 ? undefined : Math.max(...xs))
    entry.rss = {
      masterIdle: summary(mem.map((m) => m.idle.master)),
      masterAfter: summary(mem.map((m) => maxOf(Object.values(m.after).map((x) => x.master ?? 0)))),
      workerIdle: summary(mem.map((m) => maxOf(m.idle.workers))),
      workerAfter: summary(mem.map((m) => maxOf(Object.values(m.after).flatMap((x) => x.workers)))),
    }
    const st = startup.filter((s) => s.config === c.id)
    entry.startup = {
      firstResponseMs: summary(st.map((s) => s.firstResponseMs)),
      allWorkersMs: summary(st.map((s) => s.allWorkersMs)),
      readyMs: summary(st.map((s) => s.readyMs)),
      readyFrom: st.some((s) => s.readyFrom === 'log') ? 'log' : 'sd_notify',
    }
    perConfig[c.id] = entry
  }
  const floor = startup.filter((s) => s.config === 'node-e0')
  const nodeStartMs = summary(floor.map((s) => s.exitMs))

  const ratios = RATIOS.filter((r) => perConfig[r.a] && perConfig[r.b]).map((r) => ({
    ...r,
    ka: pairedRatio(runs, r.a, r.b, 'ka'),
    close: pairedRatio(runs, r.a, r.b, 'close'),
    cpuKa: pairedRatio(runs, r.a, r.b, 'ka', 'cpu'),
    cpuClose: pairedRatio(runs, r.a, r.b, 'close', 'cpu'),
  }))
  const ratio = (a, b, field) => ratios.find((r) => r.a === a && r.b === b)?.[field]

  // ---- targets (issues 7 and 16)
  const targets = []
  // on 'cpu': judged on the CPU efficiency (the primary figure), throughput shown beside it.
  const ratioTarget = (name, a, b, mode, min, on = 'cpu') => {
    const cpu = ratio(a, b, mode === 'ka' ? 'cpuKa' : 'cpuClose')
    const rps = ratio(a, b, mode)
    const s = on === 'cpu' ? cpu : rps
    const avail = perConfig[a] && !perConfig[a].unavailable && perConfig[b] && !perConfig[b].unavailable
    const x3 = (x) => `${x.toFixed(3)}x`
    targets.push({
      name,
      target: `>= ${min.toFixed(2)}x ${on === 'cpu' ? 'CPU' : 'req/s'}`,
      measured:
        s?.median === undefined
          ? avail
            ? 'n/a'
            : (perConfig[a]?.unavailable ?? 'not run')
          : on === 'cpu'
            ? `CPU ${fmtRange(cpu, x3)}; req/s ${fmtRange(rps, x3)}`
            : `req/s ${fmtRange(rps, x3)}; CPU ${fmtRange(cpu, x3)}`,
      met: s?.median === undefined ? undefined : s.median >= min,
      everyRound: s?.min === undefined ? undefined : s.min >= min,
    })
  }
  ratioTarget('sdserve shared vs raw shared socket, keep-alive', 'sdserve', 'shared-fd', 'ka', 0.97)
  ratioTarget('sdserve shared vs raw shared socket, close', 'sdserve', 'shared-fd', 'close', 0.97)
  ratioTarget('sdserve shared vs cluster round-robin, close', 'sdserve', 'cluster-rr', 'close', 1.5)
  ratioTarget('sdserve shared vs cluster round-robin, keep-alive', 'sdserve', 'cluster-rr', 'ka', 1.05)
  ratioTarget('sdserve reuse-port vs shared, keep-alive', 'sdserve-reuseport', 'sdserve', 'ka', 0.98)
  ratioTarget('sdserve reuse-port vs shared, close', 'sdserve-reuseport', 'sdserve', 'close', 0.98)
  {
    const s = perConfig['sdserve-reuseport']?.close.share
    targets.push({
      name: 'reuse-port: each worker 45-55% of requests, close',
      target: 'busiest <= 55%',
      measured: s?.median === undefined ? 'not run' : `busiest ${fmtRange(s, (x) => fmtPct(x))}`,
      met: s?.median === undefined ? undefined : s.median <= 0.55,
      everyRound: s?.max === undefined ? undefined : s.max <= 0.55,
    })
  }
  ratioTarget('access log on vs off, keep-alive', 'sdserve-accesslog', 'sdserve', 'ka', 0.95)
  ratioTarget('access log on vs off, close', 'sdserve-accesslog', 'sdserve', 'close', 0.95)
  ratioTarget('metrics on (scraped every second) vs off, keep-alive', 'sdserve-metrics', 'sdserve', 'ka', 0.97, 'rps')
  ratioTarget('metrics on (scraped every second) vs off, close', 'sdserve-metrics', 'sdserve', 'close', 0.97, 'rps')
  {
    const rs = reload.filter((r) => r.config === 'sdserve')
    const failed = rs.reduce((s, r) => s + r.during.failures, 0)
    const reloads = rs.reduce((s, r) => s + r.reloadsOk, 0)
    const sent = rs.reduce((s, r) => s + r.hupsSent, 0)
    targets.push({
      name: 'reload under load: failed requests (shared)',
      target: '0',
      measured: rs.length === 0 ? 'not run' : `${failed} in ${reloads}/${sent} reloads (${rs.map((r) => `${r.mode} ${r.during.failures}`).join(', ')})`,
      met: rs.length === 0 ? undefined : failed === 0 && reloads === sent,
    })
  }
  for (const [id, what] of [
    ['sdserve', 'shared'],
    ['sdserve-reuseport', 'reuse-port'],
  ])
    for (const [mode, max] of [
      ['ka', 2],
      ['close', 1.5],
    ]) {
      const r = reload.find((x) => x.config === id && x.mode === mode)
      const x = r === undefined ? undefined : r.during.latency.p99 / r.steady.latency.p99
      targets.push({
        name: `reload under load: p99 during reloads vs steady (${what}), ${MODE_LABEL[mode]}`,
        target: `<= ${max}x`,
        measured: r === undefined ? 'not run' : `${fmtNum(r.during.latency.p99)} / ${fmtNum(r.steady.latency.p99)} ms = ${x.toFixed(2)}x`,
        met: x === undefined ? undefined : x <= max,
      })
    }
  {
    const ready = perConfig.sdserve?.startup.readyMs.median
    const floor = perConfig['shared-fd']?.startup.firstResponseMs.median
    const x = ready === undefined || floor === undefined ? undefined : ready / floor
    targets.push({
      name: 'start-up: sdserve READY=1 with 2 workers vs raw parent + 2 children first response',
      target: '<= 1.15x',
      measured: x === undefined ? 'not run' : `${ms1(ready)} / ${ms1(floor)} ms = ${x.toFixed(2)}x`,
      met: x === undefined ? undefined : x <= 1.15,
    })
  }
  {
    const bare = perConfig.single?.rss.workerIdle.median ?? perConfig.single?.rss.masterIdle.median
    const worker = perConfig.sdserve?.rss.workerIdle.median
    targets.push({
      name: 'sdserve worker RSS idle vs a bare Node hello process',
      target: '<= bare + 5 MiB',
      measured: worker === undefined || bare === undefined ? 'not run' : `${worker.toFixed(1)} vs ${bare.toFixed(1)} MiB (+${(worker - bare).toFixed(1)})`,
      met: worker === undefined || bare === undefined ? undefined : worker <= bare + 5,
    })
  }
  {
    const masters = []
    for (const id of ['sdserve', 'sdserve-reuseport', 'sdserve-accesslog', 'sdserve-metrics']) {
      const r = perConfig[id]?.rss
      if (r?.masterAfter.max !== undefined) masters.push(r.masterAfter.max)
      if (r?.masterIdle.max !== undefined) masters.push(r.masterIdle.max)
    }
    for (const r of reload) if (r.config.startsWith('sdserve')) masters.push(r.masterRssPeak, r.rssAfter.master ?? 0)
    const worst = masters.length === 0 ? undefined : Math.max(...masters)
    targets.push({
      name: 'sdserve master RSS (worst seen: idle, after load, during reloads)',
      target: '<= 60 MiB',
      measured: worst === undefined ? 'not run' : `${worst.toFixed(1)} MiB`,
      met: worst === undefined ? undefined : worst <= 60,
    })
  }
  targets.push(scalingTarget(result))
  return { perConfig, ratios, targets, nodeStartMs }
}

// ---------------------------------------------------------------- markdown

const ms = (x) => fmtNum(x, 2)
const ms1 = (x) => fmtNum(x, 1)
const mib = (x) => fmtNum(x, 1)
const verdict = (t) => (t.met === undefined ? 'n/a' : t.met ? (t.everyRound === false ? 'yes (median; not every round)' : 'yes') : '**no**')

export function renderMarkdown(result) {
  const { machine: m, options: o, analysis: a } = result
  const L = []
  const day = m.date.slice(0, 10)
  L.push(`# sdserve benchmark, ${day}`)
  L.push('')
  L.push(
    `${m.cores} cores (${m.cpu}), Linux ${m.kernel}, Node ${m.node}, ${m.wrk}, ${m.nginx ?? 'no nginx'}; sdserve ${m.sdserve} (${m.commit ?? 'no git'}${m.distStale ? ', dist/ older than lib/' : ''})${o.sdserveArgs ? `, every sdserve configuration with \`${o.sdserveArgs}\`` : ''}. ` +
      `Load average before / after: ${m.loadavg} / ${m.loadavgAfter}. Took ${result.elapsedS} s.`,
  )
  L.push('')
  if (result.runs.length > 0) {
    L.push(
      `Method: \`wrk -t${o.threads} -c${o.connections} -d${o.seconds}s --latency\` on 127.0.0.1 (${o.wrkCpus ? `wrk pinned to CPU ${o.wrkCpus}` : 'wrk not pinned: it shares the cores with the server'}), ` +
        `${o.count ? 'with bench/worker-count.lua counting the X-Worker header of every response, ' : ''}` +
        `hello-world handler, 2 workers; ${o.rounds} round(s), every configuration started afresh in each round ` +
        `(${o.warmup} s unrecorded warm-up), the order rotated and the two modes alternated round by round. ` +
        `Figures are median [min-max] over the rounds; ratios are paired within a round, then the median is taken. ` +
        `The primary comparative figure is the CPU efficiency: the server CPU per request of the second configuration divided by that of the first ` +
        `(e.g. sdserve / raw: raw's µs/request ÷ sdserve's), so that above 1 means the first needs less CPU per request, as a throughput ratio above 1 means it served more. ` +
        `wrk shares the cores with the server, so throughput swings from round to round with the machine's other load; the CPU a request costs swings much less. ` +
        `The targets are judged on it where issue 16 asks (the access log, sdserve against raw and cluster round-robin, reuse-port against shared); the throughput ratio is given beside it.`,
    )
    L.push('')
  }

  const pc = a.perConfig
  const ids = result.configs.map((c) => c.id)
  if (result.runs.length > 0) {
    L.push('## Throughput')
    L.push('')
    L.push('| configuration | keep-alive req/s | close req/s | p99 ms ka / close | server CPU us/req ka / close | busiest worker ka / close | other load, cores ka / close |')
    L.push('|---|---|---|---|---|---|---|')
    for (const id of ids) {
      const c = pc[id]
      if (c.unavailable) {
        L.push(`| ${c.label} | ${c.unavailable} | | | | | |`)
        continue
      }
      if (c.ka.rps.n === 0 && c.close.rps.n === 0) continue
      L.push(
        `| ${c.label} | ${fmtRange(c.ka.rps)} | ${fmtRange(c.close.rps)} | ${ms(c.ka.p99.median)} / ${ms(c.close.p99.median)} | ` +
          `${ms1(c.ka.usPerReq.median)} / ${ms1(c.close.usPerReq.median)} | ${fmtPct(c.ka.share.median)} / ${fmtPct(c.close.share.median)} | ` +
          `${fmtNum(c.ka.otherCores.max)} / ${fmtNum(c.close.otherCores.max)} |`,
      )
    }
    L.push('')
    L.push(
      'Server CPU is the user + system time of the server\'s processes (master included) during the run, per request. ' +
        'Busiest worker: the share of responses that the busiest process served (50% is an even spread over 2). ' +
        'Other load: the worst, over the rounds, of the CPU that processes other than the server and wrk used during the run ' +
        '(/proc/stat busy time less theirs, in cores of the 2): what the machine\'s other users took; near 0 is a clean run.',
    )
    const failing = result.runs.filter((r) => r.failures > 0)
    if (failing.length > 0) L.push(`\nRuns with failed requests: ${failing.map((r) => `${r.config} ${r.mode} round ${r.round}: ${r.failures}`).join('; ')}.`)
    L.push('')

    L.push('## Ratios')
    L.push('')
    L.push('CPU efficiency: the second\'s server CPU per request ÷ the first\'s (above 1: the first uses less CPU per request); the primary figure. Throughput: the first\'s req/s ÷ the second\'s.')
    L.push('')
    L.push('| ratio (paired per round) | CPU efficiency keep-alive | CPU efficiency close | throughput keep-alive | throughput close |')
    L.push('|---|---|---|---|---|')
    const rx = (s) => fmtRange(s, (x) => `${x.toFixed(2)}x`)
    for (const r of a.ratios) if (r.ka.n > 0 || r.close.n > 0) L.push(`| ${r.label} | ${rx(r.cpuKa)} | ${rx(r.cpuClose)} | ${rx(r.ka)} | ${rx(r.close)} |`)
    L.push('')
  }

  L.push('## Targets (issues 7 and 16)')
  L.push('')
  L.push('| target | wanted | measured | met |')
  L.push('|---|---|---|---|')
  for (const t of a.targets) L.push(`| ${t.name} | ${t.target} | ${t.measured} | ${verdict(t)} |`)
  L.push('')

  if (result.runs.length > 0) {
    L.push('## Memory')
    L.push('')
    L.push('VmRSS in MiB, median of the rounds: idle (0.5 s after every worker listens, before any request) and after load (after both wrk runs). "Master" is the parent process (the cluster primary, the nginx master); a worker figure is the larger of the workers.')
    L.push('')
    L.push('| configuration | master idle | master after load | worker idle | worker after load |')
    L.push('|---|---|---|---|---|')
    for (const id of ids) {
      const c = pc[id]
      if (c.unavailable || c.rss.masterIdle.n === 0) continue
      const single = id === 'single'
      L.push(
        `| ${c.label} | ${single ? '-' : mib(c.rss.masterIdle.median)} | ${single ? '-' : mib(c.rss.masterAfter.median)} | ` +
          `${mib(single ? c.rss.masterIdle.median : c.rss.workerIdle.median)} | ${mib(single ? c.rss.masterAfter.median : c.rss.workerAfter.median)} |`,
      )
    }
    L.push('')
  }

  const st = ids.filter((id) => pc[id].startup.firstResponseMs.n > 0)
  if (st.length > 0) {
    L.push('## Start-up')
    L.push('')
    L.push(
      `Milliseconds from spawn, median [min-max] of ${o.startupReps}: the first 200 (GET on a new connection every 2 ms), every worker listening (its "listening"/"serving" line), ` +
        `and sdserve's READY=1 as received on NOTIFY_SOCKET by a python3 receiver (same CLOCK_MONOTONIC). A bare \`node -e 0\` takes ${fmtRange(a.nodeStartMs, ms1)} ms.`,
    )
    L.push('')
    L.push('| configuration | first response | all workers listening | READY=1 |')
    L.push('|---|---|---|---|')
    for (const id of st) {
      const s = pc[id].startup
      L.push(`| ${pc[id].label} | ${fmtRange(s.firstResponseMs, ms1)} | ${fmtRange(s.allWorkersMs, ms1)} | ${s.readyMs.n > 0 ? `${fmtRange(s.readyMs, ms1)}${s.readyFrom === 'log' ? ' (from the log)' : ''}` : '-'} |`)
    }
    L.push('')
  }

  if (result.reload.length > 0) {
    const secs = result.reload[0].seconds
    L.push('## Reload under load')
    L.push('')
    L.push(
      `wrk runs ${secs} s twice on one server: steady, then with a SIGHUP to the master every ${o.reloadInterval} s from the 1st second ` +
        `(the next one once the previous reload is reported done). Failed = socket errors (connect, read, write, timeout) + non-2xx responses, as wrk counts them. ` +
        `Reload took: from the master's "reloading" log line to its "reloaded" line (the new generation serves), median [min-max]. ` +
        `PM2: \`pm2 reload\` instead of the SIGHUP, at the same cadence, the next one once the command has returned; reload took = the command's run time; ` +
        `its wrk runs last ${result.reload.find((r) => r.config === 'pm2')?.seconds ?? '-'} s, sized from one unrecorded \`pm2 reload\` under load so that every reload falls inside the load. ` +
        `The PM2 app, like the other baselines, has no SIGINT handler: PM2 stops an old worker with SIGINT and it ends at once, with whatever connections it holds.`,
    )
    L.push('')
    L.push('| configuration | mode | reloads done | reload took, ms | failed steady / during | p99 ms steady / during | ratio | req/s steady / during | master RSS peak MiB |')
    L.push('|---|---|---|---|---|---|---|---|---|')
    for (const r of result.reload) {
      const e = r.during.errors
      const detail = r.during.failures > 0 ? ` (connect ${e.connect}, read ${e.read}, write ${e.write}, timeout ${e.timeout}, non-2xx ${r.during.non2xx})` : ''
      L.push(
        `| ${pc[r.config]?.label ?? r.config} | ${MODE_LABEL[r.mode]} | ${r.reloadsOk}/${r.hupsSent}${r.reloadsFailed ? `, ${r.reloadsFailed} failed: ${r.failReasons.join('; ')}` : ''} | ` +
          `${fmtRange(summary(r.reloadMs ?? []), ms1)} | ${r.steady.failures} / ${r.during.failures}${detail} | ` +
          `${ms(r.steady.latency.p99)} / ${ms(r.during.latency.p99)} | ${(r.during.latency.p99 / r.steady.latency.p99).toFixed(2)}x | ${fmtRps(r.steady.rps)} / ${fmtRps(r.during.rps)} | ${mib(r.masterRssPeak)} |`,
      )
    }
    L.push('')
  }

  L.push(...renderScalingMarkdown(result))

  const notes = []
  for (const c of result.configs) if (c.unavailable) notes.push(`${c.label}: ${c.unavailable}.`)
  for (const e of result.errors) notes.push(`${e.phase} ${e.config}${e.round ? ` round ${e.round}` : ''}: ${e.error.split('\n')[0]}`)
  if (m.distStale) notes.push('lib/ had files newer than dist/lib/cli.js: the numbers are for the last build.')
  if (m.distRebuilt !== undefined)
    notes.push(
      `dist/ was rebuilt during the run (built ${m.distBuilt} at the start, ${m.distRebuilt} at the end; commit ${m.commit} then ${m.commitAfter}): ` +
        `phases that started after the rebuild ran the newer code (phases started: ${Object.entries(result.phases ?? {}).map(([k, v]) => `${k} ${v.slice(11, 19)}`).join(', ')}).`,
    )
  if (notes.length > 0) {
    L.push('## Notes')
    L.push('')
    for (const n of notes) L.push(`- ${n}`)
    L.push('')
  }
  L.push(`Raw numbers: latest.json.${result.runs.length > 0 ? ' Chart: latest.svg.' : ''}${result.scaling?.points.length > 0 ? ' Scaling chart: latest-scaling.svg.' : ''}`)
  L.push('')
  return L.join('\n')
}

// ---------------------------------------------------------------- SVG

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
const COLOR = { node: '#8c96a3', pm2: '#8c96a3', sdserve: '#2b6cb0', nginx: '#c05621' }

export function renderSvg(result) {
  const a = result.analysis
  const configs = result.configs.filter((c) => {
    const p = a.perConfig[c.id]
    return c.unavailable || p.ka.rps.n > 0 || p.close.rps.n > 0
  })
  const W = 980
  const labelW = 380
  const barX = labelW + 10
  const barW = W - barX - 110
  const rowH = 24
  const head = 62
  const panelGap = 40
  const panelH = configs.length * rowH + 30
  const H = head + MODES.length * (panelH + panelGap) + 20
  const o = result.options
  const out = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="13">`)
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`)
  out.push(`<text x="16" y="26" font-size="17" font-weight="bold">sdserve benchmark: requests per second, hello world on loopback, 2 workers</text>`)
  out.push(
    `<text x="16" y="48" fill="#444">${esc(
      `${result.machine.date.slice(0, 10)}, ${result.machine.cores} cores, Node ${result.machine.node}, wrk -t${o.threads} -c${o.connections} -d${o.seconds}s; bar: median of ${o.rounds} round(s), whisker: min-max`,
    )}</text>`,
  )
  MODES.forEach((mode, i) => {
    const top = head + i * (panelH + panelGap) + 16
    const max = Math.max(1, ...configs.map((c) => a.perConfig[c.id][mode].rps.max ?? 0))
    const scale = barW / max
    out.push(`<text x="16" y="${top}" font-size="15" font-weight="bold">${esc(MODE_LABEL[mode])}</text>`)
    // grid
    const step = niceStep(max)
    for (let v = 0; v <= max * 1.0001; v += step) {
      const x = barX + v * scale
      out.push(`<line x1="${x.toFixed(1)}" y1="${top + 8}" x2="${x.toFixed(1)}" y2="${top + 10 + configs.length * rowH}" stroke="#e3e3e3"/>`)
      out.push(`<text x="${x.toFixed(1)}" y="${top + 24 + configs.length * rowH}" text-anchor="middle" fill="#666" font-size="11">${esc(fmtRps(v))}</text>`)
    }
    configs.forEach((c, j) => {
      const y = top + 12 + j * rowH
      out.push(`<text x="${labelW}" y="${y + 15}" text-anchor="end">${esc(c.label)}</text>`)
      const s = a.perConfig[c.id][mode].rps
      if (c.unavailable || s.median === undefined) {
        out.push(`<text x="${barX + 4}" y="${y + 15}" fill="#888" font-style="italic">${esc(c.unavailable ? 'not available yet' : 'not run')}</text>`)
        return
      }
      const w = s.median * scale
      out.push(`<rect x="${barX}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 7}" fill="${COLOR[c.kind] ?? COLOR.node}"/>`)
      const x1 = barX + s.min * scale
      const x2 = barX + s.max * scale
      const cy = y + 3 + (rowH - 7) / 2
      out.push(`<line x1="${x1.toFixed(1)}" y1="${cy}" x2="${x2.toFixed(1)}" y2="${cy}" stroke="#111" stroke-width="1.2"/>`)
      for (const x of [x1, x2]) out.push(`<line x1="${x.toFixed(1)}" y1="${cy - 5}" x2="${x.toFixed(1)}" y2="${cy + 5}" stroke="#111" stroke-width="1.2"/>`)
      out.push(`<text x="${(Math.max(x2, barX + w) + 6).toFixed(1)}" y="${y + 15}" fill="#222">${esc(fmtRps(s.median))}</text>`)
    })
  })
  const legendY = H - 10
  let lx = 16
  for (const [kind, text] of [
    ['sdserve', 'sdserve'],
    ['node', 'Node baselines'],
    ['nginx', 'nginx (ceiling)'],
  ]) {
    out.push(`<rect x="${lx}" y="${legendY - 10}" width="12" height="12" fill="${COLOR[kind]}"/>`)
    out.push(`<text x="${lx + 16}" y="${legendY}" font-size="12">${esc(text)}</text>`)
    lx += 150
  }
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

function niceStep(max) {
  const raw = max / 5
  const p = 10 ** Math.floor(Math.log10(raw))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p
  return 10 * p
}

