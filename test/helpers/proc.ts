/** Helpers for process-level tests: every child is killed at teardown, every wait is bounded. */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { Agent, request } from 'node:http'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Repository root (tests run from dist/test/…). */
export const root = fileURLToPath(new URL('../../..', import.meta.url))
/** A compiled fixture: dist/test/fixtures/NAME.js */
export const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url))
/** The compiled CLI. */
export const cli = fileURLToPath(new URL('../../lib/cli.js', import.meta.url))

interface Teardown {
  teardown(fn: () => void | Promise<void>): void
}

export interface Tracked extends ChildProcess {
  /** Everything written to stdout and stderr so far. */
  output(): string
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>
}

/**
 * util-linux's setpriv, which sets the parent-death signal and then execs the
 * command (the same pid): a test process that tap kills on its timeout runs
 * no teardown, and its children would be left running.
 */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p))

/**
 * Spawn a process that the test's teardown stops (SIGTERM, then SIGKILL) if it
 * is still running, and that gets SIGTERM if the test process dies first.
 */
export function spawnTracked(t: Teardown, cmd: string, args: string[], options: SpawnOptions = {}): Tracked {
  const [file, argv] = SETPRIV === undefined ? [cmd, args] : [SETPRIV, ['--pdeathsig', 'TERM', '--', cmd, ...args]]
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...options }) as Tracked
  let out = ''
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()))
  child.output = () => out
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'))
  })
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    // SIGTERM first (a process that exits normally writes its coverage), SIGKILL if it lingers.
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
    await child.exited
    clearTimeout(timer)
  })
  return child
}

/** Wait until the process's output matches re; rejects on exit or after timeoutMs. */
export function waitForOutput(child: Tracked, re: RegExp, timeoutMs = 15000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const m = re.exec(child.output())
      if (m === null) return false
      cleanup()
      resolve(m)
      return true
    }
    const onExit = (): void => {
      setImmediate(() => {
        if (!check()) {
          cleanup()
          reject(new Error(`process exited before printing ${re}; output:\n${child.output()}`))
        }
      })
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`timed out waiting for ${re}; output:\n${child.output()}`))
    }, timeoutMs)
    const cleanup = (): void => {
      clearTimeout(timer)
      child.stdout?.off('data', check)
      child.stderr?.off('data', check)
      child.off('exit', onExit)
    }
    if (check()) return
    child.stdout?.on('data', check)
    child.stderr?.on('data', check)
    child.once('exit', onExit)
  })
}

export interface Reply {
  status: number
  body: string
  headers: Record<string, string | string[] | undefined>
}

export interface GetOptions {
  port?: number
  host?: string
  socketPath?: string
  path?: string
  headers?: Record<string, string>
  /** Close the connection after the response (default true). */
  close?: boolean
  /** Reuse connections through this agent (keep-alive clients); default: a new connection per request. */
  agent?: Agent
  timeoutMs?: number
}

/** One HTTP GET, over TCP or a UNIX socket. */
export function get(options: GetOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: options.host ?? '127.0.0.1',
        port: options.port,
        socketPath: options.socketPath,
        path: options.path ?? '/',
        agent: options.agent ?? false,
        headers: { ...(options.close === false || options.agent !== undefined ? {} : { connection: 'close' }), ...options.headers },
        timeout: options.timeoutMs ?? 10000,
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }))
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end()
  })
}

/** Retry get() until it answers (a server still starting), at most `tries` times. */
export async function getWhenUp(options: GetOptions, tries = 100, delayMs = 50): Promise<Reply> {
  let last: unknown
  for (let i = 0; i < tries; i++) {
    try {
      return await get(options)
    } catch (err) {
      last = err
      await new Promise((r) => setTimeout(r, delayMs))
    }
  }
  throw last
}

/** A free TCP port on 127.0.0.1 (bound and released). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, host, () => {
      const a = s.address()
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0))
    })
  })
}

/**
 * A fresh directory under the system temp dir, removed at teardown: short
 * enough for UNIX socket paths (sun_path holds 108 bytes; tap's testdir is deeper).
 */
export function shortTmp(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'sds-'))
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true })
  })
  return dir
}

