/** healthOf: what the health endpoint answers, from the master's state. */
import t from 'tap'
import { healthOf } from '../../lib/master/health.js'

t.test('ok with half the target beating; lame duck first; unhealthy otherwise', async (t) => {
  const h = (serving: boolean, lameDuck: boolean, beating: number, target: number) => healthOf({ serving, lameDuck, beating, target })
  t.equal(h(true, false, 2, 2), 'ok')
  t.equal(h(true, false, 1, 2), 'ok', 'one of two: half')
  t.equal(h(true, false, 1, 3), 'unhealthy', 'one of three: less than half')
  t.equal(h(true, false, 2, 3), 'ok')
  t.equal(h(true, false, 0, 1), 'unhealthy')
  t.equal(h(false, false, 2, 2), 'unhealthy', 'not serving yet (or stopping)')
  t.equal(h(true, true, 2, 2), 'lame-duck')
  t.equal(h(false, true, 0, 2), 'lame-duck', 'lame duck whatever else')
})
