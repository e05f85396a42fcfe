// examples/systemd/logrotate.conf with logrotate from Debian: the access log is
// rotated under client load, USR1 makes the master and workers reopen it, and
// every request is in exactly one of the files.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { load } from '../helpers/proc.js'
import { appSocket, container, example, getApp, installApp, must, readFrom, run, until, untilState, writeInto } from './helpers/container.js'

const c = container()
await installApp(c, {
  dropIns: {
    // The example service, writing its access log to a file instead of the journal.
    'app.service.d/log-file.conf': [
      '[Service]',
      'LogsDirectory=app',
      'ExecStart=',
      'ExecStart=/srv/app/node_modules/.bin/sdserve --workers 2 --access-logfile /var/log/app/access.log --pid /run/app/sdserve.pid app.mjs',
      '',
    ].join('\n'),
  },
})
writeInto(c, '/etc/logrotate.d/app', readFileSync(example('systemd/logrotate.conf'), 'utf8'))
await must(c, ['systemctl', 'enable', '--now', 'app.socket'])
await getApp(c)
await untilState(c, 'app.service', 'active')

const lines = (path: string): string[] => readFrom(c, path).split('\n').filter((l) => l !== '')

t.test('logrotate rotates the access log under load and loses no line', async (t) => {
  let stop = false
  const traffic = load({ socketPath: appSocket(c), path: '/rotated', concurrency: 4, maxRequests: 20_000, until: () => stop })
  await until('lines in the access log', async () => (lines('/var/log/app/access.log').length > 100 ? true : undefined))
  const rotate = await run(c, ['logrotate', '--verbose', '--force', '/etc/logrotate.d/app'])
  t.equal(rotate.code, 0, rotate.stderr)
  t.match(rotate.stderr, /running postrotate script/)
  await until('lines in the new access log', async () => (lines('/var/log/app/access.log').length > 100 ? true : undefined))
  stop = true
  const result = await traffic
  t.equal(result.failed, 0)
  await getApp(c, '/last')
  await until('the last request logged', async () => (lines('/var/log/app/access.log').some((l) => l.includes('GET /last ')) ? true : undefined))

  const rotated = lines('/var/log/app/access.log.1')
  const current = lines('/var/log/app/access.log')
  t.ok(rotated.length > 0 && current.length > 0, `both files have lines (${rotated.length} rotated, ${current.length} new)`)
  const counted = [...rotated, ...current].filter((l) => l.includes('GET /rotated ')).length
  t.equal(counted, result.ok, `every answered request is logged once (${result.ok})`)
})
