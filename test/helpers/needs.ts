/**
 * The real peers tests talk to (nginx, curl, python3, ...) come from Debian
 * packages. `npm test` must pass on a fresh Debian machine with no other step,
 * so as root a missing package is installed here; without root the tests that
 * need it are skipped, and the skip names the package to install.
 */
import { spawnSync } from 'node:child_process'
import { accessSync, constants, statSync } from 'node:fs'
import { delimiter, join } from 'node:path'

/** The Debian package that provides each command the tests run. */
export const debianPackages = {
  nginx: 'nginx',
  curl: 'curl',
  'systemd-socket-activate': 'systemd',
  python3: 'python3',
  ss: 'iproute2',
  wrk: 'wrk',
  haproxy: 'haproxy',
  prometheus: 'prometheus',
  promtool: 'prometheus',
} as const
export type Command = keyof typeof debianPackages

export interface NeedsOptions {
  /** Default: $PATH. */
  path?: string
  /** Default: whether this process runs as root. */
  root?: boolean
  /** Installs a package; default: apt-get. Throws when it cannot. */
  install?: (pkg: string) => void
}

/** The full path of cmd, an executable file in one of path's directories, or undefined. */
export function which(cmd: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue
    const file = join(dir, cmd)
    try {
      accessSync(file, constants.X_OK)
      if (statSync(file).isFile()) return file
    } catch {
      // not in this directory
    }
  }
  return undefined
}

/** Whether cmd is an executable file in one of path's directories. */
export function onPath(cmd: string, path: string): boolean {
  return which(cmd, path) !== undefined
}

function aptGet(args: string[]): { ok: boolean; output: string } {
  const r = spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=300', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    // Bounded: a lock held by the other test file (tap runs two) plus a download.
    timeout: 600_000,
  })
  return { ok: r.status === 0, output: `${r.error?.message ?? ''}${r.stdout ?? ''}${r.stderr ?? ''}` }
}

/** apt-get install; on a fresh machine the package lists may be empty, so update once and retry. */
export function aptInstall(pkg: string): void {
  const install = ['install', '-y', '--no-install-recommends', pkg]
  if (aptGet(install).ok) return
  const update = aptGet(['update'])
  const retry = aptGet(install)
  if (!retry.ok) throw new Error(`apt-get install ${pkg} failed:\n${update.output}\n${retry.output}`.trim())
}

/**
 * Make sure every command exists. Returns tap test options: `{}` when they all
 * do (installing what is missing as root), else `{ skip: 'needs nginx (Debian
 * package nginx)' }`. As root a failed install throws: a machine that should
 * run every test must not quietly skip some.
 */
export function needs(commands: Command[], options: NeedsOptions = {}): { skip?: string } {
  const path = options.path ?? process.env.PATH ?? ''
  const root = options.root ?? process.getuid?.() === 0
  const install = options.install ?? aptInstall
  const missing: string[] = []
  for (const cmd of commands) {
    const why = check(cmd, path, root, install)
    if (why !== undefined) missing.push(why)
  }
  return missing.length > 0 ? { skip: `needs ${missing.join(', ')}` } : {}
}

/** undefined when cmd is there (now), else what is missing, for the skip message. */
function check(cmd: Command, path: string, root: boolean, install: (pkg: string) => void): string | undefined {
  if (onPath(cmd, path)) return undefined
  const pkg = debianPackages[cmd]
  const what = `${cmd} (Debian package ${pkg})`
  if (!root) return what
  try {
    install(pkg)
  } catch (err) {
    // The other test file tap runs in parallel may have installed it meanwhile.
    if (!onPath(cmd, path)) throw err
  }
  if (!onPath(cmd, path)) throw new Error(`installed the Debian package ${pkg}, but ${cmd} is still not in PATH=${path}`)
  return undefined
}
