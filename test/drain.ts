/**
 * lib/drain.ts: how an app hears that its worker drains. The state is one
 * per process (on globalThis), so this file drains exactly once: the tests
 * run in order, before the drain and then after it.
 */
import t from 'tap'
import { beginDrain, drainSignal, draining, onDrain, type DrainInfo } from '../lib/drain.js'

const info: DrainInfo = { reason: 'reload', deadline: Date.now() + 10000 }
/** What beginDrain's report got. */
const reported: unknown[] = []

t.test('before the drain: nothing is draining, the signal is not aborted', async (t) => {
  t.equal(draining(), undefined)
  t.equal(drainSignal().aborted, false)
  t.equal(drainSignal(), drainSignal(), 'one signal per process')
})

t.test('the state is shared through globalThis, whichever copy of the module set it up', async (t) => {
  const shared = (globalThis as Record<symbol, unknown>)[Symbol.for('sdserve.drain')] as { controller: AbortController }
  t.ok(shared, 'kept under the registered symbol')
  t.equal(shared.controller.signal, drainSignal())
})

t.test('the drain: listeners in order, a throwing one reported, an unsubscribed one not called, then the signal', async (t) => {
  const calls: string[] = []
  onDrain((i) => calls.push(`first ${i.reason}`))
  onDrain(() => {
    throw new Error('listener broke')
  })
  const off = onDrain(() => calls.push('unsubscribed'))
  onDrain((i) => {
    calls.push(`last ${i.reason}`)
    t.equal(drainSignal().aborted, false, 'listeners run before the signal aborts')
    t.equal(draining(), i, 'draining() already says so inside a listener')
  })
  off()
  off() // twice is harmless
  let abortedWith: unknown
  drainSignal().addEventListener('abort', () => {
    abortedWith = drainSignal().reason
    calls.push('signal')
  })
  beginDrain(info, (err) => reported.push(err))
  t.same(calls, ['first reload', 'last reload', 'signal'])
  t.equal(reported.length, 1, 'the throwing listener is reported')
  t.match(reported[0], { message: 'listener broke' })
  t.equal(abortedWith, info, 'the signal is aborted with the DrainInfo as its reason')
  t.equal(drainSignal().aborted, true)
  t.equal(draining(), info)
})

t.test('beginDrain again is ignored: the first drain stands, no listener runs twice', async (t) => {
  const second: unknown[] = []
  beginDrain({ reason: 'stop', deadline: 0 }, (err) => second.push(err))
  t.equal(draining(), info, 'still the first DrainInfo')
  t.equal(drainSignal().reason, info)
  t.same(second, [])
})

t.test('after the drain: onDrain calls at once, and its unsubscribe is a no-op', async (t) => {
  const seen: DrainInfo[] = []
  reported.length = 0
  const off = onDrain((i) => seen.push(i))
  t.same(seen, [info], 'called synchronously with the DrainInfo')
  t.doesNotThrow(() => off())
  t.doesNotThrow(
    () =>
      onDrain(() => {
        throw new Error('late listener')
      }),
    'a late listener that throws does not throw to its caller (a request handler, say)',
  )
  t.equal(reported.length, 1, 'it is reported like the others')
  t.match(reported[0], { message: 'late listener' })
})
