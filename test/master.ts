/**
 * The multi-worker core, end to end through the sdserve command: real
 * processes, real sockets, real signals. Every loop is bounded in count.
 */
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { chmodSync, closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { listenTcp, socketPair } from '../lib/native.js'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createSocket } from 'node:dgram'
import { createServer } from 'node:net'
import { Agent } from 'node:http'
import {
  cli,
  freePort,
  get,
  getWhenUp,
  load,
  root,
  shortTmp,
  socketActivate,
  spawnTracked,
  waitFor,
  waitForOutput,
  type Tracked,
} from './helpers/proc.js'
import { startReceiver } from './helpers/notify-receiver.js'
import { needs } from './helpers/needs.js'

const run = promisify(execFile)
const app = join(root, 'test/fixtures/master-app.mjs')

interface Server {
  child: Tracked
  port: number
  dir: string
  versionFile: string
  setVersion(v: string): void
  /** Log lines matching re so far. */
  count(re: RegExp): number
}

async function start(
  t: Test,
  args: string[] = [],
  options: { version?: string; env?: Record<string, string>; cleanEnv?: NodeJS.ProcessEnv } = {},
): Promise<Server> {
  const port = await freePort()
  const dir = shortTmp(t)
  chmodSync(dir, 0o755) // workers may run as another user (--user)
  const versionFile = join(dir, 'version')
  writeFileSync(versionFile, options.version ?? 'v1')
  const child = spawnTracked(t, process.execPath, [cli, '-b', `127.0.0.1:${port}`, '-w', '2', '--graceful-timeout', '10', ...args, app], {
    env: { ...(options.cleanEnv ?? process.env), APP_VERSION_FILE: versionFile, ...options.env },
  })
  const server: Server = {
    child,
    port,
    dir,
    versionFile,
    setVersion: (v) => writeFileSync(versionFile, v),
    count: (re) => child.output().match(new RegExp(re.source, 'g'))?.length ?? 0,
  }
  return server
}

async function ready(s: Server, workers = 2): Promise<void> {
  await waitFor(() => s.count(/\] worker \d+ \(pid \d+, generation 1\) serving/) >= workers, `${workers} workers serving`)
}

function parse(body: string): { version: string; worker: number; pid: number } {
  const m = /^(\S+) worker=(\d+) pid=(\d+)/.exec(body)
  if (m === null) throw new Error(`unexpected body ${body}`)
  return { version: m[1]!, worker: Number(m[2]), pid: Number(m[3]) }
}

