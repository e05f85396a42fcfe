import t from 'tap'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { appErrorStack, describeValue, loadApp, parseAppSpec, resolveAppModule, type AppTarget } from '../lib/app.js'
import { AppLoadError, ConfigError } from '../lib/errors.js'
import { get, root } from './helpers/proc.js'

/** The fixture apps, in the source tree (plain JS, not compiled). */
const apps = join(root, 'test/fixtures/apps')
const url = (path: string): string => pathToFileURL(path).href

interface Teardown {
  teardown(fn: () => void | Promise<void>): void
}

/** Serve a target on an ephemeral 127.0.0.1 port, as a worker would; closed at teardown. */
async function serve(t: Teardown, target: AppTarget): Promise<number> {
  const server: Server = target.kind === 'server' ? target.server : createServer(target.handler)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve()
        })
        server.closeAllConnections()
      }),
  )
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('not a TCP server')
  return address.port
}

/** Load an app and answer one request: the body. */
async function bodyOf(t: Teardown, spec: string, cwd = apps, path = '/'): Promise<string> {
  const port = await serve(t, await loadApp(spec, cwd))
  const reply = await get({ port, path })
  return reply.body
}

/** The AppLoadError a load fails with. */
async function loadError(spec: string, cwd = apps): Promise<AppLoadError> {
  try {
    await loadApp(spec, cwd)
  } catch (err) {
    if (err instanceof AppLoadError) return err
    throw err
  }
  throw new Error(`${spec} loaded`)
}

t.test('parseAppSpec: the forms', async (t) => {
  t.same(parseAppSpec('app.js'), { module: 'app.js', name: undefined, call: false })
  t.same(parseAppSpec(' app.js:handler '), { module: 'app.js', name: 'handler', call: false })
  t.same(parseAppSpec('app.js:createApp()'), { module: 'app.js', name: 'createApp', call: true })
  t.same(parseAppSpec('app.js:server.handler'), { module: 'app.js', name: 'server.handler', call: false })
  t.same(parseAppSpec('app.js:$a._b.c$()'), { module: 'app.js', name: '$a._b.c$', call: true })
  t.same(parseAppSpec('./src/app:app'), { module: './src/app', name: 'app', call: false })
  t.same(parseAppSpec('@scope/pkg/sub:app'), { module: '@scope/pkg/sub', name: 'app', call: false })
  t.same(parseAppSpec('app.js:naïve'), { module: 'app.js', name: 'naïve', call: false })
  // Only the last ':' splits, and only before a name: ':' elsewhere is part of the path.
  t.same(parseAppSpec('/srv/a:b/app.js'), { module: '/srv/a:b/app.js', name: undefined, call: false })
  t.same(parseAppSpec('/srv/a:b/app.js:make()'), { module: '/srv/a:b/app.js', name: 'make', call: true })
  t.same(parseAppSpec('./v1:2-app.mjs'), { module: './v1:2-app.mjs', name: undefined, call: false })
  t.same(parseAppSpec('file:///srv/app.mjs'), { module: 'file:///srv/app.mjs', name: undefined, call: false })
})

t.test('parseAppSpec: malformed specs are ConfigErrors on APP echoing the value', async (t) => {
  for (const spec of ['', '   ', 'app.js:', 'app.js:1x', 'app.js:a(b)', 'app.js:a..b', 'app.js:a.', 'app.js:()', ':app', ':']) {
    const err = t.throws(() => parseAppSpec(spec)) as ConfigError
    t.ok(err instanceof ConfigError, `${JSON.stringify(spec)} is a ConfigError`)
    t.equal(err.code, 'SDSERVE_ERR_CONFIG')
    t.equal(err.option, 'APP')
    t.equal(err.value, spec)
    t.match(err.message, /^APP must be a module path or package, optionally followed by :name or :factory\(\)/)
    t.ok(err.message.endsWith(`got ${JSON.stringify(spec)}`), err.message)
  }
})

