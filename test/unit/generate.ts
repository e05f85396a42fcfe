import t from 'tap'
import { parseBind } from '../../lib/binds.js'
import { checkUnit } from '../../lib/doctor/checks.js'
import { parseSystemctlCat, parseUnitFile } from '../../lib/doctor/parse-unit.js'
import { formatFiles, generate, nginxConf, serviceUnit, socketUnit, unitTimers, type UnitOptions } from '../../lib/unit/generate.js'

const base: UnitOptions = {
  name: 'app',
  dir: '/srv/app',
  app: 'app.mjs',
  binds: [parseBind('unix:/run/app.sock'), parseBind('127.0.0.1:8000')],
  socketGroup: 'www-data',
  gracefulTimeout: 30,
  lameDuck: 0,
  timeout: 30,
  systemdVersion: 257,
  binaryUpgrade: false,
  sdserve: '/srv/app/node_modules/.bin/sdserve',
  extra: [],
}

const lines = (text: string): string[] => text.split('\n')

t.test('the socket unit: ListenStream= per bind, the UNIX socket for the proxy only', async (t) => {
  const s = lines(socketUnit(base))
  t.ok(s.includes('[Socket]'))
  t.ok(s.includes('ListenStream=/run/app.sock'))
  t.ok(s.includes('ListenStream=127.0.0.1:8000'))
  t.ok(s.includes('SocketGroup=www-data'))
  t.ok(s.includes('SocketMode=0660'))
  t.notOk(s.some((l) => l.startsWith('SocketUser=')))
  t.ok(s.includes('Backlog=2048'))
  t.ok(s.includes('WantedBy=sockets.target'))

  const proxy = lines(socketUnit({ ...base, name: 'shop', socketUser: 'nginx', socketGroup: 'nginx', binds: [parseBind('unix:/run/shop.sock')] }))
  t.ok(proxy.includes('SocketUser=nginx'))
  t.ok(proxy.includes('SocketGroup=nginx'))
  t.ok(proxy.includes('Description=shop sockets (served by sdserve)'))

  const tcp = lines(socketUnit({ ...base, binds: [parseBind('[::1]:8080'), parseBind('*:9000')] }))
  t.same(
    tcp.filter((l) => l.startsWith('ListenStream=')),
    ['ListenStream=[::1]:8080', 'ListenStream=0.0.0.0:9000'],
  )
  t.notOk(tcp.some((l) => l.startsWith('Socket')), 'no UNIX socket: no owner or mode')
})

t.test('the service unit on systemd 253 and later: Type=notify-reload, no ExecReload=', async (t) => {
  const s = lines(serviceUnit(base))
  for (const line of [
    'Type=notify-reload',
    'NotifyAccess=main',
    'WorkingDirectory=/srv/app',
    'ExecStart=/srv/app/node_modules/.bin/sdserve --timeout 30 --graceful-timeout 30 --pid /run/app/sdserve.pid app.mjs',
    'KillMode=mixed',
    'TimeoutStopSec=40s',
    'WatchdogSec=40s',
    'Restart=on-failure',
    'RuntimeDirectory=app',
    'Requires=app.socket',
    'DynamicUser=yes',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    'SystemCallFilter=@system-service @pkey',
    'WantedBy=multi-user.target',
  ])
    t.ok(s.includes(line), line)
  t.notOk(s.some((l) => l.startsWith('ExecReload=')))
})

t.test('the service unit on systemd 252: Type=notify and ExecReload= with HUP', async (t) => {
  const s = lines(serviceUnit({ ...base, systemdVersion: 252 }))
  t.ok(s.includes('Type=notify'))
  t.ok(s.includes('ExecReload=/bin/kill -s HUP $MAINPID'))
})

t.test('timers: TimeoutStopSec past lame duck + graceful timeout, WatchdogSec past the boot and --timeout', async (t) => {
  t.same(unitTimers(base), { stop: 40, watchdog: 40 })
  const o = { ...base, lameDuck: 5, gracefulTimeout: 20, timeout: 60, workers: '4' }
  t.same(unitTimers(o), { stop: 35, watchdog: 70 })
  const s = lines(serviceUnit(o))
  t.ok(s.includes('TimeoutStopSec=35s'))
  t.ok(s.includes('WatchdogSec=70s'))
  t.ok(s.includes('ExecStart=/srv/app/node_modules/.bin/sdserve --workers 4 --timeout 60 --graceful-timeout 20 --lame-duck 5 --pid /run/app/sdserve.pid app.mjs'))
  t.same(unitTimers({ ...base, timeout: 5, extra: ['--boot-timeout', '120'] }), { stop: 40, watchdog: 130 }, '--boot-timeout after -- counts')
  t.same(unitTimers({ ...base, timeout: 0 }), { stop: 40, watchdog: 40 }, '--timeout 0: a 30 s boot')
})

