#!/usr/bin/env node
// sdserve's install script. A prebuilt addon for this platform (prebuilds/) or
// an earlier build (build/) is used as it is. Otherwise node-gyp-build compiles
// it, once this has checked that what node-gyp needs is on PATH: a machine with
// no compiler gets one message naming what is missing, not a wall of gyp ERR!.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { libc } from './libc.cjs'
import { onPath } from './on-path.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const require = createRequire(import.meta.url)

let reason = 'a build from source was asked for'
if (process.env.npm_config_build_from_source !== 'true') {
  try {
    require('node-gyp-build')(root)
    process.exit(0)
  } catch (err) {
    reason = String(err.message).split('\n')[0]
  }
}

// What node-gyp runs: python for gyp, make, $CC for the C files and $CXX to link them.
const firstWord = (s) => s.trim().split(/\s+/)[0]
const python = process.env.npm_config_python ?? process.env.PYTHON
const needs = [
  ['python3', python !== undefined ? [python] : ['python3', 'python']],
  ['make', ['make']],
  [`a C compiler (${firstWord(process.env.CC ?? 'cc')})`, [firstWord(process.env.CC ?? 'cc')]],
  [`a C++ compiler to link (${firstWord(process.env.CXX ?? 'g++')})`, [firstWord(process.env.CXX ?? 'g++')]],
]
const missing = needs.filter(([, commands]) => !commands.some((command) => onPath(command))).map(([what]) => what)
if (missing.length > 0) {
  // The platform, arch and libc node-gyp-build matched prebuilds/ against.
  const arch = process.env.npm_config_arch ?? process.arch
  console.error(
    `sdserve: no prebuilt native addon loads on ${process.platform}-${arch} (${libc()}): ${reason}\n` +
      `Building it from source needs what is not on PATH: ${missing.join(', ')}. ` +
      'Install them (Debian, Ubuntu: apt-get install python3 make gcc g++; Alpine: apk add python3 make gcc g++ musl-dev) ' +
      'and install sdserve again. Prebuilt addons ship for linux-x64 (glibc and musl) and linux-arm64 (glibc).',
  )
  process.exit(1)
}

const build = spawnSync(process.execPath, [require.resolve('node-gyp-build/bin.js')], { cwd: root, stdio: 'inherit' })
process.exit(build.status ?? 1)
