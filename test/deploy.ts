/**
 * examples/deploy/ under load: three sdserve "hosts" (plain processes, each on
 * its own loopback address) behind HAProxy from Debian, configured as
 * examples/deploy/haproxy.cfg with the test's ports. wrk keeps asking through
 * HAProxy while examples/deploy/rolling-deploy.sh rolls new app code
 * (ctl reload) and then a binary upgrade (ctl upgrade) over the hosts: wrk
 * must see no failed request. Then a host is SIGKILLed under load, with and
 * without the config's retry-on/redispatch lines, and the failures counted.
 */
import t, { type Test } from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { join } from 'node:path'
import { cli, freePort, get, root, shortTmp, sleep, spawnTracked, waitFor, waitForOutput, type Tracked } from './helpers/proc.js'
import { needs } from './helpers/needs.js'
import { parse } from './helpers/master-process.js'

const ADDRESSES = ['127.0.0.11', '127.0.0.12', '127.0.0.13']
const app = join(root, 'test/fixtures/master-app.mjs')
const script = join(root, 'examples/deploy/rolling-deploy.sh')
const example = readFileSync(join(root, 'examples/deploy/haproxy.cfg'), 'utf8')

interface Host {
  address: string
  child: Tracked
  versionFile: string
  ctl: string
  pid: string
}

interface Cluster {
  dir: string
  port: number
  hosts: Host[]
  lbPort: number
  statsPort: number
  haproxy: Tracked
}

/** Replace `from` in text, which must be there: the generated config keeps the example's shape. */
function replaceOnce(text: string, from: string | RegExp, to: string): string {
  const found = typeof from === 'string' ? text.includes(from) : from.test(text)
  if (!found) throw new Error(`examples/deploy/haproxy.cfg no longer has ${String(from)}`)
  return text.replace(from, to)
}

/** examples/deploy/haproxy.cfg with the test's ports and hosts; retry: keep its retry-on/retries/redispatch lines. */
function haproxyConfig(o: { lbPort: number; statsPort: number; port: number; retry: boolean }): string {
  let cfg = replaceOnce(example, /^( {4}stats socket )\S+ .*$/m, `$1ipv4@127.0.0.1:${o.statsPort} level admin`)
  // Only errors, retries and state changes: wrk makes tens of thousands of requests.
  cfg = replaceOnce(cfg, /^( {4}option httplog)$/m, '$1\n    option dontlog-normal')
  cfg = replaceOnce(cfg, 'bind 127.0.0.1:8080', `bind 127.0.0.1:${o.lbPort}`)
  cfg = replaceOnce(cfg, /^ {4}server h1 .*\n {4}server h2 .*\n {4}server h3 .*$/m, ADDRESSES.map((a) => `    server ${a} ${a}:${o.port}`).join('\n'))
  if (!o.retry) {
    cfg = replaceOnce(cfg, /^ {4}retry-on .*\n/m, '')
    cfg = replaceOnce(cfg, /^ {4}retries .*\n/m, '')
    cfg = replaceOnce(cfg, /^ {4}option redispatch\n/m, '')
  }
  return cfg
}

function startHost(t: Test, dir: string, address: string, port: number): Host {
  const versionFile = join(dir, `${address}.version`)
  writeFileSync(versionFile, 'v1')
  const ctl = join(dir, `${address}.ctl`)
  const pid = join(dir, `${address}.pid`)
  const args = [cli, '-b', `${address}:${port}`, '-w', '2', '--graceful-timeout', '10', '--proxy-protocol', '--proxy-allow-ips', '127.0.0.1']
  args.push('--health-path', '/healthz', '--lame-duck', '2', '--control-socket', ctl, '--pid', pid, app)
  // Its own process group: a binary upgrade's new master and every worker are in it, and go with it.
  const child = spawnTracked(t, process.execPath, args, { env: { ...process.env, APP_VERSION_FILE: versionFile }, detached: true })
  const group = child.pid
  t.teardown(() => {
    if (group === undefined) return
    try {
      process.kill(-group, 'SIGKILL')
    } catch {
      // all gone
    }
  })
  return { address, child, versionFile, ctl, pid }
}