t.test('options after -- are passed on, quoted for systemd', async (t) => {
  const s = serviceUnit({ ...base, app: 'app.mjs:create()', extra: ['--access-logfile', '-', '--access-logformat', '%(h)s "%(r)s"'] })
  t.match(s, /^ExecStart=\S+ --timeout 30 --graceful-timeout 30 --pid \/run\/app\/sdserve.pid --access-logfile - --access-logformat "%%\(h\)s \\"%%\(r\)s\\"" "app.mjs:create\(\)"$/m)
})

t.test('nginx: upstream to the UNIX socket, forwarded headers, WebSockets, an unbuffered location', async (t) => {
  const n = lines(nginxConf({ ...base, name: 'my-app', binds: [parseBind('unix:/run/my-app.sock')] }))
  for (const line of [
    'upstream my_app_server {',
    '    server unix:/run/my-app.sock fail_timeout=0;',
    'map $http_upgrade $my_app_connection {',
    '        proxy_set_header Host $http_host;',
    '        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
    '        proxy_set_header X-Forwarded-Proto $scheme;',
    '        proxy_http_version 1.1;',
    '        proxy_set_header Upgrade $http_upgrade;',
    '        proxy_set_header Connection $my_app_connection;',
    '        proxy_buffering off;',
    '        proxy_pass http://my_app_server;',
  ])
    t.ok(n.includes(line), line)
  t.ok(n.some((l) => l.includes('in group www-data')))
  const owned = nginxConf({ ...base, socketUser: 'nginx', socketGroup: 'nginx' })
  t.match(owned, /it is nginx \(app\.socket's SocketUser\)/)
  const tcp = nginxConf({ ...base, binds: [parseBind('127.0.0.1:8000')] })
  t.match(tcp, /server 127\.0\.0\.1:8000 fail_timeout=0;/, 'no UNIX socket: the first TCP one')
  t.notMatch(tcp, /nginx's user must/)
})

t.test('generate: the files --out writes; the drop-in only for binary upgrades', async (t) => {
  t.same(
    generate(base).map((f) => f.file),
    ['app.socket', 'app.service', 'nginx-app.conf'],
  )
  const files = generate({ ...base, binaryUpgrade: true })
  t.same(
    files.map((f) => f.file),
    ['app.socket', 'app.service', 'app.service.d/binary-upgrade.conf', 'nginx-app.conf'],
  )
  t.ok(lines(files[2]?.text ?? '').includes('KillMode=control-group'))
  const text = formatFiles(files)
  t.match(text, /^# ---- app\.socket ----\n/)
  t.match(text, /\n\n# ---- app\.service ----\n/)
  t.match(text, /\n\n# ---- app\.service\.d\/binary-upgrade\.conf ----\n/)
  t.match(text, /\n\n# ---- nginx-app\.conf ----\n/)
})

t.test('every generated service passes the doctor: no error, no warning', async (t) => {
  const variants: Array<Partial<UnitOptions>> = [
    {},
    { systemdVersion: 252 },
    { lameDuck: 15, gracefulTimeout: 60, timeout: 120 },
    { timeout: 0 },
    { extra: ['--boot-timeout', '90', '--access-logfile', '-'] },
    { extra: ['--boot-nice', '10', '--warm-up', '/'] },
    { binaryUpgrade: true, systemdVersion: 252 },
    { binds: [parseBind('[::]:80')], name: 'web', workers: 'auto' },
  ]
  for (const v of variants) {
    const o = { ...base, ...v }
    const files = generate(o)
    // As systemctl cat shows the unit: the service, then its drop-in.
    const cat = files
      .filter((f) => f.file.startsWith(`${o.name}.service`))
      .map((f) => `# /etc/systemd/system/${f.file}\n${f.text}`)
      .join('\n')
    const found = checkUnit(parseSystemctlCat(cat), { systemdVersion: o.systemdVersion })
    t.same(
      found.filter((f) => f.severity !== 'info'),
      [],
      JSON.stringify(v),
    )
    if (o.binaryUpgrade) t.same(found, [], 'with the drop-in, not even a note')
    t.ok(parseUnitFile(files[0]?.text ?? '', 's').length > 0)
  }
})
