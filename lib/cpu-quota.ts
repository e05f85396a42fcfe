/**
 * The CPU quota of the cgroup this process runs in (systemd's CPUQuota=, a
 * container's --cpus, a Kubernetes CPU limit), in cores. The default worker
 * count needs it: os.availableParallelism() counts the CPUs the process may
 * run on (its affinity), not how much of them it may use, so a unit with
 * CPUQuota=200% on a 64-core host would otherwise get 64 workers, each
 * throttled.
 *
 * cgroup v2: cpu.max ("QUOTA PERIOD", or "max PERIOD") in the process's
 * cgroup and each of its ancestors; the smallest quota wins. cgroup v1:
 * cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us, the same way.
 */
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join, posix } from 'node:path'

export interface CpuQuota {
  /** Cores' worth of CPU time per period: 1.5 for CPUQuota=150%. */
  cores: number
  /** The file that set it, for --help and the logs. */
  file: string
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim()
  } catch {
    return undefined // no such controller or file here: no limit from it
  }
}

/** The cgroup directories of path and its ancestors, innermost first. */
function lineage(mount: string, path: string): string[] {
  let p = posix.normalize(path)
  const dirs = [join(mount, p)]
  while (p !== '/') dirs.push(join(mount, (p = posix.dirname(p))))
  return dirs
}

function smallest(quotas: Array<CpuQuota | undefined>): CpuQuota | undefined {
  let best: CpuQuota | undefined
  for (const q of quotas) if (q !== undefined && (best === undefined || q.cores < best.cores)) best = q
  return best
}

function v2(dir: string): CpuQuota | undefined {
  const file = join(dir, 'cpu.max')
  const m = /^(\d+) (\d+)$/.exec(read(file) ?? '')
  return m === null || Number(m[2]) === 0 ? undefined : { cores: Number(m[1]) / Number(m[2]), file }
}

function v1(dir: string): CpuQuota | undefined {
  const file = join(dir, 'cpu.cfs_quota_us')
  const quota = Number(read(file))
  const period = Number(read(join(dir, 'cpu.cfs_period_us')))
  return quota > 0 && period > 0 ? { cores: quota / period, file } : undefined
}

/** The quota that applies to this process, or undefined when there is none. root: where /proc and /sys are (tests). */
export function cpuQuota(root = '/'): CpuQuota | undefined {
  const found: Array<CpuQuota | undefined> = []
  for (const line of (read(join(root, 'proc/self/cgroup')) ?? '').split('\n')) {
    const m = /^(\d+):([^:]*):(\/.*)$/.exec(line)
    if (m === null) continue
    const [, id, controllers, path] = m as unknown as [string, string, string, string]
    if (id === '0' && controllers === '') {
      for (const mount of ['sys/fs/cgroup', 'sys/fs/cgroup/unified'])
        found.push(smallest(lineage(join(root, mount), path).map(v2)))
    } else if (controllers.split(',').includes('cpu')) {
      // Where the hierarchy is mounted: named after its controllers, or cpu (a link to it on most systems).
      for (const mount of new Set([`sys/fs/cgroup/${controllers}`, 'sys/fs/cgroup/cpu']))
        found.push(smallest(lineage(join(root, mount), path).map(v1)))
    }
  }
  return smallest(found)
}

/**
 * One worker per CPU the process may use, within its CPU quota (rounded
 * down, at least one: a worker that gets a fraction of a core is throttled
 * rather than slowed evenly), and at most max.
 */
export function workersPerCore(max: number, quota: CpuQuota | undefined = cpuQuota(), cpus = availableParallelism()): number {
  const usable = quota === undefined ? cpus : Math.min(cpus, Math.floor(quota.cores))
  return Math.min(Math.max(usable, 1), max)
}

/** The default worker count as --help shows it. */
export function perCoreText(workers: number, quota: CpuQuota | undefined): string {
  if (quota === undefined) return `${workers}, one per CPU core`
  return `${workers}, one per CPU core within the CPU quota (${quota.cores} core${quota.cores === 1 ? '' : 's'})`
}
