/**
 * Reload and stop of the sdserve command, end to end with real processes and
 * signals: HUP under load (keep-alive too), a broken reload, the config file
 * re-read on HUP, TERM and INT with requests in flight, --graceful-timeout.
 */
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent } from 'node:http'
import { cli, freePort, get, getWhenUp, load, shortTmp, spawnTracked, waitFor, waitForOutput } from '../helpers/proc.js'
import { app, parse, ready, start } from '../helpers/master-process.js'

t.test('HUP under load: zero failed requests, then the new code serves', async (t) => {
  const s = await start(t)
  await ready(s)
  let stop = false
  const traffic = load({ port: s.port, concurrency: 8, maxRequests: 200_000, until: () => stop })
  // some requests before the reload
  await waitFor(() => s.count(/x/) >= 0 && !stop, 'traffic')
  await new Promise((r) => setTimeout(r, 200))
  s.setVersion('v2')
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reloaded: generation 2 serving/)
  await waitFor(() => s.count(/\(pid \d+\) exited with code 0/) >= 2, 'old generation drained')
  await new Promise((r) => setTimeout(r, 200))
  stop = true
  const result = await traffic
  t.equal(result.failed, 0, `no failed requests (${result.ok} ok): ${result.errors.slice(0, 3).join('; ')}`)
  t.ok(result.ok > 0, 'requests were made')
  t.ok(result.bodies.some((b) => b.startsWith('v1')), 'v1 served before the reload')
  t.ok(result.bodies.some((b) => b.startsWith('v2')), 'v2 served after the reload')
  for (let i = 0; i < 10; i++) t.equal(parse((await get({ port: s.port })).body).version, 'v2', 'only the new code now')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('HUP with a broken app: the old generation keeps serving and the log says why', async (t) => {
  const s = await start(t)
  await ready(s)
  s.setVersion('broken')
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reload failed, generation 1 keeps serving: .*this version of the app is broken/)
  for (let i = 0; i < 10; i++) t.equal(parse((await get({ port: s.port })).body).version, 'v1')
  // Fixed code: the next reload works.
  s.setVersion('v3')
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reloaded: generation 3 serving/)
  t.equal(parse((await get({ port: s.port })).body).version, 'v3')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('TERM with slow requests in flight: every one completes, then exit 0', async (t) => {
  const s = await start(t)
  await ready(s)
  const slow = Array.from({ length: 4 }, () => get({ port: s.port, path: '/slow?ms=1500' }))
  await waitFor(() => s.count(/slow request started/) >= 4, 'four slow requests in flight')
  s.child.kill('SIGTERM')
  const replies = await Promise.all(slow)
  t.same(
    replies.map((r) => r.status),
    [200, 200, 200, 200],
  )
  t.equal(await s.child.exited, 0)
  t.match(s.child.output(), /graceful stop: 2 workers/)
  // The socket is closed: nothing answers any more.
  await t.rejects(get({ port: s.port, timeoutMs: 2000 }))
})

t.test('INT stops fast, killing slow requests', async (t) => {
  const s = await start(t)
  await ready(s)
  const slow = get({ port: s.port, path: '/slow?ms=20000' }).then(
    () => 'completed',
    () => 'cut',
  )
  await waitFor(() => s.count(/slow request started/) >= 1, 'a slow request in flight')
  s.child.kill('SIGINT')
  t.equal(await slow, 'cut')
  t.equal(await s.child.exited, 0)
  t.match(s.child.output(), /fast stop/)
})

t.test('--graceful-timeout cuts requests that outlast it', async (t) => {
  const s = await start(t, ['-w', '1', '--graceful-timeout', '0.5'])
  await ready(s, 1)
  const slow = get({ port: s.port, path: '/slow?ms=20000' }).then(
    () => 'completed',
    () => 'cut',
  )
  await waitFor(() => s.count(/slow request started/) >= 1, 'a slow request in flight')
  s.child.kill('SIGTERM')
  t.equal(await slow, 'cut')
  t.equal(await s.child.exited, 0)
  t.match(s.child.output(), /worker 1 \(pid \d+\) exited with code 0/, 'the worker left by itself at its deadline')
})

t.test('HUP re-reads the config file: workers change, bind changes are refused until a restart', async (t) => {
  const port = await freePort()
  const dir = shortTmp(t)
  const configFile = join(dir, 'sdserve.config.json')
  writeFileSync(configFile, JSON.stringify({ workers: 1, bind: [`127.0.0.1:${port}`] }))
  const child = spawnTracked(t, process.execPath, [cli, '-c', configFile, app])
  t.match((await getWhenUp({ port })).body, /^v1 worker=1/)
  writeFileSync(configFile, JSON.stringify({ workers: 2, bind: ['127.0.0.1:1'] }))
  child.kill('SIGHUP')
  await waitForOutput(child, /changes to bind need a restart; they stay as they are/)
  await waitForOutput(child, /reloaded: generation 2 serving/)
  const workers = new Set<number>()
  for (let i = 0; i < 300 && workers.size < 2; i++) workers.add(parse((await get({ port })).body).worker)
  t.equal(workers.size, 2, 'two workers after the reload, on the old bind')
  writeFileSync(configFile, '{ "workers": "many" }')
  child.kill('SIGHUP')
  await waitForOutput(child, /reload failed, generation 2 keeps serving: workers \(in .*\) must be/)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

t.test('HUP under keep-alive load: no request on a reused connection is lost', async (t) => {
  const s = await start(t, ['--keep-alive', '5'])
  await ready(s)
  const agent = new Agent({ keepAlive: true, maxSockets: 8 })
  t.teardown(() => agent.destroy())
  let stop = false
  const traffic = load({ port: s.port, agent, concurrency: 8, maxRequests: 200_000, until: () => stop })
  await new Promise((r) => setTimeout(r, 300))
  for (let g = 2; g <= 4; g++) {
    s.setVersion(`v${g}`)
    s.child.kill('SIGHUP')
    await waitForOutput(s.child, new RegExp(`reloaded: generation ${g} serving`))
  }
  await new Promise((r) => setTimeout(r, 300))
  stop = true
  const result = await traffic
  t.equal(result.failed, 0, `no failed requests over 3 reloads (${result.ok} ok): ${result.errors.slice(0, 3).join('; ')}`)
  t.equal(parse((await get({ port: s.port, agent })).body).version, 'v4', 'the last generation serves, on a kept-alive connection too')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('old workers hand their keep-alive connections over in 300 ms (at most --graceful-timeout); a stop does not', async (t) => {
  const s = await start(t, [], { env: { LOG_STOP: '1' } })
  await ready(s)
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reloaded: generation 2 serving/)
  await waitFor(() => s.count(/stop message /) >= 2, 'the old workers told to stop')
  t.equal(s.count(/stop message \{[^}]*"graceful":true,"timeoutMs":10000,"handoverMs":300,"windowMs":5000,"reason":"reload"\}/), 2, 'a reload hands over')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
  t.equal(s.count(/stop message \{[^}]*"graceful":true,"timeoutMs":10000,"handoverMs":0,"windowMs":5000,"reason":"stop"\}/), 2, 'a stop hands nothing over')

  const short = await start(t, ['--graceful-timeout', '0.1'], { env: { LOG_STOP: '1' } })
  await ready(short)
  short.child.kill('SIGHUP')
  await waitFor(() => short.count(/stop message /) >= 2, 'the old workers told to stop')
  t.equal(short.count(/stop message \{[^}]*"timeoutMs":100,"handoverMs":100,"windowMs":50,"reason":"reload"\}/), 2, 'at most the graceful timeout')
  short.child.kill('SIGTERM')
  t.equal(await short.child.exited, 0)
})
