/**
 * The apps sdserve serves, end to end: Express, Koa, Fastify and http.Server
 * apps, apps that cannot be served, and serve() called from code as the master.
 */
import t from 'tap'
import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cli, freePort, get, getWhenUp, root, shortTmp, spawnTracked, waitFor, waitForOutput } from '../helpers/proc.js'
import { app, parse } from '../helpers/master-process.js'

t.test('a malformed APP is a config error: exit 2, nothing started', async (t) => {
  const child = spawnTracked(t, process.execPath, [cli, '-b', '127.0.0.1:0', `${app}:1x`])
  t.equal(await child.exited, 2)
  t.match(child.output(), /^sdserve: APP/m)
  t.notMatch(child.output(), /listening on/)
})

t.test('Express, Koa and Fastify apps served by sdserve workers', async (t) => {
  for (const name of ['express', 'koa', 'fastify', 'hello']) {
    const port = await freePort()
    const child = spawnTracked(t, process.execPath, [cli, '-w', '2', '-b', `127.0.0.1:${port}`, join(root, `examples/frameworks/${name}.mjs`)])
    const r = await getWhenUp({ port })
    t.equal(r.status, 200, `${name}: 200`)
    t.ok(r.body.length > 0, `${name}: ${r.body.trim()}`)
    child.kill('SIGTERM')
    t.equal(await child.exited, 0, `${name}: clean stop`)
  }
})

t.test('serve() from code: the calling process is the master', async (t) => {
  const { serve, isWorker } = await import('../../lib/serve.js')
  t.equal(isWorker(), false)
  const dir = shortTmp(t)
  const versionFile = join(dir, 'version')
  writeFileSync(versionFile, 'v1')
  process.env.APP_VERSION_FILE = versionFile
  t.teardown(() => {
    delete process.env.APP_VERSION_FILE
  })
  const port = await freePort()
  const events: string[] = []
  const handle = await serve({ app: new URL('../../../test/fixtures/master-app.mjs', import.meta.url), workers: 2, bind: [`127.0.0.1:${port}`], signals: false, logLevel: 'error' })
  handle.master.on('reload', (e) => events.push(`reload ${e.ok} ${e.generation}`))
  t.equal(parse((await get({ port })).body).version, 'v1')
  writeFileSync(versionFile, 'v2')
  t.equal(await handle.reload(), true)
  t.equal(parse((await get({ port })).body).version, 'v2')
  writeFileSync(versionFile, 'broken')
  t.equal(await handle.reload(), false, 'a failed reload resolves false')
  t.equal(parse((await get({ port })).body).version, 'v2', 'and v2 keeps serving')
  writeFileSync(versionFile, 'v2')
  handle.scale(1)
  await waitFor(() => handle.master.stats().workers.filter((w) => w.state === 'ready').length === 3, 'three workers')
  t.equal(await handle.close(), 0)
  t.same(events, ['reload true 2', 'reload false 2'])
  await t.rejects(serve({ app: 'x.mjs', workers: 0 }), { code: 'SDSERVE_ERR_CONFIG', message: /^workers \(in serve\(\)\) must be/ })
})

t.test('an http.Server app on two binds; USR1; --chdir, --umask', async (t) => {
  const dir = shortTmp(t)
  const sock = join(dir, 'app.sock')
  const port = await freePort()
  const child = spawnTracked(t, process.execPath, [
    cli,
    '-w',
    '1',
    '-b',
    `127.0.0.1:${port}`,
    '-b',
    `unix:${sock}`,
    '--chdir',
    join(root, 'test/fixtures/apps'),
    '--umask',
    '077',
    'server.mjs',
  ])
  t.equal((await getWhenUp({ port })).body, 'http.Server\n', "the app's own server, on the first socket")
  t.equal((await get({ socketPath: sock })).body, 'http.Server\n', 'a forwarding server on the second')
  t.equal(statSync(sock).mode & 0o777, 0o700, 'the socket file was made under umask 077')
  child.kill('SIGUSR1')
  await waitForOutput(child, /reopening log files/)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

t.test('serve(): a second reload while one runs is queued; scaling waits for it', async (t) => {
  const { serve } = await import('../../lib/serve.js')
  const port = await freePort()
  const handle = await serve({ app, workers: 1, bind: [`127.0.0.1:${port}`] })
  const first = handle.reload()
  const second = handle.reload()
  handle.scale(1)
  t.equal(await first, true)
  t.equal(await second, true)
  await waitFor(() => handle.master.stats().generation === 3, 'the queued reload ran: generation 3')
  await waitFor(() => handle.master.stats().workers.filter((w) => w.state === 'ready').length === 2, 'scaled to 2 after the reload')
  t.equal(await handle.close(), 0)
})

t.test('serve() refuses to run in a worker', async (t) => {
  const { serve } = await import('../../lib/serve.js')
  process.env.SDSERVE_WORKER_ID = '1'
  t.teardown(() => {
    delete process.env.SDSERVE_WORKER_ID
  })
  await t.rejects(serve({ app }), { code: 'SDSERVE_ERR_CONFIG', message: /called in the master only/ })
})

t.test('an app module whose export cannot be served: exit 4 saying what it found', async (t) => {
  const child = spawnTracked(t, process.execPath, [cli, '-b', '127.0.0.1:0', join(root, 'test/fixtures/apps/number.mjs')])
  t.equal(await child.exited, 4)
  t.match(child.output(), /failed to load the app/)
  t.match(child.output(), /number/)
})

t.test('a Master made without a logger logs to stderr at info', async (t) => {
  const { Master } = await import('../../lib/master.js')
  const { Logger } = await import('../../lib/logger.js')
  const { DEFAULTS } = await import('../../lib/config.js')
  const m = new Master({ ...DEFAULTS, app })
  t.ok(m.log instanceof Logger)
  t.equal(m.log.level, 'info')
})
