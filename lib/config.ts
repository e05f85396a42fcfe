/**
 * sdserve's configuration: defaults in one object, validation of every
 * option, and merging of the sources in order of precedence (later wins):
 * defaults < config file < SDSERVE_CMD_ARGS < command line.
 */

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, realpath, stat } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { extname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { DEFAULT_BACKLOG, parseBind } from './binds.js'
import { splitCommandLine } from './cmd-args.js'
import { ConfigError, show } from './errors.js'
import { AllowList } from './http/proxy.js'

export type Balance = 'shared' | 'reuse-port'

export interface Config {
  /** The application: `path/to/app.js`, `app.js:name`, or `app.js:factory()`. */
  app: string
  /** Worker processes (-w). */
  workers: number
  /** Bind specs (-b, repeatable). Empty: every inherited socket, or DEFAULT_BIND without LISTEN_FDS. */
  bind: string[]
  /** How connections reach workers: one shared socket, or one SO_REUSEPORT socket per worker (TCP binds). */
  balance: Balance
  /** Listen backlog of every socket (listen(2) is called again on inherited ones too). */
  backlog: number
  /** Seconds a worker may go without a heartbeat (event loop blocked) before it is killed; 0 disables. Also bounds a worker's boot. */
  timeout: number
  /** Seconds workers get to finish in-flight requests on stop and reload before they are killed. */
  gracefulTimeout: number
  /** Seconds an idle keep-alive connection is kept open. */
  keepAlive: number
  /** Requests after which a worker is replaced; 0 disables. */
  maxRequests: number
  /** A random 0..maxRequestsJitter added to maxRequests per worker, so workers do not all recycle at once. */
  maxRequestsJitter: number
  /** Pid file of the master. */
  pid: string | undefined
  /** Directory to change to before loading the app. */
  chdir: string | undefined
  /** Workers run as this user (name or uid); needs root. */
  user: string | undefined
  /** Workers run as this group (name or gid); needs root. */
  group: string | undefined
  /** File mode creation mask of the master and workers, e.g. 0o022. */
  umask: number | undefined
  /** Mode of UNIX socket files sdserve creates, e.g. 0o660. */
  unixSocketMode: number | undefined
  /** Owner of UNIX socket files sdserve creates: `user`, `user:group` or `:group`. */
  unixSocketOwner: string | undefined
  /** The config file this configuration was read from, if any. */
  config: string | undefined
  /** Seconds a client may take to send the request headers (slow clients get 408); 0 disables. */
  headersTimeout: number
  /** Seconds a client may take to send the whole request; 0 disables. */
  requestTimeout: number
  /** Longest request line (method, target, version) in bytes; longer gets 414. 0: only Node's header size limit. */
  limitRequestLine: number
  /** Most header fields in a request; more gets 431. */
  limitRequestFields: number
  /** Longest header field (name and value) in bytes; longer gets 431. */
  limitRequestFieldSize: number
  /** Most simultaneous connections per worker; 0: no limit. Node closes connections beyond it. */
  workerConnections: number
  /** Where the access log goes: a file path or '-' for stdout; undefined: no access log. */
  accessLogfile: string | undefined
  /** gunicorn's access log format (%(h)s, %({header}i)s, ...). */
  accessLogformat: string
  /** Where the error log (sdserve's own lines) goes: a file path or '-' for stderr. */
  errorLogfile: string
  /** Lowest level logged: debug, info, warning, error, critical. */
  logLevel: 'debug' | 'info' | 'warning' | 'error' | 'critical'
  /** Error log lines as text or JSON. */
  logFormat: 'text' | 'json'
  /** Peers whose X-Forwarded-* and Forwarded headers are believed: addresses, CIDR ranges, `unix`, or '*'. */
  forwardedAllowIps: string
  /** What happens to forwarded headers from a peer that is not trusted: removed (default) or passed on. */
  untrustedForwarded: 'strip' | 'keep'
  /** Expect a PROXY protocol (v1 or v2) header at the start of every connection. */
  proxyProtocol: boolean
  /** Peers allowed to send a PROXY protocol header. */
  proxyAllowIps: string
}

// ---------------------------------------------------------------------------
// Defaults, validation and loading. Everything below works on the Config
// interface above and never changes its fields or their meanings.
// ---------------------------------------------------------------------------

/** The largest number of workers sdserve accepts. */
export const MAX_WORKERS = 1024
/** The largest duration (timeout, gracefulTimeout, keepAlive) in seconds: one day. */
export const MAX_SECONDS = 86400

/**
 * Every option's default. `app` has none: it must be given.
 *
 * workers: one per CPU core (os.availableParallelism()). gunicorn defaults to
 * 1 because its default workers are synchronous and one per core is the
 * usual advice for them; a Node worker is event-driven and serves many
 * connections at once, so one per core uses the machine without
 * oversubscribing it.
 */
export const DEFAULTS: Readonly<Omit<Config, 'app'>> = Object.freeze({
  workers: Math.min(Math.max(availableParallelism(), 1), MAX_WORKERS),
  bind: Object.freeze([]) as unknown as string[],
  balance: 'shared',
  backlog: DEFAULT_BACKLOG,
  timeout: 30,
  gracefulTimeout: 30,
  keepAlive: 5,
  maxRequests: 0,
  maxRequestsJitter: 0,
  pid: undefined,
  chdir: undefined,
  user: undefined,
  group: undefined,
  umask: undefined,
  unixSocketMode: undefined,
  unixSocketOwner: undefined,
  config: undefined,
  headersTimeout: 10,
  requestTimeout: 300,
  limitRequestLine: 4094,
  limitRequestFields: 100,
  limitRequestFieldSize: 8190,
  workerConnections: 0,
  accessLogfile: undefined,
  accessLogformat: '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
  errorLogfile: '-',
  logLevel: 'info',
  logFormat: 'text',
  forwardedAllowIps: '127.0.0.1,::1,unix',
  untrustedForwarded: 'strip',
  proxyProtocol: false,
  proxyAllowIps: '127.0.0.1,::1,unix',
})

/** validateOptions() origin for the command line: options are named by their flag (`--workers`). */
export const ORIGIN_COMMAND_LINE = 'command line'
/** validateOptions() origin for SDSERVE_CMD_ARGS: `--workers (in SDSERVE_CMD_ARGS)`. */
export const ORIGIN_ENV = 'SDSERVE_CMD_ARGS'

/** The config files looked for in the working directory, in this order, when -c is not given. */
export const CONFIG_FILE_NAMES = ['sdserve.config.js', 'sdserve.config.mjs', 'sdserve.config.json'] as const

/** A command-line option that sets a Config field. */
export interface OptionInfo {
  /** The Config field. */
  key: Exclude<keyof Config, 'app'>
  /** The long flag, without `--`. */
  flag: string
  /** The one-letter flag, without `-`. */
  short?: string
  /** The value's placeholder in --help. */
  meta: string
  /** Repeatable (each use adds a value). */
  multiple?: boolean
  /** A switch that takes no value (--proxy-protocol). */
  boolean?: boolean
  /** One line for --help. */
  help: string
  /** The default, as --help shows it. */
  defaultText: string
}

/** Every option flag, in --help order. */
export const OPTIONS: readonly OptionInfo[] = [
  { key: 'workers', flag: 'workers', short: 'w', meta: 'N', help: `worker processes, 1 to ${MAX_WORKERS}`, defaultText: `${DEFAULTS.workers}, one per CPU core` },
  { key: 'bind', flag: 'bind', short: 'b', meta: 'SPEC', multiple: true, help: 'listen on SPEC; repeatable', defaultText: "systemd's sockets, else 127.0.0.1:8000" },
  { key: 'balance', flag: 'balance', meta: 'MODE', help: 'shared (one socket) or reuse-port (SO_REUSEPORT, per worker)', defaultText: DEFAULTS.balance },
  { key: 'backlog', flag: 'backlog', meta: 'N', help: 'listen backlog of every socket, systemd\'s included, 1 to 65535', defaultText: String(DEFAULTS.backlog) },
  { key: 'timeout', flag: 'timeout', short: 't', meta: 'SECONDS', help: 'kill a worker blocked this long (a boot gets at least 10 s); 0: never', defaultText: String(DEFAULTS.timeout) },
  { key: 'gracefulTimeout', flag: 'graceful-timeout', meta: 'SECONDS', help: 'time to finish requests on stop and reload', defaultText: String(DEFAULTS.gracefulTimeout) },
  { key: 'keepAlive', flag: 'keep-alive', meta: 'SECONDS', help: 'idle keep-alive connection timeout; 0: no keep-alive', defaultText: String(DEFAULTS.keepAlive) },
  { key: 'maxRequests', flag: 'max-requests', meta: 'N', help: 'replace a worker after N requests; 0: never', defaultText: String(DEFAULTS.maxRequests) },
  { key: 'maxRequestsJitter', flag: 'max-requests-jitter', meta: 'N', help: 'add a random 0..N to --max-requests per worker', defaultText: String(DEFAULTS.maxRequestsJitter) },
  { key: 'pid', flag: 'pid', short: 'p', meta: 'FILE', help: "write the master's pid to FILE", defaultText: 'none' },
  { key: 'config', flag: 'config', short: 'c', meta: 'FILE', help: 'read options from FILE: .js, .mjs, .cjs or .json', defaultText: './sdserve.config.{js,mjs,json}' },
  { key: 'chdir', flag: 'chdir', meta: 'DIR', help: 'change to DIR before loading the app', defaultText: 'none' },
  { key: 'user', flag: 'user', short: 'u', meta: 'USER', help: 'run workers as USER (name or uid); needs root', defaultText: "the master's" },
  { key: 'group', flag: 'group', short: 'g', meta: 'GROUP', help: 'run workers as GROUP (name or gid); needs root', defaultText: "USER's" },
  { key: 'umask', flag: 'umask', short: 'm', meta: 'MODE', help: 'umask (octal, e.g. 022) of the master and workers', defaultText: 'inherited' },
  { key: 'unixSocketMode', flag: 'unix-socket-mode', meta: 'MODE', help: 'mode (octal, e.g. 660) of UNIX sockets sdserve creates', defaultText: 'from the umask' },
  { key: 'unixSocketOwner', flag: 'unix-socket-owner', meta: 'OWNER', help: 'owner of those sockets: USER, USER:GROUP or :GROUP', defaultText: 'the master' },
  { key: 'headersTimeout', flag: 'headers-timeout', meta: 'SECONDS', help: 'a client must send its request headers within this (408); 0 disables', defaultText: String(DEFAULTS.headersTimeout) },
  { key: 'requestTimeout', flag: 'request-timeout', meta: 'SECONDS', help: 'a client must send its whole request within this (408); 0 disables', defaultText: String(DEFAULTS.requestTimeout) },
  { key: 'limitRequestLine', flag: 'limit-request-line', meta: 'BYTES', help: 'longest request line (414); 0: only the 16 KiB header limit', defaultText: String(DEFAULTS.limitRequestLine) },
  { key: 'limitRequestFields', flag: 'limit-request-fields', meta: 'N', help: 'most header fields in a request (431), 1 to 32768', defaultText: String(DEFAULTS.limitRequestFields) },
  { key: 'limitRequestFieldSize', flag: 'limit-request-field_size', meta: 'BYTES', help: 'longest header field, name and value (431); 0: no limit of its own', defaultText: String(DEFAULTS.limitRequestFieldSize) },
  { key: 'workerConnections', flag: 'worker-connections', meta: 'N', help: 'most connections a worker holds at once; 0: no limit', defaultText: 'no limit' },
  { key: 'accessLogfile', flag: 'access-logfile', meta: 'FILE', help: "access log: a file, or '-' for stdout", defaultText: 'none' },
  { key: 'accessLogformat', flag: 'access-logformat', meta: 'FORMAT', help: "access log format, gunicorn's %(atom)s syntax", defaultText: "gunicorn's" },
  { key: 'errorLogfile', flag: 'error-logfile', meta: 'FILE', help: "sdserve's own log: a file, or '-' for stderr", defaultText: '-' },
  { key: 'logLevel', flag: 'log-level', meta: 'LEVEL', help: 'debug, info, warning, error or critical', defaultText: DEFAULTS.logLevel },
  { key: 'logFormat', flag: 'log-format', meta: 'FORMAT', help: 'text, or json for one JSON object per line', defaultText: DEFAULTS.logFormat },
  { key: 'forwardedAllowIps', flag: 'forwarded-allow-ips', meta: 'LIST', help: "peers whose X-Forwarded-*/Forwarded are believed: IPs, CIDRs, unix, or '*'", defaultText: '$FORWARDED_ALLOW_IPS, else 127.0.0.1,::1,unix' },
  { key: 'untrustedForwarded', flag: 'untrusted-forwarded', meta: 'WHAT', help: 'forwarded headers from other peers: strip (remove) or keep', defaultText: DEFAULTS.untrustedForwarded },
  { key: 'proxyProtocol', flag: 'proxy-protocol', meta: '', boolean: true, help: 'expect a PROXY protocol v1/v2 header on every connection', defaultText: 'off' },
  { key: 'proxyAllowIps', flag: 'proxy-allow-ips', meta: 'LIST', help: 'peers allowed to send a PROXY protocol header', defaultText: DEFAULTS.proxyAllowIps },
]

/** The flags that choose what sdserve does instead of serving. */
export const ACTION_FLAGS = [
  { flag: 'check-config', help: 'validate the configuration, print "config OK: FILE" and exit' },
  { flag: 'print-config', help: 'print the merged configuration as JSON and exit' },
  { flag: 'help', short: 'h', help: 'print this help and exit' },
  { flag: 'version', short: 'v', help: 'print the version and exit' },
] as const

/** The name of an option as the user wrote it in origin, for error messages. */
export function optionName(key: string, origin: string): string {
  if (origin === ORIGIN_COMMAND_LINE) return key === 'app' ? 'APP' : `--${flagOf(key)}`
  if (origin === ORIGIN_ENV) return `--${flagOf(key)} (in ${ORIGIN_ENV})`
  return `${key} (in ${origin})`
}

function flagOf(key: string): string {
  return OPTIONS.find((o) => o.key === key)?.flag ?? key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

/** A ConfigError whose message is not the "must be ..., got ..." form. */
function configError(option: string, value: unknown, message: string, cause?: unknown): ConfigError {
  const err = new ConfigError(option, value, '')
  err.message = message
  if (cause !== undefined) err.cause = cause
  return err
}

// --- validators: each takes the value and the option's name for messages ----

const INTEGER = /^[0-9]+$/
const DECIMAL = /^[0-9]+(?:\.[0-9]+)?$/
const OCTAL = /^(?:0o)?([0-7]{1,4})$/i

function integer(min: number, max: number, expected: string) {
  return (value: unknown, name: string): number => {
    const n = typeof value === 'string' && INTEGER.test(value) ? Number(value) : value
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) throw new ConfigError(name, value, expected)
    return n
  }
}

function seconds(expected: string) {
  return (value: unknown, name: string): number => {
    const n = typeof value === 'string' && DECIMAL.test(value) ? Number(value) : value
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > MAX_SECONDS) throw new ConfigError(name, value, expected)
    return n
  }
}

