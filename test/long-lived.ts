/**
 * WebSockets, event streams, Socket.IO and uploads across reloads and stops
 * of the real sdserve command, running examples/long-lived/app.mjs (and a
 * Socket.IO fixture): every WebSocket closes 1001 after the app's last word,
 * with nothing lost, spread over --drain-window, and its client reconnects to
 * the new generation. The spread is reported (closes per 100 ms) and checked
 * only for its structure, never for its timing.
 */
import t, { type Test } from 'tap'
import { request } from 'node:http'
import { join } from 'node:path'
import { WebSocket } from 'ws'
import { EventSource } from 'eventsource'
import { io as ioClient } from 'socket.io-client'
import { cli, freePort, root, sleep, spawnTracked, waitFor, waitForOutput, type Tracked } from './helpers/proc.js'

const example = join(root, 'examples/long-lived/app.mjs')
const socketioApp = join(root, 'test/fixtures/socketio-app.mjs')
const GRACEFUL_MS = 10000

interface Master {
  child: Tracked
  port: number
  /** The pids of a generation's workers, from the log lines that say they serve. */
  pids(generation: number): number[]
}

async function startMaster(t: Test, options: { env?: Record<string, string>; args?: string[]; app?: string } = {}): Promise<Master> {
  const port = await freePort()
  const args = options.args ?? ['--graceful-timeout', '10', '--drain-window', '3']
  const child = spawnTracked(t, process.execPath, [cli, '-b', `127.0.0.1:${port}`, '--balance', 'reuse-port', '-w', '2', ...args, options.app ?? example], {
    env: { ...process.env, ...options.env },
  })
  const pids = (generation: number): number[] =>
    [...child.output().matchAll(/worker \d+ \(pid (\d+), generation (\d+)\) serving/g)].filter((m) => Number(m[2]) === generation).map((m) => Number(m[1]))
  await waitFor(() => pids(1).length >= 2, 'two workers serving', 30000)
  return { child, port, pids }
}

/** HUP, and wait for the new generation. */
/** HUP, and wait for the new generation: when the HUP was sent, and when the new generation was seen serving (the old one then drains). */
async function reload(m: Master, generation: number): Promise<{ hupAt: number; servedAt: number }> {
  const hupAt = Date.now()
  m.child.kill('SIGHUP')
  await waitForOutput(m.child, new RegExp(`reloaded: generation ${generation} serving`), 30000)
  return { hupAt, servedAt: Date.now() }
}

interface Client {
  ws: WebSocket
  /** The worker that serves it, "id/pid" (the app's hello). */
  hello: string
  ns: number[]
  /** The app's draining messages, and how many {n} had come before each. */
  draining: string[]
  close: { code: number; at: number } | undefined
  closed: Promise<void>
}

async function openClient(port: number): Promise<Client> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  const c: Client = { ws, hello: '', ns: [], draining: [], close: undefined, closed: Promise.resolve() }
  ws.on('message', (d: Buffer) => {
    const m = JSON.parse(d.toString()) as { hello?: string; n?: number; draining?: string }
    if (m.hello !== undefined) c.hello = m.hello
    if (m.n !== undefined) c.ns.push(m.n)
    if (m.draining !== undefined) c.draining.push(m.draining)
  })
  c.closed = new Promise((resolve) =>
    ws.once('close', (code) => {
      c.close = { code, at: Date.now() }
      resolve()
    }),
  )
  ws.on('error', () => undefined) // a close without a close frame shows as 1006
  await new Promise((resolve, reject) => {
    ws.once('message', resolve)
    ws.once('close', () => reject(new Error('closed before the hello')))
  })
  return c
}

const pidOf = (hello: string): number => Number(hello.split('/')[1])

/** Closes per 100 ms after `from`, as "bucket:count" pairs for a comment, and how many buckets. */
function buckets(times: number[], from: number): { text: string; count: number } {
  const counts = new Map<number, number>()
  for (const at of times) {
    const b = Math.floor((at - from) / 100)
    counts.set(b, (counts.get(b) ?? 0) + 1)
  }
  const sorted = [...counts.entries()].sort((a, b) => a[0] - b[0])
  return { text: sorted.map(([b, n]) => `${b * 100}ms:${n}`).join(' '), count: counts.size }
}

/** The sequence 1..k, no gap, no duplicate. */
const isRun = (ns: number[]): boolean => ns.every((n, i) => n === i + 1)

