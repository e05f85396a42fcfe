// `systemctl stop` and `systemctl restart` while the service is still starting
// (activating: the workers are loading the app) are clean: the main process
// exits 0 and the unit's result is success, not a failed start.
import t from 'tap'
import { container, installApp, journal, must, prop, until, untilState, writeInto } from './helpers/container.js'

const c = container()
// An app that takes three seconds to load: the stop comes while the workers boot, every time.
writeInto(c, '/srv/app/slow-boot.mjs', "await new Promise((r) => setTimeout(r, 3000))\nexport { default } from './app.mjs'\n")
await installApp(c, {
  dropIns: {
    'app.service.d/slow-boot.conf':
      '[Service]\nExecStart=\nExecStart=/srv/app/node_modules/.bin/sdserve --workers 2 --pid /run/app/sdserve.pid slow-boot.mjs\n',
  },
})
await must(c, ['systemctl', 'start', 'app.socket'])

/** Start the service without waiting, and wait until its master has opened the sockets (its workers then boot for 3 s). */
async function startingMaster(): Promise<string> {
  await must(c, ['systemctl', 'start', '--no-block', 'app.service'])
  return until('the master to open its sockets while the unit is activating', async () => {
    const main = await prop(c, 'app.service', 'MainPID')
    if (main === '0' || (await prop(c, 'app.service', 'ActiveState')) !== 'activating') return undefined
    const listening = (await journal(c, 'app.service')).some((e) => e._PID === main && / listening on /.test(e.MESSAGE))
    return listening ? main : undefined
  })
}

t.test('a stop while the workers boot: exit 0, result success, three times', async (t) => {
  for (let i = 1; i <= 3; i++) {
    const main = await startingMaster()
    await must(c, ['systemctl', 'stop', 'app.service'])
    t.equal(await prop(c, 'app.service', 'ActiveState'), 'inactive', `stop ${i}: inactive`)
    t.equal(await prop(c, 'app.service', 'Result'), 'success', `stop ${i}: the unit did not fail`)
    t.equal(await prop(c, 'app.service', 'ExecMainStatus'), '0', `stop ${i}: master ${main} exited 0`)
  }
})

t.test('a restart while the workers boot: the new instance serves', async (t) => {
  const main = await startingMaster()
  await must(c, ['systemctl', 'restart', 'app.service'], 120_000)
  await untilState(c, 'app.service', 'active')
  t.not(await prop(c, 'app.service', 'MainPID'), main, 'a new master')
  t.equal(await prop(c, 'app.service', 'Result'), 'success')
  const stopped = (await journal(c, 'app.service')).filter((e) => e._PID === main).at(-1)
  t.match(stopped?.MESSAGE, /\[INFO\] stopped$/, 'the first master logged "stopped" last')
})
