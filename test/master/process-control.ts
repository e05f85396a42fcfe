/**
 * The control socket end to end: a real sdserve master and real
 * `sdserve ctl` processes. Every process is killed at teardown; every wait
 * is bounded.
 */
import t, { type Test } from 'tap'
import { existsSync, lstatSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { cli, get, isAlive, shortTmp, sleep, spawnTracked, waitFor } from '../helpers/proc.js'
import { parse, ready, start, type Server } from '../helpers/master-process.js'

/** The environment without any control socket setting of the test's own. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra }
  if (extra.SDSERVE_CONTROL_SOCKET === undefined) delete env.SDSERVE_CONTROL_SOCKET
  if (extra.RUNTIME_DIRECTORY === undefined) delete env.RUNTIME_DIRECTORY
  return env
}

/** Run `sdserve ctl ARGS` to completion: its exit code and output. */
async function ctl(t: Test, args: string[], env: Record<string, string> = {}): Promise<{ code: number | string; out: string }> {
  const child = spawnTracked(t, process.execPath, [cli, 'ctl', '--timeout', '60', ...args], { env: cleanEnv(env) })
  const code = await child.exited
  return { code, out: child.output() }
}

interface Workers {
  target: number
  workers: { id: number; pid: number; generation: number; state: string }[]
}

async function workersJson(t: Test, sock: string): Promise<Workers> {
  const r = await ctl(t, ['--json', '--socket', sock, 'workers'])
  t.equal(r.code, 0, 'ctl workers')
  return JSON.parse(r.out) as Workers
}

/** Worker pids of a generation, from the master's log. */
function servingPids(s: Server, generation: number): number[] {
  return [...s.child.output().matchAll(new RegExp(`worker \\d+ \\(pid (\\d+), generation ${generation}\\) serving`, 'g'))].map((m) => Number(m[1]))
}

/** sdserve with --control-socket in a directory of its own. */
async function withSocket(t: Test, args: string[] = []): Promise<{ s: Server; sock: string }> {
  const sock = join(shortTmp(t), 'ctl.sock')
  const s = await start(t, ['--control-socket', sock, ...args], { cleanEnv: cleanEnv() })
  await ready(s)
  return { s, sock }
}

t.test('status and workers', async (t) => {
  const { s, sock } = await withSocket(t)
  t.equal(lstatSync(sock).mode & 0o777, 0o600, 'the socket file is 0600')
  const status = await ctl(t, ['--socket', sock, 'status'])
  t.equal(status.code, 0)
  t.match(status.out, new RegExp(`^sdserve \\S+, master ${s.child.pid}, up \\S+, serving, health ok\n`))
  t.match(status.out, /^generation 1: 2 of 2 workers ready$/m)
  const pids = servingPids(s, 1)
  t.equal(pids.length, 2)
  const table = await ctl(t, ['--socket', sock, 'workers'])
  t.equal(table.code, 0)
  const rows = table.out.split('\n').slice(1, -2)
  t.equal(rows.length, 2, 'a row per worker')
  t.same(rows.map((r) => Number(r.split(/ +/)[1])).sort(), [...pids].sort(), 'with their pids')
  t.match(table.out, /\n2 workers, target 2\n$/)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('scale 3, then scale 1: answered once reached', async (t) => {
  const { s, sock } = await withSocket(t)
  const up = await ctl(t, ['--socket', sock, 'scale', '3'])
  t.same(up, { code: 0, out: 'scaled: 3 workers serving\n' })
  let w = await workersJson(t, sock)
  t.equal(w.target, 3)
  t.equal(w.workers.filter((x) => x.state === 'ready' && x.generation === 1).length, 3, 'three ready when the answer came')
  t.equal(servingPids(s, 1).length, 3, 'a third worker was started')
  const down = await ctl(t, ['--socket', sock, 'scale 1'])
  t.same(down, { code: 0, out: 'scaled: 1 workers serving\n' })
  w = await workersJson(t, sock)
  t.equal(w.target, 1)
  const ready1 = w.workers.filter((x) => x.state === 'ready')
  t.equal(ready1.length, 1, 'one ready when the answer came')
  // The others leave; the one left serves every request.
  await waitFor(async () => (await workersJson(t, sock)).workers.length === 1, 'the other workers gone')
  for (let i = 0; i < 5; i++) t.equal(parse((await get({ port: s.port })).body).pid, ready1[0]!.pid)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('reload: answered with the new generation; a broken app: the error, exit 1', async (t) => {
  const { s, sock } = await withSocket(t)
  s.setVersion('v2')
  const ok = await ctl(t, ['--socket', sock, 'reload'])
  t.same(ok, { code: 0, out: 'reloaded: generation 2 serving\n' })
  t.equal(parse((await get({ port: s.port })).body).version, 'v2', 'the new code serves when the answer comes')
  s.setVersion('broken')
  const failed = await ctl(t, ['--socket', sock, 'reload'])
  t.equal(failed.code, 1)
  t.match(failed.out, /^sdserve ctl: reload failed: .*this version of the app is broken\n$/)
  t.equal(parse((await get({ port: s.port })).body).version, 'v2', 'the old generation serves on')
  const json = await ctl(t, ['--socket', sock, '--json', 'status'])
  t.match(JSON.parse(json.out.split('\n')[0]!), { ok: true, stats: { generation: 2, reloads: { ok: 1, failed: 1 } } })
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('reopen-logs', async (t) => {
  const { s, sock } = await withSocket(t)
  t.same(await ctl(t, ['--socket', sock, 'reopen-logs']), { code: 0, out: 'log files reopened\n' })
  t.match(s.child.output(), /control socket: reopen-logs/)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('stop: "stopped", the master exits 0, the socket file is gone', async (t) => {
  const { s, sock } = await withSocket(t)
  t.same(await ctl(t, ['--socket', sock, 'stop']), { code: 0, out: 'stopped\n' })
  t.equal(await s.child.exited, 0)
  t.match(s.child.output(), /graceful stop: 2 workers/)
  t.notOk(existsSync(sock), 'the socket file is removed')
})

t.test('the default path: $RUNTIME_DIRECTORY/sdserve.ctl, for the master and ctl', async (t) => {
  const dir = shortTmp(t)
  const s = await start(t, [], { cleanEnv: cleanEnv({ RUNTIME_DIRECTORY: dir }) })
  await ready(s)
  t.ok(lstatSync(join(dir, 'sdserve.ctl')).isSocket())
  const r = await ctl(t, ['status'], { RUNTIME_DIRECTORY: dir })
  t.equal(r.code, 0)
  t.match(r.out, `master ${s.child.pid}`)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
  t.notOk(existsSync(join(dir, 'sdserve.ctl')))
})

t.test('--control-socket none: nothing is created', async (t) => {
  const dir = shortTmp(t)
  const s = await start(t, ['--control-socket', 'none'], { cleanEnv: cleanEnv({ RUNTIME_DIRECTORY: dir }) })
  await ready(s)
  t.notOk(existsSync(join(dir, 'sdserve.ctl')))
  t.notMatch(s.child.output(), /control socket/)
  const r = await ctl(t, ['status'], { RUNTIME_DIRECTORY: dir })
  t.equal(r.code, 1)
  t.match(r.out, /no such socket/)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})


t.test('upgrade: answered with the new master, which then answers on the same socket', async (t) => {
  const dir = shortTmp(t)
  const sock = join(dir, 'ctl.sock')
  const pidFile = join(dir, 'sdserve.pid')
  const s = await start(t, ['--control-socket', sock, '--pid', pidFile], { cleanEnv: cleanEnv() })
  t.teardown(async () => {
    // The new master is nobody's tracked child: stop it by its pid file.
    const pid = Number(existsSync(pidFile) ? readFileSync(pidFile, 'utf8') : 0)
    if (pid > 0 && pid !== s.child.pid && isAlive(pid)) {
      process.kill(pid, 'SIGTERM')
      for (let i = 0; i < 200 && isAlive(pid); i++) await sleep(25)
      if (isAlive(pid)) process.kill(pid, 'SIGKILL')
    }
  })
  await ready(s)
  s.setVersion('v2')
  const r = await ctl(t, ['--socket', sock, 'upgrade'])
  t.equal(r.code, 0, r.out)
  const m = /^upgraded: the new master (\d+) serves; this one is draining and will exit\n$/.exec(r.out)
  t.ok(m, 'the answer names the new master')
  const newPid = Number(m?.[1])
  t.not(newPid, s.child.pid)
  t.equal(await s.child.exited, 0, 'the old master exits 0')
  t.equal(Number(readFileSync(pidFile, 'utf8')), newPid, 'the pid file holds the new master')
  t.match((await get({ port: s.port })).body, /^v2 /, 'the new code serves')
  // The new master has taken the socket over (it opens it once promoted).
  await waitFor(() => existsSync(sock), 'the control socket of the new master')
  const status = await ctl(t, ['--socket', sock, '--json', 'status'])
  t.equal(status.code, 0)
  t.match(JSON.parse(status.out), { ok: true, stats: { pid: newPid, phase: 'serving' } })
  t.same(await ctl(t, ['--socket', sock, 'stop']), { code: 0, out: 'stopped\n' })
  for (let i = 0; i < 400 && isAlive(newPid); i++) await sleep(25)
  t.notOk(isAlive(newPid), 'the new master has exited')
  t.notOk(existsSync(sock), 'and removed its socket file')
})
