// nginx from Debian, configured with examples/systemd/nginx.conf, in front of
// app.socket: sdserve believes its X-Forwarded-For and X-Forwarded-Proto (the
// peer is on the UNIX socket), and its lines reach the journal with their
// priorities.
import t from 'tap'
import { container, example, inNetns, installApp, journal, must, prop, until, writeInto } from './helpers/container.js'
import { readFileSync } from 'node:fs'

const c = container()
await installApp(c)
// gunicorn's format with the scheme at the end, from the app's directory (sdserve.config.json is read from the working directory).
writeInto(c, '/srv/app/sdserve.config.json', JSON.stringify({ accessLogformat: '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({wsgi.url_scheme}e)s' }))
writeInto(c, '/etc/nginx/conf.d/app.conf', readFileSync(example('systemd/nginx.conf'), 'utf8'))
await must(c, ['rm', '-f', '/etc/nginx/sites-enabled/default'])
await must(c, ['nginx', '-t'])
await must(c, ['systemctl', 'unmask', 'nginx.service'])
await must(c, ['systemctl', 'enable', '--now', 'app.socket', 'nginx.service'])

/** curl inside the container's network, from 127.0.0.2: the client nginx sees, and no proxy sdserve trusts. */
async function curl(...args: string[]): Promise<string> {
  const r = await inNetns(c, ['curl', '-sS', '--max-time', '30', '--interface', '127.0.0.2', ...args])
  if (r.code !== 0) throw new Error(`curl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

t.test('the app sees the client and the scheme nginx forwarded', async (t) => {
  t.match(await curl('http://127.0.0.1/'), /^hello from worker \d+: client 127\.0\.0\.2 over http\n$/)
  t.match(await curl('--insecure', 'https://127.0.0.1/?tls=1'), /^hello from worker \d+: client 127\.0\.0\.2 over https\n$/)
  // A client cannot forge its address: nginx appends the real one, which is the one believed.
  t.match(await curl('-H', 'X-Forwarded-For: 198.51.100.7', 'http://127.0.0.1/'), /client 127\.0\.0\.2 over http/)
})

t.test("sdserve's access log in the journal shows the forwarded client", async (t) => {
  await curl('-A', 'e2e-agent/1.0', '-e', 'https://example.test/from', 'http://127.0.0.1/logged?x=1')
  const entries = await journal(c, 'app.service')
  const line = entries.find((e) => e.MESSAGE.includes('/logged?x=1'))
  t.ok(line, 'the request was logged')
  t.match(line?.MESSAGE, /^127\.0\.0\.2 - - \[[^\]]+\] "GET \/logged\?x=1 HTTP\/1\.0" 200 \d+ "https:\/\/example\.test\/from" "e2e-agent\/1\.0" http$/)
  const tls = entries.find((e) => e.MESSAGE.includes('/?tls=1'))
  t.match(tls?.MESSAGE, /^127\.0\.0\.2 - - .* "GET \/\?tls=1 HTTP\/1\.0" 200 .* https$/, 'the scheme from X-Forwarded-Proto, through TLS')
  t.equal(line?.PRIORITY, '6', 'access log lines are info')
  t.equal(line?.SYSLOG_IDENTIFIER, 'sdserve')
  const started = entries.find((e) => /sdserve [\d.]+ master \d+: listening on unix:\/run\/app\.sock, 127\.0\.0\.1:8000/.test(e.MESSAGE))
  t.ok(started, "the master's start line is there")
  t.equal(started?.PRIORITY, '6', 'with priority info, from its <6> prefix')
  t.notOk(entries.some((e) => /^<\d>/.test(e.MESSAGE)), 'no priority prefix is left in a message')
})

t.test('a warning reaches the journal at priority 4', async (t) => {
  // TTOU twice: 2 workers to 1 (info), then a warning that it cannot go lower.
  const mainPid = await prop(c, 'app.service', 'MainPID')
  await must(c, ['kill', '-TTOU', mainPid])
  await until('one worker', async () => ((await prop(c, 'app.service', 'StatusText')).startsWith('1 of 1 workers') ? true : undefined))
  await must(c, ['kill', '-TTOU', mainPid])
  const warning = await until('the warning', async () => (await journal(c, 'app.service')).find((e) => /TTOU: already down to one worker/.test(e.MESSAGE)))
  t.equal(warning.PRIORITY, '4', `a warning line: ${warning.MESSAGE}`)
  const scaled = (await journal(c, 'app.service')).find((e) => /scaling to 1 workers/.test(e.MESSAGE))
  t.equal(scaled?.PRIORITY, '6', 'an info line')
})

t.test('the unbuffered location passes the stream on', async (t) => {
  const r = await inNetns(c, ['curl', '-sS', '--max-time', '30', '--no-buffer', '--trace-ascii', '/dev/stderr', 'http://127.0.0.1/stream'])
  t.equal(r.code, 0, r.stderr)
  t.same(r.stdout.match(/chunk \d/g), ['chunk 1', 'chunk 2', 'chunk 3', 'chunk 4', 'chunk 5'])
  const receives = (r.stderr.match(/<= Recv data/g) ?? []).length
  t.ok(receives >= 2, `the body arrived in pieces, as written (${receives} reads)`)
})
