/**
 * Binary upgrade (USR2), through the sdserve command: real masters, real
 * sockets, real signals, a real sd_notify receiver. Every loop is bounded.
 */
import t, { type Test } from 'tap'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { cli, combineLoads, isAlive, describeLoad, freePort, get, getWhenUp, root, shortTmp, socketActivate, spawnTracked, sleep, startMixedLoad, waitFor, waitForOutput, type Tracked } from './helpers/proc.js'
import { startReceiver } from './helpers/notify-receiver.js'
import { needs } from './helpers/needs.js'
import { awaitSuccessor, promote, upgradeOrigin, UPGRADE_ENV } from '../lib/upgrade.js'

const app = join(root, 'test/fixtures/master-app.mjs')

interface Running {
  child: Tracked
  port: number
  sock: string
  pidFile: string
  setVersion(v: string): void
}


/** sdserve on a TCP port and a UNIX socket, with a pid file; the teardown also stops whichever master holds the pid file then. */
async function start(t: Test, args: string[] = [], env: Record<string, string> = {}): Promise<Running> {
  const port = await freePort()
  const dir = shortTmp(t)
  const sock = join(dir, 'app.sock')
  const pidFile = join(dir, 'sdserve.pid')
  const versionFile = join(dir, 'version')
  writeFileSync(versionFile, 'v1')
  const child = spawnTracked(t, process.execPath, [cli, '-w', '2', '-b', `127.0.0.1:${port}`, '-b', `unix:${sock}`, '--pid', pidFile, '--graceful-timeout', '10', ...args, app], {
    env: { ...process.env, APP_VERSION_FILE: versionFile, ...env },
  })
  t.teardown(async () => {
    // A new master is nobody's tracked child: stop it by its pid file.
    const pid = Number(existsSync(pidFile) ? readFileSync(pidFile, 'utf8') : 0)
    if (pid > 0 && pid !== child.pid && isAlive(pid)) {
      process.kill(pid, 'SIGTERM')
      for (let i = 0; i < 200 && isAlive(pid); i++) await sleep(25)
      if (isAlive(pid)) process.kill(pid, 'SIGKILL')
    }
  })
  await waitForOutput(child, /generation 1\) serving[\s\S]*generation 1\) serving/)
  return { child, port, sock, pidFile, setVersion: (v) => writeFileSync(versionFile, v) }
}

const pidOf = (body: string): number => Number(/pid=(\d+)/.exec(body)?.[1])
const ppidOf = (pid: number): number => Number(/^\d+ \(.*\) \S (\d+)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1])

for (const balance of ['shared', 'reuse-port'] as const) {
  t.test(`USR2 under load (${balance}): a new master takes over, no request fails`, async (t) => {
    const s = await start(t, ['--balance', balance])
    const oldPid = s.child.pid!
    t.equal(readFileSync(s.pidFile, 'utf8'), `${oldPid}\n`)
    const viaTcp = startMixedLoad({ port: s.port }, { close: 4, keepAlive: 4 }, 20_000)
    const viaUnix = startMixedLoad({ socketPath: s.sock }, { close: 2, keepAlive: 0 }, 20_000)
    await sleep(300)
    s.setVersion('v2')
    s.child.kill('SIGUSR2')
    t.equal(await s.child.exited, 0, 'the old master exits 0 after the hand-over')
    const newPid = Number(readFileSync(s.pidFile, 'utf8'))
    t.not(newPid, oldPid, 'the pid file holds the new master')
    t.notOk(existsSync(`${s.pidFile}.oldbin`), 'the .oldbin pid file is gone with the old master')
    await sleep(300)
    const result = combineLoads(await Promise.all([viaTcp.stop(), viaUnix.stop()]))
    t.equal(result.failed, 0, `no request failed across the upgrade (${describeLoad(result)})`)
    const answer = await get({ port: s.port })
    t.match(answer.body, /^v2 /, 'the new code serves')
    t.equal(ppidOf(pidOf(answer.body)), newPid, "answered by the new master's worker")
    t.match((await get({ socketPath: s.sock })).body, /^v2 /, 'on the UNIX socket too')
    t.match(s.child.output(), /binary upgrade: new master \d+ serves; handing over and stopping/)

    process.kill(newPid, 'SIGTERM')
    await waitFor(() => !isAlive(newPid), 'the new master to stop')
    t.notOk(existsSync(s.sock), 'the new master owned the UNIX socket it inherited and removed it at exit')
    t.notOk(existsSync(s.pidFile))
  })
}

