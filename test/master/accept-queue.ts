/** Accept queues for `sdserve ctl status`: read where they can be, left out where not. */
import t from 'tap'
import { closeSync } from 'node:fs'
import { join } from 'node:path'
import { acceptQueues } from '../../lib/master/accept-queue.js'
import { listenUnix } from '../../lib/native.js'
import { shortTmp } from '../helpers/proc.js'

t.test('a listening socket: its queue; a closed fd: the text alone', async (t) => {
  const fd = listenUnix(join(shortTmp(t), 'q.sock'), { backlog: 7 })
  t.teardown(() => closeSync(fd))
  const [open, closed] = acceptQueues([
    { text: 'unix:q', fd },
    { text: 'gone', fd: 1_000_000 },
  ])
  t.same(open, { text: 'unix:q', queued: 0, backlog: 7 })
  t.same(closed, { text: 'gone' })
})