function nonEmptyString(expected: string) {
  return (value: unknown, name: string): string => {
    if (typeof value !== 'string' || value.trim() === '') throw new ConfigError(name, value, expected)
    return value
  }
}

function mode(value: unknown, name: string): number {
  let n: unknown = value
  if (typeof value === 'string') {
    const m = OCTAL.exec(value)
    n = m === null ? NaN : parseInt(m[1] as string, 8)
  }
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0o777)
    throw new ConfigError(name, value, 'an octal mode from 0 to 777: a string like "022", "0660" or "0o660", or a number like 0o660')
  return n
}

function binds(value: unknown, name: string): string[] {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list)) throw new ConfigError(name, value, 'a bind spec or an array of bind specs')
  return list.map((spec: unknown) => {
    parseBind(spec, name)
    return spec as string
  })
}

function oneOf<T extends string>(choices: readonly T[]) {
  return (value: unknown, name: string): T => {
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value))
      throw new ConfigError(name, value, choices.map((c) => `"${c}"`).join(', ').replace(/, ([^,]*)$/, ' or $1'))
    return value as T
  }
}

/** An allow list of peers, checked by AllowList; kept as the text the user wrote. */
function allowList(value: unknown, name: string): string {
  if (typeof value !== 'string') throw new ConfigError(name, value, "a comma-separated list of addresses, CIDR ranges, unix, or '*'")
  AllowList.parse(value, name)
  return value
}

