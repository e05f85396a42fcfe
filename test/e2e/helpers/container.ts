/**
 * The host side of an end-to-end scenario: the container that
 * systemd-container.sh booted (E2E_* in the environment), commands run inside
 * it, and the example app installed the way a user installs it.
 */
import { execFile } from 'node:child_process'
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { get, sleep, type GetOptions, type Reply } from '../../helpers/proc.js'

/** The project's checkout (dist/test/e2e/helpers -> the root). */
export const repo = fileURLToPath(new URL('../../../..', import.meta.url))
/** Where the checkout appears inside the container: the app's node_modules/sdserve (see run.sh). */
export const SDSERVE_IN_CONTAINER = '/srv/app/node_modules/sdserve'

export interface Container {
  /** Host pid of the container's systemd. */
  pid1: string
  /** The container's root file system, as the host sees it. */
  root: string
  /** A script that runs its arguments inside the container. */
  exec: string
  systemdVersion: number
}

/** The container this scenario runs against. */
export function container(): Container {
  const { E2E_PID1, E2E_ROOT, E2E_EXEC, E2E_SYSTEMD_VERSION } = process.env
  if (E2E_PID1 === undefined || E2E_ROOT === undefined || E2E_EXEC === undefined || E2E_SYSTEMD_VERSION === undefined) {
    throw new Error('an e2e scenario runs under test/e2e/systemd-container.sh (npm run test:e2e), which sets E2E_PID1, E2E_ROOT, E2E_EXEC')
  }
  return { pid1: E2E_PID1, root: E2E_ROOT, exec: E2E_EXEC, systemdVersion: Number(E2E_SYSTEMD_VERSION) }
}

export interface Result {
  code: number
  stdout: string
  stderr: string
}

/** Run a program; never rejects on a non-zero exit (check .code). */
function execute(file: string, args: string[], timeoutMs: number): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, stdout, stderr: err !== null && err.killed ? `${stderr}(killed after ${timeoutMs} ms)` : stderr })
    })
  })
}

/** Run argv inside the container; never rejects on a non-zero exit (check .code). */
export const run = (c: Container, argv: string[], timeoutMs = 60_000): Promise<Result> => execute(c.exec, argv, timeoutMs)

/** Run argv inside the container; rejects with its output when it fails. */
export async function must(c: Container, argv: string[], timeoutMs?: number): Promise<string> {
  const r = await run(c, argv, timeoutMs)
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited with ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`)
  return r.stdout
}

/** Run argv on the host inside the container's network namespace (its loopback). */
export const inNetns = (c: Container, argv: string[], timeoutMs = 30_000): Promise<Result> =>
  execute('nsenter', ['-t', c.pid1, '-n', '--', ...argv], timeoutMs)

/** `systemctl show -P PROPERTY UNIT`. */
export async function prop(c: Container, unit: string, property: string): Promise<string> {
  return (await must(c, ['systemctl', 'show', '-P', property, unit])).trim()
}

/** Poll until check() returns a value other than undefined; rejects after `tries` polls (100 ms apart). */
export async function until<T>(what: string, check: () => Promise<T | undefined>, tries = 150): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const value = await check()
    if (value !== undefined) return value
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** Wait until UNIT has ActiveState `state` (active, inactive, failed...). */
export async function untilState(c: Container, unit: string, state: string, tries?: number): Promise<void> {
  await until(`${unit} to be ${state}`, async () => ((await prop(c, unit, 'ActiveState')) === state ? true : undefined), tries)
}

/** A file in the container, as the host reaches it. */
export const inRoot = (c: Container, path: string): string => join(c.root, path)

/** Write a file into the container (its directories are made). */
export function writeInto(c: Container, path: string, text: string): void {
  mkdirSync(dirname(inRoot(c, path)), { recursive: true })
  writeFileSync(inRoot(c, path), text)
}

export function readFrom(c: Container, path: string): string {
  return readFileSync(inRoot(c, path), 'utf8')
}

export const example = (path: string): string => join(repo, 'examples', path)

export interface InstallOptions {
  /** Unit files to install as they are; default: the service variant this systemd supports, and the socket. */
  units?: Record<string, string>
  /** Drop-ins: `app.service.d/test.conf` -> text. */
  dropIns?: Record<string, string>
}

/**
 * Install the example app as a user would: /srv/app/app.mjs, sdserve in
 * /srv/app/node_modules (the checkout, bound there by run.sh) with npm's
 * .bin link, and the example units in /etc/systemd/system. On systemd 253
 * and later the service is the Type=notify-reload variant.
 */
export async function installApp(c: Container, options: InstallOptions = {}): Promise<void> {
  writeInto(c, '/srv/app/app.mjs', readFileSync(example('systemd/app.mjs'), 'utf8'))
  const bin = inRoot(c, '/srv/app/node_modules/.bin')
  mkdirSync(bin, { recursive: true })
  rmSync(join(bin, 'sdserve'), { force: true })
  symlinkSync('../sdserve/dist/lib/cli.js', join(bin, 'sdserve'))
  const units = options.units ?? {
    'app.socket': example('systemd/app.socket'),
    'app.service': example(c.systemdVersion >= 253 ? 'systemd/notify-reload/app.service' : 'systemd/app.service'),
  }
  for (const [name, file] of Object.entries(units)) cpSync(file, inRoot(c, `/etc/systemd/system/${name}`))
  for (const [name, text] of Object.entries(options.dropIns ?? {})) writeInto(c, `/etc/systemd/system/${name}`, text)
  await must(c, ['systemctl', 'daemon-reload'])
}

/** The app's UNIX socket, from the host. */
export const appSocket = (c: Container): string => inRoot(c, '/run/app.sock')

/** GET over the app's UNIX socket, from the host. */
export function getApp(c: Container, path = '/', options: Omit<GetOptions, 'socketPath' | 'path'> = {}): Promise<Reply> {
  return get({ socketPath: appSocket(c), path, ...options })
}

/** The pid in an example app's answer ("... from worker 123..."). */
export function workerPid(body: string): number {
  const m = /worker (\d+)/.exec(body)
  if (m === null) throw new Error(`not an answer from a worker: ${JSON.stringify(body)}`)
  return Number(m[1])
}

/** The parent pid of a process in the container (as the container's /proc shows it). */
export async function parentPid(c: Container, pid: number): Promise<number> {
  return Number((await must(c, ['ps', '-o', 'ppid=', '-p', String(pid)])).trim())
}

export interface JournalEntry {
  MESSAGE: string
  PRIORITY: string
  _PID?: string
  [field: string]: unknown
}

/** The journal of a unit since boot, as entries (journalctl -o json). */
export async function journal(c: Container, unit: string): Promise<JournalEntry[]> {
  await run(c, ['journalctl', '--sync'])
  const out = await must(c, ['journalctl', '-b', '-u', unit, '-o', 'json', '--no-pager'])
  return out
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const entry = JSON.parse(line) as JournalEntry
      // journald stores a message with bytes it cannot show as text as an array of bytes.
      if (Array.isArray(entry.MESSAGE)) entry.MESSAGE = Buffer.from(entry.MESSAGE as number[]).toString('utf8')
      return entry
    })
}
