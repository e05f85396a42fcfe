/**
 * How `sdserve ctl` shows an answer to a person: `status` as a few lines,
 * `workers` as a table like `pm2 ls`. Scripts take `--json` instead.
 */
import type { ControlAnswer } from '../control-protocol.js'
import { STATUS_CLASSES } from '../http/request-counters.js'
import type { MasterStats } from '../master/stats.js'

/** A duration as a person reads it: `45s`, `12m03s`, `2h05m`, `3d04h`. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  const two = (n: number): string => String(n).padStart(2, '0')
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`
  if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor(s / 60) % 60)}m`
  return `${Math.floor(s / 86400)}d${two(Math.floor(s / 3600) % 24)}h`
}

/** Bytes in MiB, one decimal; `-` when not known yet. */
export function mib(bytes: number): string {
  return bytes > 0 ? `${(bytes / 1048576).toFixed(1)} MiB` : '-'
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n') + '\n'
}

export function renderWorkers(workers: MasterStats['workers'], target: number): string {
  const rows = workers.map((w) => [
    String(w.id),
    String(w.pid),
    String(w.generation),
    w.state,
    duration(w.uptimeMs),
    String(w.requests),
    String(w.inflight),
    String(w.connections),
    mib(w.rss),
    w.cpuPercent.toFixed(1),
    `${w.loopP99Ms.toFixed(1)} ms`,
    `${(w.lastBeatMs / 1000).toFixed(1)} s`,
    w.restarts > 0 ? `${w.restarts} (last: ${w.lastExit ?? '?'})` : '0',
  ])
  const header = ['SLOT', 'PID', 'GEN', 'STATE', 'UPTIME', 'REQUESTS', 'IN FLIGHT', 'CONNS', 'RSS', 'CPU %', 'LOOP P99', 'BEAT', 'RESTARTS']
  return table(header, rows) + `${workers.length} workers, target ${target}\n`
}

function counts(entries: [string, number][]): string {
  const nonZero = entries.filter(([, n]) => n > 0)
  return nonZero.length === 0 ? 'none' : nonZero.map(([k, n]) => `${k} ${n}`).join(', ')
}

export function renderStatus(s: MasterStats, now = Date.now()): string {
  const ready = s.workers.filter((w) => w.generation === s.generation && w.state === 'ready').length
  const responses = STATUS_CLASSES.map((c, i): [string, number] => [c, s.slots.reduce((n, slot) => n + (slot.totals.responses[i] ?? 0), 0)])
  const ended = responses.reduce((n, [, c]) => n + c, 0)
  const inflight = s.slots.reduce((n, slot) => n + slot.inflight, 0)
  const outcome = (o: MasterStats['reloads']): string => `${o.ok} ok, ${o.failed} failed${o.lastError !== undefined ? ` (last: ${o.lastError})` : ''}`
  const sockets = s.sockets.map((k) => (k.queued !== undefined ? `${k.text} queue ${k.queued} of ${k.backlog}` : `${k.text} queue unknown`))
  const lines = [
    `sdserve ${s.version}, master ${s.pid}, up ${duration(now - s.startedAt)}, ${s.phase}`,
    `generation ${s.generation}: ${ready} of ${s.target} workers ready${s.pending !== undefined ? `; generation ${s.pending} booting` : ''}`,
    `requests   ${ended} ended (${counts(responses)}); ${inflight} in flight`,
    `reloads    ${outcome(s.reloads)}`,
    `upgrades   ${outcome(s.upgrades)}`,
    `exits      ${counts(Object.entries(s.exits))}`,
    `sockets    ${sockets.join('; ') || 'none'}`,
  ]
  return lines.join('\n') + '\n'
}

/** An answer as text: what was done, or the table; errors are the caller's. */
export function render(a: Extract<ControlAnswer, { ok: true }>): string {
  switch (a.command) {
    case 'status':
      return renderStatus(a.stats)
    case 'workers':
      return renderWorkers(a.workers, a.target)
    case 'reload':
      return `reloaded: generation ${a.generation} serving\n`
    case 'scale':
      return `scaled: ${a.workers} workers serving\n`
    case 'reopen-logs':
      return 'log files reopened\n'
    case 'upgrade':
      return `upgraded: the new master ${a.pid} serves; this one is draining and will exit\n`
    case 'stop':
      return 'stopped\n'
  }
}