t.test('N workers serve; a worker killed with SIGKILL is replaced while the others keep serving', async (t) => {
  const s = await start(t, ['-w', '3'])
  await ready(s, 3)
  const pids = new Set<number>()
  for (let i = 0; i < 200 && pids.size < 3; i++) pids.add(parse((await get({ port: s.port })).body).pid)
  t.equal(pids.size, 3, 'three workers answer')
  const victim = [...pids][0]!
  process.kill(victim, 'SIGKILL')
  let failed = 0
  for (let i = 0; i < 30; i++) {
    const r = await get({ port: s.port }).catch(() => undefined)
    if (r?.status !== 200) failed++
  }
  t.equal(failed, 0, 'no request failed while the worker was replaced')
  await waitForOutput(s.child, new RegExp(`exited with signal SIGKILL`))
  await waitFor(() => s.count(/serving request handler/) >= 4, 'a replacement worker')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('HUP under load: zero failed requests, then the new code serves', async (t) => {
  const s = await start(t)
  await ready(s)
  let stop = false
  const traffic = load({ port: s.port, concurrency: 8, maxRequests: 4000, until: () => stop })
  // some requests before the reload
  await waitFor(() => s.count(/x/) >= 0 && !stop, 'traffic')
  await new Promise((r) => setTimeout(r, 200))
  s.setVersion('v2')
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reloaded: generation 2 serving/)
  await waitFor(() => s.count(/\(pid \d+\) exited with code 0/) >= 2, 'old generation drained')
  await new Promise((r) => setTimeout(r, 200))
  stop = true
  const result = await traffic
  t.equal(result.failed, 0, `no failed requests (${result.ok} ok): ${result.errors.slice(0, 3).join('; ')}`)
  t.ok(result.ok > 0, 'requests were made')
  t.ok(result.bodies.some((b) => b.startsWith('v1')), 'v1 served before the reload')
  t.ok(result.bodies.some((b) => b.startsWith('v2')), 'v2 served after the reload')
  for (let i = 0; i < 10; i++) t.equal(parse((await get({ port: s.port })).body).version, 'v2', 'only the new code now')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('HUP with a broken app: the old generation keeps serving and the log says why', async (t) => {
  const s = await start(t)
  await ready(s)
  s.setVersion('broken')
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reload failed, generation 1 keeps serving: .*this version of the app is broken/)
  for (let i = 0; i < 10; i++) t.equal(parse((await get({ port: s.port })).body).version, 'v1')
  // Fixed code: the next reload works.
  s.setVersion('v3')
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reloaded: generation 3 serving/)
  t.equal(parse((await get({ port: s.port })).body).version, 'v3')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('TERM with slow requests in flight: every one completes, then exit 0', async (t) => {
  const s = await start(t)
  await ready(s)
  const slow = Array.from({ length: 4 }, () => get({ port: s.port, path: '/slow?ms=1500' }))
  await waitFor(() => s.count(/slow request started/) >= 4, 'four slow requests in flight')
  s.child.kill('SIGTERM')
  const replies = await Promise.all(slow)
  t.same(
    replies.map((r) => r.status),
    [200, 200, 200, 200],
  )
  t.equal(await s.child.exited, 0)
  t.match(s.child.output(), /graceful stop: 2 workers/)
  // The socket is closed: nothing answers any more.
  await t.rejects(get({ port: s.port, timeoutMs: 2000 }))
})

t.test('INT stops fast, killing slow requests', async (t) => {
  const s = await start(t)
  await ready(s)
  const slow = get({ port: s.port, path: '/slow?ms=20000' }).then(
    () => 'completed',
    () => 'cut',
  )
  await waitFor(() => s.count(/slow request started/) >= 1, 'a slow request in flight')
  s.child.kill('SIGINT')
  t.equal(await slow, 'cut')
  t.equal(await s.child.exited, 0)
  t.match(s.child.output(), /fast stop/)
})

t.test('a worker stuck in a busy loop is killed after --timeout and replaced', async (t) => {
  const s = await start(t, ['-t', '1'])
  await ready(s)
  // The request blocks the loop 600 ms after it starts: a heartbeat in between names it.
  void get({ port: s.port, path: '/spin?after=600', timeoutMs: 20000 }).catch(() => undefined)
  await waitForOutput(
    s.child,
    /worker \d \(pid \d+\) timed out: no heartbeat for \d+ ms \(event loop blocked\?\); killing it; in flight at its last heartbeat: GET \/spin\?after=600 \(running \d+ ms\)/,
  )
  await waitForOutput(s.child, /exited with signal SIGKILL \(timeout\)/)
  await waitFor(() => s.count(/serving request handler/) >= 3, 'a replacement worker')
  t.equal((await get({ port: s.port })).status, 200)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('an app that throws on import: exit 4 with the error', async (t) => {
  const s = await start(t, [], { version: 'broken' })
  t.equal(await s.child.exited, 4)
  t.match(s.child.output(), /this version of the app is broken/)
  t.match(s.child.output(), /failed to load the app/)
  t.equal(s.count(/\] worker \d+ \(pid \d+(, generation \d+)?\) exited/), 2, 'not a respawn loop: each worker once')
})

t.test('a worker that cannot boot: exit 3', async (t) => {
  const s = await start(t, [], { version: 'exit' })
  t.equal(await s.child.exited, 3)
  t.match(s.child.output(), /worker failed to boot: worker \d \(pid \d+\) exited with code 7 before it listened/)
})

t.test('TTIN and TTOU change the worker count', async (t) => {
  const s = await start(t)
  await ready(s)
  s.child.kill('SIGTTIN')
  await waitForOutput(s.child, /worker 3 \(pid \d+, generation 1\) serving/)
  t.match(s.child.output(), /scaling to 3 workers/)
  // One at a time: two identical signals sent back to back may arrive as one.
  s.child.kill('SIGTTOU')
  await waitForOutput(s.child, /scaling to 2 workers/)
  s.child.kill('SIGTTOU')
  await waitForOutput(s.child, /scaling to 1 workers/)
  await waitFor(() => s.count(/worker [23] \(pid \d+\) exited with code 0/) === 2, 'workers 2 and 3 drained')
  s.child.kill('SIGTTOU')
  await waitForOutput(s.child, /already down to one worker/)
  const workers = new Set<number>()
  for (let i = 0; i < 20; i++) workers.add(parse((await get({ port: s.port })).body).worker)
  t.same([...workers], [1], 'one worker left')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('--max-requests recycles workers with zero failed requests', async (t) => {
  const s = await start(t, ['--max-requests', '25', '--max-requests-jitter', '5'])
  await ready(s)
  const first = new Set<number>()
  for (let i = 0; i < 10; i++) first.add(parse((await get({ port: s.port })).body).pid)
  // The load ends once two workers have been replaced and have drained (or after 1000 requests).
  let drained = false
  void waitFor(() => s.count(/\(pid \d+\) exited with code 0/) >= 2, 'recycled workers drained', 30000).then(
    () => (drained = true),
    () => (drained = true),
  )
  const result = await load({ port: s.port, concurrency: 4, maxRequests: 1000, until: () => drained })
  t.equal(result.failed, 0, `no failed requests: ${result.errors.slice(0, 3).join('; ')}`)
  t.match(s.child.output(), /served \d+ requests: recycling it/)
  await waitFor(() => s.count(/\(pid \d+\) exited with code 0/) >= 2, 'recycled workers drained')
  const later = new Set<number>()
  for (let i = 0; i < 20; i++) later.add(parse((await get({ port: s.port })).body).pid)
  t.ok([...later].some((pid) => !first.has(pid)), 'new workers serve')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('reuse-port balance: every worker has its own socket and gets connections', async (t) => {
  const s = await start(t, ['--balance', 'reuse-port', '-w', '2'])
  await ready(s)
  const workers = new Set<number>()
  for (let i = 0; i < 300 && workers.size < 2; i++) workers.add(parse((await get({ port: s.port })).body).worker)
  t.equal(workers.size, 2, 'the kernel spreads connections over both sockets')
  // A reload keeps the per-slot sockets: nothing queued on them is lost.
  let stop = false
  const traffic = load({ port: s.port, concurrency: 6, maxRequests: 3000, until: () => stop })
  s.setVersion('v2')
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reloaded: generation 2 serving/)
  await waitFor(() => s.count(/\(pid \d+\) exited with code 0/) >= 2, 'old generation drained')
  stop = true
  const result = await traffic
  t.equal(result.failed, 0, `no failed requests during a reuse-port reload: ${result.errors.slice(0, 3).join('; ')}`)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('pid file, UNIX socket bind with mode, socket removed at exit', needs(['curl', 'ss']), async (t) => {
  const dir = shortTmp(t)
  const pidFile = join(dir, 'sdserve.pid')
  const sock = join(dir, 'app.sock')
  const s = await start(t, ['-b', `unix:${sock}`, '--unix-socket-mode', '600', '--pid', pidFile])
  await ready(s)
  const { stdout: listening } = await run('ss', ['-Hlx', 'src', sock])
  t.match(listening, /LISTEN\s+\d+\s+2048\s/, `the default backlog is 2048, not node's 511: ${listening.trim()}`)
  t.equal(readFileSync(pidFile, 'utf8'), `${s.child.pid}\n`)
  t.equal(parse((await get({ socketPath: sock })).body).version, 'v1')
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', '--unix-socket', sock, 'http://localhost/'])
  t.match(stdout, /^v1 worker=\d/)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
  t.notOk(existsSync(pidFile), 'pid file removed')
  t.notOk(existsSync(sock), 'the socket sdserve created is removed')
})

t.test('under systemd-socket-activate: every named socket (TCP and UNIX) is served by workers', needs(['systemd-socket-activate', 'curl', 'ss']), async (t) => {
  const port = await freePort()
  const dir = shortTmp(t)
  const sock = join(dir, 'app.sock')
  const versionFile = join(dir, 'version')
  writeFileSync(versionFile, 'v1')
  const sa = await socketActivate(t, [`127.0.0.1:${port}`, sock], ['web', 'admin'], [process.execPath, cli, '-w', '2', '--backlog', '777', app], {
    APP_VERSION_FILE: versionFile,
  })
  const { stdout: viaTcp } = await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${port}/`])
  t.match(viaTcp, /^v1 worker=\d pid=\d+/)
  const { stdout: viaUnix } = await run('curl', ['-sS', '--max-time', '10', '--unix-socket', sock, 'http://localhost/'])
  t.match(viaUnix, /^v1 worker=\d pid=\d+/)
  // node's listen({ fd }) calls listen(2) again: with --backlog, not node's 511.
  const { stdout: tcpListen } = await run('ss', ['-Hltn', `sport = :${port}`])
  t.match(tcpListen, /LISTEN\s+\d+\s+777\s/, `the TCP socket's backlog: ${tcpListen.trim()}`)
  const { stdout: unixListen } = await run('ss', ['-Hlx', 'src', sock])
  t.match(unixListen, /LISTEN\s+\d+\s+777\s/, `the UNIX socket's backlog: ${unixListen.trim()}`)
  t.not(parse(viaTcp).pid, sa.pid, 'answered by a worker, not the master')
  t.match(sa.output(), new RegExp(`listening on 127\\.0\\.0\\.1:${port}, unix:${sock}`))
  sa.kill('SIGTERM')
  t.equal(await sa.exited, 0)
  t.ok(existsSync(sock), 'a socket systemd gave us is never unlinked')
})

t.test('binds matched by systemd:NAME; an unknown name is a config error', needs(['systemd-socket-activate']), async (t) => {
  const port = await freePort()
  const dir = shortTmp(t)
  const sock = join(dir, 'app.sock')
  const sa = await socketActivate(t, [`127.0.0.1:${port}`, sock], ['web', 'admin'], [
    process.execPath,
    cli,
    '-w',
    '1',
    '-b',
    'systemd:admin',
    app,
  ])
  t.match((await getWhenUp({ socketPath: sock })).body, /^v1 worker=1/)
  t.match(sa.output(), /inherited socket web \(127\.0\.0\.1:\d+\) is not in --bind: left open, not served/)
  sa.kill('SIGTERM')
  t.equal(await sa.exited, 0)

  const port2 = await freePort()
  const bad = await socketActivate(t, [`127.0.0.1:${port2}`], ['web'], [process.execPath, cli, '-b', 'systemd:nope', app])
  await get({ port: port2 }).catch(() => undefined)
  t.equal(await bad.exited, 2)
  t.match(bad.output(), /bind must be the name of an inherited socket \(web\), got "systemd:nope"/)
})

t.test('sd_notify: READY only once every worker listens; RELOADING+MONOTONIC_USEC then READY; STOPPING', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const s = await start(t, ['-w', '3'], { env: { NOTIFY_SOCKET: rx.address } })
  await waitFor(() => rx.payloads().some((p) => p.startsWith('READY=1')), 'READY=1')
  const before = rx.payloads()
  const readyAt = before.findIndex((p) => p.startsWith('READY=1'))
  t.match(before[readyAt], /^READY=1\nSTATUS=3 of 3 workers serving \(generation 1\), 0 requests served$/, 'READY says all 3 serve')
  t.ok(s.count(/generation 1\) serving/) === 3, 'and all 3 had reported listening by then')
  t.match(before.slice(0, readyAt), [/^EXTEND_TIMEOUT_USEC=\d+$/, /^STATUS=starting 3 workers$/])

  for (let i = 0; i < 5; i++) await get({ port: s.port })
  await waitFor(() => rx.payloads().some((p) => /^STATUS=3 of 3 workers serving \(generation 1\), 5 requests served$/.test(p)), 'STATUS with the request count')

  const t0 = process.hrtime.bigint() / 1000n
  s.setVersion('v2')
  s.child.kill('SIGHUP')
  await waitFor(() => rx.payloads().some((p) => p.startsWith('READY=1') && p.includes('generation 2')), 'READY=1 after reload')
  const after = rx.payloads().slice(before.length)
  const reloading = after.find((p) => p.startsWith('RELOADING=1'))
  const m = /^RELOADING=1\nMONOTONIC_USEC=(\d+)\nSTATUS=reloading: starting generation 2$/.exec(reloading ?? '')
  t.ok(m, `RELOADING=1 with MONOTONIC_USEC in one datagram: ${reloading}`)
  const usec = BigInt(m?.[1] ?? '0')
  t.ok(usec >= t0 && usec <= process.hrtime.bigint() / 1000n, 'MONOTONIC_USEC is CLOCK_MONOTONIC now')
  t.ok(
    after.findIndex((p) => p.startsWith('RELOADING=1')) < after.findIndex((p) => p.startsWith('READY=1')),
    'RELOADING before READY',
  )
  t.equal(parse((await get({ port: s.port })).body).version, 'v2', 'the new generation serves once READY=1 was sent')

  const n = rx.payloads().length
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
  await rx.waitFor(n + 3)
  // (the old generation may still be draining: 3 to 6 workers)
  // A STATUS= update (old workers leaving) may still come before the stop: only the stop's own messages count.
  const stop = rx.payloads().slice(n).filter((p) => !/^STATUS=\d+ of \d+ workers serving/.test(p))
  t.match(stop, [/^STOPPING=1\nSTATUS=stopping: draining [3-6] workers$/, /^EXTEND_TIMEOUT_USEC=\d+$/, 'BARRIER=1'])
})

t.test('a failed start tells systemd why (ERRNO=, STATUS=)', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const s = await start(t, [], { version: 'broken', env: { NOTIFY_SOCKET: rx.address } })
  t.equal(await s.child.exited, 4)
  await waitFor(() => rx.payloads().some((p) => p.startsWith('ERRNO=')), 'ERRNO=')
  t.match(rx.payloads().find((p) => p.startsWith('ERRNO=')), /^ERRNO=8\nSTATUS=failed: .*this version of the app is broken/)
  t.notOk(rx.payloads().some((p) => p.startsWith('READY=1')), 'never READY')
})

t.test('the watchdog is pinged only while a worker is healthy', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const s = await start(t, ['-w', '1', '-t', '2'], { env: { NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: '400000' } })
  await ready(s, 1)
  const pings = (): number => rx.payloads().filter((p) => p === 'WATCHDOG=1').length
  await waitFor(() => pings() >= 3, 'watchdog pings')
  const worker = parse((await get({ port: s.port })).body).pid
  process.kill(worker, 'SIGSTOP') // a wedged worker: no heartbeats
  await waitForOutput(s.child, /watchdog ping skipped: health check said no/)
  const during = pings()
  await waitForOutput(s.child, /timed out: no heartbeat/)
  await waitFor(() => s.count(/serving request handler/) >= 2, 'a replacement worker')
  await waitFor(() => pings() > during, 'pings resume once a healthy worker serves')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('a malformed APP is a config error: exit 2, nothing started', async (t) => {
  const child = spawnTracked(t, process.execPath, [cli, '-b', '127.0.0.1:0', `${app}:1x`])
  t.equal(await child.exited, 2)
  t.match(child.output(), /^sdserve: APP/m)
  t.notMatch(child.output(), /listening on/)
})

t.test('Express, Koa and Fastify apps served by sdserve workers', async (t) => {
  for (const name of ['express', 'koa', 'fastify', 'hello']) {
    const port = await freePort()
    const child = spawnTracked(t, process.execPath, [cli, '-w', '2', '-b', `127.0.0.1:${port}`, join(root, `examples/frameworks/${name}.mjs`)])
    const r = await getWhenUp({ port })
    t.equal(r.status, 200, `${name}: 200`)
    t.ok(r.body.length > 0, `${name}: ${r.body.trim()}`)
    child.kill('SIGTERM')
    t.equal(await child.exited, 0, `${name}: clean stop`)
  }
})

t.test('serve() from code: the calling process is the master', async (t) => {
  const { serve, isWorker } = await import('../lib/serve.js')
  t.equal(isWorker(), false)
  const dir = shortTmp(t)
  const versionFile = join(dir, 'version')
  writeFileSync(versionFile, 'v1')
  process.env.APP_VERSION_FILE = versionFile
  t.teardown(() => {
    delete process.env.APP_VERSION_FILE
  })
  const port = await freePort()
  const events: string[] = []
  const handle = await serve({ app: new URL('../../test/fixtures/master-app.mjs', import.meta.url), workers: 2, bind: [`127.0.0.1:${port}`], signals: false, logLevel: 'error' })
  handle.master.on('reload', (e) => events.push(`reload ${e.ok} ${e.generation}`))
  t.equal(parse((await get({ port })).body).version, 'v1')
  writeFileSync(versionFile, 'v2')
  t.equal(await handle.reload(), true)
  t.equal(parse((await get({ port })).body).version, 'v2')
  writeFileSync(versionFile, 'broken')
  t.equal(await handle.reload(), false, 'a failed reload resolves false')
  t.equal(parse((await get({ port })).body).version, 'v2', 'and v2 keeps serving')
  writeFileSync(versionFile, 'v2')
  handle.scale(1)
  await waitFor(() => handle.master.stats().workers.filter((w) => w.state === 'ready').length === 3, 'three workers')
  t.equal(await handle.close(), 0)
  t.same(events, ['reload true 2', 'reload false 2'])
  await t.rejects(serve({ app: 'x.mjs', workers: 0 }), { code: 'SDSERVE_ERR_CONFIG', message: /^workers \(in serve\(\)\) must be/ })
})

t.test('a worker that never finishes booting: killed after the boot timeout, exit 3', async (t) => {
  const s = await start(t, ['-t', '1'], { version: 'hang' })
  t.equal(await s.child.exited, 3)
  t.match(s.child.output(), /did not boot within 10000 ms/, 'at least 10 s, even with --timeout 1')
})

t.test('a worker that keeps crashing is replaced with backoff', async (t) => {
  const s = await start(t, ['-w', '1'], { version: 'flaky' })
  await ready(s, 1)
  await waitForOutput(s.child, /worker 1 keeps crashing: replacing it in 100 ms/)
  await waitForOutput(s.child, /worker 1 keeps crashing: replacing it in 200 ms/)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0, 'a stop during the backoff is clean')
})

t.test('an http.Server app on two binds; USR1; --chdir, --umask', async (t) => {
  const dir = shortTmp(t)
  const sock = join(dir, 'app.sock')
  const port = await freePort()
  const child = spawnTracked(t, process.execPath, [
    cli,
    '-w',
    '1',
    '-b',
    `127.0.0.1:${port}`,
    '-b',
    `unix:${sock}`,
    '--chdir',
    join(root, 'test/fixtures/apps'),
    '--umask',
    '077',
    'server.mjs',
  ])
  t.equal((await getWhenUp({ port })).body, 'http.Server\n', "the app's own server, on the first socket")
  t.equal((await get({ socketPath: sock })).body, 'http.Server\n', 'a forwarding server on the second')
  t.equal(statSync(sock).mode & 0o777, 0o700, 'the socket file was made under umask 077')
  child.kill('SIGUSR1')
  await waitForOutput(child, /reopening log files/)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

t.test('--user and --unix-socket-owner (as root)', { skip: process.getuid?.() !== 0 && 'needs root' }, async (t) => {
  const dir = shortTmp(t)
  chmodSync(dir, 0o755)
  const sock = join(dir, 'app.sock')
  // Without tap's coverage hooks in the environment: they cannot write their files as nobody.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NODE_') && !k.startsWith('_TAPJS')))
  const s = await start(t, ['-w', '1', '-b', `unix:${sock}`, '--user', 'nobody', '--unix-socket-owner', 'nobody'], { cleanEnv: env })
  await ready(s, 1)
  const nobody = Number((await run('id', ['-u', 'nobody'])).stdout.trim())
  t.match((await get({ socketPath: sock })).body, new RegExp(`uid=${nobody} `), 'the worker runs as nobody')
  t.equal(statSync(sock).uid, nobody, 'the socket file belongs to nobody')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('fd:// binds', async (t) => {
  const port = await freePort()
  const fd = listenTcp({ host: '127.0.0.1', port })
  t.teardown(() => closeSync(fd))
  const child = spawnTracked(t, process.execPath, [cli, '-w', '1', '-b', 'fd://3', app], {
    stdio: ['ignore', 'pipe', 'pipe', fd],
  })
  t.match((await getWhenUp({ port })).body, /^v1 worker=1/)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
  const bad = spawnTracked(t, process.execPath, [cli, '-b', 'fd://999', app])
  t.equal(await bad.exited, 2, 'a closed fd: exit 2')
  t.match(bad.output(), /bind must be an open listening socket \(getsockopt EBADF/)
  const file = openSync(join(shortTmp(t), 'plain'), 'w')
  t.teardown(() => closeSync(file))
  const notSocket = spawnTracked(t, process.execPath, [cli, '-b', 'fd://3', app], { stdio: ['ignore', 'pipe', 'pipe', file] })
  t.equal(await notSocket.exited, 2, 'a file: exit 2')
  t.match(notSocket.output(), /bind must be an open listening socket \(getsockopt ENOTSOCK/)
  const [a] = socketPair()
  const notListening = spawnTracked(t, process.execPath, [cli, '-b', 'fd://3', app], { stdio: ['ignore', 'pipe', 'pipe', a] })
  t.equal(await notListening.exited, 2)
  t.match(notListening.output(), /bind must be a listening stream socket, got "fd:\/\/3"/)
})

t.test('binds that name an inherited socket by address use it; reuse-port with no TCP bind warns', needs(['systemd-socket-activate']), async (t) => {
  const port = await freePort()
  const dir = shortTmp(t)
  const sock = join(dir, 'app.sock')
  const sa = await socketActivate(t, [`127.0.0.1:${port}`, sock], ['web', 'admin'], [
    process.execPath,
    cli,
    '-w',
    '1',
    '--balance',
    'reuse-port',
    '-b',
    `unix:${sock}`,
    '-b',
    `127.0.0.1:${port}`,
    app,
  ])
  t.match((await getWhenUp({ socketPath: sock })).body, /^v1 worker=1/)
  t.match((await get({ port })).body, /^v1 worker=1/)
  t.match(sa.output(), /balance reuse-port applies to TCP binds sdserve creates; every socket here is shared/)
  t.notMatch(sa.output(), /not in --bind/, 'both inherited sockets are used')
  sa.kill('SIGTERM')
  t.equal(await sa.exited, 0)
  t.ok(existsSync(sock), 'an inherited UNIX socket is never unlinked')
})

t.test('reuse-port: TTOU under load loses nothing queued on the leaving slot; TTIN reuses it', async (t) => {
  const s = await start(t, ['--balance', 'reuse-port', '-w', '1'])
  await ready(s, 1)
  s.child.kill('SIGTTIN')
  await waitForOutput(s.child, /worker 2 \(pid \d+, generation 1\) serving/)
  const workers = new Set<number>()
  for (let i = 0; i < 300 && workers.size < 2; i++) workers.add(parse((await get({ port: s.port })).body).worker)
  t.equal(workers.size, 2, 'both slots get connections')
  let stop = false
  const traffic = load({ port: s.port, concurrency: 6, maxRequests: 4000, until: () => stop })
  s.child.kill('SIGTTOU')
  await waitForOutput(s.child, /worker 2 \(pid \d+\) exited with code 0/)
  await waitFor(() => s.count(/worker 1 \(pid \d+\) exited with code 0/) === 1, 'the old worker 1 drained')
  stop = true
  const result = await traffic
  t.equal(result.failed, 0, `no failed requests while a slot left the group: ${result.errors.slice(0, 3).join('; ')}`)
  for (let i = 0; i < 20; i++) t.equal(parse((await get({ port: s.port })).body).worker, 1, 'worker 1 serves both slot sockets')
  s.child.kill('SIGTTIN')
  await waitForOutput(s.child, /worker 2 \(pid \d+, generation 1\) serving/)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('--max-requests whose replacement cannot boot: the old worker keeps serving', async (t) => {
  const s = await start(t, ['-w', '1', '--max-requests', '5'])
  await ready(s, 1)
  s.setVersion('broken')
  for (let i = 0; i < 5; i++) t.equal((await get({ port: s.port })).status, 200)
  await waitForOutput(s.child, /worker 1: replacement failed \(.*\); the old worker keeps serving/)
  t.match((await get({ port: s.port })).body, /^v1 /)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('a NOTIFY_SOCKET nobody listens on is logged, not fatal', async (t) => {
  const s = await start(t, ['-w', '1'], { env: { NOTIFY_SOCKET: join(shortTmp(t), 'nobody-here') } })
  await ready(s, 1)
  await waitForOutput(s.child, /sd_notify failed: sendmsg ENOENT/)
  t.equal((await get({ port: s.port })).status, 200)
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('the watchdog with --timeout 0 still stops while no worker answers', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const s = await start(t, ['-w', '1', '-t', '0'], { env: { NOTIFY_SOCKET: rx.address, WATCHDOG_USEC: '400000' } })
  await ready(s, 1)
  const pid = parse((await get({ port: s.port })).body).pid
  process.kill(pid, 'SIGSTOP')
  await waitForOutput(s.child, /watchdog ping skipped: health check said no/)
  process.kill(pid, 'SIGCONT')
  const n = rx.payloads().length
  await waitFor(() => rx.payloads().slice(n).includes('WATCHDOG=1'), 'pings resume')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('serve(): a second reload while one runs is queued; scaling waits for it', async (t) => {
  const { serve } = await import('../lib/serve.js')
  const port = await freePort()
  const handle = await serve({ app, workers: 1, bind: [`127.0.0.1:${port}`] })
  const first = handle.reload()
  const second = handle.reload()
  handle.scale(1)
  t.equal(await first, true)
  t.equal(await second, true)
  await waitFor(() => handle.master.stats().generation === 3, 'the queued reload ran: generation 3')
  await waitFor(() => handle.master.stats().workers.filter((w) => w.state === 'ready').length === 2, 'scaled to 2 after the reload')
  t.equal(await handle.close(), 0)
})

t.test('serve() refuses to run in a worker', async (t) => {
  const { serve } = await import('../lib/serve.js')
  process.env.SDSERVE_WORKER_ID = '1'
  t.teardown(() => {
    delete process.env.SDSERVE_WORKER_ID
  })
  await t.rejects(serve({ app }), { code: 'SDSERVE_ERR_CONFIG', message: /called in the master only/ })
})

t.test('--graceful-timeout cuts requests that outlast it', async (t) => {
  const s = await start(t, ['-w', '1', '--graceful-timeout', '0.5'])
  await ready(s, 1)
  const slow = get({ port: s.port, path: '/slow?ms=20000' }).then(
    () => 'completed',
    () => 'cut',
  )
  await waitFor(() => s.count(/slow request started/) >= 1, 'a slow request in flight')
  s.child.kill('SIGTERM')
  t.equal(await slow, 'cut')
  t.equal(await s.child.exited, 0)
  t.match(s.child.output(), /worker 1 \(pid \d+\) exited with code 0/, 'the worker left by itself at its deadline')
})

t.test('HUP re-reads the config file: workers change, bind changes are refused until a restart', async (t) => {
  const port = await freePort()
  const dir = shortTmp(t)
  const configFile = join(dir, 'sdserve.config.json')
  writeFileSync(configFile, JSON.stringify({ workers: 1, bind: [`127.0.0.1:${port}`] }))
  const child = spawnTracked(t, process.execPath, [cli, '-c', configFile, app])
  t.match((await getWhenUp({ port })).body, /^v1 worker=1/)
  writeFileSync(configFile, JSON.stringify({ workers: 2, bind: ['127.0.0.1:1'] }))
  child.kill('SIGHUP')
  await waitForOutput(child, /changes to bind and balance need a restart; the sockets stay as they are/)
  await waitForOutput(child, /reloaded: generation 2 serving/)
  const workers = new Set<number>()
  for (let i = 0; i < 300 && workers.size < 2; i++) workers.add(parse((await get({ port })).body).worker)
  t.equal(workers.size, 2, 'two workers after the reload, on the old bind')
  writeFileSync(configFile, '{ "workers": "many" }')
  child.kill('SIGHUP')
  await waitForOutput(child, /reload failed, generation 2 keeps serving: workers \(in .*\) must be/)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})

t.test('systemd sockets that are not listening stream sockets are refused; systemd:NAME needs activation', needs(['systemd-socket-activate']), async (t) => {
  const port = await freePort()
  const sa = spawnTracked(t, 'systemd-socket-activate', ['-d', '-l', `127.0.0.1:${port}`, ...coverageFlags(), process.execPath, cli, app])
  await waitForOutput(sa, /as 3\./)
  const udp = createSocket('udp4')
  udp.send('x', port, '127.0.0.1', () => udp.close())
  t.equal(await sa.exited, 2)
  t.match(sa.output(), /LISTEN_FDS must be listening stream sockets \(ListenStream=, Accept=no\), got "unknown=127\.0\.0\.1:\d+"/)

  const bad = spawnTracked(t, process.execPath, [cli, '-b', 'systemd:web', app])
  t.equal(await bad.exited, 2)
  t.match(bad.output(), /systemd passed none \(LISTEN_FDS is not set\)/)
})

/** -E flags that carry tap's coverage variables through systemd-socket-activate. */
function coverageFlags(): string[] {
  return Object.keys(process.env)
    .filter((k) => k.startsWith('NODE_') || k.startsWith('_TAPJS'))
    .flatMap((k) => ['-E', k])
}

t.test('no --bind and no LISTEN_FDS: 127.0.0.1:8000; a bind that fails is one clear line, exit 1', async (t) => {
  const child = spawnTracked(t, process.execPath, [cli, '-w', '1', app])
  const m = await waitForOutput(child, /listening on (\S+)|startup failed: (.*)/)
  if (m[1] !== undefined) {
    t.equal(m[1], '127.0.0.1:8000')
    child.kill('SIGTERM')
    t.equal(await child.exited, 0)
  } else {
    t.match(m[2], /EADDRINUSE.*127\.0\.0\.1:8000/, 'something else holds port 8000 here')
    t.equal(await child.exited, 1)
  }
  const port = await freePort()
  const holder = createServer().listen(port, '127.0.0.1')
  t.teardown(() => holder.close())
  const busy = spawnTracked(t, process.execPath, [cli, '-b', `127.0.0.1:${port}`, app])
  t.equal(await busy.exited, 1)
  t.match(busy.output(), new RegExp(`startup failed: bind EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}`))
  t.notMatch(busy.output(), /\n\s+at /, 'no stack trace')
})

t.test('an app module whose export cannot be served: exit 4 saying what it found', async (t) => {
  const child = spawnTracked(t, process.execPath, [cli, '-b', '127.0.0.1:0', join(root, 'test/fixtures/apps/number.mjs')])
  t.equal(await child.exited, 4)
  t.match(child.output(), /failed to load the app/)
  t.match(child.output(), /number/)
})

t.test('a Master made without a logger logs to stderr at info', async (t) => {
  const { Master } = await import('../lib/master.js')
  const { Logger } = await import('../lib/logger.js')
  const { DEFAULTS } = await import('../lib/config.js')
  const m = new Master({ ...DEFAULTS, app })
  t.ok(m.log instanceof Logger)
  t.equal(m.log.level, 'info')
})

t.test('HUP under keep-alive load: no request on a reused connection is lost', async (t) => {
  const s = await start(t, ['--keep-alive', '5'])
  await ready(s)
  const agent = new Agent({ keepAlive: true, maxSockets: 8 })
  t.teardown(() => agent.destroy())
  let stop = false
  const traffic = load({ port: s.port, agent, concurrency: 8, maxRequests: 20_000, until: () => stop })
  await new Promise((r) => setTimeout(r, 300))
  for (let g = 2; g <= 4; g++) {
    s.setVersion(`v${g}`)
    s.child.kill('SIGHUP')
    await waitForOutput(s.child, new RegExp(`reloaded: generation ${g} serving`))
  }
  await new Promise((r) => setTimeout(r, 300))
  stop = true
  const result = await traffic
  t.equal(result.failed, 0, `no failed requests over 3 reloads (${result.ok} ok): ${result.errors.slice(0, 3).join('; ')}`)
  t.equal(parse((await get({ port: s.port, agent })).body).version, 'v4', 'the last generation serves, on a kept-alive connection too')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
})

t.test('old workers hand their keep-alive connections over in 300 ms (at most --graceful-timeout); a stop does not', async (t) => {
  const s = await start(t, [], { env: { LOG_STOP: '1' } })
  await ready(s)
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /reloaded: generation 2 serving/)
  await waitFor(() => s.count(/stop message /) >= 2, 'the old workers told to stop')
  t.equal(s.count(/stop message \{[^}]*"graceful":true,"timeoutMs":10000,"handoverMs":300\}/), 2, 'a reload hands over')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0)
  t.equal(s.count(/stop message \{[^}]*"graceful":true,"timeoutMs":10000,"handoverMs":0\}/), 2, 'a stop hands nothing over')

  const short = await start(t, ['--graceful-timeout', '0.1'], { env: { LOG_STOP: '1' } })
  await ready(short)
  short.child.kill('SIGHUP')
  await waitFor(() => short.count(/stop message /) >= 2, 'the old workers told to stop')
  t.equal(short.count(/stop message \{[^}]*"timeoutMs":100,"handoverMs":100\}/), 2, 'at most the graceful timeout')
  short.child.kill('SIGTERM')
  t.equal(await short.child.exited, 0)
})
