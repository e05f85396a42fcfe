import t from 'tap'
import { chmodSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { listen } from '../lib/listen.js'
import { listenReusePort } from '../lib/native.js'
import { fixture, freePort, get, root, shortTmp, socketActivate, spawnTracked, waitForOutput } from './helpers/proc.js'
import { needs } from './helpers/needs.js'

function server(t: { teardown(fn: () => void): void }): Server {
  const s = createServer((c) => {
    c.on('error', () => undefined)
    c.end('hi')
  })
  t.teardown(() => {
    s.close()
  })
  return s
}

t.test('socket-activated: the socket named by name, or the first', needs(['systemd-socket-activate']), async (t) => {
  const port = await freePort()
  const path = join(shortTmp(t), 'admin.sock')
  const sa = await socketActivate(t, [`127.0.0.1:${port}`, path], ['web', 'admin'], [
    process.execPath,
    fixture('listen-app.js'),
    JSON.stringify({ name: 'admin' }),
  ])
  const r = await get({ socketPath: path })
  t.match(r.body, /^pid \d+$/)
  const m = await waitForOutput(sa, /LISTEN (.*)\n/)
  t.same(JSON.parse(m[1] as string), { source: 'systemd', name: 'admin', fd: 4, address: `unix:${path}` })
})

t.test('socket-activated: an unknown name is an error listing the names', needs(['systemd-socket-activate']), async (t) => {
  const port = await freePort()
  const sa = await socketActivate(t, [`127.0.0.1:${port}`], ['web'], [
    process.execPath,
    fixture('listen-app.js'),
    JSON.stringify({ name: 'nope' }),
  ])
  await get({ port }).catch(() => undefined) // triggers the exec; the app then exits
  const m = await waitForOutput(sa, /ERROR (.*)\n/)
  t.match(JSON.parse(m[1] as string), {
    code: 'SDSERVE_ERR_CONFIG',
    message: 'name must be one of the inherited socket names (web), got "nope"',
  })
})

t.test('the example app under systemd-socket-activate', needs(['systemd-socket-activate']), async (t) => {
  const path = join(shortTmp(t), 'hello.sock')
  const sa = await socketActivate(t, [path], ['web'], [process.execPath, join(root, 'examples/single-process/server.mjs')])
  t.equal((await get({ socketPath: path })).body, 'hello from a single process\n')
  await waitForOutput(sa, /listening on unix:.*hello\.sock \(socket from systemd\)/)
  sa.kill('SIGTERM')
  t.equal(await sa.exited, 0, 'SIGTERM: graceful exit')
})

t.test('fallback binds', async (t) => {
  const v4 = await listen(server(t), { fallback: '127.0.0.1:0' })
  t.equal(v4.source, 'fallback')
  t.match(v4.address, /^127\.0\.0\.1:\d+$/)
  const v6 = await listen(server(t), { fallback: '[::1]:0' })
  t.match(v6.address, /^\[::1\]:\d+$/)

  const port = Number(v4.address.split(':')[1])
  await t.rejects(listen(server(t), { fallback: `127.0.0.1:${port}` }), { code: 'EADDRINUSE' })

  const fd = listenReusePort({ host: '127.0.0.1', port: 0 })
  const viaFd = await listen(server(t), { fallback: `fd://${fd}` })
  t.match(viaFd, { source: 'fallback', fd, address: /^127\.0\.0\.1:\d+$/ })

  await t.rejects(listen(server(t), { fallback: 'systemd:web' }), {
    code: 'SDSERVE_ERR_CONFIG',
    message: /fallback must be a bind that does not need systemd/,
  })
  await t.rejects(listen(server(t), { fallback: 'nonsense' }), { code: 'SDSERVE_ERR_CONFIG', message: /^fallback must be/ })
  await t.rejects(listen({} as Server), { code: 'SDSERVE_ERR_INVALID_ARG', message: /^server must be a net.Server/ })
})

t.test('fallback UNIX socket: stale file removed, live one refused, other files kept', async (t) => {
  const dir = shortTmp(t)
  const path = join(dir, 'app.sock')
  // A stale socket: its owner was killed, the file stays.
  const owner = spawnTracked(t, process.execPath, [fixture('listen-app.js'), JSON.stringify({ fallback: `unix:${path}` })])
  await waitForOutput(owner, /LISTEN/)
  owner.kill('SIGKILL')
  await owner.exited
  t.ok(existsSync(path), 'stale socket file left behind')

  const live = server(t)
  const r = await listen(live, { fallback: `unix:${path}`, unixMode: 0o660 })
  t.same(r, { source: 'fallback', address: `unix:${path}` })
  t.equal(statSync(path).mode & 0o777, 0o660)
  const hello = await new Promise<string>((resolve, reject) => {
    const c = connect(path)
    let data = ''
    c.on('data', (d: Buffer) => (data += d.toString()))
    c.on('end', () => resolve(data))
    c.on('error', reject)
  })
  t.equal(hello, 'hi', 'the new server answers on the path')

  await t.rejects(listen(server(t), { fallback: `unix:${path}` }), { code: 'EADDRINUSE' }, 'a live socket is not removed')

  const file = join(dir, 'data')
  writeFileSync(file, 'keep me')
  chmodSync(file, 0o600)
  await t.rejects(listen(server(t), { fallback: `unix:${file}` }), {
    code: 'SDSERVE_ERR_CONFIG',
    message: /holds a stale socket \(it is another kind of file\)/,
  })
  t.ok(existsSync(file), 'a regular file is never removed')
})

t.test('socket-activated with no name: the first socket', needs(['systemd-socket-activate']), async (t) => {
  const port = await freePort()
  const sa = await socketActivate(t, [`127.0.0.1:${port}`], ['web'], [process.execPath, fixture('listen-app.js'), '{}'])
  t.match((await get({ port })).body, /^pid \d+$/)
  const m = await waitForOutput(sa, /LISTEN (.*)\n/)
  t.match(JSON.parse(m[1] as string), { source: 'systemd', name: 'web', fd: 3 })
})

t.test('the default fallback is 127.0.0.1:8000', async (t) => {
  const child = spawnTracked(t, process.execPath, [fixture('listen-app.js'), '{}'])
  const m = await waitForOutput(child, /(LISTEN|ERROR) (.*)\n/)
  // Either it bound the default, or something else holds port 8000 on this machine: both name the default.
  if (m[1] === 'LISTEN') t.same(JSON.parse(m[2] as string), { source: 'fallback', address: '127.0.0.1:8000' })
  else t.match(m[2], /EADDRINUSE.*127\.0\.0\.1:8000/)
})
