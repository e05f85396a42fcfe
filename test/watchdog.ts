import t, { type Test } from 'tap'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { ConfigError } from '../lib/errors.js'
import { Notifier } from '../lib/notify.js'
import { startWatchdog, watchdogUsec, type Watchdog } from '../lib/watchdog.js'
import { settle, startReceiver, type Receiver } from './helpers/notify-receiver.js'
import { fixture, shortTmp, spawnTracked, waitForOutput } from './helpers/proc.js'
import { needs } from './helpers/needs.js'


const pings = (payloads: string[]): number => payloads.filter((p) => p === 'WATCHDOG=1').length

/**
 * Send BARRIER=1 and wait until the receiver has printed it: every datagram sent
 * before is then in payloads(). Returns the payloads up to that barrier.
 */
async function sync(t: Test, rx: Receiver, n: Notifier): Promise<string[]> {
  const barriers = rx.payloads().filter((p) => p === 'BARRIER=1').length
  await n.barrier()
  const seen = await settle(() => rx.payloads().filter((p) => p === 'BARRIER=1').length > barriers)
  t.ok(seen, 'the receiver printed the barrier')
  const all = rx.payloads()
  return all.slice(0, all.lastIndexOf('BARRIER=1'))
}

function throwsConfig(t: Test, fn: () => unknown, option: string, value: string): void {
  let caught: unknown
  try {
    fn()
  } catch (err) {
    caught = err
  }
  if (!(caught instanceof ConfigError)) {
    t.fail(`${option}=${JSON.stringify(value)}: expected a ConfigError, got ${String(caught)}`)
    return
  }
  t.equal(caught.code, 'SDSERVE_ERR_CONFIG')
  t.equal(caught.option, option)
  t.equal(caught.value, value)
  t.ok(
    caught.message.startsWith(`${option} must be`) && caught.message.endsWith(`got ${JSON.stringify(value)}`),
    caught.message,
  )
}

/** A watchdog that the test's teardown stops, whatever happens. */
function started(t: Test, w: Watchdog | null): Watchdog {
  if (w === null) throw new Error('startWatchdog returned null')
  t.teardown(() => {
    w.stop()
  })
  return w
}

// ---- watchdogUsec() ----

t.test('watchdogUsec reads WATCHDOG_USEC and WATCHDOG_PID', async (t) => {
  t.equal(watchdogUsec({ env: {} }), null, 'unset')
  t.equal(watchdogUsec({ env: { WATCHDOG_USEC: '2000000' } }), 2000000n)
  t.equal(watchdogUsec({ env: { WATCHDOG_USEC: '1' } }), 1n)
  t.equal(watchdogUsec({ env: { WATCHDOG_USEC: '18446744073709551615' } }), 18446744073709551615n, 'UINT64_MAX')
  t.equal(watchdogUsec({ env: { WATCHDOG_USEC: '2000000', WATCHDOG_PID: '4242' }, pid: 4242 }), 2000000n, 'our pid')
  t.equal(watchdogUsec({ env: { WATCHDOG_USEC: '2000000', WATCHDOG_PID: '4243' }, pid: 4242 }), null, 'another pid')
  t.equal(
    watchdogUsec({ env: { WATCHDOG_USEC: '5', WATCHDOG_PID: String(process.pid) } }),
    5n,
    'the pid defaults to process.pid',
  )
  t.equal(watchdogUsec({ env: { WATCHDOG_USEC: '5', WATCHDOG_PID: String(process.pid + 1) } }), null)
  t.equal(watchdogUsec({ env: { WATCHDOG_PID: '4242' }, pid: 4242 }), null, 'WATCHDOG_PID alone asks for nothing')
  t.equal(watchdogUsec(), watchdogUsec({ env: { ...process.env } }), 'the env defaults to process.env')
})

t.test('bad WATCHDOG_USEC and WATCHDOG_PID are ConfigErrors naming the variable and the value', async (t) => {
  for (const value of ['abc', '0', '-1', '', '1.5', ' 1', '1e6', '0x10', '000'])
    throwsConfig(t, () => watchdogUsec({ env: { WATCHDOG_USEC: value } }), 'WATCHDOG_USEC', value)
  for (const value of ['x', '0', '-1', '', '1.5', '12345678901'])
    throwsConfig(
      t,
      () => watchdogUsec({ env: { WATCHDOG_USEC: '1000', WATCHDOG_PID: value }, pid: 1 }),
      'WATCHDOG_PID',
      value,
    )
})

