/**
 * Helpers for the process-level tests of the multi-worker core (test/master/process-*.ts):
 * start the sdserve command on the master-app fixture and read what it logs.
 */
import type { Test } from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cli, freePort, root, shortTmp, spawnTracked, waitFor, type Tracked } from './proc.js'

export const app = join(root, 'test/fixtures/master-app.mjs')

export interface Server {
  child: Tracked
  port: number
  dir: string
  versionFile: string
  setVersion(v: string): void
  /** Log lines matching re so far. */
  count(re: RegExp): number
}

export async function start(
  t: Test,
  args: string[] = [],
  options: { version?: string; env?: Record<string, string>; cleanEnv?: NodeJS.ProcessEnv } = {},
): Promise<Server> {
  const port = await freePort()
  const dir = shortTmp(t)
  chmodSync(dir, 0o755) // workers may run as another user (--user)
  const versionFile = join(dir, 'version')
  writeFileSync(versionFile, options.version ?? 'v1')
  const child = spawnTracked(t, process.execPath, [cli, '-b', `127.0.0.1:${port}`, '-w', '2', '--graceful-timeout', '10', ...args, app], {
    env: { ...(options.cleanEnv ?? process.env), APP_VERSION_FILE: versionFile, ...options.env },
  })
  const server: Server = {
    child,
    port,
    dir,
    versionFile,
    setVersion: (v) => writeFileSync(versionFile, v),
    count: (re) => child.output().match(new RegExp(re.source, 'g'))?.length ?? 0,
  }
  return server
}

export async function ready(s: Server, workers = 2): Promise<void> {
  await waitFor(() => s.count(/\] worker \d+ \(pid \d+, generation 1\) serving/) >= workers, `${workers} workers serving`)
}

export function parse(body: string): { version: string; worker: number; pid: number } {
  const m = /^(\S+) worker=(\d+) pid=(\d+)/.exec(body)
  if (m === null) throw new Error(`unexpected body ${body}`)
  return { version: m[1]!, worker: Number(m[2]), pid: Number(m[3]) }
}

/** -E flags that carry tap's coverage variables through systemd-socket-activate. */
export function coverageFlags(): string[] {
  return Object.keys(process.env)
    .filter((k) => k.startsWith('NODE_') || k.startsWith('_TAPJS'))
    .flatMap((k) => ['-E', k])
}