function bool(value: unknown, name: string): boolean {
  if (value === true || value === 'true') return true
  if (value === false || value === 'false') return false
  throw new ConfigError(name, value, 'true or false')
}

function balance(value: unknown, name: string): Balance {
  if (value !== 'shared' && value !== 'reuse-port') throw new ConfigError(name, value, '"shared" or "reuse-port"')
  return value
}

const VALIDATORS: { [K in keyof Config]-?: (value: unknown, name: string) => Config[K] } = {
  app: nonEmptyString('a non-empty app spec: path/to/app.js, app.js:name or app.js:factory()'),
  workers: integer(1, MAX_WORKERS, `an integer from 1 to ${MAX_WORKERS}`),
  bind: binds,
  balance,
  backlog: integer(1, 65535, 'an integer from 1 to 65535'),
  timeout: seconds(`a number of seconds from 0 to ${MAX_SECONDS} (0 disables)`),
  gracefulTimeout: seconds(`a number of seconds from 0 to ${MAX_SECONDS}`),
  keepAlive: seconds(`a number of seconds from 0 to ${MAX_SECONDS} (0 disables keep-alive)`),
  maxRequests: integer(0, Number.MAX_SAFE_INTEGER, 'a non-negative integer (0 disables)'),
  maxRequestsJitter: integer(0, Number.MAX_SAFE_INTEGER, 'a non-negative integer'),
  pid: nonEmptyString('a non-empty file path'),
  chdir: nonEmptyString('a non-empty directory path'),
  user: nonEmptyString('a non-empty user name or uid'),
  group: nonEmptyString('a non-empty group name or gid'),
  umask: mode,
  unixSocketMode: mode,
  unixSocketOwner: nonEmptyString('a non-empty owner: USER, USER:GROUP or :GROUP'),
  config: nonEmptyString('a non-empty file path'),
  headersTimeout: seconds(`a number of seconds from 0 to ${MAX_SECONDS} (0 disables)`),
  requestTimeout: seconds(`a number of seconds from 0 to ${MAX_SECONDS} (0 disables)`),
  limitRequestLine: integer(0, 65536, 'an integer from 0 to 65536'),
  limitRequestFields: integer(1, 32768, 'an integer from 1 to 32768'),
  limitRequestFieldSize: integer(0, 65536, 'an integer from 0 to 65536'),
  workerConnections: integer(0, 1048576, 'an integer from 0 to 1048576 (0: no limit)'),
  accessLogfile: nonEmptyString("a file path or '-'"),
  accessLogformat: nonEmptyString('a non-empty access log format'),
  errorLogfile: nonEmptyString("a file path or '-'"),
  logLevel: oneOf(['debug', 'info', 'warning', 'error', 'critical'] as const),
  logFormat: oneOf(['text', 'json'] as const),
  forwardedAllowIps: allowList,
  untrustedForwarded: oneOf(['strip', 'keep'] as const),
  proxyProtocol: bool,
  proxyAllowIps: allowList,
}

