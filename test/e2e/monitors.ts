// The other process monitors of examples/monitors, each running sdserve in the
// foreground: supervisor and runit from Debian, a Procfile under node-foreman,
// and the upstart job's own lines (upstart itself exists on no current system).
// For each: the master is the monitor's child, a worker answers, the monitor's
// reload signal replaces the workers, its stop is graceful and leaves nothing.
import t, { type Test } from 'tap'
import { chmodSync, readFileSync } from 'node:fs'
import { container, example, inNetns, inRoot, installApp, must, run, until, writeInto } from './helpers/container.js'

const c = container()
await installApp(c, { units: {} })

/** GET http://127.0.0.1:8000/ inside the container; undefined while nothing answers. */
async function answer(): Promise<string | undefined> {
  const r = await inNetns(c, ['curl', '-sS', '--max-time', '10', 'http://127.0.0.1:8000/'])
  return r.code === 0 ? r.stdout : undefined
}

const childrenOf = async (pid: string): Promise<string[]> =>
  (await run(c, ['ps', '-o', 'pid=', '--ppid', pid])).stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '')

const sdserveProcesses = async (): Promise<string[]> =>
  (await run(c, ['pgrep', '-f', 'node_modules/.bin/sdserve'])).stdout.split('\n').filter((s) => s !== '')

/** The sdserve master: the node process running sdserve (a shell may have started it, with the same words). */
async function masterProcess(): Promise<string | undefined> {
  for (const pid of await sdserveProcesses()) {
    // By its executable, not ps's comm: Node 24 and later rename their main thread (MainThread).
    const exe = (await run(c, ['readlink', `/proc/${pid}/exe`])).stdout.trim()
    if (exe.endsWith('/node')) return pid
  }
  return undefined
}

const ppidOf = async (pid: string): Promise<string> => (await must(c, ['ps', '-o', 'ppid=', '-p', pid])).trim()

/**
 * The checks every monitor gets: `master` (the monitor's child) serves through
 * two workers, `reload` replaces them, `stop` ends everything gracefully.
 */
async function exercise(t: Test, monitor: { master: string; reload: () => Promise<unknown>; stop: () => Promise<unknown> }): Promise<void> {
  const body = await until('a worker to answer', answer)
  t.match(body, /^hello from worker \d+: client 127\.0\.0\.1 over http\n$/)
  const workers = await childrenOf(monitor.master)
  t.equal(workers.length, 2, 'the master has two workers')
  t.ok(workers.includes(/worker (\d+)/.exec(body)?.[1] ?? ''), 'one of them answered')

  await monitor.reload()
  const replaced = await until('new workers', async () => {
    const now = await childrenOf(monitor.master)
    return now.length === 2 && now.every((pid) => !workers.includes(pid)) ? now : undefined
  })
  t.equal(replaced.length, 2, 'the reload replaced both workers; the master stayed')
  t.match(await until('a new worker to answer', answer), new RegExp(`^hello from worker (${replaced.join('|')}):`))

  await monitor.stop()
  await until('every sdserve process to exit', async () => ((await sdserveProcesses()).length === 0 ? true : undefined))
  t.equal(await answer(), undefined, 'nothing listens any more')
}

t.test('supervisor: examples/monitors/supervisor.conf', async (t) => {
  writeInto(c, '/etc/supervisor/conf.d/app.conf', readFileSync(example('monitors/supervisor.conf'), 'utf8'))
  await must(c, ['systemctl', 'unmask', 'supervisor.service'])
  await must(c, ['systemctl', 'start', 'supervisor.service'])
  const status = await until('supervisor to run app', async () => {
    const r = await run(c, ['supervisorctl', 'status', 'app'])
    return /RUNNING/.test(r.stdout) ? r.stdout : undefined
  })
  const master = /pid (\d+)/.exec(status)?.[1] ?? ''
  t.equal(await ppidOf(master), await must(c, ['systemctl', 'show', '-P', 'MainPID', 'supervisor.service']).then((s) => s.trim()), "the master is supervisord's child")
  t.equal((await must(c, ['ps', '-o', 'user=', '-p', master])).trim(), 'www-data', 'running as user=')
  await exercise(t, {
    master,
    reload: () => must(c, ['supervisorctl', 'signal', 'HUP', 'app']),
    stop: () => must(c, ['supervisorctl', 'stop', 'app']),
  })
  t.match(readFileSync(inRoot(c, '/var/log/supervisor/app.log'), 'utf8'), /\[INFO\] stopped\n/, "the master's last line is in supervisor's log")
  await must(c, ['systemctl', 'stop', 'supervisor.service'])
})

