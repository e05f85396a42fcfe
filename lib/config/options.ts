/**
 * Every option sdserve has, in one table (as gunicorn's config.py has one
 * Setting per option): its Config field, its flags, its line in --help, its
 * default and its validator. Everything else about options is derived from
 * the table: the Config type, DEFAULTS, OPTIONS (which --help and the
 * command-line parser read), VALIDATORS and formatConfig (--print-config).
 * Adding an option is adding one entry here (and to the README's table).
 */

import { DEFAULT_BACKLOG } from '../binds.js'
import { ConfigError } from '../errors.js'
import { SUN_PATH_MAX } from '../limits.js'
import { cpuQuota, perCoreText, workersPerCore } from '../cpu-quota.js'
import { allowList, binds, bool, formatSize, integer, mode, nonEmptyString, oneOf, ownBind, seconds, size, type Validator } from './validators.js'

/** The largest number of workers sdserve accepts. */
export const MAX_WORKERS = 1024
/** The largest duration (timeout, gracefulTimeout, keepAlive) in seconds: one day. */
export const MAX_SECONDS = 86400

/** One option: V is what its validator returns, D its default (undefined: unset unless given). */
export interface OptionDef<V, D> {
  /** The long flag, without `--`. */
  flag: string
  /** The one-letter flag, without `-`. */
  short?: string
  /** The value's placeholder in --help ('' for a switch). */
  meta: string
  /** Repeatable (each use adds a value). */
  multiple?: boolean
  /** A switch that takes no value (--proxy-protocol). */
  boolean?: boolean
  /** One line for --help. */
  help: string
  /** The value when no source gives one. */
  default: D
  /** The default as --help shows it; String(default) if not given. */
  defaultText?: string
  /** Converts and checks a value from any source. */
  validate: Validator<V>
  /** The value as --print-config shows it (before undefined becomes null); the value itself if not given. */
  print?(value: NoInfer<V | D>): unknown
}

/**
 * An entry of the table. Its value type V is inferred from the validator
 * alone (not widened by the default), and the default is either a V or
 * undefined (the option is unset unless given).
 */
function option<V>(def: OptionDef<V, NoInfer<V>>): OptionDef<V, V>
function option<V>(def: OptionDef<V, undefined>): OptionDef<V, undefined>
function option<V>(def: OptionDef<V, V | undefined>): OptionDef<V, V | undefined> {
  return def
}

/** A mode as --print-config shows it: "0o022". */
function octal(n: number | undefined): string | undefined {
  return n === undefined ? undefined : `0o${n.toString(8).padStart(3, '0')}`
}

/** An absolute path that fits in sun_path, or 'none'. */
const controlSocketPath: Validator<string> = (value, name) => {
  const expected = `'none' or an absolute path of at most ${SUN_PATH_MAX} bytes`
  if (value === 'none') return value
  if (typeof value !== 'string' || !value.startsWith('/') || Buffer.byteLength(value) > SUN_PATH_MAX)
    throw new ConfigError(name, value, expected)
  return value
}

