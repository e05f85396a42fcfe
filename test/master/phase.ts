/** The phase table: what each phase allows, and why it refuses. */
import t from 'tap'
import { ask, rule, type Operation, type Phase } from '../../lib/master/phase.js'
import { ReloadQueue } from '../../lib/master/reload-queue.js'

t.test('the table', async (t) => {
  const phases: Phase[] = ['starting', 'serving', 'reloading', 'upgrading', 'stopping']
  const ops: Operation[] = ['reload', 'upgrade', 'scale', 'respawn', 'recycle', 'stop']
  t.same(
    Object.fromEntries(phases.map((p) => [p, ops.map((o) => rule(p, o)).join(' ')])),
    {
      starting: 'defer refuse: still starting defer ignore ignore run',
      serving: 'run run run run run run',
      reloading: 'queue refuse: a reload is running defer run run run',
      upgrading: 'refuse: a binary upgrade is running refuse: an upgrade is running run run run run',
      stopping: 'ignore refuse: stopping ignore ignore ignore queue',
    },
  )
  const why: string[] = []
  t.equal(ask('stopping', 'upgrade', (w) => why.push(w)), 'refuse: stopping')
  t.equal(ask('serving', 'upgrade', (w) => why.push(w)), 'run')
  t.same(why, ['stopping'])
})

t.test('reloads: one at a time, any number queued meanwhile fold into one more, unless stopped', async (t) => {
  const q = new ReloadQueue()
  t.equal(await q.queue(), false, 'nothing runs: nothing to queue behind')
  let runs = 0
  let go = true
  let done = 0
  let release!: () => void
  const once = async (): Promise<boolean> => {
    runs++
    await new Promise<void>((r) => (release = r))
    return runs === 2
  }
  const first = q.run(once, () => go, () => done++)
  t.equal(q.queue(), first)
  t.equal(q.queue(), first)
  release()
  await new Promise((r) => setImmediate(r))
  release()
  t.equal(await first, true, 'callers get the last run\'s outcome')
  t.same([runs, done, q.current], [2, 1, undefined])
  const second = q.run(once, () => go, () => done++)
  q.queue()
  go = false
  release()
  t.equal(await second, false)
  t.equal(runs, 3, 'a stop drops the queued reload')
})
