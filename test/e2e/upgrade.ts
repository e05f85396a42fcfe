// Binary upgrade under a real systemd: `systemctl kill -s USR2 app` under a
// bounded client load. A new master takes over (MAINPID=), no request fails,
// the unit stays active, the watchdog and reloads follow the new master.
import t from 'tap'
import { describeLoad, startMixedLoad } from '../helpers/proc.js'
import { readFileSync } from 'node:fs'
import { appSocket, container, example, getApp, installApp, journal, must, parentPid, prop, until, untilState, workerPid } from './helpers/container.js'

const c = container()
await installApp(c, {
  dropIns: {
    'app.service.d/binary-upgrade.conf': readFileSync(example('systemd/binary-upgrade.conf'), 'utf8'),
    'app.service.d/watchdog.conf': '[Service]\nWatchdogSec=2\n',
  },
})
await must(c, ['systemctl', 'enable', '--now', 'app.socket'])
await getApp(c)
await untilState(c, 'app.service', 'active')

t.test('systemctl kill -s USR2 app under load: the new master is MainPID, no request fails', async (t) => {
  const oldMain = await prop(c, 'app.service', 'MainPID')
  const traffic = startMixedLoad({ socketPath: appSocket(c) }, { close: 4, keepAlive: 4 })
  await until('some traffic', async () => ((await getApp(c)).status === 200 ? true : undefined))
  // Every process of the unit gets USR2: workers ignore it, the master upgrades (after the
  // signal has reached them all, so that the new master does not get it too).
  await must(c, ['systemctl', 'kill', '-s', 'USR2', 'app.service'])
  const newMain = await until('a new MainPID', async () => {
    const pid = await prop(c, 'app.service', 'MainPID')
    return pid !== oldMain && pid !== '0' ? pid : undefined
  })
  await until('the old master to exit', async () => ((await must(c, ['ps', '-o', 'pid=', '-p', oldMain]).catch(() => '')).trim() === '' ? true : undefined))
  const result = await traffic.stop()
  t.equal(result.failed, 0, `no request failed across the upgrade (${describeLoad(result)})`)
  t.equal(await prop(c, 'app.service', 'ActiveState'), 'active', 'the unit stayed active')
  t.equal(await prop(c, 'app.service', 'NRestarts'), '0', 'systemd restarted nothing')
  t.match(await must(c, ['cat', `/proc/${newMain}/cmdline`]), /sdserve/, 'MainPID is the new sdserve master')
  t.equal(String(await parentPid(c, workerPid((await getApp(c)).body))), newMain, "a worker of the new master answers")
  t.equal((await must(c, ['cat', '/run/app/sdserve.pid'])).trim(), newMain, 'the pid file names it')
  t.match(await prop(c, 'app.service', 'StatusText'), /^2 of 2 workers serving \(generation 1\)/)
})

t.test('the new master feeds the watchdog, reloads and stops as the main process', async (t) => {
  const main = await prop(c, 'app.service', 'MainPID')
  // Three watchdog periods: a master that did not ping would be killed by now.
  await must(c, ['sleep', '6'])
  t.equal(await prop(c, 'app.service', 'MainPID'), main, 'not killed by the watchdog')
  t.equal(await prop(c, 'app.service', 'NRestarts'), '0')
  await must(c, ['systemctl', 'reload', 'app.service'])
  await until('generation 2', async () => (/generation 2\)/.test(await prop(c, 'app.service', 'StatusText')) ? true : undefined))
  t.equal(await prop(c, 'app.service', 'MainPID'), main, 'a reload keeps the master')
  await must(c, ['systemctl', 'stop', 'app.service'])
  t.equal(await prop(c, 'app.service', 'Result'), 'success', 'a clean stop')
  const lines = await journal(c, 'app.service')
  t.ok(lines.some((e) => e.MESSAGE.includes(`[${main}] [INFO] stopped`)), 'the new master stopped gracefully')
  t.notOk(lines.some((e) => /Killing process .* with signal SIGKILL/.test(e.MESSAGE)), 'nothing was SIGKILLed')
})