t.test('unsetEnv removes both variables from the env passed', async (t) => {
  const env: NodeJS.ProcessEnv = { WATCHDOG_USEC: '3000000', WATCHDOG_PID: '77', OTHER: 'kept' }
  t.equal(watchdogUsec({ env, pid: 77, unsetEnv: true }), 3000000n)
  t.same(env, { OTHER: 'kept' })

  const other: NodeJS.ProcessEnv = { WATCHDOG_USEC: '3000000', WATCHDOG_PID: '78' }
  t.equal(watchdogUsec({ env: other, pid: 77, unsetEnv: true }), null, 'not ours')
  t.same(other, {}, 'removed even when the watchdog is for another process')

  const bad: NodeJS.ProcessEnv = { WATCHDOG_USEC: 'soon' }
  throwsConfig(t, () => watchdogUsec({ env: bad, unsetEnv: true }), 'WATCHDOG_USEC', 'soon')
  t.same(bad, {}, 'removed even when invalid')

  const kept: NodeJS.ProcessEnv = { WATCHDOG_USEC: '3000000', WATCHDOG_PID: '77' }
  watchdogUsec({ env: kept, pid: 77, unsetEnv: false })
  t.same(kept, { WATCHDOG_USEC: '3000000', WATCHDOG_PID: '77' }, 'kept without unsetEnv')
  watchdogUsec({ env: kept, pid: 77 })
  t.same(kept, { WATCHDOG_USEC: '3000000', WATCHDOG_PID: '77' }, 'kept by default')
})

// ---- startWatchdog() ----

t.test('startWatchdog returns null when no watchdog is asked for', async (t) => {
  const off = new Notifier({ socket: undefined })
  t.equal(startWatchdog({ env: {}, notifier: off }), null)
  t.equal(startWatchdog({ env: { WATCHDOG_USEC: '1000', WATCHDOG_PID: '1' }, pid: 2, notifier: off }), null)
  if (process.env.WATCHDOG_USEC === undefined) t.equal(startWatchdog(), null, 'defaults: process.env has none')
  t.throws(() => startWatchdog({ env: { WATCHDOG_USEC: 'x' }, notifier: off }), { code: 'SDSERVE_ERR_CONFIG' })
})

t.test('intervalMs is half the timeout, in ms', async (t) => {
  const off = new Notifier({ socket: undefined })
  for (const [usec, ms] of [
    ['200000', 100],
    ['3000000', 1500],
    ['2001', 1],
    ['1', 1],
  ] as const) {
    const w = started(t, startWatchdog({ env: { WATCHDOG_USEC: usec }, notifier: off }))
    t.equal(w.usec, BigInt(usec))
    t.equal(w.intervalMs, ms, `WATCHDOG_USEC=${usec}`)
    w.stop()
  }
  const env: NodeJS.ProcessEnv = { WATCHDOG_USEC: '200000' }
  started(t, startWatchdog({ env, unsetEnv: true, notifier: off })).stop()
  t.same(env, {}, 'unsetEnv is passed on')
})

t.test('extreme WATCHDOG_USEC values', async (t) => {
  // setInterval() turns a delay over 2^31-1 ms into 1 ms (and prints a TimeoutOverflowWarning):
  // a watchdog of 49.7 days or more pings every millisecond.
  const off = new Notifier({ socket: undefined })
  const long = started(t, startWatchdog({ env: { WATCHDOG_USEC: String(2n ** 31n * 2000n) }, notifier: off }))
  long.stop()
  t.equal(long.intervalMs, 2 ** 31 - 1, 'a very long watchdog gets the longest delay setInterval accepts')
  let tooBig: unknown
  try {
    tooBig = watchdogUsec({ env: { WATCHDOG_USEC: '99999999999999999999' } })
  } catch (err) {
    tooBig = err
  }
  t.ok(tooBig instanceof ConfigError, 'WATCHDOG_USEC beyond UINT64_MAX is refused, as sd_watchdog_enabled() does')
})

t.test('pings WATCHDOG=1 to a real receiver', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const n = new Notifier({ socket: rx.address })
  const skips: string[] = []
  const w = started(
    t,
    startWatchdog({ env: { WATCHDOG_USEC: '200000' }, notifier: n, onSkip: (r) => skips.push(r) }),
  )
  t.equal(w.intervalMs, 100)
  t.ok(await settle(() => pings(rx.payloads()) >= 3), `at least 3 pings: ${JSON.stringify(rx.payloads())}`)
  w.stop()
  t.same(rx.payloads().filter((p) => p !== 'WATCHDOG=1'), [], 'nothing but pings')
  t.same(skips, [])
})

t.test('no pings while healthy() says no', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const n = new Notifier({ socket: rx.address })
  let healthy = true
  const skips: string[] = []
  started(
    t,
    startWatchdog({
      env: { WATCHDOG_USEC: '200000' },
      notifier: n,
      healthy: () => healthy,
      onSkip: (r) => skips.push(r),
    }),
  )
  t.ok(await settle(() => pings(rx.payloads()) >= 1), 'pings while healthy')

  healthy = false
  t.ok(await settle(() => skips.length >= 1), 'a skip once unhealthy')
  const before = await sync(t, rx, n) // every ping sent before that skip has arrived
  const skipsBefore = skips.length
  t.ok(await settle(() => skips.length >= skipsBefore + 2), 'two more skipped pings')
  const after = await sync(t, rx, n)
  t.equal(pings(after), pings(before), 'no WATCHDOG=1 arrived while unhealthy')
  t.ok(skips.length >= 3)
  t.same(new Set(skips), new Set(['health check said no']))

  healthy = true
  t.ok(await settle(() => pings(rx.payloads()) > pings(after)), 'pings resume once healthy again')
})