t.test('USR2 with a new master that cannot start: rollback, the old master keeps serving', async (t) => {
  const s = await start(t)
  const oldPid = s.child.pid!
  s.setVersion('broken')
  s.child.kill('SIGUSR2')
  await waitForOutput(s.child, /binary upgrade failed, this master \(pid \d+\) keeps serving: the new master exited with code 4 before it served/)
  t.equal(readFileSync(s.pidFile, 'utf8'), `${oldPid}\n`, 'the pid file is the old master again')
  t.notOk(existsSync(`${s.pidFile}.oldbin`))
  t.ok(existsSync(s.sock), "the failed master left the old master's socket file alone")
  const r = await get({ socketPath: s.sock })
  t.match(r.body, /^v1 /, 'the old code still serves on the UNIX socket')
  t.equal(ppidOf(pidOf((await get({ port: s.port })).body)), oldPid, 'and on TCP, by the old workers')

  // A later upgrade that works.
  s.setVersion('v3')
  s.child.kill('SIGUSR2')
  t.equal(await s.child.exited, 0)
  t.match((await getWhenUp({ port: s.port })).body, /^v3 /)
})

t.test('under systemd: MAINPID= names the new master before the old one exits; the new one then reports READY=1', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const s = await start(t, [], { NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: '2000000' })
  await waitFor(() => rx.payloads().some((p) => p.startsWith('READY=1')), 'READY=1')
  const before = rx.payloads().length
  s.child.kill('SIGUSR2')
  t.equal(await s.child.exited, 0)
  const newPid = Number(readFileSync(s.pidFile, 'utf8'))
  await waitFor(() => rx.payloads().slice(before).some((p) => p.startsWith('READY=1')), 'READY=1 from the new master')
  const after = rx.payloads().slice(before)
  const mainPid = after.findIndex((p) => p.startsWith('MAINPID='))
  t.equal(after[mainPid], `MAINPID=${newPid}\nSTATUS=handed over to the new master ${newPid}`)
  t.ok(mainPid < after.findIndex((p) => p.startsWith('READY=1')), 'MAINPID= before the new READY=1')
  t.notOk(after.some((p) => p.startsWith('STOPPING=1')), 'the old master, no longer the main process, does not say STOPPING=1')
  t.match(after.find((p) => p.startsWith('READY=1')), /^READY=1\nSTATUS=2 of 2 workers serving \(generation 1\)/)
  // The watchdog passes to the new master (WATCHDOG_PID is its own pid).
  const pings = after.filter((p) => p === 'WATCHDOG=1').length
  await waitFor(() => rx.payloads().slice(before).filter((p) => p === 'WATCHDOG=1').length > pings, 'a watchdog ping from the new master')
  t.ok(true, 'the new master pings the watchdog')
})

t.test('signals during an upgrade: a second USR2 and a HUP are refused; a stop abandons it', async (t) => {
  const s = await start(t)
  s.child.kill('SIGUSR2')
  await waitForOutput(s.child, /binary upgrade: starting a new master/)
  s.child.kill('SIGUSR2')
  await waitForOutput(s.child, /binary upgrade refused: an upgrade is running/)
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reload refused: a binary upgrade is running/)
  s.child.kill('SIGTERM')
  await waitForOutput(s.child, /binary upgrade abandoned: stopping/)
  t.equal(await s.child.exited, 0)
  t.notOk(existsSync(s.pidFile), 'no pid file is left behind')
})

t.test('a stop while the new master boots stops it too: no master is left', async (t) => {
  const s = await start(t)
  s.setVersion('hang') // the new master's workers never finish booting
  s.child.kill('SIGUSR2')
  const [, newPid] = (await waitForOutput(s.child, new RegExp(`\\[(?!${s.child.pid}\\])(\\d+)\\] \\[INFO\\] sdserve \\S+ master`))).map(String)
  s.child.kill('SIGTERM')
  await waitForOutput(s.child, /binary upgrade given up, stopping: the new master exited/)
  t.equal(await s.child.exited, 0)
  t.notOk(isAlive(Number(newPid)), 'the new master is gone')
  t.notOk(existsSync(s.pidFile), 'no pid file is left behind')
  t.notOk(existsSync(`${s.pidFile}.oldbin`))
})

