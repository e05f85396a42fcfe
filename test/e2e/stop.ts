// `systemctl stop app` with slow requests in flight: they complete, the socket
// unit keeps listening, and a connection made meanwhile starts the service again.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { needs } from '../helpers/needs.js'
import { container, getApp, installApp, must, prop, until, untilState, workerPid } from './helpers/container.js'

const run = promisify(execFile)
const c = container()
await installApp(c)
await must(c, ['systemctl', 'enable', '--now', 'app.socket'])

/**
 * Connections to /run/app.sock that a worker has accepted, which ss shows with
 * their owner. The kernel makes the accepting end of a UNIX connection in the
 * client's network namespace, so these are the host's sockets.
 */
async function accepted(): Promise<number> {
  const { stdout } = await run('ss', ['-xpH', 'state', 'connected', 'src', '/run/app.sock'])
  return stdout.split('\n').filter((line) => line.includes('users:')).length
}

t.test('slow requests in flight complete when the service stops', needs(['ss']), async (t) => {
  const first = await getApp(c)
  await untilState(c, 'app.service', 'active')
  const firstMain = await prop(c, 'app.service', 'MainPID')
  const slow = Array.from({ length: 6 }, () => getApp(c, '/slow?ms=3000', { timeoutMs: 60_000 }))
  await until('the slow requests to be accepted by workers', async () => ((await accepted()) >= 6 ? true : undefined))

  const stopping = must(c, ['systemctl', 'stop', 'app.service'])
  await until('the master to begin its graceful stop', async () => ((await prop(c, 'app.service', 'ActiveState')) === 'deactivating' ? true : undefined))
  // A client that connects during the stop waits in the socket's queue.
  const during = getApp(c, '/', { timeoutMs: 60_000 })
  await stopping

  const answers = await Promise.all(slow)
  t.same(answers.map((a) => a.status), [200, 200, 200, 200, 200, 200], 'every slow request was answered')
  t.ok(answers.every((a) => /^slept 3000 ms in worker \d+/.test(a.body)))
  t.equal(await prop(c, 'app.service', 'Result'), 'success', 'a graceful stop is a clean exit')
  t.equal(await prop(c, 'app.socket', 'ActiveState'), 'active', 'the socket unit still listens')

  const late = await during
  t.equal(late.status, 200, 'the connection made during the stop was answered')
  await untilState(c, 'app.service', 'active')
  t.not(await prop(c, 'app.service', 'MainPID'), firstMain, 'by a new instance, started by that connection')
  t.not(workerPid(late.body), workerPid(first.body))
})

t.test('after a stop, the next request activates the service again', async (t) => {
  await must(c, ['systemctl', 'stop', 'app.service'])
  t.equal(await prop(c, 'app.service', 'ActiveState'), 'inactive')
  const answer = await getApp(c)
  t.equal(answer.status, 200)
  t.match(answer.body, /^hello from worker \d+/)
  await untilState(c, 'app.service', 'active')
})
