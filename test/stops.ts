/**
 * Every stop path of the sdserve command exits 0 and logs "stopped" last,
 * whenever the signal comes: before the start, while the workers boot, while
 * serving, during a reload, during a binary upgrade. A main process that
 * exits non-zero on SIGTERM leaves its systemd unit failed. Every loop is
 * bounded in count.
 */
import t, { type Test } from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createServer, type AddressInfo } from 'node:net'
import { cli, freePort, get, root, shortTmp, spawnTracked, waitForOutput, type Tracked } from './helpers/proc.js'
import { startReceiver, type Receiver } from './helpers/notify-receiver.js'
import { needs } from './helpers/needs.js'

const app = join(root, 'test/fixtures/master-app.mjs')

interface Started {
  child: Tracked
  port: number
  setVersion(v: string): void
}

function start(t: Test, args: string[], port: number, env: Record<string, string> = {}, cwd?: string): Started {
  const dir = shortTmp(t)
  const versionFile = join(dir, 'version')
  writeFileSync(versionFile, 'v1')
  const child = spawnTracked(t, process.execPath, [cli, '-b', `127.0.0.1:${port}`, '--graceful-timeout', '10', ...args], {
    env: { ...process.env, APP_VERSION_FILE: versionFile, ...env },
    ...(cwd === undefined ? {} : { cwd }),
  })
  return { child, port, setVersion: (v) => writeFileSync(versionFile, v) }
}

/** The last line the process wrote. */
function lastLine(child: Tracked): string {
  return child.output().trimEnd().split('\n').at(-1) ?? ''
}

/** Exit 0, "stopped" last, and (with a receiver) nothing but STOPPING and its followers after STOPPING=1. */
async function stoppedCleanly(t: Test, child: Tracked, what: string, rx?: Receiver): Promise<void> {
  t.equal(await child.exited, 0, `${what}: exit 0`)
  t.match(lastLine(child), /\[INFO\] stopped$/, `${what}: the log ends with "stopped"`)
  if (rx === undefined) return
  const payloads = rx.payloads()
  const stopping = payloads.findIndex((p) => p.startsWith('STOPPING=1'))
  t.ok(stopping >= 0, `${what}: STOPPING=1 was sent`)
  t.notOk(
    payloads.slice(stopping).some((p) => /^(READY|RELOADING)=1/m.test(p)),
    `${what}: no READY=1 or RELOADING=1 after STOPPING=1: ${JSON.stringify(payloads.slice(stopping))}`,
  )
}

t.test('TERM right after "listening on", while the workers boot: exit 0, ten times over', async (t) => {
  for (let i = 0; i < 10; i++) {
    const s = start(t, ['-w', '2', app], await freePort())
    await waitForOutput(s.child, /listening on/)
    s.child.kill('SIGTERM')
    await stoppedCleanly(t, s.child, `stop ${i + 1}`)
    t.notMatch(s.child.output(), /\[ERROR\]/, `stop ${i + 1}: no worker exit is reported as unexpected`)
  }
})

t.test('INT and QUIT right after "listening on": a fast stop exits 0 too', async (t) => {
  for (const signal of ['SIGINT', 'SIGQUIT'] as const) {
    const s = start(t, ['-w', '2', app], await freePort())
    await waitForOutput(s.child, /listening on/)
    s.child.kill(signal)
    await stoppedCleanly(t, s.child, signal)
  }
})

t.test('TERM while a worker is still loading the app: no READY=1 after STOPPING=1', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const port = await freePort()
  const s = start(t, ['-w', '2', app], port, { NOTIFY_SOCKET: rx.address })
  s.setVersion('hang') // the workers never finish loading
  await waitForOutput(s.child, /listening on/)
  await rx.waitFor(2) // EXTEND_TIMEOUT_USEC, STATUS=starting
  s.child.kill('SIGTERM')
  await stoppedCleanly(t, s.child, 'stop during boot', rx)
})

t.test('TERM before the start (the config file still loading): exit 0, nothing started; HUP and USR1 meanwhile are ignored', async (t) => {
  const dir = shortTmp(t)
  // A config file that takes its time: the signals come while sdserve waits for it.
  writeFileSync(
    join(dir, 'sdserve.config.mjs'),
    `process.stderr.write('config loading\\n')\nawait new Promise((r) => setTimeout(r, 2000))\nexport default { app: ${JSON.stringify(app)} }\n`,
  )
  const s = start(t, [], await freePort(), {}, dir)
  await waitForOutput(s.child, /config loading/)
  s.child.kill('SIGHUP')
  s.child.kill('SIGUSR1')
  s.child.kill('SIGTERM')
  t.equal(await s.child.exited, 0, 'exit 0')
  t.match(lastLine(s.child), /\[INFO\] SIGTERM before the start: nothing started, stopped$/)
  t.notMatch(s.child.output(), /listening on/, 'no socket was opened')
})

