import t from 'tap'
import { CMD, dispatch, isOurs, type WorkerMessage } from '../lib/protocol.js'
import { report } from './helpers/fake-runtime.js'

t.test('isOurs recognises only SDSERVE messages', async (t) => {
  t.equal(isOurs({ cmd: CMD, act: 'listening' }), true)
  t.equal(isOurs({ cmd: 'NODE_HANDLE' }), false)
  t.equal(isOurs('hello'), false)
  t.equal(isOurs(null), false)
})

t.test('dispatch calls the handler for the act, and reports when there is none', async (t) => {
  const seen: string[] = []
  const message: WorkerMessage = { cmd: CMD, act: 'retire', requests: 7 }
  t.equal(
    dispatch(message, {
      retire: (m) => seen.push(`retire ${m.requests}`),
    }),
    true,
  )
  t.same(seen, ['retire 7'])
  t.equal(dispatch<WorkerMessage>({ cmd: CMD, act: 'heartbeat', ...report() }, {}), false)
})