/** Every option key, as config files spell them. */
export const OPTION_KEYS = Object.keys(VALIDATORS) as Array<keyof Config>

function isOptionKey(key: string): key is keyof Config {
  return Object.hasOwn(VALIDATORS, key)
}

/** The candidate a mistyped word probably meant: at most two edits away, ignoring case. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = 3
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/** The known key a mistyped one probably meant: its camelCase form (graceful-timeout), or the closest. */
function suggest(key: string, known: readonly string[]): string | undefined {
  const camel = key.replace(/[-_]+([a-z])/gi, (_, c: string) => c.toUpperCase())
  return known.includes(camel) ? camel : closest(key, known)
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row.push(Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost))
    }
    prev = row
  }
  return prev[b.length] as number
}

/**
 * Validate options given as camelCase Config keys. Values may be numbers or,
 * as the command line gives them, strings ("4", "2.5", "022"), converted
 * strictly: "", " 4", "4x", "1e3" and "NaN" are errors. An undefined value
 * is the same as an absent key. Unknown keys are errors.
 *
 * origin says where the options come from, and so how an error names one:
 * ORIGIN_COMMAND_LINE (`--workers`), ORIGIN_ENV (`--workers (in
 * SDSERVE_CMD_ARGS)`), or anything else, typically a config file's path
 * (`workers (in /etc/app/sdserve.config.js)`).
 */
