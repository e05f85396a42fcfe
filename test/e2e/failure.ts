// Crashes: a worker killed with SIGKILL is replaced by the master; the master
// killed makes systemd restart the unit (Restart=on-failure), and connections
// that queued on the socket meanwhile are answered by the new instance.
import t from 'tap'
import { connect } from 'node:net'
import { appSocket, container, getApp, installApp, journal, must, parentPid, prop, until, untilState, workerPid } from './helpers/container.js'

const c = container()
await installApp(c)
await must(c, ['systemctl', 'enable', '--now', 'app.socket'])
await getApp(c)
await untilState(c, 'app.service', 'active')

t.test('a worker killed with SIGKILL is replaced', async (t) => {
  const mainPid = await prop(c, 'app.service', 'MainPID')
  const victim = workerPid((await getApp(c)).body)
  await must(c, ['kill', '-KILL', String(victim)])
  const replacement = await until('a new worker to answer', async () => {
    const pid = workerPid((await getApp(c)).body)
    return pid !== victim && (await prop(c, 'app.service', 'StatusText')).startsWith('2 of 2 workers serving') ? pid : undefined
  })
  t.equal(String(await parentPid(c, replacement)), mainPid, 'the new worker is a child of the same master')
  t.equal(await prop(c, 'app.service', 'MainPID'), mainPid, 'the master was not restarted')
  t.equal(await prop(c, 'app.service', 'NRestarts'), '0')

  const lines = await journal(c, 'app.service')
  const death = lines.find((e) => e.MESSAGE.includes(String(victim)) && /SIGKILL/.test(e.MESSAGE))
  t.ok(death, `the journal has the worker's death: ${death?.MESSAGE ?? 'not found'}`)
  t.ok(death !== undefined && Number(death.PRIORITY) <= 4, `at warning priority or worse (PRIORITY=${death?.PRIORITY ?? '-'})`)
})

/** An HTTP/1.0 GET on a new connection: `connected` once the kernel took the connection (queued or accepted). */
function rawGet(socketPath: string): { connected: Promise<void>; answer: Promise<string> } {
  const socket = connect(socketPath)
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const answer = new Promise<string>((resolve, reject) => {
    let text = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => (text += d))
    socket.on('end', () => resolve(text))
    socket.on('error', reject)
    socket.setTimeout(60_000, () => socket.destroy(new Error('no answer within 60 s')))
  })
  socket.write('GET / HTTP/1.0\r\nHost: localhost\r\n\r\n')
  return { connected, answer }
}

t.test('the master killed with SIGKILL: systemd restarts the unit; connections queued on the socket are answered', async (t) => {
  const mainPid = await prop(c, 'app.service', 'MainPID')
  const oldWorkers = (await must(c, ['ps', '-o', 'pid=', '--ppid', mainPid])).trim().split(/\s+/)
  t.equal(oldWorkers.length, 2)
  // Stopped workers accept nothing: the next connections wait in the socket's queue.
  await must(c, ['kill', '-STOP', ...oldWorkers])
  const queued = Array.from({ length: 10 }, () => rawGet(appSocket(c)))
  await Promise.all(queued.map((q) => q.connected))
  await must(c, ['kill', '-KILL', mainPid])

  const answers = await Promise.all(queued.map((q) => q.answer))
  t.ok(answers.every((a) => a.startsWith('HTTP/1.1 200 ')), `every queued connection was answered: ${answers.map((a) => a.split('\r\n')[0]).join(', ')}`)
  const pids = answers.map((a) => workerPid(a))
  t.ok(pids.every((pid) => !oldWorkers.includes(String(pid))), 'by workers of the new instance')
  await untilState(c, 'app.service', 'active')
  const newMain = await prop(c, 'app.service', 'MainPID')
  t.not(newMain, mainPid, 'a new master')
  t.equal(await prop(c, 'app.service', 'NRestarts'), '1', 'systemd restarted the unit once')

  // KillMode=mixed: the old workers went with their master. Only the new master and its two workers remain.
  const cgroup = await prop(c, 'app.service', 'ControlGroup')
  const procs = (await must(c, ['cat', `/sys/fs/cgroup${cgroup}/cgroup.procs`])).trim().split('\n')
  t.equal(procs.length, 3, `the unit's processes: ${procs.join(' ')}`)
  for (const pid of procs) if (pid !== newMain) t.equal(String(await parentPid(c, Number(pid))), newMain, `${pid} is a worker of the new master`)
})
