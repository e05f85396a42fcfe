import t from 'tap'
import {
  ActivationError,
  ConfigError,
  ErrorCode,
  InvalidArgumentError,
  NativeLoadError,
  NotifyError,
  SdserveError,
  show,
  systemError,
} from '../lib/errors.js'

t.test('show() echoes received values', async (t) => {
  t.equal(show('a"b'), '"a\\"b"')
  t.equal(show(5), '5')
  t.equal(show(5n), '5n')
  t.equal(show(undefined), 'undefined')
  t.equal(show(null), 'null')
  t.equal(show(true), 'true')
  t.equal(show([1, 'x']), '[1,"x"]')
  const circular: Record<string, unknown> = {}
  circular.self = circular
  t.equal(show(circular), '[object Object]')
})

t.test('every error class has its stable code and name', async (t) => {
  const cases: Array<[SdserveError, string, string]> = [
    [new ConfigError('workers', 'abc', 'a positive integer'), ErrorCode.CONFIG, 'ConfigError'],
    [new InvalidArgumentError('fd', -1, 'a fd'), ErrorCode.INVALID_ARG, 'InvalidArgumentError'],
    [new ActivationError('LISTEN_FDS', 'x', 'bad'), ErrorCode.LISTEN_FDS, 'ActivationError'],
    [new NotifyError('bad'), ErrorCode.NOTIFY, 'NotifyError'],
    [new NativeLoadError('no addon', new Error('cause')), ErrorCode.NATIVE, 'NativeLoadError'],
  ]
  for (const [err, code, name] of cases) {
    t.ok(err instanceof SdserveError)
    t.equal(err.code, code)
    t.equal(err.name, name)
  }
  t.equal(new ConfigError('workers', 'abc', 'a positive integer').message, 'workers must be a positive integer, got "abc"')
  t.equal(new ActivationError('LISTEN_FDS', undefined, 'missing').message, 'LISTEN_FDS=: missing')
})

t.test('systemError reads like node', async (t) => {
  const e = systemError('bind', -98, { address: '127.0.0.1', port: 8080 })
  t.equal(e.message, 'bind EADDRINUSE: address already in use 127.0.0.1:8080')
  t.match(e, { errno: -98, code: 'EADDRINUSE', syscall: 'bind', address: '127.0.0.1', port: 8080 })
  t.equal(systemError('connect', -2, { path: '/run/x' }).message, 'connect ENOENT: no such file or directory /run/x')
  t.equal(systemError('connect', -111, { address: 'h' }).message, 'connect ECONNREFUSED: connection refused h')
  t.equal(systemError('fcntl', -9).message, 'fcntl EBADF: bad file descriptor')
})