export function validateOptions(input: Record<string, unknown>, origin: string): Partial<Config> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue
    const name = optionName(key, origin)
    if (!isOptionKey(key)) {
      const known = origin === ORIGIN_COMMAND_LINE || origin === ORIGIN_ENV ? OPTION_KEYS : OPTION_KEYS.filter((k) => k !== 'config')
      const err = new ConfigError(name, value, `a known option (${known.join(', ')})`)
      const guess = suggest(key, known)
      if (guess !== undefined) err.message += `; did you mean ${origin === ORIGIN_COMMAND_LINE || origin === ORIGIN_ENV ? `--${flagOf(guess)}` : guess}?`
      throw err
    }
    out[key] = VALIDATORS[key](value, name)
  }
  return out
}

// --- command-line parsing ------------------------------------------------------

export type Action = 'serve' | 'help' | 'version' | 'check-config' | 'print-config'

export interface ConfigSources {
  /** The command-line arguments after `sdserve` (process.argv.slice(2)). */
  argv: string[]
  /** The environment; only SDSERVE_CMD_ARGS is read. */
  env: NodeJS.ProcessEnv
  /** The directory config files are looked for in and relative paths (-c, --pid, --chdir) are resolved against. */
  cwd: string
}

interface ParsedArgs {
  /** Option values by Config key, as strings (arrays for --bind). */
  options: Record<string, unknown>
  positionals: string[]
  actions: Set<string>
}

