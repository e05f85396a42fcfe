import t, { type Test } from 'tap'
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import {
  CONFIG_FILE_NAMES,
  DEFAULTS,
  MAX_SECONDS,
  OPTIONS,
  OPTION_KEYS,
  ORIGIN_COMMAND_LINE,
  ORIGIN_ENV,
  formatConfig,
  loadConfig,
  loadConfigFile,
  optionName,
  validateOptions,
  workersText,
  type Config,
  type ConfigSources,
} from '../lib/config.js'
import { splitCommandLine } from '../lib/cmd-args.js'
import { ConfigError } from '../lib/errors.js'
import { root } from './helpers/proc.js'

const fixtures = join(root, 'test/fixtures/config')
const fixtureText = (name: string): string => readFileSync(join(fixtures, name), 'utf8')
const FILE = '/etc/app/sdserve.config.js'

/** The error fn throws, checked to be a ConfigError. */
function configError(t: Test, fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    t.ok(err instanceof ConfigError, 'a ConfigError')
    t.equal((err as ConfigError).code, 'SDSERVE_ERR_CONFIG')
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

async function rejects(t: Test, p: Promise<unknown>): Promise<ConfigError> {
  try {
    await p
  } catch (err) {
    t.ok(err instanceof ConfigError, `a ConfigError: ${(err as Error).message}`)
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

const sources = (cwd: string, argv: string[], cmdArgs?: string): ConfigSources => ({
  argv,
  env: cmdArgs === undefined ? {} : { SDSERVE_CMD_ARGS: cmdArgs },
  cwd,
})

t.test('DEFAULTS', async (t) => {
  t.equal(DEFAULTS.workers, Math.min(availableParallelism(), 1024), 'one worker per core')
  t.same(DEFAULTS.bind, [])
  t.match(DEFAULTS, {
    balance: 'shared',
    backlog: 2048,
    timeout: 30,
    gracefulTimeout: 30,
    keepAlive: 5,
    maxRequests: 0,
    maxRequestsJitter: 0,
  })
  for (const key of ['pid', 'chdir', 'user', 'group', 'umask', 'unixSocketMode', 'unixSocketOwner', 'config'] as const)
    t.equal(DEFAULTS[key], undefined, `${key} is unset`)
  t.notOk('app' in DEFAULTS, 'app has no default')
  t.ok(Object.isFrozen(DEFAULTS) && Object.isFrozen(DEFAULTS.bind))
  // Every Config key but app has a flag, and every option is documented in OPTIONS.
  t.same(OPTIONS.map((o) => o.key).sort(), OPTION_KEYS.filter((k) => k !== 'app').sort())
})

t.test('option names by origin', async (t) => {
  t.equal(optionName('workers', ORIGIN_COMMAND_LINE), '--workers')
  t.equal(optionName('gracefulTimeout', ORIGIN_COMMAND_LINE), '--graceful-timeout')
  t.equal(optionName('app', ORIGIN_COMMAND_LINE), 'APP')
  t.equal(optionName('keepAlive', ORIGIN_ENV), '--keep-alive (in SDSERVE_CMD_ARGS)')
  t.equal(optionName('someThing', ORIGIN_ENV), '--some-thing (in SDSERVE_CMD_ARGS)')
  t.equal(optionName('keepAlive', FILE), `keepAlive (in ${FILE})`)
})

t.test('validateOptions accepts good values, converting strings strictly', async (t) => {
  const good: Array<[keyof Config, unknown, unknown]> = [
    ['app', 'app.js', 'app.js'],
    ['app', 'app.js:createApp()', 'app.js:createApp()'],
    ['workers', 1, 1],
    ['workers', '1024', 1024],
    ['workers', '08', 8],
    ['bind', '127.0.0.1:8000', ['127.0.0.1:8000']],
    ['bind', ['[::1]:80', 'unix:/run/a.sock', 'fd://3', 'systemd:web'], ['[::1]:80', 'unix:/run/a.sock', 'fd://3', 'systemd:web']],
    ['bind', [], []],
    ['balance', 'shared', 'shared'],
    ['balance', 'reuse-port', 'reuse-port'],
    ['backlog', 1, 1],
    ['backlog', '65535', 65535],
    ['timeout', 0, 0],
    ['timeout', '2.5', 2.5],
    ['timeout', MAX_SECONDS, MAX_SECONDS],
    ['gracefulTimeout', 0.25, 0.25],
    ['gracefulTimeout', '30', 30],
    ['keepAlive', 0, 0],
    ['keepAlive', '0.5', 0.5],
    ['maxRequests', 0, 0],
    ['maxRequests', '1000', 1000],
    ['maxRequestsJitter', 50, 50],
    ['maxRequestsJitter', '0', 0],
    ['pid', '/run/app.pid', '/run/app.pid'],
    ['chdir', 'srv', 'srv'],
    ['user', 'www-data', 'www-data'],
    ['user', '33', '33'],
    ['group', 'www-data', 'www-data'],
    ['umask', '022', 0o022],
    ['umask', '0o027', 0o027],
    ['umask', '0O027', 0o027],
    ['umask', '0', 0],
    ['umask', 0o077, 0o077],
    ['unixSocketMode', '0660', 0o660],
    ['unixSocketMode', '777', 0o777],
    ['unixSocketMode', 0o600, 0o600],
    ['unixSocketOwner', 'www-data:www-data', 'www-data:www-data'],
    ['unixSocketOwner', ':www-data', ':www-data'],
    ['config', 'sdserve.config.json', 'sdserve.config.json'],
  ]
  for (const [key, value, expected] of good)
    t.same(validateOptions({ [key]: value }, ORIGIN_COMMAND_LINE), { [key]: expected }, `${key}: ${JSON.stringify(value)}`)
  t.same(validateOptions({ workers: undefined, pid: undefined }, FILE), {}, 'undefined is the same as absent')
  t.same(validateOptions({}, FILE), {})
})

t.test('validateOptions rejects bad values, naming the option as written and echoing the value', async (t) => {
  const bad: Array<[keyof Config, unknown, string, RegExp]> = [
    ['workers', 'abc', '"abc"', /an integer from 1 to 1024/],
    ['workers', '', '""', /an integer from 1 to 1024/],
    ['workers', ' 4', '" 4"', /an integer/],
    ['workers', '4x', '"4x"', /an integer/],
    ['workers', '1e3', '"1e3"', /an integer/],
    ['workers', 'NaN', '"NaN"', /an integer/],
    ['workers', '2.5', '"2.5"', /an integer/],
    ['workers', '-1', '"-1"', /an integer/],
    ['workers', 0, '0', /an integer from 1/],
    ['workers', 1025, '1025', /to 1024/],
    ['workers', 2.5, '2.5', /an integer/],
    ['workers', NaN, 'NaN', /an integer/],
    ['workers', true, 'true', /an integer/],
    ['workers', null, 'null', /an integer/],
    ['workers', 4n, '4n', /an integer/],
    ['bind', 'nonsense', '"nonsense"', /HOST:PORT/],
    ['bind', ['127.0.0.1:8000', 'unix:rel.sock'], '"unix:rel.sock"', /absolute path/],
    ['bind', ['127.0.0.1:99999'], '"127.0.0.1:99999"', /port from 0 to 65535/],
    ['bind', [8000], '8000', /HOST:PORT/],
    ['bind', 8000, '8000', /a bind spec or an array of bind specs/],
    ['bind', { a: 1 }, '{"a":1}', /a bind spec or an array/],
    ['balance', 'round-robin', '"round-robin"', /"shared" or "reuse-port"/],
    ['balance', '', '""', /"shared" or "reuse-port"/],
    ['backlog', '0', '"0"', /an integer from 1 to 65535/],
    ['backlog', 65536, '65536', /an integer from 1 to 65535/],
    ['backlog', '1k', '"1k"', /an integer from 1 to 65535/],
    ['timeout', '-1', '"-1"', /a number of seconds from 0 to 86400 \(0 disables\)/],
    ['timeout', -0.5, '-0.5', /a number of seconds/],
    ['timeout', '1e3', '"1e3"', /a number of seconds/],
    ['timeout', 'NaN', '"NaN"', /a number of seconds/],
    ['timeout', 'Infinity', '"Infinity"', /a number of seconds/],
    ['timeout', Infinity, 'Infinity', /a number of seconds/],
    ['timeout', '.5', '".5"', /a number of seconds/],
    ['timeout', '5.', '"5."', /a number of seconds/],
    ['timeout', '', '""', /a number of seconds/],
    ['gracefulTimeout', 86401, '86401', /from 0 to 86400/],
    ['gracefulTimeout', '30s', '"30s"', /a number of seconds/],
    ['keepAlive', 'forever', '"forever"', /\(0 disables keep-alive\)/],
    ['maxRequests', '-1', '"-1"', /a non-negative integer \(0 disables\)/],
    ['maxRequests', 1.5, '1.5', /a non-negative integer/],
    ['maxRequests', '99999999999999999999', '"99999999999999999999"', /a non-negative integer/],
    ['maxRequestsJitter', 'x', '"x"', /a non-negative integer/],
    ['maxRequestsJitter', -3, '-3', /a non-negative integer/],
    ['pid', '', '""', /a non-empty file path/],
    ['pid', 42, '42', /a non-empty file path/],
    ['chdir', ' ', '" "', /a non-empty directory path/],
    ['user', '', '""', /a non-empty user name or uid/],
    ['user', 33, '33', /a non-empty user name or uid/],
    ['group', '', '""', /a non-empty group name or gid/],
    ['umask', '999', '"999"', /an octal mode from 0 to 777/],
    ['umask', '1000', '"1000"', /an octal mode/],
    ['umask', '0x1ff', '"0x1ff"', /an octal mode/],
    ['umask', '0o', '"0o"', /an octal mode/],
    ['umask', '', '""', /an octal mode/],
    ['umask', 512, '512', /an octal mode/],
    ['umask', -1, '-1', /an octal mode/],
    ['umask', 1.5, '1.5', /an octal mode/],
    ['unixSocketMode', 'rw-rw----', '"rw-rw----"', /an octal mode/],
    ['unixSocketOwner', '', '""', /USER, USER:GROUP or :GROUP/],
    ['app', '', '""', /a non-empty app spec/],
    ['app', '  ', '"  "', /a non-empty app spec/],
    ['app', ['a.js'], '["a.js"]', /a non-empty app spec/],
    ['config', '', '""', /a non-empty file path/],
  ]
  const origins: Array<[string, (key: string) => string]> = [
    [ORIGIN_COMMAND_LINE, (key) => (key === 'app' ? 'APP' : `--${OPTIONS.find((o) => o.key === key)?.flag ?? ''}`)],
    [ORIGIN_ENV, (key) => `--${OPTIONS.find((o) => o.key === key)?.flag ?? key} (in SDSERVE_CMD_ARGS)`],
    [FILE, (key) => `${key} (in ${FILE})`],
  ]
  for (const [origin, nameOf] of origins) {
    for (const [key, value, shown, expected] of bad) {
      const err = configError(t, () => validateOptions({ workers: 2, [key]: value }, origin))
      const name = nameOf(key)
      t.equal(err.option, name)
      t.ok(err.message.startsWith(`${name} must be `), `${err.message} names ${name}`)
      t.ok(err.message.endsWith(`, got ${shown}`), `${err.message} echoes ${shown}`)
      t.match(err.message, expected)
    }
  }
})

t.test('validateOptions rejects unknown keys, with a suggestion', async (t) => {
  let err = configError(t, () => validateOptions({ wrokers: 4 }, FILE))
  t.equal(err.option, `wrokers (in ${FILE})`)
  t.match(err.message, /^wrokers \(in \/etc\/app\/sdserve\.config\.js\) must be a known option \(app, workers, bind, .*proxyAllowIps\), got 4; did you mean workers\?$/)
  t.notMatch(err.message, /config\)/, 'config is not an option a config file may set')
  err = configError(t, () => validateOptions({ 'graceful-timeout': 10 }, FILE))
  t.match(err.message, /did you mean gracefulTimeout\?$/)
  err = configError(t, () => validateOptions({ graceful_timeout: 10 }, FILE))
  t.match(err.message, /did you mean gracefulTimeout\?$/)
  err = configError(t, () => validateOptions({ KEEPALIVE: 10 }, FILE))
  t.match(err.message, /did you mean keepAlive\?$/)
  err = configError(t, () => validateOptions({ somethingElse: true }, FILE))
  t.match(err.message, /got true$/, 'no suggestion when nothing is close')
  err = configError(t, () => validateOptions({ toString: 1 }, FILE))
  t.match(err.message, /^toString \(in .*\) must be a known option/, 'inherited names are not options')
  err = configError(t, () => validateOptions({ wrokers: 4 }, ORIGIN_COMMAND_LINE))
  t.match(err.message, /^--wrokers must be a known option \(.*proxyAllowIps\), got 4; did you mean --workers\?$/)
  err = configError(t, () => validateOptions(JSON.parse('{"__proto__": {"workers": 1}}') as Record<string, unknown>, FILE))
  t.match(err.message, /^__proto__ \(in /)
})

t.test('splitCommandLine', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['', []],
    ['   \t\n ', []],
    ['--workers 4', ['--workers', '4']],
    ['  -w\t4\n-b :80  ', ['-w', '4', '-b', ':80']],
    ["--pid '/run/my app.pid'", ['--pid', '/run/my app.pid']],
    ["'a \\ \" b'", ['a \\ " b']],
    ['"a \\" \\\\ b"', ['a " \\ b']],
    ['"a \\n \\$HOME b"', ['a \\n \\$HOME b']],
    ['a\\ b', ['a b']],
    ['\\"a\\\'', ['"a\'']],
    ['--pid="/run/a b.pid"', ['--pid=/run/a b.pid']],
    ["a'b'\"c\"d", ['abcd']],
    ["'' \"\"", ['', '']],
    ['$HOME * ~ `id` $(id) #x', ['$HOME', '*', '~', '`id`', '$(id)', '#x']],
    ['a\\\nb', ['ab']],
    ['a \\\n b', ['a', 'b']],
    ["'' \\\n", ['']],
  ]
  for (const [text, words] of cases) t.same(splitCommandLine(text), words, JSON.stringify(text))
  const bad: Array<[string, RegExp]> = [
    ["--pid 'x", /a ' quote is not closed/],
    ['--pid "x', /a " quote is not closed/],
    ['--pid "x\\"', /a " quote is not closed/],
    ['--pid x\\', /a backslash at the end escapes nothing/],
  ]
  for (const [text, re] of bad) {
    const err = configError(t, () => splitCommandLine(text))
    t.equal(err.option, 'SDSERVE_CMD_ARGS')
    t.match(err.message, re)
    t.ok(err.message.startsWith('SDSERVE_CMD_ARGS must be words with shell-style quoting'))
    t.ok(err.message.endsWith(`, got ${JSON.stringify(text)}`), 'echoes the value')
  }
})

t.test('loadConfig: precedence defaults < config file < SDSERVE_CMD_ARGS < command line', async (t) => {
  const top = t.testdir({ app: { 'sdserve.config.js': fixtureText('sdserve.config.js') }, empty: {} })
  const dir = join(top, 'app')
  const file = join(dir, 'sdserve.config.js')

  // Defaults only, with a config file elsewhere.
  const bare = await loadConfig(sources(join(top, 'empty'), ['app.js']))
  t.same(bare, { action: 'serve', config: { ...DEFAULTS, bind: [], app: 'app.js', config: undefined } })

  // The config file alone.
  let { action, config } = await loadConfig(sources(dir, []))
  t.equal(action, 'serve')
  t.same(config, {
    ...DEFAULTS,
    app: 'server.js',
    workers: 3,
    bind: ['127.0.0.1:8101', 'unix:/run/fixture.sock'],
    balance: 'reuse-port',
    timeout: 12.5,
    umask: 0o027,
    pid: join(dir, 'run/fixture.pid'),
    config: file,
  })

  // SDSERVE_CMD_ARGS over the file: its bind list replaces the file's.
  ;({ config } = await loadConfig(sources(dir, [], "--workers 6 -b 'unix:/run/env.sock' -t 7 --max-requests=100")))
  t.match(config, { app: 'server.js', workers: 6, bind: ['unix:/run/env.sock'], timeout: 7, maxRequests: 100, balance: 'reuse-port', umask: 0o027 })

  // The command line over both.
  ;({ action, config } = await loadConfig(
    sources(dir, ['-w', '8', '--bind', ':9000', '-b', '[::1]:9001', 'cli-app.js:handler', '-m', '077', '--check-config'], '--workers 6 -b unix:/run/env.sock -t 7 --keep-alive 0'),
  ))
  t.equal(action, 'check-config')
  t.match(config, {
    app: 'cli-app.js:handler',
    workers: 8,
    bind: [':9000', '[::1]:9001'],
    timeout: 7,
    keepAlive: 0,
    balance: 'reuse-port',
    umask: 0o077,
    config: file,
  })
  t.not(config.bind, DEFAULTS.bind, 'bind is a fresh array')
})

t.test('loadConfig: each kind of config file', async (t) => {
  const dir = t.testdir({
    'function.mjs': fixtureText('function.mjs'),
    'async.mjs': fixtureText('async.mjs'),
    'options.json': fixtureText('options.json'),
    'options.cjs': "'use strict'\nmodule.exports = { workers: 7, backlog: 64 }\n",
    'sub': { 'sdserve.config.mjs': 'export default { workers: 9 }\n' },
  })
  let { config } = await loadConfig(sources(dir, ['-c', 'function.mjs', 'a.js']))
  t.match(config, { workers: 2, keepAlive: 0, bind: ['fd://3'], config: join(dir, 'function.mjs') }, 'a function')
  ;({ config } = await loadConfig(sources(dir, ['a.js'], `--config ${join(dir, 'async.mjs')}`)))
  t.match(config, { workers: 5, gracefulTimeout: 60, unixSocketMode: 0o660, config: join(dir, 'async.mjs') }, 'an async function, named in SDSERVE_CMD_ARGS')
  ;({ config } = await loadConfig(sources(dir, ['--config=options.json'], '-c async.mjs')))
  t.match(config, {
    app: 'json-app.js',
    workers: 4,
    bind: ['systemd:web'],
    backlog: 128,
    maxRequests: 1000,
    maxRequestsJitter: 50,
    unixSocketOwner: 'www-data:www-data',
    config: join(dir, 'options.json'),
  }, 'JSON; -c on the command line beats -c in SDSERVE_CMD_ARGS')
  ;({ config } = await loadConfig(sources(dir, ['-c', './options.cjs', 'a.js'])))
  t.match(config, { workers: 7, backlog: 64 }, 'CommonJS')
  ;({ config } = await loadConfig(sources(join(dir, 'sub'), ['a.js'])))
  t.match(config, { workers: 9, config: join(dir, 'sub', 'sdserve.config.mjs') }, 'sdserve.config.mjs is found')
})

t.test('loadConfig: which config file is found', async (t) => {
  const top = t.testdir({
    all: {
      'sdserve.config.js': 'export default { workers: 1 }\n',
      'sdserve.config.mjs': 'export default { workers: 2 }\n',
      'sdserve.config.json': '{ "workers": 3 }',
    },
    two: { 'sdserve.config.mjs': 'export default { workers: 2 }\n', 'sdserve.config.json': '{ "workers": 3 }' },
    json: { 'sdserve.config.json': '{ "workers": 3, "chdir": "srv" }' },
    none: { 'sdserve.config.cjs': 'module.exports = { workers: 4 }\n', 'sdserve.json': '{}' },
  })
  const [all, two, json, none] = ['all', 'two', 'json', 'none'].map((d) => join(top, d)) as [string, string, string, string]
  t.same(CONFIG_FILE_NAMES, ['sdserve.config.js', 'sdserve.config.mjs', 'sdserve.config.json'])
  t.match((await loadConfig(sources(all, ['a.js']))).config, { workers: 1, config: join(all, 'sdserve.config.js') })
  t.match((await loadConfig(sources(two, ['a.js']))).config, { workers: 2 })
  t.match((await loadConfig(sources(json, ['a.js']))).config, { workers: 3, chdir: join(json, 'srv') })
  t.match((await loadConfig(sources(none, ['a.js']))).config, { workers: DEFAULTS.workers, config: undefined }, 'only the three names')
  t.match((await loadConfig(sources(none, ['-c', 'sdserve.config.cjs', 'a.js']))).config, { workers: 4 }, '.cjs with -c')
})

t.test('loadConfig: a reload sees the edited file', async (t) => {
  const dir = t.testdir({ 'sdserve.config.mjs': 'export default { workers: 2 }\n', 'sdserve.config.json': '{}' })
  const src = sources(dir, ['app.js'])
  t.equal((await loadConfig(src)).config.workers, 2)
  writeFileSync(join(dir, 'sdserve.config.mjs'), 'export default { workers: 3 }\n')
  t.equal((await loadConfig(src)).config.workers, 3, 'an ES module is imported afresh')
  writeFileSync(join(dir, 'sdserve.config.mjs'), 'export default { workers: 4 }\n')
  t.equal((await loadConfig(src)).config.workers, 4)
  const file = join(dir, 'sdserve.config.json')
  const json = sources(dir, ['-c', file, 'app.js'])
  writeFileSync(file, '{ "workers": 5 }')
  t.equal((await loadConfig(json)).config.workers, 5)
  writeFileSync(file, '{ "workers": 6 }')
  t.equal((await loadConfig(json)).config.workers, 6)
})

t.test('loadConfig: APP', async (t) => {
  const top = t.testdir({ app: { 'sdserve.config.json': '{ "app": "from-file.js" }' }, empty: {}, noApp: { 'sdserve.config.json': '{ "workers": 2 }' } })
  const dir = join(top, 'app')
  t.equal((await loadConfig(sources(dir, []))).config.app, 'from-file.js', 'from the config file')
  t.equal((await loadConfig(sources(dir, ['cli.js']))).config.app, 'cli.js', 'the command line wins')
  t.equal((await loadConfig(sources(dir, ['--', '-odd.js']))).config.app, '-odd.js', 'after --')

  const empty = join(top, 'empty')
  for (const argv of [[], ['--check-config'], ['--print-config'], ['-w', '2']]) {
    const err = await rejects(t, loadConfig(sources(empty, argv)))
    t.equal(err.message, 'APP must be given: sdserve [OPTIONS] APP, or app in a config file (see sdserve --help)', argv.join(' '))
  }
  const noApp = join(top, 'noApp')
  let err = await rejects(t, loadConfig(sources(noApp, [])))
  t.equal(err.message, `APP must be given: sdserve [OPTIONS] APP, or app in ${join(noApp, 'sdserve.config.json')} (see sdserve --help)`)
  err = await rejects(t, loadConfig(sources(empty, ['a.js', 'b.js'])))
  t.equal(err.message, 'APP must be a single argument (every option goes before or after it), got ["a.js","b.js"]')
  err = await rejects(t, loadConfig(sources(empty, [''])))
  t.match(err.message, /^APP must be a non-empty app spec.*, got ""$/)
  err = await rejects(t, loadConfig(sources(empty, ['a.js'], 'b.js')))
  t.equal(err.message, 'SDSERVE_CMD_ARGS must be options only (APP goes on the command line or in the config file), got "b.js"')
  err = await rejects(t, loadConfig(sources(empty, ['a.js'], '-w 2 --check-config')))
  t.match(err.message, /^SDSERVE_CMD_ARGS must be options only \(--help, --version, --check-config and --print-config go on the command line\), got "-w 2 --check-config"$/)
})

t.test('loadConfig: actions', async (t) => {
  const top = t.testdir({ empty: {}, broken: { 'sdserve.config.json': '{ nope' } })
  const empty = join(top, 'empty')
  const broken = join(top, 'broken')
  // --help and --version parse nothing but the command line.
  for (const [argv, action] of [
    [['--help'], 'help'],
    [['-h', '-v', '--check-config'], 'help'],
    [['--version', '--print-config'], 'version'],
    [['-v'], 'version'],
  ] as const) {
    const r = await loadConfig(sources(broken, [...argv], '--workers nope'))
    t.equal(r.action, action, argv.join(' '))
    t.same(r.config, { ...DEFAULTS, bind: [], app: '' })
  }
  t.equal((await loadConfig(sources(empty, ['--print-config', '--check-config', 'a.js']))).action, 'print-config')
  t.equal((await loadConfig(sources(empty, ['a.js', '--check-config']))).action, 'check-config')
  t.equal((await loadConfig(sources(empty, ['a.js']))).action, 'serve')
  t.equal((await loadConfig(sources(empty, ['a.js'], ''))).action, 'serve', 'an empty SDSERVE_CMD_ARGS')
})

t.test('loadConfig: flag errors name the flag', async (t) => {
  const dir = t.testdir({})
  const cases: Array<[string[], string | undefined, string]> = [
    [['--wrokers', '3', 'a.js'], undefined, 'unknown option "--wrokers" (did you mean --workers?); see sdserve --help'],
    [['-x', 'a.js'], undefined, 'unknown option "-x"; see sdserve --help'],
    [['-hx'], undefined, 'unknown option "-x"; see sdserve --help'],
    [['--frobnicate'], undefined, 'unknown option "--frobnicate"; see sdserve --help'],
    [['a.js', '--workers'], undefined, '--workers needs a value (to give one that starts with "-", write --workers=VALUE); see sdserve --help'],
    [['a.js', '-w'], undefined, '--workers needs a value (to give one that starts with "-", write --workers=VALUE); see sdserve --help'],
    [['--workers', '--bind', ':80', 'a.js'], undefined, '--workers needs a value (to give one that starts with "-", write --workers=VALUE); see sdserve --help'],
    [['-w', '-1', 'a.js'], undefined, '--workers needs a value (to give one that starts with "-", write --workers=VALUE); see sdserve --help'],
    [['--balance', '-b', ':80', 'a.js'], undefined, '--balance needs a value (to give one that starts with "-", write --balance=VALUE); see sdserve --help'],
    [['--help=yes'], undefined, '--help takes no value; see sdserve --help'],
    [['--check-config=1', 'a.js'], undefined, '--check-config takes no value; see sdserve --help'],
    [['a.js'], '--wrokers 3', 'unknown option "--wrokers" in SDSERVE_CMD_ARGS (did you mean --workers?); see sdserve --help'],
    [['a.js'], '-t', '--timeout in SDSERVE_CMD_ARGS needs a value (to give one that starts with "-", write --timeout=VALUE); see sdserve --help'],
    [['a.js'], '--workers=-1', '--workers (in SDSERVE_CMD_ARGS) must be an integer from 1 to 1024, or "auto", got "-1"'],
    [['a.js', '--workers=-1'], undefined, '--workers must be an integer from 1 to 1024, or "auto", got "-1"'],
    [['a.js', '-w', 'four'], undefined, '--workers must be an integer from 1 to 1024, or "auto", got "four"'],
    [['a.js', '-b', ':80', '-b', 'bogus'], undefined, '--bind must be HOST:PORT, [IPV6]:PORT, unix:/PATH, fd://N or systemd:NAME, got "bogus"'],
    [['a.js'], "-b ':80' --bind 'unix:x'", '--bind (in SDSERVE_CMD_ARGS) must be unix: followed by an absolute path, got "unix:x"'],
    [['a.js'], "--pid 'x", 'SDSERVE_CMD_ARGS must be words with shell-style quoting (a \' quote is not closed), got "--pid \'x"'],
    [['a.js', '--pid', ''], undefined, '--pid must be a non-empty file path, got ""'],
    [['a.js', '--config', ''], undefined, '--config must be a non-empty file path, got ""'],
  ]
  for (const [argv, cmdArgs, message] of cases) {
    const err = await rejects(t, loadConfig(sources(dir, argv, cmdArgs)))
    t.equal(err.message, message, `${argv.join(' ')} / ${cmdArgs ?? ''}`)
  }
  const err = await rejects(t, loadConfig(sources(dir, ['-x'])))
  t.equal(err.option, '-x')
  t.equal(err.value, '-x')
})

t.test('loadConfig: the command line is checked before the config file is read', async (t) => {
  const dir = t.testdir({ 'sdserve.config.json': '{ nope' })
  const err = await rejects(t, loadConfig(sources(dir, ['-w', '0', 'a.js'])))
  t.match(err.message, /^--workers must be/)
  const env = await rejects(t, loadConfig(sources(dir, ['a.js'], '-w 0')))
  t.match(env.message, /^--workers \(in SDSERVE_CMD_ARGS\) must be/)
})

t.test('broken config files: a ConfigError naming the file and saying why', async (t) => {
  const dir = t.testdir({
    'syntax.mjs': 'export default {\n  workers: 3\n  bind: 2\n}\n',
    'syntax.js': 'export default { workers: 3,, }\n',
    'syntax.cjs': "'use strict'\nmodule.exports = {\n  workers: 3,,\n}\n",
    'syntax.json': '{ "workers": 3, }',
    'imports-broken.mjs': "import './syntax.js'\nexport default {}\n",
    'imports-missing.mjs': "import './missing.js'\nexport default {}\n",
    'throws.mjs': "const x = 1\nthrow new Error('boom ' + x)\n",
    'throws.cjs': "'use strict'\nthrow new RangeError('cjs boom')\n",
    'throws-string.mjs': "throw 'a string'\n",
    'function-throws.mjs': "export default () => {\n  throw new TypeError('nope')\n}\n",
    'async-rejects.mjs': "export default async () => {\n  await null\n  throw new Error('later')\n}\n",
    'number.mjs': 'export default 42\n',
    'array.js': 'export default [1, 2]\n',
    'null.mjs': 'export default null\n',
    'class.mjs': 'export default new (class Options { workers = 2 })()\n',
    'fn-fn.mjs': 'export default () => () => ({})\n',
    'fn-string.mjs': "export default async () => 'workers=2'\n",
    'named.mjs': 'export const workers = 2\n',
    'array.json': '[1]',
    'string.json': '"workers"',
    'null.json': 'null',
    'config-key.json': '{ "config": "other.json" }',
    'bad-value.mjs': "export default { workers: 'many' }\n",
    'bad-bind.json': '{ "bind": ["127.0.0.1:80", "nowhere"] }',
    'unknown.json': '{ "wrokers": 2 }',
    'options.yaml': 'workers: 2\n',
    'dir.json': {},
  })
  symlinkSync('/proc/self/mem', join(dir, 'unreadable.json'))
  symlinkSync('throws.mjs', join(dir, 'link.mjs'))
  symlinkSync('syntax.mjs', join(dir, 'link-syntax.mjs'))
  const p = (name: string): string => join(dir, name)
  const cases: Array<[string, string | RegExp]> = [
    ['syntax.mjs', `config file ${p('syntax.mjs')}: syntax error at line 3: Unexpected identifier 'bind'`],
    ['syntax.js', `config file ${p('syntax.js')}: syntax error at line 1: Unexpected token ','`],
    ['syntax.cjs', `config file ${p('syntax.cjs')}: syntax error at line 3: Unexpected token ','`],
    ['syntax.json', new RegExp(`^config file ${p('syntax.json')}: invalid JSON: .*position`)],
    ['imports-broken.mjs', `config file ${p('imports-broken.mjs')}: syntax error (in it or in a module it imports): Unexpected token ','`],
    ['imports-missing.mjs', new RegExp(`^config file ${p('imports-missing.mjs')}: loading it threw Error: Cannot find module '${p('missing.js')}'`)],
    ['throws.mjs', `config file ${p('throws.mjs')}: loading it threw Error: boom 1 (at line 2:7)`],
    ['throws.cjs', `config file ${p('throws.cjs')}: loading it threw RangeError: cjs boom (at line 2:7)`],
    ['throws-string.mjs', `config file ${p('throws-string.mjs')}: loading it threw "a string"`],
    ['function-throws.mjs', `config file ${p('function-throws.mjs')}: its default export, a function, threw TypeError: nope (at line 2:9)`],
    ['async-rejects.mjs', `config file ${p('async-rejects.mjs')}: its default export, a function, threw Error: later (at line 3:9)`],
    ['number.mjs', `config file ${p('number.mjs')}: the default export must be an object of options, or a function (sync or async) returning one, got 42`],
    ['array.js', /: the default export must be an object of options, .*, got \[1,2\]$/],
    ['null.mjs', /: the default export must be .*, got null$/],
    ['class.mjs', /: the default export must be .*, got \{"workers":2\}$/],
    ['fn-fn.mjs', /: the default export must be .*, got a function$/],
    ['fn-string.mjs', /: the default export must be .*, got "workers=2"$/],
    ['named.mjs', `config file ${p('named.mjs')}: it has no default export; write \`export default { workers: 4, ... }\``],
    ['array.json', `config file ${p('array.json')}: must hold a JSON object of options, got [1]`],
    ['string.json', /: must hold a JSON object of options, got "workers"$/],
    ['null.json', /: must hold a JSON object of options, got null$/],
    ['config-key.json', `config (in ${p('config-key.json')}) must be given with -c/--config, not in a config file, got "other.json"`],
    ['bad-value.mjs', `workers (in ${p('bad-value.mjs')}) must be an integer from 1 to 1024, or "auto", got "many"`],
    ['bad-bind.json', `bind (in ${p('bad-bind.json')}) must be HOST:PORT, [IPV6]:PORT, unix:/PATH, fd://N or systemd:NAME, got "nowhere"`],
    ['unknown.json', new RegExp(`^wrokers \\(in ${p('unknown.json')}\\) must be a known option .*, got 2; did you mean workers\\?$`)],
    ['options.yaml', `config file ${p('options.yaml')}: its name must end in .js, .mjs, .cjs or .json`],
    ['missing.json', `config file ${p('missing.json')}: no such file`],
    ['missing.mjs', `config file ${p('missing.mjs')}: no such file`],
    ['dir.json', `config file ${p('dir.json')}: not a regular file`],
    ['unreadable.json', new RegExp(`^config file ${p('unreadable.json')}: cannot read it: EIO`)],
    ['link.mjs', `config file ${p('link.mjs')}: loading it threw Error: boom 1 (at line 2:7)`],
    ['link-syntax.mjs', `config file ${p('link-syntax.mjs')}: syntax error at line 3: Unexpected identifier 'bind'`],
    ['syntax.json/x.json', new RegExp(`^config file ${p('syntax.json/x.json')}: cannot read it: ENOTDIR`)],
  ]
  for (const [name, expected] of cases) {
    const err = await rejects(t, loadConfig(sources(dir, ['-c', name, 'a.js'])))
    if (typeof expected === 'string') t.equal(err.message, expected, name)
    else t.match(err.message, expected, name)
  }
  const err = await rejects(t, loadConfigFile(p('throws.mjs')))
  t.equal(err.option, `config file ${p('throws.mjs')}`)
  t.equal(err.value, p('throws.mjs'))
  t.match(err.cause, { message: 'boom 1' }, 'the original error is the cause')

  // A broken file found in the working directory is reported the same way.
  writeFileSync(join(dir, 'sdserve.config.js'), 'export default {\n  workers: 2,,\n}\n')
  const e = await rejects(t, loadConfig(sources(dir, ['a.js'])))
  t.equal(e.message, `config file ${join(dir, 'sdserve.config.js')}: syntax error at line 2: Unexpected token ','`)
})

t.test('loadConfigFile', async (t) => {
  const dir = t.testdir({ 'a.json': '{ "workers": "3", "umask": "022", "bind": "unix:/run/x.sock" }' })
  t.same(await loadConfigFile(join(dir, 'a.json')), { workers: 3, umask: 0o022, bind: ['unix:/run/x.sock'] }, 'strings are converted as from the command line')
})

t.test('formatConfig', async (t) => {
  const config: Config = { ...DEFAULTS, bind: ['unix:/run/a.sock'], app: 'app.js', umask: 0o22, unixSocketMode: 0o660, pid: '/run/a.pid' }
  const text = formatConfig(config)
  t.ok(text.endsWith('}\n'))
  const parsed = JSON.parse(text) as Record<string, unknown>
  t.same(Object.keys(parsed), Object.keys(parsed).sort(), 'keys sorted')
  t.same(Object.keys(parsed).sort(), [...OPTION_KEYS].sort(), 'every option, set or not')
  t.match(parsed, { umask: '0o022', unixSocketMode: '0o660', pid: '/run/a.pid', chdir: null, user: null, bind: ['unix:/run/a.sock'] })
  t.match(JSON.parse(formatConfig({ ...config, umask: 0, unixSocketMode: undefined })), { umask: '0o000', unixSocketMode: null })
})

t.test('slow-client limits, logging and proxy options', async (t) => {
  const ok = validateOptions(
    {
      headersTimeout: '2.5',
      requestTimeout: 0,
      limitRequestLine: '0',
      limitRequestFields: 50,
      limitRequestFieldSize: '4096',
      workerConnections: '1000',
      accessLogfile: '-',
      accessLogformat: '%(h)s %(s)s',
      errorLogfile: '/var/log/sdserve.log',
      logLevel: 'debug',
      logFormat: 'json',
      forwardedAllowIps: '10.0.0.0/8,unix',
      untrustedForwarded: 'keep',
      proxyProtocol: 'true',
      proxyAllowIps: '*',
    },
    ORIGIN_COMMAND_LINE,
  )
  t.match(ok, { headersTimeout: 2.5, requestTimeout: 0, limitRequestLine: 0, logLevel: 'debug', logFormat: 'json', untrustedForwarded: 'keep', proxyProtocol: true })
  t.equal(validateOptions({ proxyProtocol: false }, 'f.json').proxyProtocol, false)
  t.equal(validateOptions({ proxyProtocol: 'false' }, 'f.json').proxyProtocol, false)
  t.throws(() => validateOptions({ proxyProtocol: 'yes' }, ORIGIN_COMMAND_LINE), { message: '--proxy-protocol must be true or false, got "yes"' })
  t.throws(() => validateOptions({ logLevel: 'loud' }, ORIGIN_COMMAND_LINE), {
    message: '--log-level must be "debug", "info", "warning", "error" or "critical", got "loud"',
  })
  t.throws(() => validateOptions({ logFormat: 3 }, ORIGIN_COMMAND_LINE), { message: '--log-format must be "text" or "json", got 3' })
  t.throws(() => validateOptions({ limitRequestFields: 0 }, ORIGIN_COMMAND_LINE), { message: /--limit-request-fields must be an integer from 1 to 32768/ })
  t.throws(() => validateOptions({ limitRequestFieldSize: 'big' }, ORIGIN_COMMAND_LINE), { message: /--limit-request-field_size must be/ })
})

t.test('FORWARDED_ALLOW_IPS is the default of --forwarded-allow-ips', async (t) => {
  const dir = t.testdir({})
  const withEnv = await loadConfig({ argv: ['app.js'], env: { FORWARDED_ALLOW_IPS: '*' }, cwd: dir })
  t.equal(withEnv.config.forwardedAllowIps, '*')
  const flagWins = await loadConfig({ argv: ['--forwarded-allow-ips', '10.1.2.3', 'app.js'], env: { FORWARDED_ALLOW_IPS: '*' }, cwd: dir })
  t.equal(flagWins.config.forwardedAllowIps, '10.1.2.3')
  const proxy = await loadConfig({ argv: ['--proxy-protocol', 'app.js'], env: {}, cwd: dir })
  t.equal(proxy.config.proxyProtocol, true)
})

t.test('allow lists are checked when the configuration is read', async (t) => {
  t.throws(() => validateOptions({ forwardedAllowIps: 5 }, 'f.json'), { message: /^forwardedAllowIps \(in f\.json\) must be a comma-separated list/ })
  t.throws(() => validateOptions({ proxyAllowIps: '10.0.0.0/40' }, ORIGIN_COMMAND_LINE), { message: /--proxy-allow-ips/ })
})

t.test('operating options: --max-worker-memory sizes, --control-socket, --metrics-bind', async (t) => {
  const MiB = 1048576
  const memory = (value: unknown): number | undefined => validateOptions({ maxWorkerMemory: value }, ORIGIN_COMMAND_LINE).maxWorkerMemory
  t.equal(memory('512M'), 512 * MiB)
  t.equal(memory('512m'), 512 * MiB, 'suffixes in either case')
  t.equal(memory('1.5G'), 1.5 * 1024 * MiB)
  t.equal(memory('900K'), 900 * 1024)
  t.equal(memory('1T'), 1024 * 1024 * MiB)
  t.equal(memory('300'), 300 * MiB, 'a bare number is megabytes')
  t.equal(memory(300), 300 * MiB, 'also in a config file')
  t.equal(memory(0), 0)
  for (const bad of ['', '512MB', '-1M', '1e3', 'lots', '2000T', true, null])
    t.throws(() => memory(bad), { message: /^--max-worker-memory must be a size like 512M or 2G/ }, String(bad))
  t.equal(formatConfig({ ...DEFAULTS, app: 'a.js', maxWorkerMemory: 1536 * MiB }).includes('"maxWorkerMemory": "1536M"'), true)
  t.equal(formatConfig({ ...DEFAULTS, app: 'a.js', maxWorkerMemory: 2048 * MiB }).includes('"maxWorkerMemory": "2G"'), true)
  t.equal(formatConfig({ ...DEFAULTS, app: 'a.js', maxWorkerMemory: 1000 }).includes('"maxWorkerMemory": "1000"'), true, 'bytes that no unit divides')

  const control = (value: unknown): unknown => validateOptions({ controlSocket: value }, ORIGIN_COMMAND_LINE).controlSocket
  t.equal(control('/run/app/sdserve.ctl'), '/run/app/sdserve.ctl')
  t.equal(control('none'), 'none')
  for (const bad of ['sdserve.ctl', '', `/${'x'.repeat(107)}`, 3])
    t.throws(() => control(bad), { message: /^--control-socket must be 'none' or an absolute path of at most 107 bytes/ }, String(bad))

  const metrics = (value: unknown): unknown => validateOptions({ metricsBind: value }, ORIGIN_COMMAND_LINE).metricsBind
  t.equal(metrics('127.0.0.1:9100'), '127.0.0.1:9100')
  t.equal(metrics('[::1]:9100'), '[::1]:9100')
  t.equal(metrics('unix:/run/app/metrics.sock'), 'unix:/run/app/metrics.sock')
  t.throws(() => metrics('fd://3'), { message: '--metrics-bind must be HOST:PORT, [IPV6]:PORT or unix:/PATH, got "fd://3"' })
  t.throws(() => metrics('systemd:metrics'), { message: /^--metrics-bind must be HOST:PORT/ })
  t.throws(() => metrics('bogus'), { message: /^--metrics-bind must be/ })
})

t.test('--workers auto is the CPU-based default, and the start log says where a default count came from', async (t) => {
  const auto = validateOptions({ workers: 'auto' }, ORIGIN_COMMAND_LINE).workers
  t.equal(auto, DEFAULTS.workers)
  t.throws(() => validateOptions({ workers: 'many' }, ORIGIN_COMMAND_LINE), { message: '--workers must be an integer from 1 to 1024, or "auto", got "many"' })
  t.match(workersText(DEFAULTS.workers), new RegExp(`^${DEFAULTS.workers} workers: one per CPU core`))
  t.equal(workersText(DEFAULTS.workers + 1), `${DEFAULTS.workers + 1} workers`)
})

t.test('health and lame-duck options', async (t) => {
  t.match(validateOptions({ healthPath: '/healthz', lameDuck: '5', logHealthChecks: 'true' }, ORIGIN_COMMAND_LINE), { healthPath: '/healthz', lameDuck: 5, logHealthChecks: true })
  for (const bad of ['healthz', '/health check', '/h?x=1', '/h#x', 3])
    t.throws(() => validateOptions({ healthPath: bad }, ORIGIN_COMMAND_LINE), { message: /^--health-path must be a URL path starting with \/, without a query: \/healthz, got / }, String(bad))
})

t.test('start-up and reload options: --boot-nice, --warm-up, --warm-up-count', async (t) => {
  t.match(validateOptions({ bootNice: '0', warmUp: ['/', 'POST /api/search?q=a'], warmUpCount: '50' }, ORIGIN_COMMAND_LINE), {
    bootNice: 0,
    warmUp: ['/', 'POST /api/search?q=a'],
    warmUpCount: 50,
  })
  t.same(validateOptions({ warmUp: '/one' }, ORIGIN_COMMAND_LINE).warmUp, ['/one'], 'one request from a config file')
  t.same(DEFAULTS.warmUp, [])
  t.equal(DEFAULTS.bootNice, 0)
  for (const bad of ['20', '-1', 'low'])
    t.throws(() => validateOptions({ bootNice: bad }, ORIGIN_COMMAND_LINE), { message: /^--boot-nice must be an integer from 0 to 19, got / }, bad)
  for (const bad of ['x', 'get /', 'GET  /', 'GET /a b', '/a\n', 3, [3], { path: '/' }])
    t.throws(() => validateOptions({ warmUp: bad }, ORIGIN_COMMAND_LINE), { message: /^--warm-up must be a request as PATH or METHOD PATH/ }, JSON.stringify(bad))
  t.throws(() => validateOptions({ warmUpCount: '0' }, ORIGIN_COMMAND_LINE), { message: /^--warm-up-count must be an integer from 1 to 100000/ })
})
