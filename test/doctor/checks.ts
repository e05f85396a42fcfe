import t from 'tap'
import { checkUnit, niceFloorOf, type Finding } from '../../lib/doctor/checks.js'
import { parseUnitFile } from '../../lib/doctor/parse-unit.js'

/** A unit that passes: each bad unit below changes one thing. */
const GOOD: Record<string, string> = {
  Type: 'notify-reload',
  NotifyAccess: 'main',
  ExecStart: '/srv/app/node_modules/.bin/sdserve --pid /run/app/sdserve.pid app.mjs',
  KillMode: 'mixed',
  TimeoutStopSec: '40',
  WatchdogSec: '40',
  RuntimeDirectory: 'app',
  Restart: 'on-failure',
}

/** The unit file of GOOD with changes (undefined: the key left out). */
function unitText(changes: Record<string, string | undefined> = {}): string {
  const settings = { ...GOOD, ...changes }
  return `[Unit]\nDescription=x\n\n[Service]\n${Object.entries(settings)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n`
}

const check = (text: string, systemdVersion?: number): Finding[] =>
  checkUnit({ files: ['app.service'], assignments: parseUnitFile(text, 'app.service') }, systemdVersion === undefined ? {} : { systemdVersion })

t.test('the good unit: not even a note... but for KillMode=mixed, a note on binary upgrades', async (t) => {
  t.same(
    check(unitText(), 257).map((f) => [f.severity, f.check]),
    [['info', 'kill-mode']],
  )
  t.same(check(unitText({ KillMode: 'control-group' }), 257), [])
  t.same(check(unitText({ KillMode: undefined }), 257), [], "control-group is systemd's default")
})

interface Bad {
  name: string
  changes: Record<string, string | undefined>
  version?: number
  severity: Finding['severity']
  check: string
  message: RegExp
  fix: RegExp
  line?: number
}

