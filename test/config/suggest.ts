import t from 'tap'
import { closest, suggest } from '../../lib/config/suggest.js'

t.test('closest: at most two edits away, ignoring case', async (t) => {
  const words = ['workers', 'bind', 'backlog', 'timeout']
  t.equal(closest('wrokers', words), 'workers', 'a swap is two edits')
  t.equal(closest('WORKER', words), 'workers')
  t.equal(closest('bnd', words), 'bind')
  t.equal(closest('binder', words), 'bind')
  t.equal(closest('bindings', words), undefined, 'four edits is too far')
  t.equal(closest('anything', []), undefined)
  t.equal(closest('timeot', ['timeout', 'timeouts']), 'timeout', 'the nearest wins')
  t.equal(closest('bind', ['binds', 'bind']), 'bind', 'an exact match is nearest')
  t.equal(closest('xy', ['ab', 'cd']), 'ab', 'ties go to the first')
})

t.test('suggest: a flag spelled as a key, else the closest key', async (t) => {
  const keys = ['gracefulTimeout', 'keepAlive', 'limitRequestFieldSize']
  t.equal(suggest('graceful-timeout', keys), 'gracefulTimeout')
  t.equal(suggest('limit_request_field_size', keys), 'limitRequestFieldSize')
  t.equal(suggest('KEEPALIVE', keys), 'keepAlive')
  t.equal(suggest('kepAlive', keys), 'keepAlive')
  t.equal(suggest('somethingElse', keys), undefined)
})
