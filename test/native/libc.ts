/**
 * native/libc.cjs: the libc whose prebuild this machine loads, as
 * node-gyp-build decides it, for install.mjs's and NativeLoadError's messages.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { root, shortTmp } from '../helpers/proc.js'

// CommonJS beside the C sources, as lib/native.ts loads it.
const { libc } = createRequire(import.meta.url)(join(root, 'native/libc.cjs')) as { libc: (env?: NodeJS.ProcessEnv) => string }
const detected = existsSync('/etc/alpine-release') ? 'musl' : 'glibc'

t.test('LIBC when set, else musl on Alpine, else glibc', async (t) => {
  t.equal(libc({ LIBC: 'musl' }), 'musl', 'LIBC=musl')
  t.equal(libc({ LIBC: 'glibc' }), 'glibc', 'LIBC=glibc')
  t.equal(libc({}), detected, `unset: ${detected} here`)
  t.equal(libc({ LIBC: '' }), detected, 'set but empty: as unset')
  t.equal(libc(), process.env.LIBC || detected, 'process.env by default')
})

t.test("the same answer as node-gyp-build's own", async (t) => {
  // node-gyp-build names the libc it matched against when no prebuild fits (none is for ia32).
  const dir = shortTmp(t)
  const script = `try { require('node-gyp-build').resolve(${JSON.stringify(dir)}) } catch (err) { process.stdout.write(err.message) }`
  for (const env of [{ LIBC: 'musl' }, { LIBC: 'glibc' }, { LIBC: '' }, {}] as NodeJS.ProcessEnv[]) {
    const base: NodeJS.ProcessEnv = { ...process.env, PREBUILDS_ONLY: '1', npm_config_arch: 'ia32' }
    delete base.LIBC
    const p = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8', timeout: 30_000, env: { ...base, ...env } })
    t.match(p.stdout, new RegExp(` libc=${libc(env)} `), `${JSON.stringify(env)}: libc=${libc(env)}`)
  }
})