t.test("USR2 on systemd's sockets: the new master serves them by name and never removes them", needs(['systemd-socket-activate']), async (t) => {
  const port = await freePort()
  const dir = shortTmp(t)
  const sock = join(dir, 'app.sock')
  const versionFile = join(dir, 'version')
  writeFileSync(versionFile, 'v1')
  // No pid file: the new master is found as its worker's parent.
  const sa = await socketActivate(t, [`127.0.0.1:${port}`, sock], ['web', 'admin'], [process.execPath, cli, '-w', '1', '-b', 'systemd:web', '-b', 'systemd:admin', app], {
    APP_VERSION_FILE: versionFile,
  })
  t.match((await get({ port })).body, /^v1 /)
  writeFileSync(versionFile, 'v2')
  sa.kill('SIGUSR2')
  t.equal(await sa.exited, 0)
  const newPid = ppidOf(pidOf((await get({ port })).body))
  t.teardown(() => { if (isAlive(newPid)) process.kill(newPid, 'SIGKILL') })
  t.match((await get({ port })).body, /^v2 /, 'systemd:web serves in the new master')
  t.match((await get({ socketPath: sock })).body, /^v2 /, 'systemd:admin too')
  process.kill(newPid, 'SIGTERM')
  await waitFor(() => !isAlive(newPid), 'the new master to stop')
  t.ok(existsSync(sock), "a socket systemd gave the first master is never unlinked, by either")
})

t.test('USR2 after the config file changed --balance: the old slot sockets are closed, the new master serves', async (t) => {
  const dir = shortTmp(t)
  const config = join(dir, 'sdserve.config.json')
  writeFileSync(config, JSON.stringify({ balance: 'reuse-port', workers: 2 }))
  const s = await start(t, ['-c', config])
  writeFileSync(config, JSON.stringify({ balance: 'shared', workers: 2 }))
  s.child.kill('SIGUSR2')
  t.equal(await s.child.exited, 0)
  t.match(s.child.output(), /the old master's reuse-port socket 127\.0\.0\.1:\d+ \(slot 2\) has no listener here: closing it/)
  t.match((await get({ port: s.port })).body, /^v1 /)
})

t.test('USR2 refused while a reload runs and while stopping', async (t) => {
  // The reload's workers fail at the boot timeout; it leaves the first
  // generation 10 s to boot, on a loaded machine too.
  const s = await start(t, ['--boot-timeout', '10'])
  s.setVersion('hang') // the reload's workers never finish booting
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /\] reloading\n/)
  s.child.kill('SIGUSR2')
  await waitForOutput(s.child, /binary upgrade refused: a reload is running/)
  await waitForOutput(s.child, /reload failed/, 60_000)
  s.setVersion('v1')
  const slow = get({ port: s.port, path: '/slow?ms=3000', timeoutMs: 30_000 })
  await waitForOutput(s.child, /slow request started/)
  s.child.kill('SIGTERM')
  await waitForOutput(s.child, /graceful stop/)
  s.child.kill('SIGUSR2')
  await waitForOutput(s.child, /binary upgrade refused: stopping/)
  t.equal((await slow).status, 200)
  t.equal(await s.child.exited, 0)
})

t.test('upgradeOrigin reads and unsets SDSERVE_UPGRADE; awaitSuccessor and promote', async (t) => {
  const env: NodeJS.ProcessEnv = { [UPGRADE_ENV]: '123;3,5' }
  // Without an IPC channel to an old master there is no upgrade.
  t.same(upgradeOrigin(env), process.send === undefined ? undefined : { from: 123, owned: new Set([3, 5]) })
  t.notOk(UPGRADE_ENV in env, 'the variable is consumed')
  t.equal(upgradeOrigin({ [UPGRADE_ENV]: 'garbage' }), undefined)
  if (process.send !== undefined) t.same(upgradeOrigin({ [UPGRADE_ENV]: '77;' }), { from: 77, owned: new Set() }, 'nothing owned: every socket came from systemd')

  const silent = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10000)'], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] })
  t.teardown(() => silent.kill('SIGKILL'))
  await t.rejects(awaitSuccessor(silent, 200), /the new master did not serve within 200 ms/)
  const ready = spawn(process.execPath, ['-e', "process.send({ cmd: 'SDSERVE', act: 'upgrade-ready', pid: process.pid }); process.on('message', (m) => { if (m.act === 'upgrade-promote') process.exit(0) })"], {
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  })
  t.equal(await awaitSuccessor(ready, 10_000), ready.pid)
  const exited = new Promise((resolve) => ready.once('exit', resolve))
  promote(ready)
  t.equal(await exited, 0, 'the promoted child got the message')
  promote(ready) // a second promote of a disconnected child is harmless
})
