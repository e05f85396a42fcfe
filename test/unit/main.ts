import t from 'tap'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { main } from '../../lib/command.js'
import { unitMain, unitUsage } from '../../lib/unit/main.js'
import { parseSystemctlVersion, runningSystemdVersion } from '../../lib/unit/systemd-version.js'
import { shortTmp } from '../helpers/proc.js'

/** Run `sdserve unit ARGS` in-process: exit code and output. */
function unit(args: string[], version: number | null = 257): { code: number; out: string; err: string } {
  let out = ''
  let err = ''
  const code = unitMain(args, { stdout: (s) => (out += s), stderr: (s) => (err += s) }, () => version ?? undefined)
  return { code, out, err }
}

t.test('prints the three files, sized and named for the app', async (t) => {
  const r = unit(['--name', 'shop', '--workers', '4', '--lame-duck', '5', '--graceful-timeout', '20', '--timeout', '15', '/srv/shop/server.mjs'])
  t.equal(r.code, 0, r.err)
  const lines = r.out.split('\n')
  for (const line of [
    '# ---- shop.socket ----',
    'ListenStream=/run/shop.sock',
    'ListenStream=127.0.0.1:8000',
    '# ---- shop.service ----',
    'WorkingDirectory=/srv/shop',
    'ExecStart=/srv/shop/node_modules/.bin/sdserve --workers 4 --timeout 15 --graceful-timeout 20 --lame-duck 5 --pid /run/shop/sdserve.pid server.mjs',
    'Type=notify-reload',
    'TimeoutStopSec=35s',
    'WatchdogSec=25s',
    'RuntimeDirectory=shop',
    '# ---- nginx-shop.conf ----',
  ])
    t.ok(lines.includes(line), line)
  t.notOk(r.out.includes('binary-upgrade.conf ----'))
})

t.test('the defaults: app, the APP directory, systemd from systemctl, else 252', async (t) => {
  const r = unit(['relative/app.mjs:create()'], null)
  t.equal(r.code, 0, r.err)
  t.match(r.out, new RegExp(`^WorkingDirectory=${process.cwd()}/relative$`, 'm'))
  t.match(r.out, /^ExecStart=\S+\/relative\/node_modules\/\.bin\/sdserve .* "app\.mjs:create\(\)"$/m)
  t.match(r.out, /^Type=notify$/m, 'no version known: 252')
  t.match(r.out, /^ExecReload=\/bin\/kill -s HUP \$MAINPID$/m)
  const other = unit(['--dir', '/srv/www', '--sdserve', '/usr/local/bin/sdserve', '--systemd-version', '252', '/opt/app/app.mjs', '--', '--access-logfile', '-'])
  t.match(other.out, /^WorkingDirectory=\/srv\/www$/m)
  t.match(other.out, /^ExecStart=\/usr\/local\/bin\/sdserve --timeout 30 --graceful-timeout 30 --pid \/run\/app\/sdserve\.pid --access-logfile - \/opt\/app\/app\.mjs$/m, 'an app outside DIR: absolute')
})

t.test('--bind, --proxy-user', async (t) => {
  const r = unit(['--bind', 'unix:/run/web.sock', '--bind', 'localhost:8080', '--proxy-user', 'nginx', 'app.mjs'])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /^ListenStream=\/run\/web\.sock\nListenStream=127\.0\.0\.1:8080$/m)
  t.match(r.out, /^SocketUser=nginx\nSocketGroup=nginx$/m)
  t.match(unit(['--proxy-user', 'caddy:www', 'app.mjs']).out, /^SocketUser=caddy\nSocketGroup=www$/m)
})

t.test('--out writes the files, the drop-in with --binary-upgrade', async (t) => {
  const dir = join(shortTmp(t), 'units')
  const r = unit(['--out', dir, '--binary-upgrade', '/srv/app/app.mjs'])
  t.equal(r.code, 0, r.err)
  t.same(r.out.split('\n').filter(Boolean), ['app.socket', 'app.service', 'app.service.d/binary-upgrade.conf', 'nginx-app.conf'].map((f) => `wrote ${join(dir, f)}`))
  t.match(readFileSync(join(dir, 'app.service.d/binary-upgrade.conf'), 'utf8'), /^KillMode=control-group$/m)
  t.match(readFileSync(join(dir, 'app.service'), 'utf8'), /^KillMode=mixed$/m)
})

