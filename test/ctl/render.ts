/** How `sdserve ctl` shows answers: hand-made stats, every answer kind. */
import t from 'tap'
import { duration, mib, render, renderStatus, renderWorkers } from '../../lib/ctl/render.js'
import type { MasterStats, SlotStats } from '../../lib/master/stats.js'

type Worker = MasterStats['workers'][number]

const worker = (over: Partial<Worker> = {}): Worker => ({
  id: 1,
  pid: 4242,
  generation: 2,
  state: 'ready',
  uptimeMs: 3_723_000,
  lastBeatMs: 250,
  requests: 17,
  inflight: 2,
  connections: 3,
  rss: 52_428_800,
  cpuPercent: 12.345,
  loopP99Ms: 1.26,
  loopMaxMs: 9,
  restarts: 0,
  lastExit: undefined,
  ...over,
})

const slot = (id: number, responses: number[], inflight: number): SlotStats => ({
  id,
  totals: { requests: 0, responses, buckets: [], seconds: 0, cpuSeconds: 0 },
  rss: 0,
  inflight,
  connections: 0,
  loopP99Ms: 0,
  restarts: { restarts: 0, last: undefined },
})

const zeroExits = { crash: 0, timeout: 0, 'boot-failed': 0, 'max-requests': 0, memory: 0, reload: 0, scale: 0, upgrade: 0, stop: 0 }

const stats = (over: Partial<MasterStats> = {}): MasterStats => ({
  pid: 100,
  version: '9.9.9',
  phase: 'serving',
  startedAt: 1_000_000,
  lastBootMs: 300,
  generation: 2,
  pending: undefined,
  target: 2,
  health: 'ok',
  workers: [worker(), worker({ id: 2, pid: 4343, state: 'booting' }), worker({ id: 1, pid: 4141, generation: 1, state: 'retiring' })],
  slots: [],
  exits: { ...zeroExits },
  reloads: { ok: 0, failed: 0 },
  upgrades: { ok: 0, failed: 0 },
  sockets: [],
  ...over,
})

t.test('duration', async (t) => {
  const cases: [number, string][] = [
    [-5000, '0s'],
    [0, '0s'],
    [999, '0s'],
    [45_000, '45s'],
    [59_999, '59s'],
    [60_000, '1m00s'],
    [723_000, '12m03s'],
    [3_599_000, '59m59s'],
    [3_600_000, '1h00m'],
    [7_500_000, '2h05m'],
    [86_399_000, '23h59m'],
    [86_400_000, '1d00h'],
    [3 * 86_400_000 + 4 * 3_600_000 + 59_000, '3d04h'],
  ]
  for (const [ms, text] of cases) t.equal(duration(ms), text, `${ms} ms`)
})

t.test('mib', async (t) => {
  t.equal(mib(0), '-', 'not read yet')
  t.equal(mib(1_048_576), '1.0 MiB')
  t.equal(mib(52_428_800 + 52_429), '50.1 MiB')
})

t.test('status: a quiet master', async (t) => {
  const text = renderStatus(stats({ workers: [], sockets: [] }), 1_000_000 + 45_000)
  t.equal(
    text,
    [
      'sdserve 9.9.9, master 100, up 45s, serving, health ok',
      'generation 2: 0 of 2 workers ready',
      'requests   0 ended (none); 0 in flight',
      'reloads    0 ok, 0 failed',
      'upgrades   0 ok, 0 failed',
      'exits      none',
      'sockets    none',
      '',
    ].join('\n'),
  )
})

t.test('status: a busy one', async (t) => {
  const s = stats({
    phase: 'reloading',
    pending: 3,
    slots: [slot(1, [0, 10, 2, 0, 1, 0], 2), slot(2, [0, 5, 0, 3], 1)],
    exits: { ...zeroExits, crash: 2, reload: 4 },
    reloads: { ok: 3, failed: 1, lastError: 'boom' },
    upgrades: { ok: 1, failed: 0 },
    sockets: [{ text: '127.0.0.1:8080', queued: 1, backlog: 511 }, { text: 'unix:/run/a.sock' }],
  })
  const lines = renderStatus(s, 1_000_000 + 7_500_000).split('\n')
  t.equal(lines[0], 'sdserve 9.9.9, master 100, up 2h05m, reloading, health ok')
  t.equal(lines[1], 'generation 2: 1 of 2 workers ready; generation 3 booting', 'only ready workers of the serving generation count')
  t.equal(lines[2], 'requests   21 ended (2xx 15, 3xx 2, 4xx 3, 5xx 1); 3 in flight', 'summed over the slots; missing classes count 0')
  t.equal(lines[3], 'reloads    3 ok, 1 failed (last: boom)')
  t.equal(lines[4], 'upgrades   1 ok, 0 failed')
  t.equal(lines[5], 'exits      crash 2, reload 4')
  t.equal(lines[6], 'sockets    127.0.0.1:8080 queue 1 of 511; unix:/run/a.sock queue unknown')
  t.equal(lines.length, 8, 'seven lines and the final newline')
})

t.test('workers: a table with a row per worker', async (t) => {
  const ws = [worker(), worker({ id: 2, pid: 77, state: 'booting', rss: 0, restarts: 3, lastExit: 'crash', uptimeMs: 5000 }), worker({ id: 3, restarts: 1 })]
  const lines = renderWorkers(ws, 4).split('\n')
  t.equal(lines[0], 'SLOT  PID   GEN  STATE    UPTIME  REQUESTS  IN FLIGHT  CONNS  RSS       CPU %  LOOP P99  BEAT   RESTARTS', 'columns as wide as their widest cell')
  t.equal(lines[1], '1     4242  2    ready    1h02m   17        2          3      50.0 MiB  12.3   1.3 ms    0.3 s  0')
  t.equal(lines[2], '2     77    2    booting  5s      17        2          3      -         12.3   1.3 ms    0.3 s  3 (last: crash)')
  t.equal(lines[3], '3     4242  2    ready    1h02m   17        2          3      50.0 MiB  12.3   1.3 ms    0.3 s  1 (last: ?)')
  t.equal(lines[4], '3 workers, target 4')
  t.equal(lines[5], '', 'ends with a newline')
  t.equal(
    renderWorkers([], 1),
    'SLOT  PID  GEN  STATE  UPTIME  REQUESTS  IN FLIGHT  CONNS  RSS  CPU %  LOOP P99  BEAT  RESTARTS\n0 workers, target 1\n',
    'no workers: the header alone',
  )
})

t.test('render: every answer kind', async (t) => {
  const s = stats()
  t.equal(render({ ok: true, command: 'status', stats: s }), renderStatus(s))
  t.equal(render({ ok: true, command: 'workers', target: 2, workers: s.workers }), renderWorkers(s.workers, 2))
  t.equal(render({ ok: true, command: 'reload', generation: 5 }), 'reloaded: generation 5 serving\n')
  t.equal(render({ ok: true, command: 'scale', workers: 3 }), 'scaled: 3 workers serving\n')
  t.equal(render({ ok: true, command: 'reopen-logs' }), 'log files reopened\n')
  t.equal(render({ ok: true, command: 'drain', health: 'lame-duck' }), 'draining (lame duck): health checks answer lame-duck\n')
  t.equal(render({ ok: true, command: 'resume', health: 'ok' }), 'resumed: health checks answer ok\n')
  t.equal(render({ ok: true, command: 'upgrade', pid: 999 }), 'upgraded: the new master 999 serves; this one is draining and will exit\n')
  t.equal(render({ ok: true, command: 'stop' }), 'stopped\n')
})
