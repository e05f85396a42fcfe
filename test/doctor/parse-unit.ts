import t from 'tap'
import { effective, parseSystemctlCat, parseUnitFile, setting, type Unit } from '../../lib/doctor/parse-unit.js'

const one = (text: string): Unit => ({ files: ['u'], assignments: parseUnitFile(text, 'u') })

t.test('sections, assignments, comments and line numbers', async (t) => {
  const a = parseUnitFile('# comment\n; also a comment\n[Unit]\nDescription = my app \n\n[Service]\nType=notify\nnot an assignment\nEnvironment=A=1 B=2\r\n', 'f.service')
  t.same(
    a.map((x) => [x.section, x.key, x.value, x.file, x.line]),
    [
      ['Unit', 'Description', 'my app', 'f.service', 4],
      ['Service', 'Type', 'notify', 'f.service', 7],
      ['Service', 'Environment', 'A=1 B=2', 'f.service', 9],
    ],
  )
  t.same(parseUnitFile('Type=simple\n[Service]\n', 'x'), [], 'an assignment outside any section is ignored, as systemd does')
})

t.test('a trailing backslash continues the line, comments inside it are skipped', async (t) => {
  const a = parseUnitFile('[Service]\nExecStart=/bin/sdserve \\\n  --workers 2 \\\n# a comment in between\n  app.mjs\nType=notify\nRestart=\\', 'f')
  t.equal(a[0]?.value, '/bin/sdserve  --workers 2  app.mjs')
  t.equal(a[0]?.line, 2, 'the first line of the continued line')
  t.equal(a[1]?.key, 'Type')
  t.equal(a[1]?.line, 6)
  t.equal(a[2]?.value, '', 'a backslash on the last line continues into nothing')
})

t.test('repeated keys: the last wins; an empty assignment resets', async (t) => {
  const u = one('[Service]\nExecStart=/bin/a\nExecStart=\nExecStart=/bin/b\nType=simple\nType=notify\nRuntimeDirectory=x\nRuntimeDirectory=y\nRestart=always\nRestart=\n')
  t.same(
    effective(u, 'Service', 'ExecStart').map((a) => a.value),
    ['/bin/b'],
  )
  t.equal(setting(u, 'Service', 'Type')?.value, 'notify')
  t.same(
    effective(u, 'Service', 'RuntimeDirectory').map((a) => a.value),
    ['x', 'y'],
    'a list accumulates',
  )
  t.equal(setting(u, 'Service', 'Restart'), undefined, 'reset to the default')
  t.equal(setting(u, 'Service', 'KillMode'), undefined)
  t.equal(setting(u, 'Unit', 'Type'), undefined, 'another section')
})

t.test('systemctl cat: the unit file and its drop-ins, each after its "# /path" line', async (t) => {
  const text = `# /etc/systemd/system/app.service
# a comment of the unit
[Service]
Type=notify
ExecStart=/srv/app/node_modules/.bin/sdserve app.mjs
KillMode=mixed
TimeoutStopSec=40

# /etc/systemd/system/app.service.d/binary-upgrade.conf
# Upgrade with USR2; see /etc/systemd/system/app.service.d/README
# /not/a/header: no blank line before it
[Service]
KillMode=control-group

# /run/systemd/system.control/app.service.d/50-TimeoutStopSec.conf
TimeoutStopSec=1
[Service]
TimeoutStopSec=
TimeoutStopSec=90
`
  const u = parseSystemctlCat(text)
  t.same(u.files, [
    '/etc/systemd/system/app.service',
    '/etc/systemd/system/app.service.d/binary-upgrade.conf',
    '/run/systemd/system.control/app.service.d/50-TimeoutStopSec.conf',
  ])
  const kill = setting(u, 'Service', 'KillMode')
  t.same([kill?.value, kill?.file, kill?.line], ['control-group', '/etc/systemd/system/app.service.d/binary-upgrade.conf', 4], 'the drop-in wins, located in its own file')
  const stop = setting(u, 'Service', 'TimeoutStopSec')
  t.same([stop?.value, stop?.line], ['90', 4], 'an assignment before a drop-in\'s first section is ignored; the reset and the new value apply')
  t.equal(setting(u, 'Service', 'ExecStart')?.line, 4)
  t.same(parseSystemctlCat(''), { files: [], assignments: [] }, 'no output, no unit')
  t.same(parseSystemctlCat('# /a\n# /b\n[Service]\nType=notify\n').files, ['/a', '/b'], 'an empty file')
})
