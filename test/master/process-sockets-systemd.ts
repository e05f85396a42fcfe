/**
 * Sockets and systemd, end to end through the sdserve command: TCP, UNIX and
 * fd:// binds, reuse-port, the pid file, socket activation, sd_notify and the watchdog.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { chmodSync, closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { listenTcp, socketPair } from '../../lib/native.js'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createSocket } from 'node:dgram'
import { createServer } from 'node:net'
import { cli, freePort, get, getWhenUp, load, shortTmp, socketActivate, spawnTracked, waitFor, waitForOutput } from '../helpers/proc.js'
import { startReceiver } from '../helpers/notify-receiver.js'
import { needs } from '../helpers/needs.js'
import { app, coverageFlags, parse, ready, start } from '../helpers/master-process.js'

const run = promisify(execFile)

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

t.test('no --bind and no LISTEN_FDS: 127.0.0.1:8000; a bind that fails is one clear line, exit 1', async (t) => {
  const child = spawnTracked(t, process.execPath, [cli, '-w', '1', app])
  const m = await waitForOutput(child, /listening on ([^\s;]+)|startup failed: (.*)/)
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
