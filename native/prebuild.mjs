#!/usr/bin/env node
// Builds the Node-API prebuilds that `npm pack` ships (run by `prepack`):
//   node native/prebuild.mjs [OUTDIR]     (default: prebuilds/ in the package root)
// gcc and Debian's cross and musl toolchains compile native/*.c against the
// node-api-headers package, so nothing downloads Node's headers (see the
// README's design notes). Names follow node-gyp-build's matching:
// prebuilds/<platform>-<arch>/node.napi.<libc>.node.
import { spawnSync } from 'node:child_process'
import { mkdirSync, renameSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { onPath } from './on-path.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const out = process.argv[2] ?? join(root, 'prebuilds')
const headers = createRequire(import.meta.url)('node-api-headers').include_dir

// The compilers are Debian amd64 packages: gcc builds for the host itself.
const targets = [
  { dir: 'linux-x64', file: 'node.napi.glibc.node', cc: 'gcc', packages: ['gcc', 'libc6-dev'] },
  { dir: 'linux-x64', file: 'node.napi.musl.node', cc: 'musl-gcc', packages: ['musl-tools'] },
  {
    dir: 'linux-arm64',
    file: 'node.napi.glibc.node',
    cc: 'aarch64-linux-gnu-gcc',
    packages: ['gcc-aarch64-linux-gnu', 'libc6-dev-arm64-cross'],
  },
]
// The flags of binding.gyp, plus what node-gyp adds for a shared module; -s strips.
const flags = ['-std=gnu11', '-Wall', '-Wextra', '-Werror', '-O2', '-fvisibility=hidden', '-fPIC', '-shared', '-s']
const defines = ['-DNAPI_VERSION=8', '-D_GNU_SOURCE', '-DBUILDING_NODE_EXTENSION']
const sources = ['native/socket.c', 'native/binding.c'].map((f) => join(root, f))

function fail(message) {
  console.error(`prebuild: ${message}`)
  process.exit(1)
}

function run(command, args) {
  const r = spawnSync(command, args, { stdio: 'inherit' })
  if (r.error) fail(`${command}: ${r.error.message}`)
  return r.status === 0
}

if (process.platform !== 'linux' || process.arch !== 'x64')
  fail(`the toolchains used are Debian amd64 packages; this is ${process.platform}-${process.arch}`)

// A missing toolchain is installed when we are root (CI, containers), named otherwise.
const missing = targets.filter((t) => !onPath(t.cc))
if (missing.length > 0) {
  const packages = [...new Set(missing.flatMap((t) => t.packages))]
  const names = missing.map((t) => t.cc).join(', ')
  if (process.getuid?.() !== 0)
    fail(`${names} not found on PATH: install the Debian packages ${packages.join(' ')} (as root: apt-get install ${packages.join(' ')})`)
  console.error(`prebuild: ${names} not found on PATH; installing ${packages.join(' ')}`)
  const install = ['install', '-y', '-qq', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=300', ...packages]
  // An image whose package lists were never fetched needs one `apt-get update` first.
  if (!run('apt-get', install) && !(run('apt-get', ['update', '-qq']) && run('apt-get', install)))
    fail(`apt-get could not install ${packages.join(' ')}`)
}

for (const t of targets) {
  const dir = join(out, t.dir)
  mkdirSync(dir, { recursive: true })
  const target = join(dir, t.file)
  // Written beside and renamed: a failed build never leaves a half-written prebuild.
  const tmp = `${target}.tmp`
  if (!run(t.cc, [...flags, ...defines, '-I', headers, '-o', tmp, ...sources]))
    fail(`${t.cc} failed for ${t.dir}/${t.file}`)
  renameSync(tmp, target)
  console.log(`prebuild: ${t.dir}/${t.file} (${statSync(target).size} bytes)`)
}
