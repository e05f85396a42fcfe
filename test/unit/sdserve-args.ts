import t from 'tap'
import { drainOf, optionValues, sdserveArgs, timersOf, watchdogFloorOf } from '../../lib/unit/sdserve-args.js'

t.test('sdserveArgs: sdserve itself, through node, through env; or not sdserve', async (t) => {
  t.same(sdserveArgs(['/srv/app/node_modules/.bin/sdserve', '-w', '2', 'app.mjs']), ['-w', '2', 'app.mjs'])
  t.same(sdserveArgs(['sdserve']), [])
  t.same(sdserveArgs(['/usr/bin/node', '--enable-source-maps', '/srv/app/node_modules/sdserve/dist/lib/cli.js', 'app.mjs']), ['app.mjs'])
  t.same(sdserveArgs(['node20', '/srv/app/node_modules/.bin/sdserve', 'app.mjs']), ['app.mjs'])
  t.same(sdserveArgs(['/usr/bin/env', '-S', 'NODE_ENV=production', 'sdserve', 'app.mjs']), ['app.mjs'])
  t.equal(sdserveArgs(['/usr/bin/node', 'server.js']), undefined)
  t.equal(sdserveArgs(['/usr/bin/node']), undefined)
  t.equal(sdserveArgs(['/usr/bin/gunicorn', 'app:app']), undefined)
  t.equal(sdserveArgs(['/usr/bin/env']), undefined)
  t.equal(sdserveArgs([]), undefined)
})

t.test('optionValues: long, --flag=value, short, switches; stops at --', async (t) => {
  const v = optionValues(['-w2', '-t', '60', '--graceful-timeout=20', '--proxy-protocol', '--lame-duck', '5', '-x', '--pid', '/run/a/p', 'app.mjs', '--', '--timeout', '1'])
  t.same(Object.fromEntries(v), { workers: '2', timeout: '60', 'graceful-timeout': '20', 'proxy-protocol': 'true', 'lame-duck': '5', pid: '/run/a/p' })
  t.same(Object.fromEntries(optionValues(['--timeout'])), { timeout: 'true' }, 'a value option at the end')
})

t.test('timersOf: defaults, given values, the boot sdserve derives', async (t) => {
  const d = timersOf([])
  t.same(d, { lameDuck: 0, gracefulTimeout: 30, timeout: 30, boot: 30, bootNice: 0 })
  t.equal(drainOf(d), 30)
  t.equal(watchdogFloorOf(d), 30)
  const g = timersOf(['--lame-duck', '5', '--graceful-timeout', '20', '-t', '5', '--pid', '/run/x/p', '--control-socket', 'none'])
  t.same(g, { lameDuck: 5, gracefulTimeout: 20, timeout: 5, boot: 10, bootNice: 0, pid: '/run/x/p', controlSocket: 'none' }, 'the boot is at least 10 s')
  t.equal(timersOf(['--boot-nice', '7']).bootNice, 7)
  t.equal(drainOf(g), 25)
  t.equal(timersOf(['--timeout', '0']).boot, 30, '--timeout 0: a boot gets 30 s')
  t.equal(watchdogFloorOf(timersOf(['--timeout', '60', '--boot-timeout', '5'])), 60, '--timeout above the boot')
  t.equal(timersOf(['--boot-timeout', '90']).boot, 90)
  t.same(timersOf(['--timeout', 'soon', '--boot-timeout', 'x', '--lame-duck', '-1']), d, 'what sdserve would refuse counts as the default')
})