/** A URL path: starts with /, no query, no white space. */
const urlPath: Validator<string> = (value, name) => {
  if (typeof value !== 'string' || !/^\/[^\s?#]*$/.test(value)) throw new ConfigError(name, value, 'a URL path starting with /, without a query: /healthz')
  return value
}

/** A warm-up request: `PATH` or `METHOD PATH` (GET /, POST /api/search?q=a), a path with a query allowed. */
const warmUpRequests: Validator<string[]> = (value, name) => {
  const list = typeof value === 'string' ? [value] : value
  const expected = 'a request as PATH or METHOD PATH (GET /, HEAD /items?page=1), or an array of them'
  if (!Array.isArray(list)) throw new ConfigError(name, value, expected)
  return list.map((item: unknown) => {
    if (typeof item !== 'string' || !/^(?:[A-Z]+ )?\/[^\s]*$/.test(item)) throw new ConfigError(name, item, expected)
    return item
  })
}

/** One worker per CPU core, within the cgroup's CPU quota and 1..MAX_WORKERS. */
const QUOTA = cpuQuota()
const PER_CORE = workersPerCore(MAX_WORKERS, QUOTA)
const WORKERS_TEXT = perCoreText(PER_CORE, QUOTA)

/** How a worker count is explained in the master's first log line: where the default came from. */
export function workersText(workers: number): string {
  const counted = `${workers} worker${workers === 1 ? '' : 's'}`
  return workers === PER_CORE ? WORKERS_TEXT.replace(/^\d+, /, `${counted}: `) : counted
}
const SECONDS = `a number of seconds from 0 to ${MAX_SECONDS}`
const ALLOW_LOCAL = '127.0.0.1,::1,unix'

/**
 * Every option but `app`, keyed by its Config field, in --help order. Each
 * entry's comment documents that Config field.
 */
export const OPTION_TABLE = {
  /**
   * Worker processes (-w). Default: one per CPU core the process may use
   * (os.availableParallelism()), within its cgroup's CPU quota
   * (lib/cpu-quota.ts). gunicorn defaults to 1 because its default
   * workers are synchronous and one per core is the usual advice for them; a
   * Node worker is event-driven and serves many connections at once, so one
   * per core uses the machine without oversubscribing it.
   */
  workers: option({
    flag: 'workers',
    short: 'w',
    meta: 'N',
    help: `worker processes, 1 to ${MAX_WORKERS}, or auto (the default)`,
    default: PER_CORE,
    defaultText: WORKERS_TEXT,
    validate: (value, name) => (value === 'auto' ? PER_CORE : integer(1, MAX_WORKERS, `an integer from 1 to ${MAX_WORKERS}, or "auto"`)(value, name)),
  }),
  /** Bind specs (-b, repeatable). Empty: every inherited socket, or DEFAULT_BIND without LISTEN_FDS. */
  bind: option({
    flag: 'bind',
    short: 'b',
    meta: 'SPEC',
    multiple: true,
    help: 'listen on SPEC; repeatable',
    // Frozen: DEFAULTS is shared by every configuration.
    default: Object.freeze([]) as unknown as string[],
    defaultText: "systemd's sockets, else 127.0.0.1:8000",
    validate: binds,
  }),
  /** How connections reach workers: one shared socket, or one SO_REUSEPORT socket per worker (TCP binds). */
  balance: option({
    flag: 'balance',
    meta: 'MODE',
    help: 'shared (one socket) or reuse-port (SO_REUSEPORT, per worker)',
    default: 'shared',
    validate: oneOf(['shared', 'reuse-port'] as const),
  }),
  /** Listen backlog of every socket (listen(2) is called again on inherited ones too). */
  backlog: option({
    flag: 'backlog',
    meta: 'N',
    help: "listen backlog of every socket, systemd's included, 1 to 65535",
    default: DEFAULT_BACKLOG,
    validate: integer(1, 65535, 'an integer from 1 to 65535'),
  }),
  /** Seconds a worker may go without a heartbeat (event loop blocked) before it is killed; 0 disables. Also bounds a worker's boot. */
  timeout: option({
    flag: 'timeout',
    short: 't',
    meta: 'SECONDS',
    help: 'kill a worker blocked this long; 0: never',
    default: 30,
    validate: seconds(MAX_SECONDS, `${SECONDS} (0 disables)`),
  }),
  /**
   * Seconds a worker may take to boot (load the app and listen) before it is
   * killed, as Puma's worker_boot_timeout. Unset: --timeout, but at least
   * 10 s (loading an app blocks the event loop legitimately, and a busy
   * machine loads slowly), or 30 s with --timeout 0.
   */
  bootTimeout: option({
    flag: 'boot-timeout',
    meta: 'SECONDS',
    help: 'kill a worker that has not listened after this long',
    default: undefined,
    defaultText: '--timeout, at least 10',
    validate: seconds(MAX_SECONDS, `a number of seconds above 0, at most ${MAX_SECONDS}`, true),
  }),
  /** Seconds workers get to finish in-flight requests on stop and reload before they are killed. */
  gracefulTimeout: option({
    flag: 'graceful-timeout',
    meta: 'SECONDS',
    help: 'time to finish requests on stop and reload',
    default: 30,
    validate: seconds(MAX_SECONDS, SECONDS),
  }),
  /**
   * Seconds over which a draining worker ends the WebSockets and event
   * streams its app left open, each at its own moment (lib/http/long-lived.ts).
   * Unset: half the graceful timeout, at most 5 s; never more than it.
   */
  drainWindow: option({
    flag: 'drain-window',
    meta: 'SECONDS',
    help: 'end WebSockets and event streams left open by a draining worker spread over this long',
    default: undefined,
    defaultText: 'half of --graceful-timeout, at most 5',
    validate: seconds(MAX_SECONDS, SECONDS),
  }),
  /**
   * How much lower the priority (nice) of a worker that boots while others
   * serve is, until it listens: its start takes idle CPU before the serving
   * workers' (lib/master/boot-priority.ts). 0: none.
   */
  bootNice: option({
    flag: 'boot-nice',
    meta: 'N',
    help: 'boot workers of a reload or a replacement at this much lower priority (nice) until they listen, 0 to 19; 0: none',
    default: 0,
    validate: integer(0, 19, 'an integer from 0 to 19'),
  }),
  /**
   * Requests each new worker sends to its own app before it listens, so
   * that V8 has compiled the hot paths before clients come
   * (lib/http/warm-up.ts). Empty: none.
   */
  warmUp: option({
    flag: 'warm-up',
    meta: 'REQUEST',
    multiple: true,
    help: 'before listening, a new worker sends its app this request (PATH or "METHOD PATH"); repeatable',
    default: Object.freeze([]) as unknown as string[],
    defaultText: 'none',
    validate: warmUpRequests,
  }),
  /** How many warm-up requests a worker sends in all, taking the --warm-up requests in turn. */
  warmUpCount: option({
    flag: 'warm-up-count',
    meta: 'N',
    help: 'warm-up requests per worker in all, 1 to 100000, the --warm-up requests in turn',
    default: 500,
    validate: integer(1, 100000, 'an integer from 1 to 100000'),
  }),
  /**
   * Seconds a graceful stop (TERM) first spends in lame duck: the health
   * endpoint answers 503 so that load balancers take the host out, while
   * everything is still served; then the workers drain. 0: none.
   */
  lameDuck: option({
    flag: 'lame-duck',
    meta: 'SECONDS',
    help: 'on TERM, answer health checks 503 this long while still serving, then drain',
    default: 0,
    validate: seconds(MAX_SECONDS, SECONDS),
  }),
  /** Seconds an idle keep-alive connection is kept open. */
  keepAlive: option({
    flag: 'keep-alive',
    meta: 'SECONDS',
    help: 'idle keep-alive connection timeout; 0: no keep-alive',
    default: 5,
    validate: seconds(MAX_SECONDS, `${SECONDS} (0 disables keep-alive)`),
  }),
  /** Requests after which a worker is replaced; 0 disables. */
  maxRequests: option({
    flag: 'max-requests',
    meta: 'N',
    help: 'replace a worker after N requests; 0: never',
    default: 0,
    validate: integer(0, Number.MAX_SAFE_INTEGER, 'a non-negative integer (0 disables)'),
  }),
  /** A random 0..maxRequestsJitter added to maxRequests per worker, so workers do not all recycle at once. */
  maxRequestsJitter: option({
    flag: 'max-requests-jitter',
    meta: 'N',
    help: 'add a random 0..N to --max-requests per worker',
    default: 0,
    validate: integer(0, Number.MAX_SAFE_INTEGER, 'a non-negative integer'),
  }),
  /**
   * Megabytes of resident memory (RSS) after which a worker is replaced, as
   * PM2's max_memory_restart and uWSGI's reload-on-rss: the replacement boots
   * first, then the worker drains, so no request fails. 0 disables. Checked
   * about once a second by the master, from /proc.
   */
  maxWorkerMemory: option({
    flag: 'max-worker-memory',
    meta: 'SIZE',
    help: 'replace a worker whose RSS exceeds SIZE (512M, 2G; a bare number is MB); 0: never',
    default: 0,
    defaultText: '0 (never)',
    validate: size(2 ** 50, 'a size like 512M or 2G (K, M, G, T: 1024-based; a bare number is megabytes), or 0 to disable'),
    print: (bytes) => (bytes === 0 ? 0 : formatSize(bytes)),
  }),
  /**
   * The control socket `sdserve ctl` speaks to (lib/master/control-server.ts).
   * Unset: $RUNTIME_DIRECTORY/sdserve.ctl when systemd gives the unit a
   * RuntimeDirectory=, else none; 'none' turns it off.
   */
  controlSocket: option({
    flag: 'control-socket',
    meta: 'PATH',
    help: "the control socket for `sdserve ctl` (mode 0600; 'none': off)",
    default: undefined,
    defaultText: '$RUNTIME_DIRECTORY/sdserve.ctl under systemd, else none',
    validate: controlSocketPath,
  }),
  /** The health check path the workers answer on every serving bind, before the app (lib/master/health.ts). */
  healthPath: option({
    flag: 'health-path',
    meta: 'PATH',
    help: 'answer health checks on PATH (e.g. /healthz): 200 serving, 503 lame duck, draining or unhealthy',
    default: undefined,
    defaultText: 'none',
    validate: urlPath,
  }),
  /** Health checks are left out of the access log unless this is set. */
  logHealthChecks: option({
    flag: 'log-health-checks',
    meta: '',
    boolean: true,
    help: 'write health checks to the access log too',
    default: false,
    defaultText: 'off',
    validate: bool,
  }),
  /** Where the master serves Prometheus metrics (lib/master/metrics-server.ts); unset: nowhere. */
  metricsBind: option({
    flag: 'metrics-bind',
    meta: 'SPEC',
    help: 'serve Prometheus metrics from the master on HOST:PORT or unix:/PATH',
    default: undefined,
    defaultText: 'none',
    validate: ownBind,
  }),
  /** Pid file of the master. */
  pid: option({
    flag: 'pid',
    short: 'p',
    meta: 'FILE',
    help: "write the master's pid to FILE",
    default: undefined,
    defaultText: 'none',
    validate: nonEmptyString('a non-empty file path'),
  }),
  /** The config file this configuration was read from, if any. */
  config: option({
    flag: 'config',
    short: 'c',
    meta: 'FILE',
    help: 'read options from FILE: .js, .mjs, .cjs or .json',
    default: undefined,
    defaultText: './sdserve.config.{js,mjs,json}',
    validate: nonEmptyString('a non-empty file path'),
  }),
  /** Directory to change to before loading the app. */
  chdir: option({
    flag: 'chdir',
    meta: 'DIR',
    help: 'change to DIR before loading the app',
    default: undefined,
    defaultText: 'none',
    validate: nonEmptyString('a non-empty directory path'),
  }),
  /** Workers run as this user (name or uid); needs root. */
  user: option({
    flag: 'user',
    short: 'u',
    meta: 'USER',
    help: 'run workers as USER (name or uid); needs root',
    default: undefined,
    defaultText: "the master's",
    validate: nonEmptyString('a non-empty user name or uid'),
  }),
  /** Workers run as this group (name or gid); needs root. */
  group: option({
    flag: 'group',
    short: 'g',
    meta: 'GROUP',
    help: 'run workers as GROUP (name or gid); needs root',
    default: undefined,
    defaultText: "USER's",
    validate: nonEmptyString('a non-empty group name or gid'),
  }),
  /** File mode creation mask of the master and workers, e.g. 0o022. */
  umask: option({
    flag: 'umask',
    short: 'm',
    meta: 'MODE',
    help: 'umask (octal, e.g. 022) of the master and workers',
    default: undefined,
    defaultText: 'inherited',
    validate: mode,
    print: octal,
  }),
  /** Mode of UNIX socket files sdserve creates, e.g. 0o660. */
  unixSocketMode: option({
    flag: 'unix-socket-mode',
    meta: 'MODE',
    help: 'mode (octal, e.g. 660) of UNIX sockets sdserve creates',
    default: undefined,
    defaultText: 'from the umask',
    validate: mode,
    print: octal,
  }),
  /** Owner of UNIX socket files sdserve creates: `user`, `user:group` or `:group`. */
  unixSocketOwner: option({
    flag: 'unix-socket-owner',
    meta: 'OWNER',
    help: 'owner of those sockets: USER, USER:GROUP or :GROUP',
    default: undefined,
    defaultText: 'the master',
    validate: nonEmptyString('a non-empty owner: USER, USER:GROUP or :GROUP'),
  }),
  /** Seconds a client may take to send the request headers (slow clients get 408); 0 disables. */
  headersTimeout: option({
    flag: 'headers-timeout',
    meta: 'SECONDS',
    help: 'a client must send its request headers within this (408); 0 disables',
    default: 10,
    validate: seconds(MAX_SECONDS, `${SECONDS} (0 disables)`),
  }),
  /** Seconds a client may take to send the whole request; 0 disables. */
  requestTimeout: option({
    flag: 'request-timeout',
    meta: 'SECONDS',
    help: 'a client must send its whole request within this (408); 0 disables',
    default: 300,
    validate: seconds(MAX_SECONDS, `${SECONDS} (0 disables)`),
  }),
  /** Longest request line (method, target, version) in bytes; longer gets 414. 0: only Node's header size limit. */
  limitRequestLine: option({
    flag: 'limit-request-line',
    meta: 'BYTES',
    help: 'longest request line (414); 0: only the 16 KiB header limit',
    default: 4094,
    validate: integer(0, 65536, 'an integer from 0 to 65536'),
  }),
  /** Most header fields in a request; more gets 431. */
  limitRequestFields: option({
    flag: 'limit-request-fields',
    meta: 'N',
    help: 'most header fields in a request (431), 1 to 32768',
    default: 100,
    validate: integer(1, 32768, 'an integer from 1 to 32768'),
  }),
  /** Longest header field (name and value) in bytes; longer gets 431. */
  limitRequestFieldSize: option({
    // gunicorn's spelling, underscore and all.
    flag: 'limit-request-field_size',
    meta: 'BYTES',
    help: 'longest header field, name and value (431); 0: no limit of its own',
    default: 8190,
    validate: integer(0, 65536, 'an integer from 0 to 65536'),
  }),
  /** Most simultaneous connections per worker; 0: no limit. Node closes connections beyond it. */
  workerConnections: option({
    flag: 'worker-connections',
    meta: 'N',
    help: 'most connections a worker holds at once; 0: no limit',
    default: 0,
    defaultText: 'no limit',
    validate: integer(0, 1048576, 'an integer from 0 to 1048576 (0: no limit)'),
  }),
  /** Where the access log goes: a file path or '-' for stdout; undefined: no access log. */
  accessLogfile: option({
    flag: 'access-logfile',
    meta: 'FILE',
    help: "access log: a file, or '-' for stdout",
    default: undefined,
    defaultText: 'none',
    validate: nonEmptyString("a file path or '-'"),
  }),
  /** gunicorn's access log format (%(h)s, %({header}i)s, ...). */
  accessLogformat: option({
    flag: 'access-logformat',
    meta: 'FORMAT',
    help: "access log format, gunicorn's %(atom)s syntax",
    default: '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    defaultText: "gunicorn's",
    validate: nonEmptyString('a non-empty access log format'),
  }),
  /** Where the error log (sdserve's own lines) goes: a file path or '-' for stderr. */
  errorLogfile: option({
    flag: 'error-logfile',
    meta: 'FILE',
    help: "sdserve's own log: a file, or '-' for stderr",
    default: '-',
    validate: nonEmptyString("a file path or '-'"),
  }),
  /** Lowest level logged: debug, info, warning, error, critical. */
  logLevel: option({
    flag: 'log-level',
    meta: 'LEVEL',
    help: 'debug, info, warning, error or critical',
    default: 'info',
    validate: oneOf(['debug', 'info', 'warning', 'error', 'critical'] as const),
  }),
  /** Error log lines as text or JSON. */
  logFormat: option({
    flag: 'log-format',
    meta: 'FORMAT',
    help: 'text, or json for one JSON object per line',
    default: 'text',
    validate: oneOf(['text', 'json'] as const),
  }),
  /** Peers whose X-Forwarded-* and Forwarded headers are believed: addresses, CIDR ranges, `unix`, or '*'. */
  forwardedAllowIps: option({
    flag: 'forwarded-allow-ips',
    meta: 'LIST',
    help: "peers whose X-Forwarded-*/Forwarded are believed: IPs, CIDRs, unix, or '*'",
    default: ALLOW_LOCAL,
    defaultText: `$FORWARDED_ALLOW_IPS, else ${ALLOW_LOCAL}`,
    validate: allowList,
  }),
  /** What happens to forwarded headers from a peer that is not trusted: removed (default) or passed on. */
  untrustedForwarded: option({
    flag: 'untrusted-forwarded',
    meta: 'WHAT',
    help: 'forwarded headers from other peers: strip (remove) or keep',
    default: 'strip',
    validate: oneOf(['strip', 'keep'] as const),
  }),
  /** Expect a PROXY protocol (v1 or v2) header at the start of every connection. */
  proxyProtocol: option({
    flag: 'proxy-protocol',
    meta: '',
    boolean: true,
    help: 'expect a PROXY protocol v1/v2 header on every connection',
    default: false,
    defaultText: 'off',
    validate: bool,
  }),
  /** Peers allowed to send a PROXY protocol header. */
  proxyAllowIps: option({
    flag: 'proxy-allow-ips',
    meta: 'LIST',
    help: 'peers allowed to send a PROXY protocol header',
    default: ALLOW_LOCAL,
    validate: allowList,
  }),
}

type Table = typeof OPTION_TABLE

/** Every option's value: what its validator returns, or its default (undefined for an option unset by default). */
export type OptionValues = { [K in keyof Table]: ReturnType<Table[K]['validate']> | Table[K]['default'] }

/** A configuration: every option, and the app. */
export interface Config extends OptionValues {
  /** The application: `path/to/app.js`, `app.js:name`, or `app.js:factory()`. */
  app: string
}

export type Balance = Config['balance']

/** The table's entries with the types of their values forgotten, for code that treats every option alike. */
const ENTRIES = Object.entries(OPTION_TABLE) as Array<[keyof Table, OptionDef<unknown, unknown>]>

/** Every option's default. `app` has none: it must be given. */
export const DEFAULTS: Readonly<Omit<Config, 'app'>> = Object.freeze(
  Object.fromEntries(ENTRIES.map(([key, o]) => [key, o.default])) as unknown as Omit<Config, 'app'>,
)

/** A command-line option that sets a Config field: its entry's flag fields, its key, its default as --help shows it. */
export type OptionInfo = Pick<OptionDef<unknown, unknown>, 'flag' | 'short' | 'meta' | 'multiple' | 'boolean' | 'help'> & {
  /** The Config field. */
  key: Exclude<keyof Config, 'app'>
  /** The default, as --help shows it. */
  defaultText: string
}

/** Every option flag, in --help order. */
export const OPTIONS: readonly OptionInfo[] = ENTRIES.map(([key, o]) => ({
  key,
  flag: o.flag,
  ...(o.short === undefined ? {} : { short: o.short }),
  meta: o.meta,
  ...(o.multiple === undefined ? {} : { multiple: o.multiple }),
  ...(o.boolean === undefined ? {} : { boolean: o.boolean }),
  help: o.help,
  defaultText: o.defaultText ?? String(o.default),
}))

/** Every Config field's validator. */
export const VALIDATORS: { readonly [K in keyof Config]-?: Validator<Config[K]> } = {
  app: nonEmptyString('a non-empty app spec: path/to/app.js, app.js:name or app.js:factory()'),
  ...(Object.fromEntries(ENTRIES.map(([key, o]) => [key, o.validate])) as { [K in keyof Table]: Validator<OptionValues[K]> }),
}

/** Every option key, as config files spell them. */
export const OPTION_KEYS = Object.keys(VALIDATORS) as Array<keyof Config>

/** Whether key is a Config field (own keys only: "toString" is not). */
export function isOptionKey(key: string): key is keyof Config {
  return Object.hasOwn(VALIDATORS, key)
}

const BY_KEY: ReadonlyMap<string, OptionDef<unknown, unknown>> = new Map(ENTRIES)

/** A Config as JSON for --print-config: keys sorted, unset options null, modes as octal strings ("0o022"). */
export function formatConfig(config: Config): string {
  const shown = (key: string, value: unknown): unknown => {
    const o = BY_KEY.get(key)
    return (o?.print === undefined ? value : o.print(value)) ?? null
  }
  const values: Record<string, unknown> = { ...config }
  const sorted = Object.fromEntries(
    Object.keys(values)
      .sort()
      .map((k) => [k, shown(k, values[k])]),
  )
  return `${JSON.stringify(sorted, null, 2)}\n`
}
