// Socket activation under a real systemd: enable --now app.socket, the first
// connection starts app.service, a worker answers; STATUS= and MainPID.
import t from 'tap'
import { container, getApp, inNetns, installApp, must, parentPid, prop, untilState, workerPid } from './helpers/container.js'

const c = container()
await installApp(c)

t.test('systemctl enable --now app.socket listens; app.service waits for a connection', async (t) => {
  await must(c, ['systemctl', 'enable', '--now', 'app.socket'])
  t.equal(await prop(c, 'app.socket', 'ActiveState'), 'active')
  t.equal((await must(c, ['systemctl', 'is-enabled', 'app.socket'])).trim(), 'enabled')
  t.equal(await prop(c, 'app.service', 'ActiveState'), 'inactive', 'nothing runs before the first connection')
  const listen = await prop(c, 'app.socket', 'Listen')
  t.match(listen, /\/run\/app\.sock \(Stream\)/)
  t.match(listen, /127\.0\.0\.1:8000 \(Stream\)/)
})

t.test('curl --unix-socket /run/app.sock starts the service and a worker answers', async (t) => {
  const curl = await must(c, ['curl', '-sS', '--max-time', '30', '--unix-socket', '/run/app.sock', 'http://localhost/'])
  t.match(curl, /^hello from worker \d+: client unix over http\n$/, 'a worker of the example app answered')
  await untilState(c, 'app.service', 'active')
  const mainPid = Number(await prop(c, 'app.service', 'MainPID'))
  t.equal(await parentPid(c, workerPid(curl)), mainPid, "the worker is a child of the unit's MainPID, the master")
  const cmdline = await must(c, ['cat', `/proc/${mainPid}/cmdline`])
  t.match(cmdline.split('\0').join(' '), /\/srv\/app\/node_modules\/\.bin\/sdserve --workers 2/, 'MainPID is the sdserve master')
  const type = await prop(c, 'app.service', 'Type')
  t.equal(type, c.systemdVersion >= 253 ? 'notify-reload' : 'notify')
})

t.test('STATUS= reaches systemctl status and StatusText', async (t) => {
  const status = await prop(c, 'app.service', 'StatusText')
  t.match(status, /^2 of 2 workers serving \(generation 1\), \d+ requests served$/)
  const shown = await must(c, ['systemctl', 'status', '--no-pager', '--lines=0', 'app.service'])
  t.match(shown, /Status: "2 of 2 workers serving \(generation 1\)/)
  t.match(shown, /Active: active \(running\)/)
})

t.test('the TCP socket of the same unit is served too', async (t) => {
  const curl = await inNetns(c, ['curl', '-sS', '--max-time', '10', 'http://127.0.0.1:8000/'])
  t.equal(curl.code, 0, curl.stderr)
  t.match(curl.stdout, /^hello from worker \d+: client 127\.0\.0\.1 over http\n$/)
})

t.test('requests from the host over the socket file are served by both workers', async (t) => {
  const pids = new Set<number>()
  for (let i = 0; i < 200 && pids.size < 2; i++) pids.add(workerPid((await getApp(c)).body))
  t.equal(pids.size, 2, 'two workers answered')
  const served = Number(/(\d+) requests served/.exec(await prop(c, 'app.service', 'StatusText'))?.[1])
  t.ok(served >= 0, 'StatusText counts requests')
})