async function startCluster(t: Test, retry = true): Promise<Cluster> {
  const dir = shortTmp(t)
  const port = await freePort(ADDRESSES[0])
  const hosts = ADDRESSES.map((a) => startHost(t, dir, a, port))
  for (const h of hosts) await waitForOutput(h.child, /health: ok/, 30000)
  const lbPort = await freePort()
  const statsPort = await freePort()
  const cfg = join(dir, 'haproxy.cfg')
  writeFileSync(cfg, haproxyConfig({ lbPort, statsPort, port, retry }))
  const haproxy = spawnTracked(t, 'haproxy', ['-db', '-f', cfg])
  const cluster = { dir, port, hosts, lbPort, statsPort, haproxy }
  await waitFor(async () => (await serversUp(cluster)) === 3, 'HAProxy sees the three hosts up', 30000)
  return cluster
}

/** Servers HAProxy has up, from `show servers state` on its stats socket. */
async function serversUp(c: Cluster): Promise<number> {
  const text = await new Promise<string>((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port: c.statsPort })
    let out = ''
    s.on('connect', () => s.write('show servers state app\n'))
    s.on('data', (d: Buffer) => (out += d.toString()))
    s.on('close', () => resolve(out))
    s.on('error', () => resolve(''))
  })
  return text.split('\n').filter((l) => l.split(' ')[5] === '2').length
}

interface WrkResult {
  requests: number
  failed: number
  text: string
}

/** wrk through HAProxy for `seconds`, 16 connections. */
function startWrk(t: Test, c: Cluster, seconds: number): { done: Promise<WrkResult> } {
  const wrk = spawnTracked(t, 'wrk', ['-t2', '-c16', `-d${seconds}s`, '--timeout', '5s', `http://127.0.0.1:${c.lbPort}/`])
  const done = wrk.exited.then((code) => {
    const text = wrk.output()
    if (code !== 0) throw new Error(`wrk exited ${code}:\n${text}`)
    const m = /(\d+) requests in /.exec(text)
    if (m === null) throw new Error(`no request count in wrk's output:\n${text}`)
    const err = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text)
    const socketErrors = err === null ? 0 : err.slice(1).reduce((n, x) => n + Number(x), 0)
    const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0)
    return { requests: Number(m[1]), failed: socketErrors + non2xx, text }
  })
  return { done }
}

/** Run rolling-deploy.sh locally over the cluster's hosts. */
function rollingDeploy(t: Test, c: Cluster, env: Record<string, string>): Tracked {
  return spawnTracked(t, 'bash', [script], {
    env: {
      ...process.env,
      HOSTS: ADDRESSES.join(' '),
      RUN: '',
      CTL: `${process.execPath} ${cli} ctl --socket ${c.dir}/{host}.ctl`,
      HEALTH_URL: `http://{host}:${c.port}/healthz`,
      TIMEOUT: '60',
      ...env,
    },
  })
}

/** The versions HAProxy's round robin gets from the hosts in 12 requests. */
async function versions(c: Cluster): Promise<string[]> {
  const seen = new Set<string>()
  for (let i = 0; i < 12; i++) seen.add(parse((await get({ port: c.lbPort })).body).version)
  return [...seen].sort()
}

/**
 * Wait until only `version` answers. Right after the deploy, a connection
 * HAProxy keeps open to a draining worker of the old code may still be
 * answered by it (with Connection: close): a success, but the old version.
 */
async function onlyVersion(c: Cluster, version: string): Promise<string[]> {
  let last: string[] = []
  await waitFor(
    async () => {
      last = await versions(c)
      return last.length === 1 && last[0] === version
    },
    `only ${version} answering`,
    20000,
  ).catch(() => undefined)
  return last
}

const peers = needs(['haproxy', 'wrk', 'curl'])

