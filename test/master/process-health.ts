/**
 * --health-path and --lame-duck with the real sdserve command: checks are
 * answered by the workers, never the app, and left out of the access log;
 * a lame duck answers 503 while the app is still served; a host with too few
 * beating workers is unhealthy; a draining worker says so.
 */
import t from 'tap'
import { Agent } from 'node:http'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { get, waitFor, waitForOutput } from '../helpers/proc.js'
import { parse, ready, start } from '../helpers/master-process.js'

t.test('200 from the workers once ready, with or without a query; not in the access log unless asked', async (t) => {
  const s = await start(t, ['--health-path', '/healthz', '--access-logfile', '-'])
  await ready(s)
  await waitForOutput(s.child, /health: ok/)
  const h = await get({ port: s.port, path: '/healthz' })
  t.same([h.status, h.body, h.headers['cache-control']], [200, 'ok\n', 'no-store'])
  t.equal((await get({ port: s.port, path: '/healthz?from=haproxy' })).status, 200)
  t.equal(parse((await get({ port: s.port, path: '/healthz/deeper' })).body).version, 'v1', 'another path is the app’s')
  await get({ port: s.port, path: '/logged' })
  await waitForOutput(s.child, /"GET \/logged HTTP\/1\.1" 200/)
  t.notMatch(s.child.output(), /GET \/healthz[ ?]/, 'health checks are not logged')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)

  const dir = t.testdir()
  const logged = await start(t, ['--health-path', '/healthz', '--access-logfile', join(dir, 'access.log'), '--log-health-checks'])
  await ready(logged)
  await waitForOutput(logged.child, /health: ok/)
  await get({ port: logged.port, path: '/healthz' })
  logged.child.kill('SIGTERM')
  t.equal(await logged.child.exited, 0)
  t.match(readFileSync(join(dir, 'access.log'), 'utf8'), /"GET \/healthz HTTP\/1\.1" 200/)
})

t.test('TERM with --lame-duck: 503 lame-duck while the app is still served, then a graceful stop', async (t) => {
  const s = await start(t, ['--health-path', '/healthz', '--lame-duck', '2'])
  await ready(s)
  await waitForOutput(s.child, /health: ok/)
  s.child.kill('SIGTERM')
  await waitForOutput(s.child, /health: lame-duck/)
  const h = await get({ port: s.port, path: '/healthz' })
  t.same([h.status, h.body], [503, 'lame-duck\n'])
  t.equal((await get({ port: s.port })).status, 200, 'the app is still served')
  t.equal(await s.child.exited, 0)
  const out = s.child.output()
  t.ok(out.indexOf('health: lame-duck') < out.indexOf('graceful stop: 2 workers'), 'the drain comes after the lame duck')
})

t.test('fewer than half the workers beating: unhealthy, until replacements serve', async (t) => {
  const s = await start(t, ['-w', '3', '--timeout', '2', '--health-path', '/healthz'])
  await ready(s, 3)
  await waitForOutput(s.child, /health: ok/)
  const pids = [...s.child.output().matchAll(/worker \d \(pid (\d+), generation 1\) serving/g)].map((m) => Number(m[1]))
  for (const pid of pids.slice(0, 2)) process.kill(pid, 'SIGSTOP')
  await waitForOutput(s.child, /health: unhealthy/)
  let seen = ''
  // The one worker left answers; the stopped ones are killed and replaced after --timeout.
  await waitFor(async () => {
    const r = await get({ port: s.port, path: '/healthz', timeoutMs: 2000 }).catch(() => undefined)
    if (r !== undefined && r.status === 503) seen = r.body
    return seen !== ''
  }, 'a 503 from the beating worker', 20000)
  t.equal(seen, 'unhealthy\n')
  await waitFor(() => s.count(/health: ok/) >= 2, 'healthy again', 30000)
  t.match(s.child.output(), /health: unhealthy[\s\S]*health: ok/, 'healthy again once the replacements serve')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('a draining worker answers 503 draining on a connection it still holds', async (t) => {
  const s = await start(t, ['-w', '1', '--health-path', '/healthz'])
  await ready(s, 1)
  await waitForOutput(s.child, /health: ok/)
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  t.equal((await get({ port: s.port, path: '/healthz', agent })).status, 200)
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reloaded: generation 2 serving/)
  const h = await get({ port: s.port, path: '/healthz', agent })
  t.same([h.status, h.body, h.headers.connection], [503, 'draining\n', 'close'])
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})
