/**
 * `sdserve ctl` as a function (ctlMain, and through the CLI's main()):
 * usage errors, where the socket is, --json, text answers, failures.
 */
import t, { type Test } from 'tap'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { main } from '../../lib/command.js'
import { COMMANDS } from '../../lib/control-protocol.js'
import { ctlMain, ctlUsage } from '../../lib/ctl/main.js'
import { renderStatus } from '../../lib/ctl/render.js'
import { Logger } from '../../lib/logger.js'
import { ControlServer } from '../../lib/master/control-server.js'
import { FakeMaster } from '../helpers/control.js'
import { shortTmp } from '../helpers/proc.js'

interface Run {
  code: number
  stdout: string
  stderr: string
}

async function ctl(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const code = await ctlMain(argv, env, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) })
  return { code, stdout, stderr }
}

/** A control server with a fake master, at dir/sdserve.ctl. */
async function master(t: Test): Promise<{ dir: string; path: string; fake: FakeMaster; server: ControlServer }> {
  const dir = shortTmp(t)
  const path = join(dir, 'sdserve.ctl')
  const fake = new FakeMaster()
  const server = await ControlServer.open(path, fake, new Logger({ write: () => undefined }))
  t.teardown(() => server.close())
  return { dir, path, fake, server }
}

t.test('--help', async (t) => {
  for (const flag of ['--help', '-h']) {
    const r = await ctl([flag])
    t.equal(r.code, 0)
    t.equal(r.stdout, ctlUsage())
    t.equal(r.stderr, '')
  }
  const usage = ctlUsage()
  for (const command of COMMANDS) t.match(usage, new RegExp(`^  ${command}\\b`, 'm'), `the usage lists ${command}`)
})

t.test('usage errors: exit 2, a message, nothing sent', async (t) => {
  const env = { SDSERVE_CONTROL_SOCKET: '/nonexistent/ctl.sock' }
  const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [[], env, /^sdserve ctl: a command is needed: one of status, workers, reload, scale, drain, resume, reopen-logs, upgrade, stop\n$/],
    [[], {}, /a command is needed/],
    [['--json'], env, /a command is needed/],
    [['--timeout', 'x', 'status'], env, /^sdserve ctl: --timeout must be a positive number of seconds, got "x"\n$/],
    [['--timeout=0', 'status'], env, /--timeout must be a positive number of seconds, got "0"/],
    [['--timeout=0.0', 'status'], env, /got "0.0"/],
    [['--timeout=1e3', 'status'], env, /got "1e3"/],
    [['--timeout=-1', 'status'], env, /got "-1"/],
    [['--frobnicate', 'status'], env, /^sdserve ctl: Unknown option '--frobnicate'/],
    [['--socket'], env, /^sdserve ctl: Option '--socket <value>' argument missing/],
    [['scale'], env, /^sdserve ctl: scale needs a worker count from 1 to 1024, got null\n$/],
    [['scale', '0'], env, /got "0"/],
    [['scale', '1025'], env, /got "1025"/],
    [['scale', 'many'], env, /got "many"/],
    [['scale', '2', '3'], env, /too many words: "scale 2 3"/],
    [['restart'], env, /unknown command "restart"/],
    [['status'], {}, /^sdserve ctl: no control socket: pass --socket PATH/],
    [['status'], { SDSERVE_CONTROL_SOCKET: '', RUNTIME_DIRECTORY: '' }, /no control socket/],
  ]
  for (const [argv, e, message] of cases) {
    const r = await ctl(argv, e)
    t.equal(r.code, 2, `${argv.join(' ')}: exit 2`)
    t.match(r.stderr, message, argv.join(' '))
    t.equal(r.stdout, '')
  }
})

t.test('where the socket is: --socket, $SDSERVE_CONTROL_SOCKET, $RUNTIME_DIRECTORY', async (t) => {
  const m = await master(t)
  const elsewhere = join(m.dir, 'elsewhere.sock')
  const cases: [string, string[], NodeJS.ProcessEnv][] = [
    ['--socket', ['--socket', m.path], { SDSERVE_CONTROL_SOCKET: elsewhere, RUNTIME_DIRECTORY: '/nonexistent' }],
    ['$SDSERVE_CONTROL_SOCKET', [], { SDSERVE_CONTROL_SOCKET: m.path, RUNTIME_DIRECTORY: '/nonexistent' }],
    ['$RUNTIME_DIRECTORY', [], { RUNTIME_DIRECTORY: m.dir }],
    ['an empty $SDSERVE_CONTROL_SOCKET: $RUNTIME_DIRECTORY', [], { SDSERVE_CONTROL_SOCKET: '', RUNTIME_DIRECTORY: `${m.dir}:/run/other` }],
  ]
  for (const [what, argv, env] of cases) {
    const r = await ctl([...argv, 'reopen-logs'], env)
    t.same(r, { code: 0, stdout: 'log files reopened\n', stderr: '' }, what)
  }
  t.equal(m.fake.calls.length, cases.length)
  const missing = await ctl(['--socket', elsewhere, 'status'])
  t.equal(missing.code, 1, 'not there: exit 1')
  t.equal(missing.stderr, `sdserve ctl: cannot reach the master at ${elsewhere}: no such socket (is sdserve running with this --control-socket?)\n`)
})