type FlagConfig = NonNullable<ParseArgsConfig['options']>[string]

const PARSE_OPTIONS: Record<string, FlagConfig> = Object.fromEntries([
  ...OPTIONS.map((o): [string, FlagConfig] => [
    o.flag,
    o.boolean === true
      ? { type: 'boolean' }
      : { type: 'string', multiple: o.multiple === true, ...(o.short === undefined ? {} : { short: o.short }) },
  ]),
  ...ACTION_FLAGS.map((a): [string, FlagConfig] => [a.flag, { type: 'boolean', ...('short' in a ? { short: a.short } : {}) }]),
])

/** Parse arguments strictly; `where` (e.g. " in SDSERVE_CMD_ARGS") goes into error messages. */
function parseFlags(args: string[], where: string): ParsedArgs {
  let parsed
  try {
    parsed = parseArgs({ args, options: PARSE_OPTIONS, strict: true, allowPositionals: true })
  } catch (err) {
    throw flagError(err, where)
  }
  const values: Record<string, unknown> = parsed.values
  const options: Record<string, unknown> = {}
  for (const o of OPTIONS) options[o.key] = values[o.flag]
  const actions = new Set<string>(ACTION_FLAGS.filter((a) => values[a.flag] === true).map((a) => a.flag))
  return { options, positionals: parsed.positionals, actions }
}