t.test('TERM while serving: exit 0', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const port = await freePort()
  const s = start(t, ['-w', '2', app], port, { NOTIFY_SOCKET: rx.address })
  await waitForOutput(s.child, /generation 1\) serving[\s\S]*generation 1\) serving/)
  t.match((await get({ port })).body, /^v1 /)
  s.child.kill('SIGTERM')
  await stoppedCleanly(t, s.child, 'stop while serving', rx)
})

t.test('TERM during a reload whose new generation is still booting: the reload is abandoned, exit 0', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const port = await freePort()
  const s = start(t, ['-w', '2', app], port, { NOTIFY_SOCKET: rx.address })
  await waitForOutput(s.child, /generation 1\) serving[\s\S]*generation 1\) serving/)
  s.setVersion('hang')
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /worker \d+ \(pid \d+, generation 2\) spawned|reloading/)
  s.child.kill('SIGTERM')
  await stoppedCleanly(t, s.child, 'stop during a reload', rx)
  t.match(s.child.output(), /reload abandoned: stopping/)
  t.notMatch(s.child.output(), /reload failed/, 'a stop is not a failed reload')
})

t.test('TERM during a binary upgrade: the new master stops with exit 0 too', async (t) => {
  const port = await freePort()
  const s = start(t, ['-w', '2', app], port)
  await waitForOutput(s.child, /generation 1\) serving[\s\S]*generation 1\) serving/)
  s.setVersion('hang') // the new master's workers never finish booting
  s.child.kill('SIGUSR2')
  await waitForOutput(s.child, new RegExp(`\\[(?!${s.child.pid}\\])\\d+\\] \\[INFO\\] sdserve \\S+ master \\d+: listening on`))
  s.child.kill('SIGTERM')
  await stoppedCleanly(t, s.child, 'stop during an upgrade')
  t.match(s.child.output(), /binary upgrade given up, stopping: the new master exited with code 0 before it served/)
})

t.test('TERM while a reload reads the config file: the reload starts no generation, exit 0', async (t) => {
  const dir = shortTmp(t)
  const slow = join(dir, 'slow')
  // The config file takes its time once $dir/slow exists: on the reload, not at the start.
  writeFileSync(
    join(dir, 'sdserve.config.mjs'),
    `import { existsSync } from 'node:fs'\n` +
      `if (existsSync(${JSON.stringify(slow)})) { process.stderr.write('config reloading\\n'); await new Promise((r) => setTimeout(r, 2000)) }\n` +
      `export default { app: ${JSON.stringify(app)}, workers: 1 }\n`,
  )
  const s = start(t, [], await freePort(), {}, dir)
  await waitForOutput(s.child, /generation 1\) serving/)
  writeFileSync(slow, '')
  s.child.kill('SIGHUP')
  await waitForOutput(s.child, /config reloading/)
  s.child.kill('SIGTERM')
  await stoppedCleanly(t, s.child, 'stop during a config reload')
  t.match(s.child.output(), /reload abandoned: stopping/)
  t.notMatch(s.child.output(), /generation 2/, 'no new generation was started')
})

t.test('Master.stop() while start() opens the sockets: both resolve, nothing is left bound', async (t) => {
  const { Master } = await import('../lib/master.js')
  const { Logger } = await import('../lib/logger.js')
  const { DEFAULTS } = await import('../lib/config.js')
  const port = await freePort()
  const lines: string[] = []
  const logger = new Logger({ level: 'info', write: (line: string) => lines.push(line) })
  const m = new Master({ ...DEFAULTS, app, workers: 1, bind: [`127.0.0.1:${port}`] }, { signals: false, logger })
  const started = m.start()
  t.equal(await m.stop(), 0, 'the stop resolves with 0')
  await t.resolves(started, 'start() resolves: a stop is not a failed start')
  t.notOk(lines.some((l) => /spawned|startup failed/.test(l)), 'no worker was started and nothing failed')
  // The port is free again: the socket opened by start() was closed by the stop.
  t.equal(await bindable(port), true)
})

t.test('Master.stop() while a bind fails: the stop wins, start() resolves', async (t) => {
  const { Master } = await import('../lib/master.js')
  const { Logger } = await import('../lib/logger.js')
  const { DEFAULTS } = await import('../lib/config.js')
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => holder.close())
  const port = (holder.address() as AddressInfo).port
  const logger = new Logger({ level: 'info', write: () => undefined })
  const m = new Master({ ...DEFAULTS, app, workers: 1, bind: [`127.0.0.1:${port}`] }, { signals: false, logger })
  const started = m.start()
  t.equal(await m.stop(), 0)
  await t.resolves(started)
})

/** Whether a TCP port on 127.0.0.1 can be bound now. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}
