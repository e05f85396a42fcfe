// Running wrk and reading its report.
import { fileURLToPath } from 'node:url'
import { CLK_TCK, start, stop } from './proc.mjs'

export const COUNT_SCRIPT = fileURLToPath(new URL('../worker-count.lua', import.meta.url))

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60000, h: 3600000 }
const toMs = (value, unit) => Number(value) * (UNIT_MS[unit] ?? NaN)

/**
 * Parse wrk's output (with --latency and, optionally, worker-count.lua).
 * Returns { rps, requests, seconds, latency: { avg, max, p50, p75, p90, p99 } (ms),
 * errors: { connect, read, write, timeout }, non2xx, workers: { id: count }, statuses }.
 */
export function parseWrk(text) {
  const num = (re) => {
    const m = re.exec(text)
    return m === null ? undefined : Number(m[1])
  }
  const out = {
    rps: num(/^Requests\/sec:\s+([\d.]+)/m),
    requests: num(/^\s*(\d+) requests in /m),
    seconds: undefined,
    latency: {},
    errors: { connect: 0, read: 0, write: 0, timeout: 0 },
    non2xx: num(/Non-2xx or 3xx responses:\s+(\d+)/) ?? 0,
    workers: {},
    statuses: {},
  }
  const dur = /requests in ([\d.]+)(us|ms|s|m|h)/.exec(text)
  if (dur !== null) out.seconds = toMs(dur[1], dur[2]) / 1000
  const lat = /^\s+Latency\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)/m.exec(text)
  if (lat !== null) {
    out.latency.avg = toMs(lat[1], lat[2])
    out.latency.max = toMs(lat[5], lat[6])
  }
  for (const m of text.matchAll(/^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$/gm)) out.latency[`p${m[1]}`] = toMs(m[2], m[3])
  const err = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
  if (err !== null) out.errors = { connect: Number(err[1]), read: Number(err[2]), write: Number(err[3]), timeout: Number(err[4]) }
  for (const m of text.matchAll(/^X-WORKER (\S+) (\d+)$/gm)) out.workers[m[1]] = Number(m[2])
  for (const m of text.matchAll(/^STATUS (\S+) (\d+)$/gm)) out.statuses[m[1]] = Number(m[2])
  return out
}

/** Failed requests as a client sees them: socket errors of any kind plus non-2xx/3xx responses. */
export function failures(r) {
  return r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout + r.non2xx
}

/** The busiest worker's share of the responses counted by worker-count.lua (undefined without counts). */
export function busiestShare(r) {
  const counts = Object.entries(r.workers)
    .filter(([k]) => k !== 'none')
    .map(([, v]) => v)
  const total = counts.reduce((a, b) => a + b, 0)
  return total === 0 ? undefined : Math.max(...counts) / total
}

/**
 * Run wrk against url for `seconds`. close: send `Connection: close`.
 * count: load worker-count.lua. cpus: pin wrk with taskset -c CPUS.
 * Returns the parsed report plus the raw text.
 */
export async function runWrk({ url, seconds, connections = 64, threads = 1, close = false, count = true, cpus, timeoutS = 2 }) {
  // wrk takes whole seconds only
  seconds = Math.max(1, Math.round(seconds))
  const args = [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, `--timeout`, `${timeoutS}s`, '--latency']
  if (close) args.push('-H', 'Connection: close')
  if (count) args.push('-s', COUNT_SCRIPT)
  args.push(url)
  // sh runs wrk and, once it has reaped it, prints its own /proc stat, whose
  // cutime + cstime are wrk's CPU time.
  const wrap = ['sh', '-c', 'wrk "$@"; s=$?; echo "WRKSTAT $(cat /proc/$$/stat)"; exit $s', 'sh', ...args]
  const [cmd, argv] = cpus ? ['taskset', ['-c', String(cpus), ...wrap]] : [wrap[0], wrap.slice(1)]
  const child = start(cmd, argv)
  const watchdog = setTimeout(() => void stop(child, { signal: 'SIGKILL', graceMs: 0 }), (seconds + 30) * 1000)
  const { code, signal } = await child.exited
  clearTimeout(watchdog)
  await stop(child, { graceMs: 0 })
  const text = child.lines.map((l) => l.text).join('\n')
  if (code !== 0) throw new Error(`wrk ${args.join(' ')} failed (${code ?? signal}):\n${text}`)
  const report = parseWrk(text)
  if (report.rps === undefined) throw new Error(`cannot read wrk's report:\n${text}`)
  const st = /^WRKSTAT .*\) (.*)$/m.exec(text)
  const rest = st === null ? [] : st[1].split(' ')
  const wrkCpuS = st === null ? undefined : (Number(rest[13]) + Number(rest[14])) / CLK_TCK
  return { ...report, wrkCpuS, raw: text.replace(/^WRKSTAT .*\n?/m, ''), args: ['wrk', ...args].join(' ') }
}

/**
 * A wrk run in the background, for load under which something else happens
 * (reloads): `result` is its promise, `done()` whether it has ended.
 */
export function loadInBackground(options) {
  let ended = false
  const result = runWrk(options)
  void result.then(
    () => (ended = true),
    () => (ended = true),
  )
  return { result, done: () => ended }
}