/** Turn parseArgs' error into a ConfigError naming the flag. */
function flagError(err: unknown, where: string): unknown {
  const e = err as { code?: unknown; message: string }
  // Node quotes the flag first: "Unknown option '--wrokers'. ...", "Option
  // '-w, --workers <value>' argument missing", "Option '-w' argument is
  // ambiguous. ...", "Option '-h, --help' does not take an argument".
  const quoted = /'(?:-\w, )?(-[^' ]*)/.exec(e.message)
  const unknown = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
  /* c8 ignore next -- with allowPositionals parseArgs raises only these two errors, each quoting the flag */
  if (quoted === null || (!unknown && e.code !== 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE')) return err
  const written = quoted[1] as string
  if (unknown) {
    const guess = written.startsWith('--') ? closest(written.slice(2), Object.keys(PARSE_OPTIONS)) : undefined
    return configError(written, written, `unknown option ${JSON.stringify(written)}${where}${guess === undefined ? '' : ` (did you mean --${guess}?)`}; see sdserve --help`)
  }
  // Name a known short flag by its long form.
  const long = Object.entries(PARSE_OPTIONS).find(([, c]) => `-${c.short ?? ''}` === written)?.[0]
  const flag = long === undefined ? written : `--${long}`
  if (e.message.includes('does not take an argument'))
    return configError(flag, flag, `${flag}${where} takes no value; see sdserve --help`)
  return configError(flag, flag, `${flag}${where} needs a value (to give one that starts with "-", write ${flag}=VALUE); see sdserve --help`)
}

// --- config files ------------------------------------------------------------

let loads = 0

/** What went wrong with a config file, as a ConfigError naming it. */
function fileError(path: string, why: string, cause?: unknown): ConfigError {
  return configError(`config file ${path}`, path, `config file ${path}: ${why}`, cause)
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : show(err)
}

/** " (at line L:C)" of the first stack frame in the file at real (its real path), or ''. */
function frameIn(err: unknown, real: string): string {
  if (!(err instanceof Error) || err.stack === undefined) return ''
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const at = new RegExp(`(?:${escape(pathToFileURL(real).href)}|${escape(real)})(?:\\?[^:\\s]*)?:(\\d+):(\\d+)`)
  const m = at.exec(err.stack)
  return m === null ? '' : ` (at line ${m[1]}:${m[2]})`
}

/**
 * The line of a syntax error in the file at real: V8 puts "path:line" first
 * in the stack of a CommonJS module's error, but not of an ES module's, so
 * ask `node --check`.
 */
function syntaxErrorLine(err: Error, real: string): string | undefined {
  const lineOf = (text: string): string | undefined =>
    text.startsWith(`${real}:`) ? /^:(\d+)\n/.exec(text.slice(real.length))?.[1] : undefined
  const fromStack = lineOf(String(err.stack))
  if (fromStack !== undefined) return fromStack
  const check = spawnSync(process.execPath, ['--check', real], { encoding: 'utf8', timeout: 10000 })
  return lineOf(check.stderr)
}

/** Import a .js, .mjs or .cjs config; real is its path with symlinks resolved, as stack traces show it. */
async function importConfig(path: string, real: string): Promise<unknown> {
  let mod: Record<string, unknown>
  // The query makes every load a new module instance, so that a reload sees
  // edits (modules the config file imports are still cached).
  const url = `${pathToFileURL(path).href}?t=${Date.now()}.${++loads}`
  try {
    mod = (await import(url)) as Record<string, unknown>
  } catch (err) {
    if (err instanceof SyntaxError && frameIn(err, real) === '') {
      const line = syntaxErrorLine(err, real)
      throw fileError(path, `syntax error${line === undefined ? ' (in it or in a module it imports)' : ` at line ${line}`}: ${err.message}`, err)
    }
    throw fileError(path, `loading it threw ${errorText(err)}${frameIn(err, real)}`, err)
  }
  if (mod.default === undefined)
    throw fileError(path, 'it has no default export; write `export default { workers: 4, ... }`')
  let value: unknown = mod.default
  if (typeof value === 'function') {
    try {
      value = await (value as () => unknown)()
    } catch (err) {
      throw fileError(path, `its default export, a function, threw ${errorText(err)}${frameIn(err, real)}`, err)
    }
  }
  if (!isPlainObject(value)) {
    const got = typeof value === 'function' ? 'a function' : show(value)
    throw configError(
      `config file ${path}`,
      value,
      `config file ${path}: the default export must be an object of options, or a function (sync or async) returning one, got ${got}`,
    )
  }
  return value
}

async function readJsonConfig(path: string): Promise<unknown> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw fileError(path, `cannot read it: ${(err as Error).message}`, err)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw fileError(path, `invalid JSON: ${(err as Error).message}`, err)
  }
  if (!isPlainObject(value)) throw configError(`config file ${path}`, value, `config file ${path}: must hold a JSON object of options, got ${show(value)}`)
  return value
}

/**
 * Load and validate one config file: .json (an object of options), or .js,
 * .mjs, .cjs (a module whose default export is an object of options, or a
 * function, sync or async, returning one). Every load re-reads the file.
 */
export async function loadConfigFile(path: string): Promise<Partial<Config>> {
  const ext = extname(path)
  if (!['.js', '.mjs', '.cjs', '.json'].includes(ext)) throw fileError(path, 'its name must end in .js, .mjs, .cjs or .json')
  let real, kind
  try {
    real = await realpath(path)
    kind = await stat(real)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw fileError(path, 'no such file', err)
    throw fileError(path, `cannot read it: ${(err as Error).message}`, err)
  }
  if (!kind.isFile()) throw fileError(path, 'not a regular file')
  const value = (ext === '.json' ? await readJsonConfig(path) : await importConfig(path, real)) as Record<string, unknown>
  if (value.config !== undefined)
    throw new ConfigError(optionName('config', path), value.config, 'given with -c/--config, not in a config file')
  return validateOptions(value, path)
}

