// `sdserve unit --out` and `sdserve doctor` inside the container: the units it
// writes for /srv/app/app.mjs boot through the socket, the doctor (reading the
// unit with systemctl cat) finds no error or warning in them, `systemctl reload`
// serves a new generation and `systemctl stop` ends with Result=success. The
// nginx block it writes passes `nginx -t` and proxies to the app.
import t, { type Test } from 'tap'
import { container, getApp, inNetns, installApp, journal, must, prop, run, until, untilState, workerPid, writeInto } from './helpers/container.js'

const c = container()
/** Wait until the unit's status says generation 2 serves with 2 workers. */
const untilGeneration2 = (tries?: number): Promise<true> =>
  until('generation 2 to serve', async () => (/^2 of 2 workers serving \(generation 2\)/.test(await prop(c, 'app.service', 'StatusText')) ? true : undefined), tries)
const sdserve = '/srv/app/node_modules/.bin/sdserve'
const notifyReload = c.systemdVersion >= 253
// The app and sdserve as a user installs them, but none of the example units.
await installApp(c, { units: {} })

t.test('sdserve unit --out writes the units for the container', async (t) => {
  const out = await must(c, [
    sdserve, 'unit', '--out', '/tmp/units', '--systemd-version', String(c.systemdVersion), '--workers', '2', '--lame-duck', '0',
    '--graceful-timeout', '20', '/srv/app/app.mjs', '--', '--access-logfile', '-',
  ])
  t.match(out, /wrote \/tmp\/units\/app\.socket\nwrote \/tmp\/units\/app\.service\nwrote \/tmp\/units\/nginx-app\.conf\n/)
  const service = await must(c, ['cat', '/tmp/units/app.service'])
  t.match(service, /^ExecStart=\/srv\/app\/node_modules\/\.bin\/sdserve --workers 2 --timeout 30 --graceful-timeout 20 --pid \/run\/app\/sdserve\.pid --access-logfile - app\.mjs$/m)
  t.match(service, new RegExp(`^Type=${notifyReload ? 'notify-reload' : 'notify'}$`, 'm'))
  await must(c, ['cp', '/tmp/units/app.socket', '/tmp/units/app.service', '/etc/systemd/system/'])
  await must(c, ['systemctl', 'daemon-reload'])
  t.equal((await run(c, ['systemd-analyze', 'verify', '/etc/systemd/system/app.service'])).stderr.match(/Unknown key|Invalid|Failed to parse/g), null, 'systemd reads every line')
})

t.test('the socket starts the service on the first connection; a worker answers', async (t) => {
  await must(c, ['systemctl', 'enable', '--now', 'app.socket'])
  t.equal(await prop(c, 'app.service', 'ActiveState'), 'inactive')
  const reply = await getApp(c)
  t.match(reply.body, /^hello from worker \d+: client unix over http\n$/)
  await untilState(c, 'app.service', 'active')
  t.equal(await prop(c, 'app.service', 'Type'), notifyReload ? 'notify-reload' : 'notify')
  t.equal(await prop(c, 'app.service', 'TimeoutStopUSec'), '30s')
  t.equal(await prop(c, 'app.service', 'WatchdogUSec'), '40s')
  t.ok(workerPid(reply.body) > 0)
})

t.test('sdserve doctor app.service (systemctl cat) finds no error and no warning', async (t) => {
  const r = await run(c, [sdserve, 'doctor', 'app.service'])
  t.equal(r.code, 0, r.stderr)
  t.notMatch(r.stdout, /^(error|warning):/m)
  t.match(r.stdout, /^app\.service: (no problems found|0 errors, 0 warnings, \d+ notes?) \(\/etc\/systemd\/system\/app\.service\)$/m)
  const json = JSON.parse(await must(c, [sdserve, 'doctor', '--json', 'app.service'])) as { errors: number; warnings: number; files: string[] }
  t.same([json.errors, json.warnings, json.files], [0, 0, ['/etc/systemd/system/app.service']])
  // A drop-in that undercuts the drain is seen through systemctl cat, with its file and line.
  await must(c, ['mkdir', '-p', '/etc/systemd/system/app.service.d'])
  await must(c, ['sh', '-c', 'printf "[Service]\\nTimeoutStopSec=15s\\n" > /etc/systemd/system/app.service.d/short.conf'])
  // systemctl cat shows the drop-ins systemd loaded.
  await must(c, ['systemctl', 'daemon-reload'])
  const bad = await run(c, [sdserve, 'doctor', 'app.service'])
  t.equal(bad.code, 1)
  t.match(bad.stdout, /^error: TimeoutStopSec=15s is shorter than the drain \(lame duck 0 s \+ graceful timeout 20 s\): set TimeoutStopSec=30s \(\/etc\/systemd\/system\/app\.service\.d\/short\.conf:2\)$/m)
  await must(c, ['rm', '-r', '/etc/systemd/system/app.service.d'])
  await must(c, ['systemctl', 'daemon-reload'])
})

t.test('systemctl reload serves a new generation', async (t) => {
  const mainPid = await prop(c, 'app.service', 'MainPID')
  await must(c, ['systemctl', 'reload', 'app.service'])
  await untilGeneration2()
  t.equal(await prop(c, 'app.service', 'MainPID'), mainPid, 'the same master')
  t.match((await getApp(c)).body, /^hello from worker \d+/)
})