t.test('resolveAppModule', async (t) => {
  const hello = url(join(apps, 'hello.mjs'))
  t.equal(resolveAppModule(join(apps, 'hello.mjs'), '/'), hello, 'absolute')
  t.equal(resolveAppModule('./hello.mjs', apps), hello, './')
  t.equal(resolveAppModule('../apps/hello.mjs', apps), hello, '../')
  t.equal(resolveAppModule('test/fixtures/apps/hello.mjs', root), hello, 'an existing file relative to cwd')
  t.equal(resolveAppModule('hello', apps), hello, 'a bare name of a file, without its extension')
  t.equal(resolveAppModule('./hello', apps), hello, '.mjs added')
  t.equal(resolveAppModule('./plain', apps), url(join(apps, 'plain.js')), '.js added')
  t.equal(resolveAppModule('./handler', apps), url(join(apps, 'handler.cjs')), '.cjs added')
  t.equal(resolveAppModule('./dir-app', apps), url(join(apps, 'dir-app/main.mjs')), 'a directory: its "main"')
  t.equal(resolveAppModule(hello, '/'), hello, 'a file: URL')
  t.equal(resolveAppModule('tap', root), url(join(root, 'node_modules/tap/dist/commonjs/index.js')), 'a package')
  t.equal(resolveAppModule('express/package.json', root), url(join(root, 'node_modules/express/package.json')))

  const cases: Array<[string, string, RegExp]> = [
    ['./missing.mjs', apps, /^cannot find app module \.\/missing\.mjs in .*apps: no file .*apps\/missing\.mjs \(nor with \.js, \.mjs or \.cjs\)$/],
    ['/nonexistent/app', apps, /^cannot find app module \/nonexistent\/app in .*: no file \/nonexistent\/app/],
    ['.', join(root, 'test'), /is a directory with no package\.json "main" or index\.js$/],
    ['missing-app', apps, /^cannot find app module missing-app in .*apps: not a file there \(nor with \.js, \.mjs or \.cjs\), and as a package: no such package$/],
    ['tap/no-such-export', root, /and as a package: Package subpath '\.\/no-such-export' is not defined by "exports"/],
    ['file:///nonexistent.mjs', apps, /^cannot find app module file:\/\/\/nonexistent\.mjs: no such file$/],
    ['file://remote/app.mjs', apps, /^cannot find app module file:\/\/remote\/app\.mjs: File URL host must be "localhost" or empty/],
  ]
  for (const [module, cwd, re] of cases) {
    const err = t.throws(() => resolveAppModule(module, cwd)) as AppLoadError
    t.ok(err instanceof AppLoadError, `${module} is an AppLoadError`)
    t.equal(err.code, 'SDSERVE_ERR_APP_LOAD')
    t.equal(err.app, module)
    t.match(err.message, re)
  }
})

t.test('describeValue', async (t) => {
  t.equal(describeValue(null), 'null')
  t.equal(describeValue(undefined), 'undefined')
  t.equal(describeValue(42), 'a number (42)')
  t.equal(describeValue(true), 'a boolean (true)')
  t.equal(describeValue(5n), 'a bigint (5n)')
  t.equal(describeValue(Symbol('s')), 'a symbol (Symbol(s))')
  t.equal(describeValue('x'), 'a string ("x")')
  t.equal(describeValue(function named() {}), 'a function (named)')
  t.equal(describeValue(class Foo { x = 1 }), 'a class (Foo)')
  t.equal(describeValue([1, 2]), 'an array (2 items)')
  t.equal(describeValue(new (class Foo { x = 1 })()), 'an instance of Foo')
  t.equal(describeValue(new (class { x = 1 })()), 'an object with keys x', 'an anonymous class')
  t.equal(describeValue({}), 'an empty object')
  t.equal(describeValue(Object.create(null)), 'an empty object')
  t.equal(describeValue({ a: 1, b: 2 }), 'an object with keys a, b')
  t.equal(describeValue(Object.fromEntries('abcdefghij'.split('').map((k) => [k, 1]))), 'an object with keys a, b, c, d, e, f, g, h, …')
  const anonymous = [(): void => undefined][0]!
  t.equal(describeValue(anonymous), 'a function')
})

