import t from 'tap'
import { DEFAULT_BIND, parseBind } from '../lib/binds.js'
import { ConfigError } from '../lib/errors.js'

t.test('valid bind specs', async (t) => {
  t.same(parseBind('127.0.0.1:8000'), { kind: 'tcp', host: '127.0.0.1', port: 8000, family: 4, text: '127.0.0.1:8000' })
  t.same(parseBind('[::1]:80'), { kind: 'tcp', host: '::1', port: 80, family: 6, text: '[::1]:80' })
  t.same(parseBind('[::]:0'), { kind: 'tcp', host: '::', port: 0, family: 6, text: '[::]:0' })
  t.match(parseBind('localhost:3000'), { host: '127.0.0.1', port: 3000 })
  t.match(parseBind(':3000'), { host: '0.0.0.0', text: '0.0.0.0:3000' })
  t.match(parseBind('*:3000'), { host: '0.0.0.0' })
  t.match(parseBind('0.0.0.0:65535'), { port: 65535 })
  t.same(parseBind(' unix:/run/app.sock '), { kind: 'unix', path: '/run/app.sock', text: 'unix:/run/app.sock' })
  t.same(parseBind('fd://3'), { kind: 'fd', fd: 3, text: 'fd://3' })
  t.same(parseBind('systemd:web'), { kind: 'systemd', name: 'web', text: 'systemd:web' })
  t.match(parseBind(DEFAULT_BIND), { host: '127.0.0.1', port: 8000 })
})

t.test('invalid bind specs name the option and echo the value', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    ['', /^bind must be HOST:PORT, \[IPV6\]:PORT, unix:\/PATH, fd:\/\/N or systemd:NAME, got ""$/],
    [42, /got 42$/],
    ['8000', /got "8000"$/],
    ['127.0.0.1:99999', /port from 0 to 65535, got "127.0.0.1:99999"/],
    ['127.0.0.1:http', /port from 0 to 65535/],
    ['example.com:80', /numeric IPv4 address, localhost or \*/],
    ['::1:80', /numeric IPv4 address/],
    ['[nope]:80', /numeric IPv6 address/],
    ['[127.0.0.1]:80', /numeric IPv6 address/],
    ['unix:relative.sock', /absolute path/],
    [`unix:/${'x'.repeat(120)}`, /at most 107 bytes/],
    ['fd://x', /file descriptor number/],
    ['fd://', /file descriptor number/],
    ['systemd:', /LISTEN_FDNAMES name/],
    ['systemd:a:b', /LISTEN_FDNAMES name/],
  ]
  for (const [value, re] of bad) {
    const err = t.throws(() => parseBind(value)) as ConfigError
    t.ok(err instanceof ConfigError, `${String(value)} is a ConfigError`)
    t.equal(err.code, 'SDSERVE_ERR_CONFIG')
    t.equal(err.option, 'bind')
    t.match(err.message, re)
  }
  t.throws(() => parseBind('x', '--bind'), { option: '--bind', message: /^--bind must be/ })
})
