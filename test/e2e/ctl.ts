// sdserve ctl under a real systemd: the control socket in the unit's
// RuntimeDirectory, root only, every command against the running unit, and
// the accept queues of the socket unit's sockets.
import t from 'tap'
import { container, getApp, installApp, must, prop, run, untilState, until } from './helpers/container.js'

const c = container()
await installApp(c)
const ctl = (...args: string[]): string[] => ['/srv/app/node_modules/.bin/sdserve', 'ctl', '--socket', '/run/app/sdserve.ctl', ...args]

t.test('the control socket is in RuntimeDirectory, mode 0600, owned by the dynamic user', async (t) => {
  await must(c, ['systemctl', 'enable', '--now', 'app.socket'])
  await getApp(c)
  await untilState(c, 'app.service', 'active')
  const [mode, owner, type] = (await must(c, ['stat', '-c', '%a %U %F', '/run/app/sdserve.ctl'])).trim().split(' ')
  t.equal(mode, '600')
  t.equal(type, 'socket')
  t.not(owner, 'root', 'the dynamic user owns it')
})

t.test('status and workers as root, with the unit\'s MainPID and both sockets\' accept queues', async (t) => {
  const mainPid = await prop(c, 'app.service', 'MainPID')
  const status = await must(c, ctl('status'))
  t.match(status, new RegExp(`^sdserve \\S+, master ${mainPid}, up \\S+, serving\\n`))
  t.match(status, /generation 1: 2 of 2 workers ready/)
  t.match(status, /unix:\/run\/app\.sock queue 0 of 2048/, 'the UNIX socket\'s queue, through sock_diag')
  t.match(status, /127\.0\.0\.1:8000 queue 0 of 2048/)
  const workers = JSON.parse(await must(c, ctl('workers', '--json'))) as { workers: { pid: number; state: string }[] }
  t.equal(workers.workers.length, 2)
  t.ok(workers.workers.every((w) => w.state === 'ready'))
})

t.test('another user cannot use it', async (t) => {
  const r = await run(c, ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', ...ctl('status')])
  t.equal(r.code, 1)
  t.match(r.stderr, /sdserve ctl: cannot reach the master at \/run\/app\/sdserve\.ctl: .*EACCES/)
})

t.test('reload, scale and reopen-logs answer when done; the unit stays the same', async (t) => {
  const mainPid = await prop(c, 'app.service', 'MainPID')
  t.match(await must(c, ctl('reload')), /^reloaded: generation 2 serving\n$/)
  await until('StatusText shows generation 2', async () => ((await prop(c, 'app.service', 'StatusText')).includes('generation 2') ? true : undefined))
  t.match(await must(c, ctl('scale', '3')), /^scaled: 3 workers serving\n$/)
  const workers = JSON.parse(await must(c, ctl('workers', '--json'))) as { workers: { state: string }[] }
  t.equal(workers.workers.filter((w) => w.state === 'ready').length, 3)
  t.equal(await must(c, ctl('reopen-logs')), 'log files reopened\n')
  t.equal(await prop(c, 'app.service', 'MainPID'), mainPid)
  t.equal(await prop(c, 'app.service', 'NRestarts'), '0')
  t.equal(await prop(c, 'app.service', 'ActiveState'), 'active')
})

t.test('stop answers once the master has stopped; the unit ends cleanly', async (t) => {
  t.equal(await must(c, ctl('stop')), 'stopped\n')
  await untilState(c, 'app.service', 'inactive')
  t.equal(await prop(c, 'app.service', 'Result'), 'success')
  t.equal((await run(c, ['test', '-e', '/run/app/sdserve.ctl'])).code, 1, 'the socket file is gone')
})