/** The config file to read: -c (resolved against cwd), else the first of CONFIG_FILE_NAMES in cwd, else none. */
function findConfigFile(named: string | undefined, cwd: string): string | undefined {
  if (named !== undefined) return resolve(cwd, named)
  return CONFIG_FILE_NAMES.map((name) => join(cwd, name)).find((path) => existsSync(path))
}

// --- merging -----------------------------------------------------------------

function actionOf(actions: Set<string>): Action {
  if (actions.has('help')) return 'help'
  if (actions.has('version')) return 'version'
  if (actions.has('print-config')) return 'print-config'
  if (actions.has('check-config')) return 'check-config'
  return 'serve'
}

function envOptions(text: string | undefined): Partial<Config> {
  if (text === undefined) return {}
  const parsed = parseFlags(splitCommandLine(text), ` in ${ORIGIN_ENV}`)
  if (parsed.positionals.length > 0)
    throw new ConfigError(ORIGIN_ENV, text, 'options only (APP goes on the command line or in the config file)')
  if (parsed.actions.size > 0)
    throw new ConfigError(ORIGIN_ENV, text, 'options only (--help, --version, --check-config and --print-config go on the command line)')
  return validateOptions(parsed.options, ORIGIN_ENV)
}

/**
 * The configuration from every source, later winning: DEFAULTS < config
 * file < SDSERVE_CMD_ARGS < command line. A later source's `bind` list
 * replaces an earlier one. Relative `pid` and `chdir` paths are made
 * absolute against sources.cwd; `config` is the absolute path of the file
 * read, if any. Calling it again (on SIGHUP) re-reads the config file.
 *
 * For --help and --version nothing but the command line is parsed, and the
 * config returned is DEFAULTS with an empty app.
 */
export async function loadConfig(sources: ConfigSources): Promise<{ action: Action; config: Config }> {
  const cli = parseFlags(sources.argv, '')
  const action = actionOf(cli.actions)
  if (action === 'help' || action === 'version') return { action, config: { ...DEFAULTS, bind: [], app: '' } }
  if (cli.positionals.length > 1) throw new ConfigError('APP', cli.positionals, 'a single argument (every option goes before or after it)')
  const fromCli = validateOptions({ ...cli.options, app: cli.positionals[0] }, ORIGIN_COMMAND_LINE)
  const fromEnv = envOptions(sources.env[ORIGIN_ENV])
  const file = findConfigFile(fromCli.config ?? fromEnv.config, sources.cwd)
  const fromFile = file === undefined ? {} : await loadConfigFile(file)
  // gunicorn's convention: FORWARDED_ALLOW_IPS is the default of --forwarded-allow-ips.
  const envAllow = sources.env.FORWARDED_ALLOW_IPS
  const fromAllowEnv = envAllow === undefined ? {} : validateOptions({ forwardedAllowIps: envAllow }, 'FORWARDED_ALLOW_IPS')
  const config: Config = { ...DEFAULTS, app: '', ...fromAllowEnv, ...fromFile, ...fromEnv, ...fromCli, config: file }
  config.bind = [...config.bind]
  if (config.pid !== undefined) config.pid = resolve(sources.cwd, config.pid)
  if (config.chdir !== undefined) config.chdir = resolve(sources.cwd, config.chdir)
  if (config.app === '')
    throw configError('APP', undefined, `APP must be given: sdserve [OPTIONS] APP, or app in ${file ?? 'a config file'} (see sdserve --help)`)
  return { action, config }
}

/** A Config as JSON for --print-config: keys sorted, unset options null, modes as octal strings ("0o022"). */
export function formatConfig(config: Config): string {
  const octal = (n: number | undefined): string | null => (n === undefined ? null : `0o${n.toString(8).padStart(3, '0')}`)
  const shown: Record<string, unknown> = { ...config, umask: octal(config.umask), unixSocketMode: octal(config.unixSocketMode) }
  const sorted = Object.fromEntries(
    Object.keys(shown)
      .sort()
      .map((k) => [k, shown[k] ?? null]),
  )
  return `${JSON.stringify(sorted, null, 2)}\n`
}