for (const ignoreDrain of [false, true]) {
  t.test(`50 WebSockets across a HUP${ignoreDrain ? ', the app ignoring the drain' : ''}: 1001, nothing lost, spread out, then the new generation`, async (t) => {
    const m = await startMaster(t, { env: ignoreDrain ? { LONG_LIVED_IGNORE_DRAIN: '1' } : {} })
    const clients = await Promise.all(Array.from({ length: 50 }, () => openClient(m.port)))
    t.same(new Set(clients.map((c) => pidOf(c.hello))), new Set(m.pids(1)), 'served by generation 1')
    await waitFor(() => clients.every((c) => c.ns.length >= 2), 'messages flowing')
    const { hupAt, servedAt } = await reload(m, 2)
    await Promise.race([Promise.all(clients.map((c) => c.closed)), sleep(GRACEFUL_MS + 5000)])
    const codes = clients.map((c) => c.close?.code)
    t.same(new Set(codes), new Set([1001]), `every client closed with 1001 (${codes.filter((c) => c !== 1001).length} did not)`)
    t.ok(
      clients.every((c) => isRun(c.ns)),
      'each {n} sequence runs 1..k with no gap up to the close',
    )
    if (ignoreDrain) t.ok(clients.every((c) => c.draining.length === 0), 'no draining message from an app that ignores it')
    else t.ok(clients.every((c) => c.draining.length === 1 && c.draining[0] === 'reload'), "each got the app's draining message, before its close")
    const times = clients.map((c) => c.close?.at ?? Infinity)
    const b = buckets(times, servedAt)
    t.comment(`generation 2 seen serving ${servedAt - hupAt} ms after the HUP; closes per 100 ms after that: ${b.text}`)
    t.ok(b.count > 1, 'not all closes in the same 100 ms')
    // Before the graceful deadline too: a worker cut at its deadline gives 1006, and every close above is 1001.
    t.ok(
      times.every((at) => at >= hupAt),
      'every close after the HUP',
    )
    // Each reconnects, to the new generation.
    const again = await Promise.all(clients.map(() => openClient(m.port)))
    const gen2 = m.pids(2)
    t.equal(gen2.length, 2)
    t.ok(
      again.every((c) => gen2.includes(pidOf(c.hello))),
      `every client reconnected to a generation 2 worker (${gen2.join(', ')})`,
    )
    for (const c of again) c.ws.close()
    await Promise.all(again.map((c) => c.closed))
    m.child.kill('SIGTERM')
    t.equal(await m.child.exited, 0)
  })
}

t.test('an EventSource across a HUP resumes with Last-Event-ID: ids 1..K, no gap, no duplicate', async (t) => {
  const m = await startMaster(t)
  const es = new EventSource(`http://127.0.0.1:${m.port}/events`)
  t.teardown(() => es.close())
  const ids: number[] = []
  let drainingEvents = 0
  let errors = 0
  const workers: number[] = []
  es.addEventListener('worker', (e) => workers.push(pidOf(String(e.data))))
  es.addEventListener('message', (e) => ids.push(Number(e.lastEventId)))
  es.addEventListener('draining', () => drainingEvents++)
  es.addEventListener('error', () => errors++)
  await waitFor(() => ids.length >= 5, 'events flowing')
  await reload(m, 2)
  await waitFor(() => errors >= 1, 'the stream ended, the client reconnecting', GRACEFUL_MS + 5000)
  const before = ids.length
  await waitFor(() => ids.length >= before + 10, 'events again after the reconnection')
  es.close()
  t.equal(drainingEvents, 1, "the app's draining event")
  t.equal(workers.length, 2, 'one reconnection')
  t.ok(m.pids(1).includes(workers[0]!), 'served by generation 1')
  t.ok(m.pids(2).includes(workers[1]!), 'then by generation 2, not again by the draining worker on its kept-alive connection')
  t.ok(isRun(ids), `ids 1..${ids.length} with no gap and no duplicate`)
  m.child.kill('SIGTERM')
  t.equal(await m.child.exited, 0)
})

t.test('Socket.IO (websocket transport) across a HUP: a reconnectable disconnect, then the new generation', async (t) => {
  const m = await startMaster(t, { app: socketioApp })
  const socket = ioClient(`http://127.0.0.1:${m.port}`, { transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 1000 })
  t.teardown(() => socket.close())
  const hellos: number[] = []
  const reasons: string[] = []
  let ns = 0
  socket.on('hello', (pid: number) => hellos.push(pid))
  socket.on('n', () => ns++)
  socket.on('disconnect', (reason) => reasons.push(reason))
  await waitFor(() => hellos.length === 1 && ns >= 3, 'connected, counting')
  t.ok(m.pids(1).includes(hellos[0]!), 'served by generation 1')
  await reload(m, 2)
  await waitFor(() => hellos.length === 2, 'reconnected', GRACEFUL_MS + 5000)
  const after = ns
  await waitFor(() => ns >= after + 3, 'counting again')
  t.equal(reasons.length, 1)
  t.ok(['transport close', 'io server disconnect'].includes(reasons[0]!), `a disconnect socket.io-client reconnects from: ${reasons[0]}`)
  t.ok(m.pids(2).includes(hellos[1]!), 'reconnected to generation 2')
  socket.close()
  m.child.kill('SIGTERM')
  t.equal(await m.child.exited, 0)
})