t.test('every command as text', async (t) => {
  const m = await master(t)
  const env = { SDSERVE_CONTROL_SOCKET: m.path }
  const status = await ctl(['status'], env)
  t.equal(status.code, 0)
  // The uptime is computed at render time: compare everything but the first line.
  t.equal(status.stdout.split('\n').slice(1).join('\n'), renderStatus(m.fake.stats()).split('\n').slice(1).join('\n'))
  t.match(status.stdout, /^sdserve 0\.0\.0, master 1, up \S+, serving, health ok\n/)
  const workers = await ctl(['workers'], env)
  t.match(workers.stdout, /^SLOT +PID[^\n]*\n1 +1101 [^\n]*\n2 +1102 [^\n]*\n2 workers, target 2\n$/)
  t.same(await ctl(['--timeout', '30', 'scale', '2'], env), { code: 0, stdout: 'scaled: 2 workers serving\n', stderr: '' })
  t.same(await ctl(['--timeout', '30', 'scale 2'], env), { code: 0, stdout: 'scaled: 2 workers serving\n', stderr: '' }, 'the command as one word')
  t.same(await ctl(['--timeout', '30', 'reload'], env), { code: 0, stdout: 'reloaded: generation 2 serving\n', stderr: '' })
  m.fake.onUpgrade = () => {
    setImmediate(() => m.fake.emit('upgraded', { pid: 77 }))
    return new Promise(() => undefined)
  }
  t.same(await ctl(['--timeout', '30', 'upgrade'], env), { code: 0, stdout: 'upgraded: the new master 77 serves; this one is draining and will exit\n', stderr: '' })
  m.fake.onStop = () => {
    setImmediate(() => void m.server.close())
    return new Promise(() => undefined)
  }
  t.same(await ctl(['--timeout', '30', 'stop'], env), { code: 0, stdout: 'stopped\n', stderr: '' })
})

t.test('--json: the answer as the master sent it', async (t) => {
  const m = await master(t)
  const r = await ctl(['--json', '--socket', m.path, '--timeout', '30', 'workers'])
  t.equal(r.code, 0)
  t.same(JSON.parse(r.stdout), JSON.parse(JSON.stringify({ ok: true, command: 'workers', target: 2, workers: m.fake.workers })))
  t.match(r.stdout, /^\{.*\}\n$/, 'one line')
})

t.test('a failed command: exit 1, the error on stderr', async (t) => {
  const m = await master(t)
  m.fake.onReload = async () => {
    m.fake.emit('reload', { ok: false, generation: 1, error: 'the app threw' })
    return false
  }
  t.same(await ctl(['--socket', m.path, 'reload']), { code: 1, stdout: '', stderr: 'sdserve ctl: reload failed: the app threw\n' })
  const json = await ctl(['--socket', m.path, '--json', 'reload'])
  t.equal(json.code, 1)
  t.same(JSON.parse(json.stdout), { ok: false, command: 'reload', error: 'the app threw' }, '--json: the answer on stdout too')
  t.equal(json.stderr, 'sdserve ctl: reload failed: the app threw\n')
})

t.test('an error answer without a command names the one asked for', async (t) => {
  const path = join(shortTmp(t), 'odd.sock')
  const s = createServer((socket) => socket.once('data', () => socket.end('{"ok":false,"command":"","error":"no"}\n')))
  await new Promise<void>((resolve) => s.listen(path, resolve))
  t.teardown(() => new Promise((resolve) => s.close(resolve)))
  t.same(await ctl(['--socket', path, 'status']), { code: 1, stdout: '', stderr: 'sdserve ctl: status failed: no\n' })
})

t.test('`sdserve ctl` through the CLI', async (t) => {
  const m = await master(t)
  let stdout = ''
  let stderr = ''
  const io = { stdout: (s: string) => (stdout += s), stderr: (s: string) => (stderr += s) }
  t.equal(await main(['ctl', '--help'], {}, io), 0)
  t.equal(stdout, ctlUsage())
  stdout = ''
  t.equal(await main(['ctl', 'reopen-logs'], { SDSERVE_CONTROL_SOCKET: m.path }, io), 0)
  t.equal(stdout, 'log files reopened\n')
  t.equal(await main(['ctl'], {}, io), 2)
  t.match(stderr, /^sdserve ctl: a command is needed/)
  t.same(m.fake.calls, ['reopen-logs'])
})
