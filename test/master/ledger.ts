/** Ledger: slot totals that survive their workers, exits by reason, restarts per slot. */
import t from 'tap'
import { addReport, emptyTotals, EXIT_REASONS, Ledger } from '../../lib/master/ledger.js'
import { report } from '../helpers/fake-runtime.js'

const served = (requests: number, ok: number, cpuUser = 0) =>
  report({
    requests,
    totals: { responses: [0, ok, 0, 0, 0, requests - ok], buckets: [ok, ...new Array<number>(10).fill(0), requests - ok], seconds: requests / 10, inflight: 0 },
    cpuUser,
    cpuSystem: cpuUser / 2,
  })

t.test('a slot keeps what its exited workers did; restarts count every exit but a stop', async (t) => {
  const ledger = new Ledger()
  t.same(ledger.retired(1), emptyTotals(), 'nothing yet')
  t.same(ledger.restarts(1), { restarts: 0, last: undefined })
  t.same(ledger.retiredSlots, [])
  ledger.record(1, 'crash', served(10, 8, 2_000_000))
  ledger.record(1, 'max-requests', served(5, 5))
  ledger.record(2, 'stop', served(3, 3))
  ledger.record(2, 'boot-failed', undefined)
  const one = ledger.retired(1)
  t.equal(one.requests, 15)
  t.same(one.responses, [0, 13, 0, 0, 0, 2])
  t.equal(one.buckets[0], 13)
  t.equal(one.buckets[11], 2)
  t.equal(one.seconds, 1.5)
  t.equal(one.cpuSeconds, 3, 'user and system')
  one.requests = 999
  t.equal(ledger.retired(1).requests, 15, 'retired() gives a copy')
  t.same(ledger.restarts(1), { restarts: 2, last: 'max-requests' })
  t.same(ledger.restarts(2), { restarts: 1, last: 'boot-failed' }, 'a stop is not a restart')
  t.same(ledger.retiredSlots, [1, 2])
  t.same(Object.fromEntries(ledger.exits), { ...Object.fromEntries(EXIT_REASONS.map((r) => [r, 0])), crash: 1, 'max-requests': 1, stop: 1, 'boot-failed': 1 })
  t.equal(addReport(emptyTotals(), served(4, 4)).requests, 4)
})
