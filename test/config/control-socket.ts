/** --control-socket: 'none' or an absolute path that fits in sun_path. */
import t from 'tap'
import { validateOptions } from '../../lib/config.js'
import { ConfigError } from '../../lib/errors.js'
import { SUN_PATH_MAX } from '../../lib/limits.js'

t.test('--control-socket', async (t) => {
  t.same(validateOptions({ controlSocket: 'none' }, 'the command line'), { controlSocket: 'none' })
  t.same(validateOptions({ controlSocket: '/run/app/sdserve.ctl' }, 'the command line'), { controlSocket: '/run/app/sdserve.ctl' })
  const longest = `/${'a'.repeat(SUN_PATH_MAX - 1)}`
  t.same(validateOptions({ controlSocket: longest }, 'the command line'), { controlSocket: longest }, 'as long as sun_path holds')
  for (const bad of ['relative.sock', '', `${longest}b`, 7, true]) {
    t.throws(() => validateOptions({ controlSocket: bad }, 'the command line'), ConfigError, JSON.stringify(bad))
    t.throws(() => validateOptions({ controlSocket: bad }, 'the command line'), { message: /'none' or an absolute path of at most \d+ bytes/ })
  }
})
