import t from 'tap'
import { isValidFdName } from '../lib/limits.js'

t.test('isValidFdName', async (t) => {
  for (const name of ['web', 'a', ' ', 'x'.repeat(255), 'with space', '~!@#$%^&*()-_=+[]{};\'"<>,./?|\\`'])
    t.equal(isValidFdName(name), true, JSON.stringify(name))
  for (const name of ['', 'a:b', ':', 'x'.repeat(256), 'a\nb', '\t', '\x7f', '\u00e9', '\u2603'])
    t.equal(isValidFdName(name), false, JSON.stringify(name))
  t.equal(isValidFdName(42), false, 'not a string')
})