t.test('a health check that throws or rejects skips the ping', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const n = new Notifier({ socket: rx.address })
  const checks: Array<[string, () => boolean | Promise<boolean>]> = [
    [
      'boom',
      () => {
        throw new Error('boom')
      },
    ],
    ['nope', () => Promise.reject(new Error('nope'))],
  ]
  for (const [reason, healthy] of checks) {
    const skips: string[] = []
    const w = started(
      t,
      startWatchdog({ env: { WATCHDOG_USEC: '200000' }, notifier: n, healthy, onSkip: (r) => skips.push(r) }),
    )
    t.ok(await settle(() => skips.length >= 2), `skips: ${JSON.stringify(skips)}`)
    w.stop()
    t.equal(skips[0], `health check failed: ${reason}`)
    t.same(new Set(skips), new Set([`health check failed: ${reason}`]))
  }
  const payloads = await sync(t, rx, n)
  t.equal(pings(payloads), 0, 'no WATCHDOG=1 was sent')
})

t.test('ping failed', async (t) => {
  // A ping that cannot be delivered is reported, and the watchdog carries on.
  const nowhere = path.join(shortTmp(t), 'gone.sock')
  const skips: string[] = []
  const w = started(
    t,
    startWatchdog({
      env: { WATCHDOG_USEC: '20000' },
      notifier: new Notifier({ socket: nowhere }),
      onSkip: (r) => skips.push(r),
    }),
  )
  t.ok(await settle(() => skips.length >= 2), 'skipped twice')
  w.stop()
  t.ok(
    skips.every((s) => s.startsWith('ping failed: sendmsg ENOENT') && s.endsWith(nowhere)),
    JSON.stringify(skips),
  )
  // Without onSkip the failure is swallowed, not thrown out of a timer.
  const quiet = started(t, startWatchdog({ env: { WATCHDOG_USEC: '20000' }, notifier: new Notifier({ socket: nowhere }) }))
  await delay(60)
  quiet.stop()
  const quietToo = started(
    t,
    startWatchdog({ env: { WATCHDOG_USEC: '20000' }, notifier: new Notifier({ socket: undefined }), healthy: () => false }),
  )
  await delay(60)
  quietToo.stop()
  t.pass('no uncaught error')
})

t.test('a slow health check is not asked again while it is pending', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const n = new Notifier({ socket: rx.address })
  let calls = 0
  let release: ((ok: boolean) => void) | undefined
  const w = started(
    t,
    startWatchdog({
      env: { WATCHDOG_USEC: '20000' }, // a tick every 10 ms
      notifier: n,
      healthy: () => {
        calls++
        return new Promise<boolean>((resolve) => {
          release = resolve
        })
      },
    }),
  )
  t.ok(await settle(() => calls === 1), 'asked once')
  await delay(100) // about ten ticks find the check still pending
  t.equal(calls, 1, 'not asked again while pending')
  t.equal(pings(rx.payloads()), 0)
  release?.(true)
  t.ok(await settle(() => pings(rx.payloads()) >= 1), 'pinged once the check said yes')
  t.ok(await settle(() => calls >= 2), 'asked again afterwards')
  w.stop()
})

t.test('stop() ends the pings', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const n = new Notifier({ socket: rx.address })
  let calls = 0
  const w = started(
    t,
    startWatchdog({
      env: { WATCHDOG_USEC: '40000' }, // a tick every 20 ms
      notifier: n,
      healthy: () => {
        calls++
        return true
      },
    }),
  )
  t.ok(await settle(() => pings(rx.payloads()) >= 2), 'pinging')
  w.stop()
  const callsAtStop = calls
  const atStop = await sync(t, rx, n)
  await delay(200) // about ten intervals in which a running watchdog would ping
  const later = await sync(t, rx, n)
  t.equal(pings(later), pings(atStop), 'no ping after stop()')
  t.equal(calls, callsAtStop, 'no health check after stop()')
  w.stop()
  t.pass('stop() twice is harmless')
})

t.test('the default notifier is notifier(), from NOTIFY_SOCKET', needs(['python3']), async (t) => {
  const rx = await startReceiver(t)
  const child = spawnTracked(t, process.execPath, [fixture('notify-default.js'), 'watchdog'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NOTIFY_SOCKET: rx.address },
  })
  await waitForOutput(child, /\n/)
  t.same(JSON.parse(child.output()), { started: true, intervalMs: 50 })
  t.ok(await settle(() => pings(rx.payloads()) >= 2), `pings from the child: ${JSON.stringify(rx.payloads())}`)
  child.stdin?.end()
  t.equal(await child.exited, 0, 'the child stops its watchdog and exits when stdin closes')
})