t.test('plain handlers, named exports, dotted names and CommonJS', async (t) => {
  const target = await loadApp('hello.mjs', apps)
  t.match(target, { kind: 'handler', description: 'request handler' })
  t.equal(await bodyOf(t, 'hello.mjs', apps, '/x?y'), 'hello from /x?y\n')
  t.equal(await bodyOf(t, 'test/fixtures/apps/hello', root), 'hello from /\n', 'extensionless, relative to cwd')
  t.equal(await bodyOf(t, `${apps}/hello.mjs`, '/'), 'hello from /\n', 'absolute')
  t.equal(await bodyOf(t, url(join(apps, 'hello.mjs')), '/'), 'hello from /\n', 'file: URL')
  t.equal(await bodyOf(t, './named.mjs:handler'), 'named\n')
  t.equal(await bodyOf(t, 'named:server.handler'), 'dotted\n')
  t.equal(await bodyOf(t, 'handler.cjs'), 'commonjs\n', 'module.exports is the default')
  t.equal(await bodyOf(t, 'handler.cjs:default'), 'commonjs\n')
  t.equal(await bodyOf(t, 'built.cjs:handler'), 'built commonjs\n', 'a property of module.exports node cannot see')
  t.equal(await bodyOf(t, 'plain'), 'plain .js\n')
  t.equal(await bodyOf(t, './dir-app'), 'directory app\n')
})

t.test('factories, sync and async', async (t) => {
  t.equal(await bodyOf(t, 'factory.mjs:createApp()'), 'sync factory\n')
  t.equal(await bodyOf(t, 'factory.mjs:createAppAsync()'), 'async factory\n')
  t.equal(await bodyOf(t, 'factory.mjs:factories.make()'), 'method factory\n', 'called as a method of its object')
  t.equal(await bodyOf(t, 'factory.mjs:promised'), 'promised\n', 'an exported promise is awaited')
  t.equal(await bodyOf(t, 'express.mjs:createApp()', apps, '/json'), '{"framework":"express"}')

  const threw = await loadError('factory.mjs:throws()')
  t.equal(threw.message, 'factory.mjs:throws() threw: factory exploded')
  t.match(threw.cause, { message: 'factory exploded' })
  const rejected = await loadError('factory.mjs:rejects()')
  t.equal(rejected.message, 'factory.mjs:rejects() rejected: async factory exploded')
  t.match(rejected.cause, { message: 'async factory exploded' })
  t.equal((await loadError('factory.mjs:throwsString()')).message, 'factory.mjs:throwsString() threw: "not an Error"')
  t.match(await loadError('factory.mjs:notAFunction()'), {
    message: 'factory.mjs:notAFunction is a string ("just a string"), not a factory function to call',
  })
  t.match(await loadError('factory.mjs:returnsNothing()'), {
    message: /^factory\.mjs:returnsNothing\(\) is undefined; expected a request handler \(req, res\), an http\.Server, or an Express, Koa or Fastify app$/,
  })
})

t.test('an http.Server export', async (t) => {
  const target = await loadApp('server.mjs', apps)
  t.equal(target.kind, 'server')
  t.equal(target.description, 'http.Server')
  const port = await serve(t, target)
  t.equal((await get({ port })).body, 'http.Server\n')
  t.match(await loadError('listening.mjs'), {
    message: 'the default export of listening.mjs is an http.Server that is already listening: export it without calling listen()',
  })
})