t.test('rolling deploy and rolling binary upgrade behind HAProxy under wrk: no failed request', peers, async (t) => {
  const c = await startCluster(t)
  t.same(await versions(c), ['v1'])

  // New app code on every host, then the rolling reload; wait for the balancer with the health endpoint and FALL * INTER.
  for (const h of c.hosts) writeFileSync(h.versionFile, 'v2')
  const load = startWrk(t, c, 25)
  await sleep(1000)
  const deploy = rollingDeploy(t, c, {})
  t.equal(await deploy.exited, 0, `rolling-deploy.sh (reload) succeeded:\n${deploy.output()}`)
  t.match(deploy.output(), /done: reload on 3 hosts/)
  const reload = await load.done
  t.equal(reload.failed, 0, `wrk saw no non-2xx and no socket error:\n${reload.text}`)
  t.comment(`rolling deploy (ctl reload) under wrk -c16: ${reload.failed} failed of ${reload.requests} requests`)
  t.same(await onlyVersion(c, 'v2'), ['v2'], 'every host serves the new code')

  // The binary upgrade, waiting for the balancer through HAProxy's stats socket.
  for (const h of c.hosts) writeFileSync(h.versionFile, 'v3')
  const before = c.hosts.map((h) => readFileSync(h.pid, 'utf8').trim())
  const upgradeLoad = startWrk(t, c, 25)
  await sleep(1000)
  const lbState = `exec 3<>/dev/tcp/127.0.0.1/${c.statsPort}; echo 'show servers state app' >&3; cat <&3`
  const upgrade = rollingDeploy(t, c, { ACTION: 'upgrade', LB_STATE: lbState })
  t.equal(await upgrade.exited, 0, `rolling-deploy.sh (upgrade) succeeded:\n${upgrade.output()}`)
  t.match(upgrade.output(), /HAProxy says down[\s\S]*HAProxy says up[\s\S]*done: upgrade on 3 hosts/)
  const upgraded = await upgradeLoad.done
  t.equal(upgraded.failed, 0, `wrk saw no non-2xx and no socket error:\n${upgraded.text}`)
  t.comment(`rolling binary upgrade (ctl upgrade) under wrk -c16: ${upgraded.failed} failed of ${upgraded.requests} requests`)
  for (const h of c.hosts) t.equal(await h.child.exited, 0, `${h.address}: the old master exited once its workers had drained`)
  t.same(await onlyVersion(c, 'v3'), ['v3'], 'every host serves the new code')
  const after = c.hosts.map((h) => readFileSync(h.pid, 'utf8').trim())
  for (let i = 0; i < 3; i++) t.not(after[i], before[i], `${ADDRESSES[i]}: a new master (the pid file followed)`)
})

/** SIGKILL one host (its master and workers, the whole process group) 3 s into a 12 s wrk run. */
async function killOneHost(t: Test, retry: boolean): Promise<WrkResult> {
  const c = await startCluster(t, retry)
  const load = startWrk(t, c, 12)
  await sleep(3000)
  const victim = c.hosts[1]!
  if (victim.child.pid !== undefined) process.kill(-victim.child.pid, 'SIGKILL')
  await waitFor(async () => (await serversUp(c)) === 2, 'HAProxy marks the killed host down', 15000)
  return load.done
}

t.test('a host SIGKILLed under wrk: failed requests with and without retry-on/redispatch', peers, async (t) => {
  let withRetry: WrkResult | undefined
  let without: WrkResult | undefined
  await t.test('with retry-on, retries 3, option redispatch', async (t) => {
    withRetry = await killOneHost(t, true)
    t.comment(`with retry-on: ${withRetry.failed} failed of ${withRetry.requests} requests`)
  })
  await t.test('without them', async (t) => {
    without = await killOneHost(t, false)
    t.comment(`without retry-on: ${without.failed} failed of ${without.requests} requests`)
  })
  if (withRetry === undefined || without === undefined) return
  t.ok(withRetry.failed <= without.failed, `with retry-on ${withRetry.failed} failed, without ${without.failed}`)
})