const BAD: Bad[] = [
  { name: 'Type=simple', changes: { Type: 'simple' }, severity: 'error', check: 'type', message: /^Type=simple: systemd neither waits/, fix: /^Type=notify-reload \(systemd 253 and later\) or Type=notify$/, line: 5 },
  { name: 'Type=exec on 252', changes: { Type: 'exec' }, version: 252, severity: 'error', check: 'type', message: /^Type=exec:/, fix: /^Type=notify$/ },
  { name: 'Type=forking', changes: { Type: 'forking' }, severity: 'error', check: 'type', message: /^Type=forking:/, fix: /notify/ },
  { name: 'no Type=', changes: { Type: undefined }, severity: 'error', check: 'type', message: /^no Type= \(simple\)/, fix: /notify/ },
  { name: 'Type=notify-reload on 252', changes: { Type: 'notify-reload' }, version: 252, severity: 'error', check: 'type', message: /needs systemd 253, this is 252/, fix: /ExecReload=\/bin\/kill -s HUP \$MAINPID/ },
  { name: 'Type=notify on 257', changes: { Type: 'notify', ExecReload: '/bin/kill -s HUP $MAINPID' }, version: 257, severity: 'info', check: 'type', message: /Type=notify-reload is available/, fix: /^Type=notify-reload, without ExecReload=$/ },
  { name: 'Type=notify without ExecReload=', changes: { Type: 'notify' }, version: 252, severity: 'warning', check: 'exec-reload', message: /`systemctl reload` is refused/, fix: /^ExecReload=\/bin\/kill -s HUP \$MAINPID$/ },
  { name: 'NotifyAccess=all', changes: { NotifyAccess: 'all' }, severity: 'warning', check: 'notify-access', message: /^NotifyAccess=all: only the master notifies/, fix: /^NotifyAccess=main$/, line: 6 },
  { name: 'NotifyAccess=exec', changes: { NotifyAccess: 'exec' }, severity: 'warning', check: 'notify-access', message: /^NotifyAccess=exec/, fix: /^NotifyAccess=main$/ },
  { name: 'NotifyAccess=none', changes: { NotifyAccess: 'none' }, severity: 'error', check: 'notify-access', message: /ignores the master's READY=1/, fix: /^NotifyAccess=main$/ },
  {
    name: 'TimeoutStopSec under lame duck + graceful timeout',
    changes: { TimeoutStopSec: '20s', ExecStart: '/srv/app/node_modules/.bin/sdserve --lame-duck 5 --pid /run/app/sdserve.pid app.mjs' },
    severity: 'error',
    check: 'timeout-stop',
    message: /^TimeoutStopSec=20s is shorter than the drain \(lame duck 5 s \+ graceful timeout 30 s\)$/,
    fix: /^set TimeoutStopSec=45s$/,
    line: 9,
  },
  { name: 'TimeoutStopSec equal to the drain', changes: { TimeoutStopSec: '30s' }, severity: 'error', check: 'timeout-stop', message: /is no longer than the drain/, fix: /=40s$/ },
  { name: 'TimeoutSec= sets the stop timeout too', changes: { TimeoutStopSec: undefined, TimeoutSec: '1min', ExecStart: 'sdserve --graceful-timeout 120 --pid /run/app/p app.mjs' }, severity: 'error', check: 'timeout-stop', message: /^TimeoutSec=1min is shorter than the drain \(lame duck 0 s \+ graceful timeout 120 s\)/, fix: /=130s$/ },
  { name: "systemd's default 90 s", changes: { TimeoutStopSec: undefined, ExecStart: 'sdserve --graceful-timeout 100 --pid /run/app/p app.mjs' }, severity: 'error', check: 'timeout-stop', message: /^TimeoutStopSec \(systemd's default, 90s\) is shorter/, fix: /=110s$/ },
  { name: 'a TimeoutStopSec that is no time span', changes: { TimeoutStopSec: 'soon' }, severity: 'warning', check: 'timeout-stop', message: /^TimeoutStopSec=soon is not a time span/, fix: /=40s$/ },
  { name: 'KillMode=none', changes: { KillMode: 'none' }, severity: 'error', check: 'kill-mode', message: /^KillMode=none/, fix: /^KillMode=mixed$/ },
  { name: 'KillMode=process', changes: { KillMode: 'process' }, severity: 'warning', check: 'kill-mode', message: /workers stay behind/, fix: /^KillMode=mixed$/ },
  { name: 'KillMode=mixed with USR2', changes: { ExecReload: '/bin/kill -USR2 $MAINPID' }, severity: 'warning', check: 'kill-mode', message: /^KillMode=mixed with USR2 binary upgrades/, fix: /^KillMode=control-group/ },
  { name: 'no RuntimeDirectory=', changes: { RuntimeDirectory: undefined, ExecStart: 'sdserve app.mjs' }, severity: 'warning', check: 'runtime-directory', message: /^no RuntimeDirectory=: sdserve has no control socket/, fix: /^RuntimeDirectory=NAME/ },
  { name: 'a pid file in a directory nothing makes', changes: { RuntimeDirectory: 'other', ExecStart: 'sdserve -p /run/app/x.pid app.mjs' }, severity: 'warning', check: 'runtime-directory', message: /^--pid \/run\/app\/x\.pid: nothing makes \/run\/app/, fix: /^RuntimeDirectory=app$/, line: 7 },
  { name: 'WatchdogSec under the boot', changes: { WatchdogSec: '10' }, severity: 'warning', check: 'watchdog', message: /^WatchdogSec=10 is not longer than a worker's boot \(--boot-timeout, 30 s\)/, fix: /^set WatchdogSec=40s$/, line: 10 },
  { name: 'WatchdogSec under --timeout', changes: { WatchdogSec: '1min', ExecStart: 'sdserve --timeout 90 --boot-timeout 20 --pid /run/app/p app.mjs' }, severity: 'warning', check: 'watchdog', message: /^WatchdogSec=1min is not longer than --timeout \(90 s\)/, fix: /=100s$/ },
  { name: 'a WatchdogSec that is no time span', changes: { WatchdogSec: 'x' }, severity: 'warning', check: 'watchdog', message: /^WatchdogSec=x is not a time span/, fix: /=40s$/ },
  { name: 'ExecStart= not sdserve', changes: { ExecStart: '/usr/bin/node server.js' }, severity: 'error', check: 'exec-start', message: /^ExecStart= does not run sdserve: \/usr\/bin\/node server\.js$/, fix: /sdserve \[OPTIONS\] APP/, line: 7 },
  { name: 'no ExecStart=', changes: { ExecStart: undefined }, severity: 'error', check: 'exec-start', message: /^no ExecStart=$/, fix: /sdserve/ },
  { name: 'Restart=no', changes: { Restart: 'no' }, severity: 'warning', check: 'restart', message: /^Restart=no: a master that crashes/, fix: /^Restart=on-failure$/ },
  { name: 'no Restart=', changes: { Restart: undefined }, severity: 'warning', check: 'restart', message: /^no Restart=/, fix: /^Restart=on-failure$/ },
  {
    name: '--boot-nice with DynamicUser= and no LimitNICE=',
    changes: { DynamicUser: 'yes', ExecStart: 'sdserve --boot-nice 10 --pid /run/app/p app.mjs' },
    severity: 'warning',
    check: 'boot-nice',
    message: /^--boot-nice 10 with DynamicUser=yes and no LimitNICE=: a worker at a lower priority could not come back to nice 0, so sdserve leaves boot scheduling off$/,
    fix: /^LimitNICE=\+0 \(or AmbientCapabilities=CAP_SYS_NICE\)$/,
    line: 7,
  },
  {
    name: '--boot-nice with User= and a LimitNICE= short of the unit\'s Nice=',
    changes: { User: 'app', Nice: '-5', LimitNICE: '+0', ExecStart: 'sdserve --boot-nice=5 --pid /run/app/p app.mjs' },
    severity: 'warning',
    check: 'boot-nice',
    message: /^--boot-nice 5 with User=app and LimitNICE=\+0: .*could not come back to nice -5/,
    fix: /^LimitNICE=-5 /,
    line: 15,
  },
]

for (const bad of BAD) {
  t.test(`flagged: ${bad.name}`, async (t) => {
    const found = check(unitText(bad.changes), bad.version ?? 257)
    const f = found.find((x) => x.check === bad.check && x.severity === bad.severity)
    if (f === undefined) return t.fail(`no ${bad.severity} ${bad.check} in ${JSON.stringify(found)}`)
    t.match(f.message, bad.message)
    t.match(f.fix, bad.fix)
    if (bad.line !== undefined) t.same([f.file, f.line], ['app.service', bad.line])
  })
}

t.test('no watchdog (absent, 0, infinity) is no finding', async (t) => {
  for (const w of [undefined, '0', 'infinity']) t.notOk(check(unitText({ WatchdogSec: w })).some((f) => f.check === 'watchdog'), String(w))
})

t.test('without a known systemd version, Type=notify is no note, Type=notify-reload no error', async (t) => {
  t.notOk(check(unitText({ Type: 'notify', ExecReload: '/bin/kill -s HUP $MAINPID' })).some((f) => f.check === 'type'))
  t.notOk(check(unitText()).some((f) => f.check === 'type'))
  t.match(check(unitText({ Type: 'simple' }))[0]?.fix, /notify-reload/)
})

t.test('--control-socket without RuntimeDirectory= is fine; a pid file outside /run needs none', async (t) => {
  t.same(check(unitText({ RuntimeDirectory: undefined, ExecStart: 'sdserve --control-socket /var/lib/app/ctl --pid /var/lib/app/pid app.mjs' }), 257).filter((f) => f.check === 'runtime-directory'), [])
  t.same(check(unitText({ RuntimeDirectory: 'app other', ExecStart: 'sdserve --pid /run/other/pid app.mjs' }), 257).filter((f) => f.check === 'runtime-directory'), [], 'one of several directories')
})

t.test('--boot-nice: no finding as root, with LimitNICE= down to the nice value, or with CAP_SYS_NICE', async (t) => {
  const bootNice = (changes: Record<string, string>): Finding[] =>
    check(unitText({ ExecStart: 'sdserve --boot-nice 10 --pid /run/app/p app.mjs', ...changes }), 257).filter((f) => f.check === 'boot-nice')
  t.same(bootNice({}), [], 'no User=: root')
  t.same(bootNice({ User: 'root' }), [])
  t.same(bootNice({ DynamicUser: 'no', User: '0' }), [])
  t.same(bootNice({ DynamicUser: 'yes', LimitNICE: '+0' }), [])
  t.same(bootNice({ DynamicUser: 'yes', LimitNICE: '20' }), [], 'the raw limit')
  t.same(bootNice({ User: 'app', LimitNICE: 'infinity' }), [])
  t.same(bootNice({ User: 'app', Nice: '5', LimitNICE: '15:20' }), [], 'soft:hard, for a master at nice 5')
  t.same(bootNice({ User: 'app', AmbientCapabilities: 'CAP_NET_BIND_SERVICE CAP_SYS_NICE' }), [])
  t.same(bootNice({ User: 'app', LimitNICE: 'lots' }), [], "a value systemd does not read: systemd's own complaint")
  t.equal(bootNice({ User: 'app', AmbientCapabilities: '~CAP_SYS_NICE' }).length, 1, 'a capability taken away')
  t.equal(bootNice({ User: 'app', LimitNICE: '19' }).length, 1, 'nice 1 at best')
  t.same(check(unitText({ DynamicUser: 'yes', ExecStart: 'sdserve --boot-nice 0 app.mjs' })).filter((f) => f.check === 'boot-nice'), [], '--boot-nice 0 is off')
  t.same([niceFloorOf('+0'), niceFloorOf('-20'), niceFloorOf('0'), niceFloorOf('1'), niceFloorOf('40'), niceFloorOf('infinity'), niceFloorOf(' 20 : 40 '), niceFloorOf('x')], [0, -20, 19, 19, -20, -20, 0, undefined])
})

t.test('not a service unit', async (t) => {
  const found = check('[Socket]\nListenStream=/run/app.sock\n')
  t.same(
    found.map((f) => [f.severity, f.check]),
    [['error', 'service']],
  )
  t.equal(found[0]?.file, undefined)
})
