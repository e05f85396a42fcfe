import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { doctorMain, doctorUsage, formatFinding, systemctlCat, type DoctorDeps } from '../../lib/doctor/main.js'
import { formatFiles, generate } from '../../lib/unit/generate.js'
import { parseBind } from '../../lib/binds.js'
import { shortTmp } from '../helpers/proc.js'

const GOOD = `[Service]
Type=notify-reload
ExecStart=/srv/app/node_modules/.bin/sdserve --pid /run/app/sdserve.pid app.mjs
KillMode=control-group
TimeoutStopSec=40
WatchdogSec=40
RuntimeDirectory=app
Restart=on-failure
`

function doctor(args: string[], deps: Partial<DoctorDeps> = {}): { code: number; out: string; err: string } {
  let out = ''
  let err = ''
  const all: DoctorDeps = { systemdVersion: () => 257, systemctlCat: () => '', ...deps }
  const code = doctorMain(args, { stdout: (s) => (out += s), stderr: (s) => (err += s) }, all)
  return { code, out, err }
}

t.test('a good unit file: no findings, exit 0', async (t) => {
  const file = join(shortTmp(t), 'app.service')
  writeFileSync(file, GOOD)
  const r = doctor([file])
  t.equal(r.code, 0, r.err)
  t.equal(r.out, `${file}: no problems found (${file})\n`)
})

t.test('a bad unit file and its drop-ins: one line per finding, a summary, exit 1', async (t) => {
  const dir = shortTmp(t)
  const file = join(dir, 'app.service')
  writeFileSync(file, GOOD)
  mkdirSync(`${file}.d`)
  writeFileSync(join(`${file}.d`, '10-stop.conf'), '[Service]\nTimeoutStopSec=20s\nExecStart=\nExecStart=/srv/app/node_modules/.bin/sdserve --lame-duck 5 --pid /run/app/sdserve.pid app.mjs\n')
  writeFileSync(join(`${file}.d`, '20-restart.conf'), '[Service]\nRestart=no\nKillMode=mixed\n')
  writeFileSync(join(`${file}.d`, 'README'), '[Service]\nRestart=always\n')
  const r = doctor([file])
  t.equal(r.code, 1)
  t.same(r.out.split('\n'), [
    `error: TimeoutStopSec=20s is shorter than the drain (lame duck 5 s + graceful timeout 30 s): set TimeoutStopSec=45s (${dir}/app.service.d/10-stop.conf:2)`,
    `info: KillMode=mixed: fine, but binary upgrades (USR2) need KillMode=control-group: if you upgrade with USR2, add KillMode=control-group in a drop-in (${dir}/app.service.d/20-restart.conf:3)`,
    `warning: Restart=no: a master that crashes or misses the watchdog stays down: Restart=on-failure (${dir}/app.service.d/20-restart.conf:2)`,
    `${file}: 1 error, 1 warning, 1 note (${file}, ${dir}/app.service.d/10-stop.conf, ${dir}/app.service.d/20-restart.conf)`,
    '',
  ])
})

t.test('a unit name is read with systemctl cat, drop-ins and all', async (t) => {
  const asked: string[] = []
  const cat = `# /etc/systemd/system/app.service\n${GOOD}\n# /etc/systemd/system/app.service.d/override.conf\n[Service]\nType=simple\nNotifyAccess=all\n`
  const r = doctor(['app.service'], { systemctlCat: (name) => (asked.push(name), cat) })
  t.same(asked, ['app.service'])
  t.equal(r.code, 1)
  t.match(r.out, /^error: Type=simple: .*\(\/etc\/systemd\/system\/app\.service\.d\/override\.conf:2\)$/m)
  t.match(r.out, /^warning: NotifyAccess=all: .*: NotifyAccess=main \(\/etc\/systemd\/system\/app\.service\.d\/override\.conf:3\)$/m)
  t.match(r.out, /^app\.service: 1 error, 1 warning, 0 notes \(\/etc\/systemd\/system\/app\.service, \/etc\/systemd\/system\/app\.service\.d\/override\.conf\)$/m)
})

t.test('--json', async (t) => {
  const r = doctor(['--json', 'app'], { systemctlCat: () => `# /etc/systemd/system/app.service\n${GOOD.replace('Restart=on-failure\n', '')}` })
  t.equal(r.code, 0)
  const report = JSON.parse(r.out) as Record<string, unknown>
  t.same(report, {
    unit: 'app',
    files: ['/etc/systemd/system/app.service'],
    findings: [
      {
        severity: 'warning',
        check: 'restart',
        message: 'no Restart=: a master that crashes or misses the watchdog stays down',
        fix: 'Restart=on-failure',
      },
    ],
    errors: 0,
    warnings: 1,
    notes: 0,
  })
})

