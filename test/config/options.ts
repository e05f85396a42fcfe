import t from 'tap'
import { DEFAULTS, OPTIONS, OPTION_KEYS, formatConfig, type Balance, type Config } from '../../lib/config.js'
import { OPTION_TABLE, VALIDATORS, isOptionKey } from '../../lib/config/options.js'

/** True when A and B are each assignable to the other (an optional field is not the same as `| undefined`). */
type Equal<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false

/** The Config interface as it was written out by hand before it was derived from the table (and bootTimeout since). */
interface Expected {
  app: string
  workers: number
  bind: string[]
  balance: 'shared' | 'reuse-port'
  backlog: number
  timeout: number
  bootTimeout: number | undefined
  gracefulTimeout: number
  drainWindow: number | undefined
  bootNice: number
  warmUp: string[]
  warmUpCount: number
  lameDuck: number
  keepAlive: number
  maxRequests: number
  maxRequestsJitter: number
  maxWorkerMemory: number
  controlSocket: string | undefined
  healthPath: string | undefined
  logHealthChecks: boolean
  metricsBind: string | undefined
  pid: string | undefined
  chdir: string | undefined
  user: string | undefined
  group: string | undefined
  umask: number | undefined
  unixSocketMode: number | undefined
  unixSocketOwner: string | undefined
  config: string | undefined
  headersTimeout: number
  requestTimeout: number
  limitRequestLine: number
  limitRequestFields: number
  limitRequestFieldSize: number
  workerConnections: number
  accessLogfile: string | undefined
  accessLogformat: string
  errorLogfile: string
  logLevel: 'debug' | 'info' | 'warning' | 'error' | 'critical'
  logFormat: 'text' | 'json'
  forwardedAllowIps: string
  untrustedForwarded: 'strip' | 'keep'
  proxyProtocol: boolean
  proxyAllowIps: string
}

t.test('Config, derived from the table, is the type it always was', async (t) => {
  // Checked by the compiler: a mismatch fails the build.
  const same: Equal<Config, Expected> = true
  const balance: Equal<Balance, 'shared' | 'reuse-port'> = true
  t.ok(same && balance)
})

t.test('DEFAULTS, OPTIONS and VALIDATORS come from the table, in its order', async (t) => {
  const keys = Object.keys(OPTION_TABLE)
  t.same(Object.keys(DEFAULTS), keys)
  t.same(
    OPTIONS.map((o) => o.key),
    keys,
  )
  t.same(OPTION_KEYS, ['app', ...keys])
  for (const [key, o] of Object.entries(OPTION_TABLE)) {
    t.equal(DEFAULTS[key as keyof typeof DEFAULTS], o.default, `${key}: default`)
    t.equal(VALIDATORS[key as keyof Config], o.validate, `${key}: validator`)
  }
})

t.test('OPTIONS: what --help shows of each entry', async (t) => {
  t.same(OPTIONS.find((o) => o.key === 'workers'), {
    key: 'workers',
    flag: 'workers',
    short: 'w',
    meta: 'N',
    help: 'worker processes, 1 to 1024, or auto (the default)',
    defaultText: `${DEFAULTS.workers}, one per CPU core`,
  })
  t.equal(OPTIONS.find((o) => o.key === 'backlog')?.defaultText, '2048', 'String(default) unless the entry says otherwise')
  t.equal(OPTIONS.find((o) => o.key === 'bind')?.multiple, true)
  t.equal(OPTIONS.find((o) => o.key === 'proxyProtocol')?.boolean, true)
  for (const o of OPTIONS) {
    if (!('short' in o)) continue
    t.equal(typeof o.short, 'string', `${o.flag}: short is absent or a letter, never undefined`)
  }
})

t.test('every flag and every short flag is used once', async (t) => {
  const flags = OPTIONS.map((o) => o.flag)
  t.equal(new Set(flags).size, flags.length)
  const shorts = OPTIONS.flatMap((o) => (o.short === undefined ? [] : [o.short]))
  t.equal(new Set(shorts).size, shorts.length)
  t.notOk(shorts.includes('h') || shorts.includes('v'), '-h and -v are --help and --version')
})

t.test('isOptionKey: own keys only', async (t) => {
  t.ok(isOptionKey('app'))
  t.ok(isOptionKey('proxyAllowIps'))
  t.notOk(isOptionKey('toString'))
  t.notOk(isOptionKey('proxy-allow-ips'))
})

t.test('formatConfig shows each value as its entry says, and keys it does not know as they are', async (t) => {
  const config = { ...DEFAULTS, bind: [], app: 'a.js', umask: 0o7, extra: 1 } as Config
  t.match(JSON.parse(formatConfig(config)), { umask: '0o007', unixSocketMode: null, extra: 1, app: 'a.js' })
})
