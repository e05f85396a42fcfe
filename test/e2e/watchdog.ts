// The watchdog: a master whose event loop is wedged stops pinging, systemd
// kills it (Result=watchdog) and Restart=on-failure brings the service back.
import t from 'tap'
import { SDSERVE_IN_CONTAINER, container, getApp, installApp, journal, must, prop, until, untilState } from './helpers/container.js'

const c = container()
// The example unit, with a short watchdog and the test hook that wedges the master on SIGPWR.
await installApp(c, {
  dropIns: {
    'app.service.d/watchdog-test.conf': [
      '[Service]',
      'WatchdogSec=2',
      `Environment=NODE_OPTIONS=--import=${SDSERVE_IN_CONTAINER}/test/e2e/fixtures/wedge-master.mjs`,
      '',
    ].join('\n'),
  },
})
await must(c, ['systemctl', 'enable', '--now', 'app.socket'])
await getApp(c)
await untilState(c, 'app.service', 'active')

t.test('a healthy master keeps the watchdog fed', async (t) => {
  t.equal(await prop(c, 'app.service', 'WatchdogUSec'), '2s')
  // Three watchdog periods of ordinary work: no timeout, no restart.
  for (let i = 0; i < 30; i++) t.equal((await getApp(c)).status, 200)
  await must(c, ['sleep', '6'])
  t.equal(await prop(c, 'app.service', 'NRestarts'), '0')
  t.equal(await prop(c, 'app.service', 'ActiveState'), 'active')
})

t.test('a wedged master is killed by systemd with Result=watchdog, then restarted', async (t) => {
  const mainPid = await prop(c, 'app.service', 'MainPID')
  await must(c, ['kill', '-PWR', mainPid])
  const lines = await until('the watchdog to fire', async () => {
    const entries = await journal(c, 'app.service')
    return entries.some((e) => /Failed with result 'watchdog'/.test(e.MESSAGE)) ? entries : undefined
  })
  t.ok(lines.some((e) => /wedge-master: blocking the event loop/.test(e.MESSAGE)), 'the hook wedged the master')
  t.ok(lines.some((e) => /Watchdog timeout/.test(e.MESSAGE)), 'systemd saw the watchdog time out')
  await until('the restart', async () => ((await prop(c, 'app.service', 'NRestarts')) === '1' ? true : undefined))
  await untilState(c, 'app.service', 'active')
  t.not(await prop(c, 'app.service', 'MainPID'), mainPid, 'a new master')
  t.match((await getApp(c)).body, /^hello from worker \d+/, 'and it serves')
})