t.test('modules that fail to import keep the original error', async (t) => {
  const dir = t.testdir({
    'syntax.mjs': 'export default function (req, res) {\n  res.end(\n}\n',
    'syntax.cjs': 'module.exports = function (req, res) {\n  res.end(\n}\n',
    'throws-string.mjs': "throw 'a string, not an Error'\n",
    'stackless.mjs': "const err = new TypeError('no stack')\ndelete err.stack\nthrow err\n",
    'bad-import.mjs': "import 'no-such-package-for-sdserve'\nexport default () => {}\n",
  })

  const thrown = await loadError('throws.mjs')
  t.equal(thrown.code, 'SDSERVE_ERR_APP_LOAD')
  t.equal(thrown.app, 'throws.mjs')
  t.equal(thrown.message, `cannot import app module ${join(apps, 'throws.mjs')}: Error: boom while importing`)
  t.ok(thrown.cause instanceof Error)
  t.match((thrown.cause as Error).stack, /boom while importing\n\s+at .*throws\.mjs:2/, 'the stack points into the app')

  const esm = await loadError('./syntax.mjs', dir)
  t.match(esm.message, /^cannot import app module .*syntax\.mjs: SyntaxError: Unexpected token '\}'/)
  t.match(esm.cause, SyntaxError)
  const cjs = await loadError('syntax.cjs', dir)
  t.match(cjs.message, /^cannot import app module .*syntax\.cjs: SyntaxError: Unexpected token '\}' \(at \/.*syntax\.cjs:3\)$/)

  t.match(await loadError('throws-string', dir), {
    message: /^cannot import app module .*throws-string\.mjs: it threw "a string, not an Error"$/,
    cause: 'a string, not an Error',
  })
  t.match(await loadError('stackless.mjs', dir), { message: /stackless\.mjs: TypeError: no stack$/ })
  t.match(await loadError('bad-import.mjs', dir), {
    message: /Error: Cannot find package 'no-such-package-for-sdserve'/,
    cause: Error,
  })
  t.match(await loadError('no-such-app.mjs'), { message: /^cannot find app module no-such-app\.mjs in / })
})

t.test('picking the export', async (t) => {
  t.equal(
    (await loadError('named.mjs')).message,
    'named.mjs has no default export: name the export to serve (APP=named.mjs:name); its exports: handler, notAnApp, server',
  )
  t.equal((await loadError('empty.mjs')).message, 'empty.mjs has no default export: name the export to serve (APP=empty.mjs:name); it has no exports')
  t.equal((await loadError('named.mjs:nope')).message, 'named.mjs has no export "nope"; its exports: handler, notAnApp, server')
  t.equal((await loadError('handler.cjs:nope')).message, 'handler.cjs has no export "nope"; its exports: default')
  // The same list on every Node version: Node 26 adds `module.exports` to a CommonJS module's namespace.
  t.equal((await loadError('built.cjs:nope')).message, 'built.cjs has no export "nope"; its exports: default')
  t.equal(
    (await loadError('odd-names.mjs')).message,
    'odd-names.mjs has no default export: name the export to serve (APP=odd-names.mjs:name); its exports: handler',
    'names a spec cannot select are not offered',
  )
  t.equal((await loadError('named.mjs:server.nope')).message, 'named.mjs: server has no property "nope" (server is an object with keys handler)')
  t.equal((await loadError('named.mjs:notAnApp.x')).message, 'named.mjs: notAnApp has no property "x" (notAnApp is a number (42))')
  t.equal(
    (await loadError('odd.mjs:nothing.x.y')).message,
    'odd.mjs: nothing has no property "x" (nothing is null)',
  )
})

t.test('values that are not apps say what they are', async (t) => {
  const expected = 'expected a request handler (req, res), an http.Server, or an Express, Koa or Fastify app'
  t.equal((await loadError('number.mjs')).message, `the default export of number.mjs is a number (42); ${expected}`)
  t.equal((await loadError('named.mjs:notAnApp')).message, `named.mjs:notAnApp is a number (42); ${expected}`)
  t.equal((await loadError('odd.mjs:nothing')).message, `odd.mjs:nothing is null; ${expected}`)
  t.equal(
    (await loadError('klass.mjs')).message,
    `the default export of klass.mjs is a class (App); ${expected}: export an instance, not the class`,
  )
  const fetch = await loadError('fetch.mjs')
  t.match(fetch.message, /^the default export of fetch\.mjs is a fetch-style app \(it has a fetch\(request\) method, as Hono apps do\)/)
  t.match(fetch.message, /export getRequestListener\(app\.fetch\) from @hono\/node-server instead$/)
  t.equal(
    (await loadError('odd.mjs:brokenKoa')).message,
    'odd.mjs:brokenKoa looks like a Koa app, but its callback() threw: no callback today',
  )
  t.equal(
    (await loadError('odd.mjs:nullKoa')).message,
    'odd.mjs:nullKoa looks like a Koa app, but its callback() returned null instead of a request handler',
  )
  // A package specifier resolves (tap is installed), but tap is not an app.
  const tap = await loadError('tap', root)
  t.equal(tap.app, 'tap')
  t.match(tap.message, /^the default export of tap is an object with keys .*; expected a request handler \(req, res\)/)
})

