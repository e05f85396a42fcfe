/**
 * systemd's fd store: the names sdserve gives its sockets, and the master
 * storing them (FDSTORE=1), taking them back from LISTEN_FDS and dropping the
 * ones no bind wants (FDSTOREREMOVE=1), against a real sd_notify receiver and
 * systemd-socket-activate standing in for the next start.
 */
import t from 'tap'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fdStoreMax, isStoredName, storedName, STORED_PREFIX } from '../lib/fd-store.js'
import { cli, freePort, get, root, shortTmp, socketActivate, spawnTracked, waitFor, waitForOutput } from './helpers/proc.js'
import { startReceiver } from './helpers/notify-receiver.js'
import { needs } from './helpers/needs.js'

const app = join(root, 'test/fixtures/master-app.mjs')

t.test('names: sdserve- and the bind, with % and : encoded', async (t) => {
  t.equal(storedName('127.0.0.1:8000'), 'sdserve-127.0.0.1%3A8000')
  t.equal(storedName('unix:/run/a%b.sock'), 'sdserve-unix%3A/run/a%25b.sock')
  t.equal(storedName('[::1]:80'), 'sdserve-[%3A%3A1]%3A80')
  t.equal(storedName(`unix:/${'x'.repeat(250)}`), undefined, 'longer than an FDNAME may be')
  t.equal(storedName('unix:/tmp/caf\u00e9'), undefined, 'not ASCII')
  t.ok(isStoredName(`${STORED_PREFIX}x`))
  t.notOk(isStoredName('app.socket'))
  t.equal(fdStoreMax({ FDSTORE: '4' }), 4)
  t.equal(fdStoreMax({}), 0)
  t.equal(fdStoreMax({ FDSTORE: 'lots' }), 0)
})

t.test('with $FDSTORE, the sockets sdserve binds go to the store; a stored UNIX path outlives the master', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const port = await freePort()
  const sock = join(shortTmp(t), 'app.sock')
  const s = spawnTracked(t, process.execPath, [cli, '-w', '1', '-b', `127.0.0.1:${port}`, '-b', `unix:${sock}`, app], {
    env: { ...process.env, NOTIFY_SOCKET: rx.address, FDSTORE: '4' },
  })
  await waitFor(() => rx.payloads().some((p) => p.startsWith('READY=1')), 'READY=1')
  const stores = rx.datagrams().filter((d) => d.data.startsWith('FDSTORE=1'))
  t.same(stores.map((d) => d.data), [`FDSTORE=1\nFDNAME=sdserve-127.0.0.1%3A${port}`, `FDSTORE=1\nFDNAME=sdserve-unix%3A${sock}`])
  t.ok(stores.every((d) => d.fds.length === 1 && d.fds[0]?.type === 'socket' && d.fds[0].listening === true), 'each with its listening socket')
  t.match(s.output(), /2 socket\(s\) kept in systemd's fd store across restarts/)
  s.kill('SIGTERM')
  t.equal(await s.exited, 0)
  t.ok(existsSync(sock), "a stored socket's path stays: the next start gets the socket back")
})

t.test('a socket whose name cannot be an FDNAME is served, not stored, with a warning', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const sock = join(shortTmp(t), 'caf\u00e9.sock')
  const s = spawnTracked(t, process.execPath, [cli, '-w', '1', '-b', `unix:${sock}`, app], {
    env: { ...process.env, NOTIFY_SOCKET: rx.address, FDSTORE: '4' },
  })
  await waitFor(() => rx.payloads().some((p) => p.startsWith('READY=1')), 'READY=1')
  t.notOk(rx.payloads().some((p) => p.startsWith('FDSTORE')))
  t.match(s.output(), /its name cannot be an FDNAME \(255 printable ASCII characters at most\); not kept in systemd's fd store/)
  t.match((await get({ socketPath: sock })).body, /^v1 /)
  // A binary upgrade hands it over under a name of its own.
  s.kill('SIGUSR2')
  t.equal(await s.exited, 0)
  const body = (await get({ socketPath: sock })).body
  const newMaster = Number(/^\d+ \(.*\) \S (\d+)/.exec(readFileSync(`/proc/${/pid=(\d+)/.exec(body)?.[1]}/stat`, 'utf8'))?.[1])
  t.not(newMaster, s.pid, 'a new master serves it')
  process.kill(newMaster, 'SIGTERM')
  await waitFor(() => !existsSync(`/proc/${newMaster}`), 'the new master to stop')
})

t.test('without $FDSTORE (no fd store, or systemd < 254) nothing is stored', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const port = await freePort()
  const s = spawnTracked(t, process.execPath, [cli, '-w', '1', '-b', `127.0.0.1:${port}`, app], { env: { ...process.env, NOTIFY_SOCKET: rx.address } })
  await waitFor(() => rx.payloads().some((p) => p.startsWith('READY=1')), 'READY=1')
  t.notOk(rx.payloads().some((p) => p.startsWith('FDSTORE')))
  s.kill('SIGTERM')
  t.equal(await s.exited, 0)
})

