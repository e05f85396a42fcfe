/**
 * Workers of the sdserve command, end to end with real processes: replaced when
 * killed, stuck or crashing; boot failures; scaling with TTIN/TTOU; --max-requests;
 * --max-worker-memory.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { get, load, sleep, waitFor, waitForOutput } from '../helpers/proc.js'
import { parse, ready, start } from '../helpers/master-process.js'
import { needs } from '../helpers/needs.js'

t.test('N workers serve; a worker killed with SIGKILL is replaced while the others keep serving', async (t) => {
  const s = await start(t, ['-w', '3'])
  await ready(s, 3)
  const pids = new Set<number>()
  for (let i = 0; i < 200 && pids.size < 3; i++) pids.add(parse((await get({ port: s.port })).body).pid)
  t.equal(pids.size, 3, 'three workers answer')
  const victim = [...pids][0]!
  process.kill(victim, 'SIGKILL')
  let failed = 0
  for (let i = 0; i < 30; i++) {
    const r = await get({ port: s.port }).catch(() => undefined)
    if (r?.status !== 200) failed++
  }
  t.equal(failed, 0, 'no request failed while the worker was replaced')
  await waitForOutput(s.child, new RegExp(`exited with signal SIGKILL`))
  await waitFor(() => s.count(/serving request handler/) >= 4, 'a replacement worker')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('a worker stuck in a busy loop is killed after --timeout and replaced', async (t) => {
  const s = await start(t, ['-t', '1'])
  await ready(s)
  // The request blocks the loop 600 ms after it starts: a heartbeat in between names it.
  void get({ port: s.port, path: '/spin?after=600', timeoutMs: 20000 }).catch(() => undefined)
  await waitForOutput(
    s.child,
    /worker \d \(pid \d+\) timed out: no heartbeat for \d+ ms \(event loop blocked\?\); killing it; in flight at its last heartbeat: GET \/spin\?after=600 \(running \d+ ms\)/,
  )
  await waitForOutput(s.child, /exited with signal SIGKILL \(timeout\)/)
  await waitFor(() => s.count(/serving request handler/) >= 3, 'a replacement worker')
  t.equal((await get({ port: s.port })).status, 200)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('an app that throws on import: exit 4 with the error', async (t) => {
  const s = await start(t, [], { version: 'broken' })
  t.equal(await s.child.exited, 4)
  t.match(s.child.output(), /this version of the app is broken/)
  t.match(s.child.output(), /failed to load the app/)
  t.equal(s.count(/\] worker \d+ \(pid \d+(, generation \d+)?\) exited/), 2, 'not a respawn loop: each worker once')
})

t.test('a worker that cannot boot: exit 3', async (t) => {
  const s = await start(t, [], { version: 'exit' })
  t.equal(await s.child.exited, 3)
  t.match(s.child.output(), /worker failed to boot: worker \d \(pid \d+\) exited with code 7 before it listened/)
})

t.test('TTIN and TTOU change the worker count', async (t) => {
  const s = await start(t)
  await ready(s)
  s.child.kill('SIGTTIN')
  await waitForOutput(s.child, /worker 3 \(pid \d+, generation 1\) serving/)
  t.match(s.child.output(), /scaling to 3 workers/)
  // One at a time: two identical signals sent back to back may arrive as one.
  s.child.kill('SIGTTOU')
  await waitForOutput(s.child, /scaling to 2 workers/)
  s.child.kill('SIGTTOU')
  await waitForOutput(s.child, /scaling to 1 workers/)
  await waitFor(() => s.count(/worker [23] \(pid \d+\) exited with code 0/) === 2, 'workers 2 and 3 drained')
  s.child.kill('SIGTTOU')
  await waitForOutput(s.child, /already down to one worker/)
  const workers = new Set<number>()
  for (let i = 0; i < 20; i++) workers.add(parse((await get({ port: s.port })).body).worker)
  t.same([...workers], [1], 'one worker left')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('--max-requests recycles workers with zero failed requests', async (t) => {
  const s = await start(t, ['--max-requests', '25', '--max-requests-jitter', '5'])
  await ready(s)
  const first = new Set<number>()
  for (let i = 0; i < 10; i++) first.add(parse((await get({ port: s.port })).body).pid)
  // The load ends once two workers have been replaced and have drained (or after 1000 requests).
  let drained = false
  void waitFor(() => s.count(/\(pid \d+\) exited with code 0/) >= 2, 'recycled workers drained', 30000).then(
    () => (drained = true),
    () => (drained = true),
  )
  const result = await load({ port: s.port, concurrency: 4, maxRequests: 1000, until: () => drained })
  t.equal(result.failed, 0, `no failed requests: ${result.errors.slice(0, 3).join('; ')}`)
  t.match(s.child.output(), /served \d+ requests: recycling it/)
  await waitFor(() => s.count(/\(pid \d+\) exited with code 0/) >= 2, 'recycled workers drained')
  const later = new Set<number>()
  for (let i = 0; i < 20; i++) later.add(parse((await get({ port: s.port })).body).pid)
  t.ok([...later].some((pid) => !first.has(pid)), 'new workers serve')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('a worker that never finishes booting: killed after the boot timeout, exit 3', async (t) => {
  const s = await start(t, ['-t', '1'], { version: 'hang' })
  t.equal(await s.child.exited, 3)
  t.match(s.child.output(), /did not boot within 10000 ms/, 'at least 10 s, even with --timeout 1')
})

t.test('a worker that keeps crashing is replaced with backoff', async (t) => {
  const s = await start(t, ['-w', '1'], { version: 'flaky' })
  await ready(s, 1)
  await waitForOutput(s.child, /worker 1 keeps crashing: replacing it in 100 ms/)
  await waitForOutput(s.child, /worker 1 keeps crashing: replacing it in 200 ms/)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0, 'a stop during the backoff is clean')
})

t.test('--max-requests whose replacement cannot boot: the old worker keeps serving', async (t) => {
  const s = await start(t, ['-w', '1', '--max-requests', '5'])
  await ready(s, 1)
  s.setVersion('broken')
  for (let i = 0; i < 5; i++) t.equal((await get({ port: s.port })).status, 200)
  await waitForOutput(s.child, /worker 1: replacement failed \(.*\); the old worker keeps serving/)
  t.match((await get({ port: s.port })).body, /^v1 /)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('--max-worker-memory under wrk: the leaking worker is replaced and wrk sees no error', needs(['wrk']), async (t) => {
  const s = await start(t, ['-w', '1', '--max-worker-memory', '300M'])
  await ready(s, 1)
  const before = parse((await get({ port: s.port })).body).pid
  // A bounded load (6 s, 4 connections) with the leak in the middle of it. Filling 400 MB blocks the
  // fixture's one worker for about 2 s, wrk's default timeout: a request waits that long, and is answered.
  const wrk = promisify(execFile)('wrk', ['-t1', '-c4', '-d6s', '--timeout', '20s', `http://127.0.0.1:${s.port}/`], { timeout: 30000 })
  await sleep(1000)
  t.equal((await get({ port: s.port, path: '/grow?mb=400' })).status, 200)
  await waitForOutput(s.child, new RegExp(`worker 1 \\(pid ${before}\\) exited with code 0`), 20000)
  const { stdout } = await wrk
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0)
  t.ok(requests > 0, `wrk made requests: ${requests}`)
  t.notMatch(stdout, /Socket errors|Non-2xx/, `wrk saw no error:\n${stdout}`)
  t.match(s.child.output(), new RegExp(`worker 1 \\(pid ${before}\\) uses \\d+ MiB, over --max-worker-memory 300 MiB: recycling it`))
  t.not(parse((await get({ port: s.port })).body).pid, before, 'a new worker serves')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})