t.test('runit: examples/monitors/runit/run', async (t) => {
  writeInto(c, '/etc/sv/app/run', readFileSync(example('monitors/runit/run'), 'utf8'))
  chmodSync(inRoot(c, '/etc/sv/app/run'), 0o755)
  await must(c, ['systemd-run', '--unit=runsv-app', '--property=KillMode=process', 'runsv', '/etc/sv/app'])
  const status = await until('runsv to run app', async () => {
    const r = await run(c, ['sv', 'status', '/etc/sv/app'])
    return /^run: /.test(r.stdout) ? r.stdout : undefined
  })
  const master = /\(pid (\d+)\)/.exec(status)?.[1] ?? ''
  t.equal(await ppidOf(master), (await must(c, ['systemctl', 'show', '-P', 'MainPID', 'runsv-app.service'])).trim(), "the master is runsv's child")
  t.equal((await must(c, ['ps', '-o', 'user=', '-p', master])).trim(), 'www-data', 'chpst -u')
  await exercise(t, {
    master,
    reload: () => must(c, ['sv', 'hup', '/etc/sv/app']),
    stop: () => must(c, ['sv', '-w', '45', 'down', '/etc/sv/app']),
  })
  await must(c, ['systemctl', 'stop', 'runsv-app.service'])
})

t.test('Procfile: examples/monitors/Procfile under node-foreman (nf start)', async (t) => {
  writeInto(c, '/srv/app/Procfile', readFileSync(example('monitors/Procfile'), 'utf8'))
  // KillMode=process: the stop signal reaches nf only, which must stop sdserve itself. nf
  // passes on only SIGINT (a developer's Ctrl-C); on SIGTERM it exits and leaves its children.
  await must(c, ['systemd-run', '--unit=procfile', '--property=KillMode=process', '--property=KillSignal=SIGINT', '--working-directory=/srv/app',
    '/srv/app/node_modules/sdserve/node_modules/.bin/nf', 'start', '--procfile', 'Procfile', '--port', '8000', 'web'])
  const master = await until('nf to start sdserve', masterProcess)
  const nf = (await must(c, ['systemctl', 'show', '-P', 'MainPID', 'procfile.service'])).trim()
  const parent = await ppidOf(master)
  t.ok(parent === nf || (await ppidOf(parent)) === nf, 'the master runs under nf (through its shell)')
  await exercise(t, {
    master,
    // Procfile runners have no reload command: HUP goes to the master.
    reload: () => must(c, ['kill', '-HUP', master]),
    stop: () => must(c, ['systemctl', 'stop', 'procfile.service']),
  })
  const log = await must(c, ['journalctl', '-b', '-u', 'procfile.service', '-o', 'cat', '--no-pager'])
  t.match(log, /\[INFO\] stopped/, 'sdserve stopped on its own')
})

t.test("upstart (legacy): the job's chdir, setuid, exec and signals, run as upstart would", async (t) => {
  const job = readFileSync(example('monitors/upstart/app.conf'), 'utf8')
  const stanza = (name: string): string => {
    const m = new RegExp(`^${name} (.+)$`, 'm').exec(job)
    if (m === null) throw new Error(`the upstart job has no ${name} stanza`)
    return m[1]!
  }
  const reloadSignal = stanza('reload signal')
  t.equal(stanza('kill timeout'), '40')
  await must(c, ['systemd-run', '--unit=upstart-app', '--property=KillMode=process', `--working-directory=${stanza('chdir')}`,
    `--uid=${stanza('setuid')}`, ...stanza('exec').split(' ')])
  const master = (await must(c, ['systemctl', 'show', '-P', 'MainPID', 'upstart-app.service'])).trim()
  await exercise(t, {
    master,
    reload: () => must(c, ['kill', '-s', reloadSignal.replace(/^SIG/, ''), master]),
    stop: () => must(c, ['systemctl', 'stop', 'upstart-app.service']),
  })
  t.equal((await must(c, ['systemctl', 'show', '-P', 'ExecMainStatus', 'upstart-app.service'])).trim(), '0', 'exit status 0')
})