t.test('the next start: stored sockets come back by address; one no bind wants is removed from the store', needs(['python3', 'systemd-socket-activate']), async (t) => {
  const rx = await startReceiver(t)
  const [kept, stale] = [await freePort(), await freePort()]
  const versionFile = join(shortTmp(t), 'version')
  writeFileSync(versionFile, 'v1')
  const names = [`sdserve-127.0.0.1%3A${kept}`, `sdserve-127.0.0.1%3A${stale}`]
  const sa = await socketActivate(t, [`127.0.0.1:${kept}`, `127.0.0.1:${stale}`], names, [process.execPath, cli, '-w', '1', '-b', `127.0.0.1:${kept}`, app], {
    NOTIFY_SOCKET: rx.address,
    FDSTORE: '4',
    APP_VERSION_FILE: versionFile,
  })
  t.match((await get({ port: kept })).body, /^v1 /, 'the stored socket serves')
  await waitFor(() => rx.payloads().some((p) => p.startsWith('READY=1')), 'READY=1')
  t.ok(rx.payloads().includes(`FDSTOREREMOVE=1\nFDNAME=${names[1]}`), 'the stale one is removed from the store')
  t.notOk(rx.payloads().some((p) => p.startsWith('FDSTORE=1')), 'the one that came back is not stored twice')
  t.match(sa.output(), new RegExp(`stored socket 127\\.0\\.0\\.1:${stale} is not in --bind any more: closing it`))
  t.notMatch(sa.output(), /not in --bind: left open/, 'no warning about it')
  await t.rejects(get({ port: stale }), { code: 'ECONNREFUSED' }, 'and it is closed')
  sa.kill('SIGTERM')
  t.equal(await sa.exited, 0)
})

t.test("a socket unit's sockets are systemd's already: not stored again, even with a store", needs(['python3', 'systemd-socket-activate']), async (t) => {
  const rx = await startReceiver(t)
  const port = await freePort()
  const versionFile = join(shortTmp(t), 'version')
  writeFileSync(versionFile, 'v1')
  const sa = await socketActivate(t, [`127.0.0.1:${port}`], ['app.socket'], [process.execPath, cli, '-w', '1', app], {
    NOTIFY_SOCKET: rx.address,
    FDSTORE: '4',
    APP_VERSION_FILE: versionFile,
  })
  t.match((await get({ port })).body, /^v1 /)
  await waitFor(() => rx.payloads().some((p) => p.startsWith('READY=1')), 'READY=1')
  t.notOk(rx.payloads().some((p) => p.startsWith('FDSTORE')))
  sa.kill('SIGTERM')
  t.equal(await sa.exited, 0)
})

t.test("no --bind: a socket unit's sockets are served; a stored socket does not stand in for a bind", needs(['python3', 'systemd-socket-activate']), async (t) => {
  const rx = await startReceiver(t)
  const [unit, stale] = [await freePort(), await freePort()]
  const versionFile = join(shortTmp(t), 'version')
  writeFileSync(versionFile, 'v1')
  const name = `sdserve-127.0.0.1%3A${stale}`
  const sa = await socketActivate(t, [`127.0.0.1:${unit}`, `127.0.0.1:${stale}`], ['app.socket', name], [process.execPath, cli, '-w', '1', app], {
    NOTIFY_SOCKET: rx.address,
    FDSTORE: '4',
    APP_VERSION_FILE: versionFile,
  })
  t.match((await get({ port: unit })).body, /^v1 /)
  await waitFor(() => rx.payloads().includes(`FDSTOREREMOVE=1\nFDNAME=${name}`), 'the stored one removed from the store')
  await t.rejects(get({ port: stale }), { code: 'ECONNREFUSED' })
  sa.kill('SIGTERM')
  t.equal(await sa.exited, 0)
})

t.test('no --bind and only stored sockets: the default bind, as when they were stored', needs(['systemd-socket-activate']), async (t) => {
  const port = 8000 // DEFAULT_BIND
  const versionFile = join(shortTmp(t), 'version')
  writeFileSync(versionFile, 'v1')
  const sa = await socketActivate(t, [`127.0.0.1:${port}`], ['sdserve-127.0.0.1%3A8000'], [process.execPath, cli, '-w', '1', app], {
    APP_VERSION_FILE: versionFile,
  })
  t.match((await get({ port })).body, /^v1 /)
  await waitForOutput(sa, /listening on 127\.0\.0\.1:8000;/)
  sa.kill('SIGTERM')
  t.equal(await sa.exited, 0)
})
