import { existsSync, readdirSync } from 'node:fs'
import * as nodeModule from 'node:module'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { compileCacheDirectory, compileCacheState, describeCompileCache, enableCompileCache, flushCompileCache, type CompileCacheApi } from '../lib/compile-cache.js'
import { cli, root, shortTmp, spawnTracked, waitForOutput } from './helpers/proc.js'

const STATUS = { FAILED: 0, ENABLED: 1, ALREADY_ENABLED: 2, DISABLED: 3 }

function fakeApi(result: { status: number; message?: string; directory?: string }): CompileCacheApi & { asked: (string | undefined)[]; flushes: number } {
  const api = {
    asked: [] as (string | undefined)[],
    flushes: 0,
    enableCompileCache: (directory?: string) => {
      api.asked.push(directory)
      return result
    },
    flushCompileCache: () => {
      api.flushes++
    },
    constants: { compileCacheStatus: STATUS },
  }
  return api
}

t.test('the directory: NODE_COMPILE_CACHE is left to Node, else CacheDirectory=, else Node chooses', async (t) => {
  t.equal(compileCacheDirectory({ NODE_COMPILE_CACHE: '/c', CACHE_DIRECTORY: '/var/cache/app' }), undefined)
  t.equal(compileCacheDirectory({ CACHE_DIRECTORY: '/var/cache/app:/var/cache/other' }), '/var/cache/app/node-compile-cache')
  t.equal(compileCacheDirectory({}), undefined)
  t.equal(compileCacheDirectory({ CACHE_DIRECTORY: '' }), undefined)
})

t.test('the log line', async (t) => {
  t.equal(describeCompileCache({ enabled: true, directory: '/var/cache/app/node-compile-cache' }), 'compile cache: /var/cache/app/node-compile-cache')
  t.equal(describeCompileCache({ enabled: false, reason: 'NODE_DISABLE_COMPILE_CACHE is set' }), 'no compile cache: NODE_DISABLE_COMPILE_CACHE is set')
})

t.test('enabling: every answer Node can give', async (t) => {
  t.teardown(() => void enableCompileCache({}, {})) // leave the module's state as a process without it
  const enabled = fakeApi({ status: STATUS.ENABLED, directory: '/var/cache/app/node-compile-cache' })
  t.same(enableCompileCache({ CACHE_DIRECTORY: '/var/cache/app' }, enabled), { enabled: true, directory: '/var/cache/app/node-compile-cache' })
  t.same(enabled.asked, ['/var/cache/app/node-compile-cache'])
  t.same(compileCacheState(), { enabled: true, directory: '/var/cache/app/node-compile-cache' })
  flushCompileCache(enabled)
  t.equal(enabled.flushes, 1, 'flushed once enabled')

  t.same(enableCompileCache({}, fakeApi({ status: STATUS.ALREADY_ENABLED, directory: '/tmp/c' })), { enabled: true, directory: '/tmp/c' })
  t.same(enableCompileCache({}, fakeApi({ status: STATUS.DISABLED })), { enabled: false, reason: 'NODE_DISABLE_COMPILE_CACHE is set' })
  t.same(enableCompileCache({}, fakeApi({ status: STATUS.FAILED, message: 'EACCES' })), { enabled: false, reason: 'EACCES' })
  t.same(enableCompileCache({}, fakeApi({ status: STATUS.FAILED })), { enabled: false, reason: 'it could not be enabled' })
  const coverage = fakeApi({ status: STATUS.ENABLED, directory: '/x' })
  t.match(enableCompileCache({ NODE_V8_COVERAGE: '/cov' }, coverage), { enabled: false, reason: /NODE_V8_COVERAGE/ })
  t.same(coverage.asked, [], 'not even asked for under coverage')
  t.match(enableCompileCache({}, {}), { enabled: false, reason: /Node v\d+.* has none/ })
  const unused = fakeApi({ status: STATUS.ENABLED, directory: '/x' })
  flushCompileCache(unused)
  t.equal(unused.flushes, 0, 'nothing to flush without a cache')
})

t.test('a real master and worker fill the CacheDirectory=', async (t) => {
  const tmp = shortTmp(t)
  const cacheDir = join(tmp, 'cache')
  const env: NodeJS.ProcessEnv = { ...process.env, CACHE_DIRECTORY: cacheDir }
  // A process measured for coverage goes without the cache: this one is not measured.
  delete env.NODE_V8_COVERAGE
  delete env.NODE_COMPILE_CACHE
  delete env.NODE_DISABLE_COMPILE_CACHE
  const child = spawnTracked(t, process.execPath, [cli, '-w', '1', '--log-level', 'debug', '-b', `unix:${join(tmp, 's.sock')}`, join(root, 'examples/frameworks/hello.mjs')], { env })
  await waitForOutput(child, /serving/)
  const hasCache = typeof (nodeModule as unknown as CompileCacheApi).enableCompileCache === 'function'
  const dir = join(cacheDir, 'node-compile-cache')
  if (hasCache) {
    t.match(child.output(), `compile cache: ${dir}`)
    // The worker writes its modules once it serves (the master at its exit).
    const files = (): string[] => (existsSync(dir) ? readdirSync(dir, { recursive: true, encoding: 'utf8' }) : [])
    for (let i = 0; i < 100 && files().length === 0; i++) await sleep(50)
    t.ok(files().length > 0, 'the cache directory has entries')
  } else {
    t.match(child.output(), /no compile cache: Node v\d+\S* has none/)
    t.notOk(existsSync(dir), 'no directory is made')
  }
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
})