/**
 * Run cmd under the real systemd-socket-activate with one -l per listen
 * address. It passes children only HOME, PATH, TERM and LISTEN_*: forward
 * NODE_* and tap's own variables so that coverage of the child is recorded.
 */
export async function socketActivate(
  t: Teardown,
  listens: string[],
  fdnames: string[] | undefined,
  cmd: string[],
  extraEnv: Record<string, string> = {},
): Promise<Tracked> {
  const args: string[] = []
  for (const l of listens) args.push('-l', l)
  if (fdnames !== undefined) args.push(`--fdname=${fdnames.join(':')}`)
  for (const name of Object.keys(process.env))
    if (name.startsWith('NODE_') || name.startsWith('_TAPJS')) args.push('-E', name)
  for (const [k, v] of Object.entries(extraEnv)) args.push('-E', `${k}=${v}`)
  const sa = spawnTracked(t, 'systemd-socket-activate', [...args, ...cmd])
  await waitForOutput(sa, new RegExp(`as ${2 + listens.length}\\.`))
  return sa
}

export interface LoadResult {
  ok: number
  failed: number
  errors: string[]
  bodies: string[]
}

/**
 * A bounded concurrent client: `concurrency` loops of Connection: close GETs
 * until `until()` says stop (checked between requests) or `maxRequests` have
 * been made. Every failure (error or non-200) is counted.
 */
export async function load(
  options: GetOptions & { concurrency?: number; maxRequests?: number; until: () => boolean },
): Promise<LoadResult> {
  const result: LoadResult = { ok: 0, failed: 0, errors: [], bodies: [] }
  const max = options.maxRequests ?? 5000
  let started = 0
  const loop = async (): Promise<void> => {
    while (!options.until() && started < max) {
      started++
      try {
        const r = await get(options)
        if (r.status === 200) {
          result.ok++
          result.bodies.push(r.body)
        } else {
          result.failed++
          result.errors.push(`status ${r.status}`)
        }
      } catch (err) {
        result.failed++
        result.errors.push((err as Error).message)
      }
    }
  }
  await Promise.all(Array.from({ length: options.concurrency ?? 8 }, loop))
  return result
}

/**
 * Load from two kinds of clients until stop(): `close` loops that open a new
 * connection per request and `keepAlive` loops that reuse theirs. stop()
 * resolves with the results of both as one.
 */
export function startMixedLoad(
  target: Pick<GetOptions, 'port' | 'host' | 'socketPath' | 'path' | 'timeoutMs'>,
  clients: { close: number; keepAlive: number },
  maxRequests = 50_000,
): { stop: () => Promise<LoadResult> } {
  let done = false
  const agent = new Agent({ keepAlive: true, maxSockets: Math.max(1, clients.keepAlive) })
  const until = (): boolean => done
  const runs = Promise.all([
    clients.close > 0 ? load({ ...target, concurrency: clients.close, maxRequests, until }) : undefined,
    clients.keepAlive > 0 ? load({ ...target, agent, concurrency: clients.keepAlive, maxRequests, until }) : undefined,
  ])
  return {
    stop: async () => {
      done = true
      const results = (await runs).filter((r) => r !== undefined)
      agent.destroy()
      return combineLoads(results)
    },
  }
}

/** Several loads' results as one. */
export function combineLoads(results: LoadResult[]): LoadResult {
  return {
    ok: results.reduce((n, r) => n + r.ok, 0),
    failed: results.reduce((n, r) => n + r.failed, 0),
    errors: results.flatMap((r) => r.errors),
    bodies: results.flatMap((r) => r.bodies),
  }
}

/** A load's outcome for a test message: how many were answered, and the first errors. */
export function describeLoad(r: LoadResult): string {
  return `${r.ok} answered${r.errors.length > 0 ? `: ${r.errors.slice(0, 5).join('; ')}` : ''}`
}

/** Resolve after ms. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Poll cond every 20 ms until it is true; rejects after about timeoutMs (a bounded count of polls). */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15000): Promise<void> {
  for (let i = 0; i * 20 < timeoutMs; i++) {
    if (await cond()) return
    await sleep(20)
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** Whether a process exists (signal 0). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