/** POST 3 MB to /upload in 30 chunks over about 2 s; during it, do(); resolves with the answer. */
function slowUpload(port: number, during: () => void): Promise<{ status: number; body: string }> {
  const chunk = Buffer.alloc(100 * 1024, 1)
  const total = 30 * chunk.length
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false, headers: { 'content-length': total } }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => (body += d.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    let sent = 0
    const next = (): void => {
      if (sent === 5) during()
      if (sent === 30) return void req.end()
      sent++
      req.write(chunk)
      setTimeout(next, 70)
    }
    next()
  })
}

t.test('an upload in flight across a HUP, then across a TERM, completes', async (t) => {
  const m = await startMaster(t)
  const total = 30 * 100 * 1024
  const r1 = await slowUpload(m.port, () => m.child.kill('SIGHUP'))
  t.equal(r1.status, 200)
  t.match(r1.body, new RegExp(`^${total} bytes received`), 'every byte, across the HUP')
  await waitForOutput(m.child, /reloaded: generation 2 serving/, 30000)
  const r2 = await slowUpload(m.port, () => m.child.kill('SIGTERM'))
  t.equal(r2.status, 200)
  t.match(r2.body, new RegExp(`^${total} bytes received`), 'every byte, across the TERM')
  t.equal(await m.child.exited, 0)
})

t.test('TERM with 10 WebSockets open: all close 1001 within the window, the master exits 0', async (t) => {
  const m = await startMaster(t)
  const clients = await Promise.all(Array.from({ length: 10 }, () => openClient(m.port)))
  const termAt = Date.now()
  m.child.kill('SIGTERM')
  t.equal(await m.child.exited, 0)
  await Promise.all(clients.map((c) => c.closed))
  t.same(
    clients.map((c) => c.close?.code),
    Array(10).fill(1001),
  )
  t.ok(clients.every((c) => c.draining[0] === 'stop' && isRun(c.ns)), "the app's draining message (stop), nothing lost")
  const times = clients.map((c) => c.close!.at)
  t.comment(`closes per 100 ms after the TERM: ${buckets(times, termAt).text}`)
  // Before the deadline too: a worker cut at its deadline gives 1006, and every close above is 1001.
  t.ok(
    times.every((at) => at >= termAt),
    'every close after the TERM',
  )
})

t.test('three HUPs in a row with long drains: the third does not wait, the oldest generation is hurried', async (t) => {
  const m = await startMaster(t, { env: { LONG_LIVED_IGNORE_DRAIN: '1' }, args: ['--graceful-timeout', '60', '--drain-window', '30'] })
  const byGeneration: Client[][] = [await Promise.all(Array.from({ length: 6 }, () => openClient(m.port)))]
  const hups: number[] = []
  const served: number[] = []
  for (const generation of [2, 3, 4]) {
    const r = await reload(m, generation)
    hups.push(r.hupAt)
    served.push(r.servedAt)
    if (generation < 4) byGeneration.push(await Promise.all(Array.from({ length: 6 }, () => openClient(m.port))))
  }
  const third = hups[2]!
  t.comment(`each reload took ${hups.map((h, i) => served[i]! - h).join(', ')} ms to serve its new generation`)
  const [gen1, gen2, gen3] = byGeneration as [Client[], Client[], Client[]]
  t.ok(
    gen1.every((c) => m.pids(1).includes(pidOf(c.hello))) && gen2.every((c) => m.pids(2).includes(pidOf(c.hello))),
    'clients by generation',
  )
  await Promise.race([Promise.all(gen1.map((c) => c.closed)), sleep(GRACEFUL_MS)])
  const stillOpen = [...gen2, ...gen3].filter((c) => c.close === undefined).length
  t.same(
    gen1.map((c) => c.close?.code),
    Array(6).fill(1001),
    'the oldest generation: every client closed with 1001',
  )
  const times = gen1.map((c) => c.close?.at ?? Infinity)
  t.comment(`generation 1 closes per 100 ms after the third HUP: ${buckets(times, third).text}`)
  t.comment(`the same after generation 4 began serving (the hurry): ${buckets(times, served[2]!).text}`)
  t.comment(`generations 2 and 3: ${stillOpen} of 12 clients still open when generation 1 was done`)
  t.ok(stillOpen > 0, 'the younger generations still drain over their long window')
  // Its own deadline is 60 s away and the wait above gives up after GRACEFUL_MS: every close seen is the hurry's.
  t.ok(
    times.every((at) => Number.isFinite(at)),
    'generation 1 done while the younger generations still drain: hurried, not at its own deadline',
  )
  for (const c of [...gen1, ...gen2, ...gen3]) c.ws.close()
  await Promise.all([...gen1, ...gen2, ...gen3].map((c) => c.closed))
  m.child.kill('SIGTERM')
  t.equal(await m.child.exited, 0)
})