t.test('real frameworks', async (t) => {
  const frameworks: Array<[string, string, AppTarget['kind']]> = [
    ['express', 'Express app (function)', 'handler'],
    ['koa', 'Koa app', 'handler'],
    ['fastify', 'Fastify app', 'server'],
  ]
  for (const [name, description, kind] of frameworks) {
    t.test(name, async (t) => {
      const target = await loadApp(`${name}.mjs`, apps)
      t.equal(target.kind, kind)
      t.equal(target.description, description)
      const port = await serve(t, target)
      const root = await get({ port })
      t.equal(root.status, 200)
      t.equal(root.body, `${name}\n`)
      t.match(root.headers['content-type'], /^text\/plain/)
      const json = await get({ port, path: '/json' })
      t.equal(json.status, 200)
      t.match(json.headers['content-type'], /^application\/json/)
      t.same(JSON.parse(json.body), { framework: name })
      t.equal((await get({ port, path: '/missing' })).status, 404)
    })
  }

  t.test('a Fastify app from an async factory', async (t) => {
    const target = await loadApp('fastify.mjs:createAppAsync()', apps)
    t.equal(target.description, 'Fastify app')
    t.equal((await get({ port: await serve(t, target), path: '/json' })).body, '{"framework":"fastify"}')
  })

  t.test('a Fastify app whose plugin fails to load', async (t) => {
    const err = await loadError('fastify-broken.mjs')
    t.equal(err.message, 'the default export of fastify-broken.mjs is a Fastify app that failed to become ready: plugin failed to start')
    t.match(err.cause, { message: 'plugin failed to start' })
  })

  t.test('a Fastify app that listens on its own', async (t) => {
    const dir = t.testdir({
      'listening.mjs': [
        "import Fastify from 'fastify'",
        'const app = Fastify()',
        "await app.listen({ host: '127.0.0.1', port: 0 })",
        'app.server.unref()',
        'export default app',
      ].join('\n'),
    })
    t.match(await loadError('listening.mjs', dir), {
      message: 'the default export of listening.mjs is a Fastify app that is already listening: export it without calling listen()',
    })
  })
})

t.test('the examples in examples/frameworks/ serve', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['hello.mjs', 'request handler', /^hello from worker \d+\n$/],
    ['express.mjs', 'Express app (function)', /^hello from Express, worker \d+\n$/],
    ['koa.mjs', 'Koa app', /^hello from Koa, worker \d+\n$/],
    ['fastify.mjs', 'Fastify app', /^hello from Fastify, worker \d+\n$/],
  ]
  for (const [file, description, re] of cases) {
    t.test(file, async (t) => {
      const target = await loadApp(`examples/frameworks/${file}`, root)
      t.equal(target.description, description)
      const port = await serve(t, target)
      const reply = await get({ port })
      t.equal(reply.status, 200)
      t.match(reply.body, re)
      if (file !== 'hello.mjs') {
        const health = await get({ port, path: '/health' })
        t.same(JSON.parse(health.body), { ok: true, pid: process.pid })
      }
    })
  }
})

t.test("appErrorStack shows the app's own stack when there is one", async (t) => {
  const cause = new Error('boom in the app')
  t.equal(appErrorStack(new AppLoadError('x.js', 'cannot import x.js: boom', cause)), cause.stack)
  const plain = new AppLoadError('x.js', 'x.js exports a number')
  t.equal(appErrorStack(plain), plain.stack)
  const bare = new Error('no stack')
  bare.stack = undefined
  t.equal(appErrorStack(bare), 'no stack')
})
