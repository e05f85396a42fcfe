import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { main, usage, type RunMaster } from '../lib/command.js'
import { ACTION_FLAGS, DEFAULTS, OPTIONS, type Config, type ConfigSources } from '../lib/config.js'
import { ActivationError, AppLoadError, ConfigError, NativeLoadError, WorkerBootError } from '../lib/errors.js'
import { cli, root } from './helpers/proc.js'

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

/** Run the compiled CLI to completion; the test's teardown kills it if it is still running. */
function run(t: Test, args: string[], options: { cwd?: string; cmdArgs?: string; script?: string } = {}): Promise<Result> {
  // Keep NODE_* and tap's variables, so that the child's coverage is recorded.
  const env = { ...process.env }
  delete env.SDSERVE_CMD_ARGS
  if (options.cmdArgs !== undefined) env.SDSERVE_CMD_ARGS = options.cmdArgs
  const child = spawn(process.execPath, [options.script ?? cli, ...args], {
    cwd: options.cwd ?? root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** main() in this process with captured output. */
async function inProcess(argv: string[], env: NodeJS.ProcessEnv = {}, runMaster?: RunMaster): Promise<Result> {
  let stdout = ''
  let stderr = ''
  const code = await main(argv, env, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) }, runMaster)
  return { code, stdout, stderr }
}

t.test('the compiled file is an executable script', async (t) => {
  t.ok(readFileSync(cli, 'utf8').startsWith('#!/usr/bin/env node\n'))
})

t.test('--help', async (t) => {
  const r = await run(t, ['--help'])
  t.equal(r.code, 0)
  t.equal(r.stderr, '')
  t.equal(r.stdout, usage())
  t.match(r.stdout, /^Usage: sdserve \[OPTIONS\] APP\n/)
  t.match(r.stdout, /^ +sdserve unit \[OPTIONS\] APP .*\(sdserve unit --help\)$/m)
  t.match(r.stdout, /^ +sdserve doctor \[--json\] UNIT .*\(sdserve doctor --help\)$/m)
  const lines = r.stdout.split('\n')
  for (const o of OPTIONS) {
    const line = lines.filter((l) => l.includes(`--${o.flag} ${o.meta} `))
    t.equal(line.length, 1, `one line for --${o.flag}`)
    t.match(line[0], `(default: ${o.defaultText})`, `--${o.flag} shows its default`)
    if (o.short !== undefined) t.match(line[0], `-${o.short}, --${o.flag}`)
  }
  for (const a of ACTION_FLAGS) t.equal(lines.filter((l) => new RegExp(`--${a.flag}\\s`).test(l)).length, 1, `--${a.flag}`)
  t.match(r.stdout, `(default: ${DEFAULTS.workers}, one per CPU core)`)
  for (const form of ['HOST:PORT', '[IPV6]:PORT', 'unix:/PATH', 'fd://N', 'systemd:NAME'])
    t.ok(lines.some((l) => l.startsWith(`  ${form} `)), `bind spec ${form}`)
  for (const signal of ['HUP', 'TERM', 'INT', 'QUIT', 'TTIN', 'TTOU', 'USR1'])
    t.ok(lines.some((l) => l.startsWith(`  ${signal} `)), `signal ${signal}`)
  t.match(r.stdout, /SDSERVE_CMD_ARGS/)
  t.match(r.stdout, /sdserve\.config\.js, sdserve\.config\.mjs, sdserve\.config\.json/)

  const short = await run(t, ['-h'], { cmdArgs: "--workers 'nope" })
  t.equal(short.code, 0, '-h works whatever SDSERVE_CMD_ARGS holds')
  t.equal(short.stdout, r.stdout)
})

t.test('--version', async (t) => {
  for (const flag of ['--version', '-v']) {
    const r = await run(t, [flag])
    t.same(r, { code: 0, stdout: `sdserve ${pkg.version}\n`, stderr: '' }, flag)
  }
})

t.test('the bin works through a symlink, as npm installs it', async (t) => {
  const dir = t.testdir({})
  symlinkSync(cli, join(dir, 'sdserve'))
  const r = await run(t, ['--version'], { script: join(dir, 'sdserve') })
  t.same(r, { code: 0, stdout: `sdserve ${pkg.version}\n`, stderr: '' })
})

t.test('--check-config', async (t) => {
  const top = t.testdir({
    app: { 'sdserve.config.mjs': "export default async () => ({ app: 'server.js', workers: 2, bind: ['127.0.0.1:8123'] })\n" },
    bare: {},
  })
  let r = await run(t, ['--check-config'], { cwd: join(top, 'app') })
  t.same(r, { code: 0, stdout: `config OK: ${join(top, 'app', 'sdserve.config.mjs')}\n`, stderr: '' })
  r = await run(t, ['--check-config', 'app.js'], { cwd: join(top, 'bare'), cmdArgs: '-w 3' })
  t.same(r, { code: 0, stdout: 'config OK: no config file\n', stderr: '' })
  r = await run(t, ['--check-config', 'app.js', '-c', 'nothing.json'], { cwd: join(top, 'bare') })
  t.same(r, { code: 2, stdout: '', stderr: `sdserve: config file ${join(top, 'bare', 'nothing.json')}: no such file\n` })
  r = await run(t, ['--check-config'], { cwd: join(top, 'bare') })
  t.equal(r.code, 2)
  t.match(r.stderr, /^sdserve: APP must be given/)
  // The APP spec is parsed (not loaded).
  for (const flag of ['--check-config', '--print-config']) {
    r = await run(t, [flag, 'app.js:1x'], { cwd: join(top, 'bare') })
    t.equal(r.code, 2)
    t.equal(r.stdout, '')
    t.match(r.stderr, /^sdserve: APP must be a module path or package.*, got "app\.js:1x"\n$/)
  }
  r = await run(t, ['--check-config', 'does-not-exist.js:createApp()'], { cwd: join(top, 'bare') })
  t.same(r, { code: 0, stdout: 'config OK: no config file\n', stderr: '' }, 'the app is not loaded')
})

t.test('--print-config merges flags, SDSERVE_CMD_ARGS and the config file', async (t) => {
  const dir = t.testdir({
    'sdserve.config.json': JSON.stringify({
      app: 'file-app.js',
      workers: 2,
      bind: ['unix:/run/file.sock'],
      backlog: 100,
      timeout: 10,
      umask: '027',
      user: 'nobody',
    }),
  })
  const r = await run(t, ['--print-config', '-w', '4', '--keep-alive', '2.5', 'cli-app.js'], {
    cwd: dir,
    cmdArgs: "--workers 3 -b '127.0.0.1:8200' --bind \"[::1]:8200\" --timeout 20 --unix-socket-mode 0o660 --pid run/app.pid",
  })
  t.equal(r.code, 0)
  t.equal(r.stderr, '')
  const printed = JSON.parse(r.stdout) as Record<string, unknown>
  t.same(Object.keys(printed), Object.keys(printed).sort(), 'keys sorted')
  t.same(printed, {
    app: 'cli-app.js',
    backlog: 100,
    balance: 'shared',
    bind: ['127.0.0.1:8200', '[::1]:8200'],
    bootNice: 0,
    bootTimeout: null,
    chdir: null,
    config: join(dir, 'sdserve.config.json'),
    controlSocket: null,
    drainWindow: null,
    gracefulTimeout: 30,
    group: null,
    healthPath: null,
    keepAlive: 2.5,
    lameDuck: 0,
    logHealthChecks: false,
    maxRequests: 0,
    maxRequestsJitter: 0,
    maxWorkerMemory: 0,
    metricsBind: null,
    pid: join(dir, 'run/app.pid'),
    timeout: 20,
    umask: '0o027',
    unixSocketMode: '0o660',
    unixSocketOwner: null,
    user: 'nobody',
    warmUp: [],
    warmUpCount: 500,
    workers: 4,
    headersTimeout: 10,
    requestTimeout: 300,
    limitRequestLine: 4094,
    limitRequestFields: 100,
    limitRequestFieldSize: 8190,
    workerConnections: 0,
    accessLogfile: null,
    accessLogformat: '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    errorLogfile: '-',
    logLevel: 'info',
    logFormat: 'text',
    forwardedAllowIps: '127.0.0.1,::1,unix',
    untrustedForwarded: 'strip',
    proxyProtocol: false,
    proxyAllowIps: '127.0.0.1,::1,unix',
  })
})

t.test('bad configuration: exit 2, one line naming the option on stderr, nothing else', async (t) => {
  const dir = t.testdir({ 'sdserve.config.js': "export default { app: 'app.js', keepAlive: -1 }\n", ok: {} })
  const ok = join(dir, 'ok')
  const cases: Array<[string[], string | undefined, string, string?]> = [
    [['-w', 'abc', 'app.js'], undefined, '--workers must be an integer from 1 to 1024, or "auto", got "abc"'],
    [['--workers=0', 'app.js'], undefined, '--workers must be'],
    [['-b', 'nowhere', 'app.js'], undefined, '--bind must be HOST:PORT'],
    [['--balance', 'random', 'app.js'], undefined, '--balance must be "shared" or "reuse-port", got "random"'],
    [['--backlog', '70000', 'app.js'], undefined, '--backlog must be'],
    [['--boot-timeout', '0', 'app.js'], undefined, '--boot-timeout must be a number of seconds above 0, at most 86400, got "0"'],
    [['-t', '1e3', 'app.js'], undefined, '--timeout must be'],
    [['--graceful-timeout', '-5', 'app.js'], undefined, '--graceful-timeout needs a value'],
    [['--graceful-timeout=-5', 'app.js'], undefined, '--graceful-timeout must be'],
    [['--max-requests', '1.5', 'app.js'], undefined, '--max-requests must be'],
    [['--max-requests-jitter', 'x', 'app.js'], undefined, '--max-requests-jitter must be'],
    [['-m', '888', 'app.js'], undefined, '--umask must be an octal mode'],
    [['--unix-socket-mode', 'rw', 'app.js'], undefined, '--unix-socket-mode must be'],
    [['--unix-socket-owner', '', 'app.js'], undefined, '--unix-socket-owner must be'],
    [['-p', '', 'app.js'], undefined, '--pid must be'],
    [['-u', '', 'app.js'], undefined, '--user must be'],
    [['-g', '', 'app.js'], undefined, '--group must be'],
    [['--chdir', '', 'app.js'], undefined, '--chdir must be'],
    [['--wrokers', '2', 'app.js'], undefined, 'unknown option "--wrokers"'],
    [['app.js', '-w'], undefined, '--workers needs a value'],
    [['a.js', 'b.js'], undefined, 'APP must be a single argument'],
    [[], undefined, 'APP must be given'],
    [['app.js'], '--workers 0', '--workers (in SDSERVE_CMD_ARGS) must be'],
    [['app.js'], '--bogus', 'unknown option "--bogus" in SDSERVE_CMD_ARGS'],
    [['app.js'], '--pid "/run/x', 'SDSERVE_CMD_ARGS must be words with shell-style quoting'],
    [['app.js'], 'other.js', 'SDSERVE_CMD_ARGS must be options only'],
    [['app.js'], undefined, `keepAlive (in ${join(dir, 'sdserve.config.js')}) must be a number of seconds`, dir],
    [['--print-config'], undefined, `keepAlive (in ${join(dir, 'sdserve.config.js')}) must be`, dir],
    [['app.js', '-c', 'nope.mjs'], undefined, `config file ${join(ok, 'nope.mjs')}: no such file`],
  ]
  for (const [args, cmdArgs, message, cwd] of cases) {
    const r = await run(t, args, { cwd: cwd ?? ok, cmdArgs })
    const what = `${args.join(' ')}${cmdArgs === undefined ? '' : ` with SDSERVE_CMD_ARGS=${cmdArgs}`}`
    t.equal(r.code, 2, `${what}: exit 2`)
    t.equal(r.stdout, '', `${what}: nothing on stdout`)
    t.ok(r.stderr.startsWith(`sdserve: ${message}`), `${what}: ${r.stderr.trim()}`)
    t.equal(r.stderr.split('\n').length, 2, `${what}: one line`)
  }
})

t.test('main() in process', async (t) => {
  const dir = t.testdir({ 'sdserve.config.json': '{ "app": "app.js", "workers": 3 }' })
  const cwd = process.cwd()
  process.chdir(dir)
  t.teardown(() => process.chdir(cwd))

  t.same(await inProcess(['--help']), { code: 0, stdout: usage(), stderr: '' })
  t.same(await inProcess(['-v']), { code: 0, stdout: `sdserve ${pkg.version}\n`, stderr: '' })
  t.same(await inProcess(['--check-config']), { code: 0, stdout: `config OK: ${join(dir, 'sdserve.config.json')}\n`, stderr: '' })
  const printed = await inProcess(['--print-config'], { SDSERVE_CMD_ARGS: '-m 0o002' })
  t.match(JSON.parse(printed.stdout), { app: 'app.js', workers: 3, umask: '0o002' })
  t.same(await inProcess(['-w', 'x']), { code: 2, stdout: '', stderr: 'sdserve: --workers must be an integer from 1 to 1024, or "auto", got "x"\n' })

  // Serving hands the config and its sources to the master.
  let seen: [Config, ConfigSources] | undefined
  const env = { SDSERVE_CMD_ARGS: '-b :8300' }
  const served = await inProcess(['-w', '2'], env, async (config, sources) => {
    seen = [config, sources]
    return 0
  })
  t.same(served, { code: 0, stdout: '', stderr: '' })
  t.match(seen, [{ app: 'app.js', workers: 2, bind: [':8300'], config: join(dir, 'sdserve.config.json') }, { argv: ['-w', '2'], env, cwd: dir }])
  t.equal((await inProcess([], {}, async () => 3)).code, 3, "the master's exit code is returned")

  // Errors from the master: sdserve's own print their message, others their stack.
  const failing = (err: unknown): RunMaster => async () => {
    throw err
  }
  const cases: Array<[unknown, number, string | RegExp]> = [
    [new ConfigError('bind', 'unix:/etc/passwd', 'a socket path'), 2, 'sdserve: bind must be a socket path, got "unix:/etc/passwd"\n'],
    [new ActivationError('LISTEN_FDS', 'x', 'not a number'), 2, 'sdserve: LISTEN_FDS=x: not a number\n'],
    [new AppLoadError('app.js', 'cannot load app.js: boom'), 4, 'sdserve: cannot load app.js: boom\n'],
    [new WorkerBootError('worker 1 exited with code 1 before listening'), 3, 'sdserve: worker 1 exited with code 1 before listening\n'],
    [new NativeLoadError('the native addon is missing; run npm rebuild', null), 1, 'sdserve: the native addon is missing; run npm rebuild\n'],
    [new TypeError('a bug'), 1, /^sdserve: TypeError: a bug\n {4}at /],
    ['a string', 1, 'sdserve: a string\n'],
  ]
  for (const [err, code, stderr] of cases) {
    const r = await inProcess(['app.js'], {}, failing(err))
    t.equal(r.code, code, String(err))
    t.equal(r.stdout, '')
    if (typeof stderr === 'string') t.equal(r.stderr, stderr)
    else t.match(r.stderr, stderr)
  }
  const noStack = new Error('no stack')
  delete noStack.stack
  t.equal((await inProcess(['app.js'], {}, failing(noStack))).stderr, 'sdserve: no stack\n')
})