t.test('--out into something that is not a directory: exit 1', async (t) => {
  const file = join(shortTmp(t), 'file')
  writeFileSync(file, '')
  const r = unit(['--out', file, 'app.mjs'])
  t.equal(r.code, 1)
  t.match(r.err, /^sdserve unit: .*(EEXIST|ENOTDIR)/)
})

t.test('bad usage: a message naming the option, exit 2', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [[], /one APP is needed/],
    [['a.mjs', 'b.mjs'], /one APP is needed .* got 2/],
    [['app.mjs:'], /APP must be/],
    [['--name', 'a b', 'app.mjs'], /--name must be/],
    [['--bind', 'fd://3', 'app.mjs'], /--bind must be a socket systemd can listen on/],
    [['--bind', '127.0.0.1:0', 'app.mjs'], /--bind must be a socket/],
    [['--bind', 'nowhere', 'app.mjs'], /--bind must be HOST:PORT/],
    [['--proxy-user', 'a b', 'app.mjs'], /--proxy-user must be USER or USER:GROUP/],
    [['--proxy-user', 'nginx:', 'app.mjs'], /--proxy-user must be/],
    [['--workers', '0', 'app.mjs'], /--workers must be an integer from 1 to 1024/],
    [['--workers', 'many', 'app.mjs'], /--workers must be/],
    [['--graceful-timeout=-1', 'app.mjs'], /--graceful-timeout must be a number of seconds/],
    [['--graceful-timeout', 'abc', 'app.mjs'], /--graceful-timeout must be/],
    [['--lame-duck', '1e3', 'app.mjs'], /--lame-duck must be/],
    [['--timeout', '86401', 'app.mjs'], /--timeout must be a number of seconds from 0 to 86400/],
    [['--systemd-version', 'new', 'app.mjs'], /--systemd-version must be/],
    [['--sdserve', 'bin/sdserve', 'app.mjs'], /--sdserve must be an absolute path/],
    [['--frobnicate', 'app.mjs'], /Unknown option '--frobnicate'/],
    [['app.mjs', '--', '-w', '3'], /--workers goes before --/],
    [['app.mjs', '--', '--bind=unix:/x'], /--bind goes before --/],
  ]
  for (const [args, message] of cases) {
    const r = unit(args)
    t.equal(r.code, 2, args.join(' '))
    t.match(r.err, /^sdserve unit: /)
    t.match(r.err, message)
    t.equal(r.out, '')
  }
  t.equal(unit(['--workers', 'auto', 'app.mjs']).code, 0)
})

t.test('--help', async (t) => {
  const r = unit(['-h'])
  t.equal(r.code, 0)
  t.equal(r.out, unitUsage())
  t.match(r.out, /--binary-upgrade/)
})

t.test('sdserve unit and sdserve doctor are dispatched by the sdserve command', async (t) => {
  let out = ''
  let err = ''
  const io = { stdout: (s: string) => (out += s), stderr: (s: string) => (err += s) }
  t.equal(await main(['unit', '--systemd-version', '257', '/srv/app/app.mjs'], {}, io), 0, err)
  t.match(out, /^# ---- app\.socket ----/)
  const dir = shortTmp(t)
  mkdirSync(join(dir, 'x'))
  err = ''
  t.equal(await main(['doctor', '--systemd-version', '257', join(dir, 'x')], {}, io), 2)
  t.match(err, /^sdserve doctor: cannot read /)
  // The real systemctl: on a machine without this unit (or without systemd) it cannot be read.
  err = ''
  t.equal(await main(['doctor', 'sdserve-test-no-such-unit.service'], {}, io), 2)
  t.match(err, /^sdserve doctor: cannot read sdserve-test-no-such-unit\.service: systemctl cat /)
  const file = join(dir, 'app.service')
  writeFileSync(file, '[Service]\nType=simple\n')
  out = ''
  t.equal(await main(['doctor', file], {}, io), 1, 'an error found')
  t.match(out, /^error: Type=simple/m)
})

t.test('the systemd version: systemctl --version', async (t) => {
  t.equal(parseSystemctlVersion('systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT'), 252)
  t.equal(parseSystemctlVersion('something else'), undefined)
  t.equal(runningSystemdVersion('/nonexistent/systemctl'), undefined, 'no systemctl')
  const dir = shortTmp(t)
  const fake = join(dir, 'systemctl')
  writeFileSync(fake, '#!/bin/sh\necho "systemd 257 (257.9-1~deb13u1)"\n', { mode: 0o755 })
  t.equal(runningSystemdVersion(fake), 257)
})