t.test('--systemd-version, else the running one', async (t) => {
  const file = join(shortTmp(t), 'app.service')
  writeFileSync(file, GOOD.replace('notify-reload', 'notify').replace('Type=notify\n', 'Type=notify\nExecReload=/bin/kill -s HUP $MAINPID\n'))
  t.equal(doctor([file], { systemdVersion: () => undefined }).out, `${file}: no problems found (${file})\n`, 'unknown: no note')
  t.match(doctor([file]).out, /^info: Type=notify on systemd 257/m)
  t.equal(doctor(['--systemd-version', '252', file], { systemdVersion: () => 257 }).out, `${file}: no problems found (${file})\n`)
})

t.test('the generated units, printed and fed back as systemctl cat shows them, pass', async (t) => {
  const files = generate({
    name: 'app', dir: '/srv/app', app: 'app.mjs', binds: [parseBind('unix:/run/app.sock')], socketGroup: 'www-data',
    gracefulTimeout: 30, lameDuck: 10, timeout: 30, systemdVersion: 257, binaryUpgrade: true, sdserve: '/srv/app/node_modules/.bin/sdserve', extra: [],
  }).filter((f) => f.file.startsWith('app.service'))
  const cat = formatFiles(files).replace(/^# ---- (.*) ----$/gm, '# /etc/systemd/system/$1')
  const r = doctor(['app.service'], { systemctlCat: () => cat })
  t.equal(r.code, 0)
  t.match(r.out, /^app\.service: no problems found \(\/etc\/systemd\/system\/app\.service, \/etc\/systemd\/system\/app\.service\.d\/binary-upgrade\.conf\)\n$/)
})

t.test('bad usage and unreadable units: exit 2', async (t) => {
  const cases: Array<[string[], Partial<DoctorDeps>, RegExp]> = [
    [[], {}, /^sdserve doctor: one UNIT is needed \(a file or a unit name\), got 0\n$/],
    [['a', 'b'], {}, /got 2/],
    [['--systemd-version', 'x', 'a'], {}, /--systemd-version must be a systemd version number/],
    [['--bogus', 'a'], {}, /Unknown option '--bogus'/],
    [['/nonexistent/app.service'], {}, /^sdserve doctor: cannot read \/nonexistent\/app\.service: ENOENT/],
    [['nothere.service'], { systemctlCat: () => { throw new Error('systemctl cat nothere.service: No files found') } }, /cannot read nothere\.service: systemctl cat nothere\.service: No files found/],
  ]
  for (const [args, deps, message] of cases) {
    const r = doctor(args, deps)
    t.equal(r.code, 2, args.join(' '))
    t.match(r.err, message)
  }
  const h = doctor(['--help'])
  t.equal(h.code, 0)
  t.equal(h.out, doctorUsage())
})

t.test('systemctlCat runs systemctl cat -- NAME', async (t) => {
  const dir = shortTmp(t)
  const fake = join(dir, 'systemctl')
  writeFileSync(fake, '#!/bin/sh\n[ "$1 $2 $3" = "cat -- app.service" ] || { echo "no unit $3" >&2; exit 1; }\necho "# /etc/systemd/system/app.service"\necho "[Service]"\n', { mode: 0o755 })
  t.equal(systemctlCat('app.service', fake), '# /etc/systemd/system/app.service\n[Service]\n')
  t.throws(() => systemctlCat('other.service', fake), /^systemctl cat other\.service: no unit other\.service$/)
  writeFileSync(join(dir, 'silent'), '#!/bin/sh\nexit 3\n', { mode: 0o755 })
  t.throws(() => systemctlCat('x', join(dir, 'silent')), /^systemctl cat x: Command failed/)
  t.throws(() => systemctlCat('x', join(dir, 'none')), /^systemctl cat x: .*ENOENT/)
})

t.test('formatFinding: the location when known', async (t) => {
  t.equal(formatFinding({ severity: 'error', check: 'x', message: 'm', fix: 'f' }), 'error: m: f\n')
  t.equal(formatFinding({ severity: 'error', check: 'x', message: 'm', fix: 'f', file: 'u' }), 'error: m: f (u)\n')
  t.equal(formatFinding({ severity: 'error', check: 'x', message: 'm', fix: 'f', file: 'u', line: 3 }), 'error: m: f (u:3)\n')
})