t.test('the generated nginx block passes nginx -t and proxies to the app', async (t) => {
  await must(c, ['cp', '/tmp/units/nginx-app.conf', '/etc/nginx/conf.d/app.conf'])
  await must(c, ['rm', '-f', '/etc/nginx/sites-enabled/default'])
  await must(c, ['nginx', '-t'])
  await must(c, ['systemctl', 'unmask', 'nginx.service'])
  await must(c, ['systemctl', 'start', 'nginx.service'])
  const r = await inNetns(c, ['curl', '-sS', '--max-time', '30', '--interface', '127.0.0.2', 'http://127.0.0.1/'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^hello from worker \d+: client 127\.0\.0\.2 over http\n$/, 'nginx forwarded the client')
  await must(c, ['systemctl', 'stop', 'nginx.service'])
})

// The niceness of every thread of the master's children: [pid, nice] per thread.
async function childThreads(mainPid: string): Promise<Array<[number, number]>> {
  const r = await run(c, ['ps', '-L', '-o', 'pid=,ni=', '--ppid', mainPid])
  return r.stdout
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.trim().split(/\s+/).map(Number) as [number, number])
}

const bootNice = (extra: string): string =>
  '[Service]\n' +
  // A long warm-up keeps the new workers booting long enough to be seen at nice 10.
  'Environment="SDSERVE_CMD_ARGS=--boot-nice 10 --warm-up / --warm-up-count 20000"\n' +
  extra

async function restartWith(dropIn: string): Promise<string> {
  await must(c, ['mkdir', '-p', '/etc/systemd/system/app.service.d'])
  writeInto(c, '/etc/systemd/system/app.service.d/boot-nice.conf', dropIn)
  await must(c, ['systemctl', 'daemon-reload'])
  await must(c, ['systemctl', 'restart', 'app.service'], 120_000)
  return prop(c, 'app.service', 'MainPID')
}

const nices = async (mainPid: string): Promise<number[]> => [...new Set((await childThreads(mainPid)).map(([, ni]) => ni))]
const offWarning = (m: string): boolean => m.includes('--boot-nice 10 is off')

/** A reload of the service at MAINPID: its new workers boot at nice 10 (every thread) and serve at 0. */
async function reloadSeenAtNice10(t: Test, mainPid: string): Promise<void> {
  t.same(await nices(mainPid), [0], 'the first generation boots at full priority')
  const warnedBefore = (await journal(c, 'app.service')).filter((e) => offWarning(e.MESSAGE)).length
  // --no-block: a Type=notify-reload reload returns only once the new generation serves.
  await must(c, ['systemctl', 'reload', '--no-block', 'app.service'])
  // A worker of the reload with several threads, all at nice 10: right after its
  // spawn it has one thread, which is lowered, and the threads it then starts
  // inherit the value; the threads it has are set one by one.
  const lowered = await until('a new worker with all its threads at nice 10', async () => {
    const byPid = new Map<number, number[]>()
    for (const [pid, ni] of await childThreads(mainPid)) byPid.set(pid, [...(byPid.get(pid) ?? []), ni])
    return [...byPid.values()].find((nis) => nis.length > 1 && nis.every((ni) => ni === 10))
  }, 300)
  t.ok(lowered.length > 1, `every thread of the booting worker (${lowered.length}), not only its main thread`)
  await untilGeneration2(1200)
  await until('the old workers to exit', async () => (new Set((await childThreads(mainPid)).map(([pid]) => pid)).size === 2 ? true : undefined))
  t.same(await nices(mainPid), [0], 'the new workers serve at nice 0, every thread')
  t.equal((await journal(c, 'app.service')).filter((e) => offWarning(e.MESSAGE)).length, warnedBefore, 'no warning that boot scheduling is off')
}

t.test('--boot-nice under DynamicUser= with CAP_SYS_NICE: a reloaded worker boots at nice 10 and serves at 0', async (t) => {
  const mainPid = await restartWith(bootNice('CapabilityBoundingSet=CAP_SYS_NICE\nAmbientCapabilities=CAP_SYS_NICE\n'))
  await reloadSeenAtNice10(t, mainPid)
})

t.test('--boot-nice under DynamicUser= with the unit\'s LimitNICE=+0', async (t) => {
  const mainPid = await restartWith(bootNice(''))
  // systemd raises a hard limit only where it holds CAP_SYS_RESOURCE, which a
  // container may lack; it then starts the service with the limit it has.
  const limit = /^Max nice priority\s+(\d+)/m.exec(await must(c, ['cat', `/proc/${mainPid}/limits`]))?.[1]
  if (limit !== '20') {
    t.equal(limit, '0', 'the limit systemd could not raise')
    await must(c, ['systemctl', 'reload', 'app.service'], 120_000)
    const warnings = (await journal(c, 'app.service')).filter((e) => offWarning(e.MESSAGE))
    t.match(warnings.at(-1)?.MESSAGE, /--boot-nice 10 is off: a worker at a lower priority could not come back to nice 0 \(uid \d+, RLIMIT_NICE 0 \(nice 19 at best\), no CAP_SYS_NICE\)/, 'the master warns, with the reason')
    t.equal(warnings.at(-1)?.PRIORITY, '4', 'at warning level')
    t.same(await nices(mainPid), [0], 'no worker was left at a lower priority')
    t.comment('this host\'s systemd cannot set LimitNICE= (no CAP_SYS_RESOURCE): checked that boot scheduling stays off and says why')
  } else await reloadSeenAtNice10(t, mainPid)
  await must(c, ['rm', '-r', '/etc/systemd/system/app.service.d'])
  await must(c, ['systemctl', 'daemon-reload'])
})

t.test('systemctl stop ends with Result=success', async (t) => {
  await must(c, ['systemctl', 'stop', 'app.service'])
  t.equal(await prop(c, 'app.service', 'ActiveState'), 'inactive')
  t.equal(await prop(c, 'app.service', 'Result'), 'success')
})
