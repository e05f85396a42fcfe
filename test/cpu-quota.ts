/** cpuQuota() over cgroup trees written by the test (v2, v1, hybrid), and the default worker count. */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { cli, freePort, get, root, spawnTracked, waitForOutput } from './helpers/proc.js'
import { cpuQuota, perCoreText, workersPerCore } from '../lib/cpu-quota.js'

t.test('cgroup v2: the smallest cpu.max on the way to the root; "max" is no limit', async (t) => {
  const root = t.testdir({
    proc: { self: { cgroup: '0::/system.slice/app.service\n' } },
    sys: {
      fs: {
        cgroup: {
          'cpu.max': 'max 100000\n',
          'system.slice': {
            'cpu.max': '300000 100000\n',
            'app.service': { 'cpu.max': '150000 100000\n' },
          },
        },
      },
    },
  })
  t.match(cpuQuota(root), { cores: 1.5, file: /system\.slice\/app\.service\/cpu\.max$/ })
  const loose = t.testdir({
    proc: { self: { cgroup: '0::/a\n' } },
    sys: { fs: { cgroup: { 'cpu.max': '50000 100000\n', a: { 'cpu.max': 'max 100000\n' } } } },
  })
  t.match(cpuQuota(loose), { cores: 0.5 }, 'a parent limits its children')
  const none = t.testdir({ proc: { self: { cgroup: '0::/\n' } }, sys: { fs: { cgroup: { 'cpu.max': 'max 100000\n' } } } })
  t.equal(cpuQuota(none), undefined)
  const broken = t.testdir({ proc: { self: { cgroup: '0::/\n' } }, sys: { fs: { cgroup: { 'cpu.max': '100 0\n' } } } })
  t.equal(cpuQuota(broken), undefined, 'a period of 0 is no quota')
})

t.test('cgroup v1 and hybrid: cpu.cfs_quota_us / cpu.cfs_period_us; -1 is no limit', async (t) => {
  const root = t.testdir({
    proc: { self: { cgroup: '12:memory:/x\n4:cpu,cpuacct:/docker/abc\n0::/\nnot a line\n' } },
    sys: {
      fs: {
        cgroup: {
          'cpu,cpuacct': {
            'cpu.cfs_quota_us': '-1\n',
            'cpu.cfs_period_us': '100000\n',
            docker: { abc: { 'cpu.cfs_quota_us': '200000\n', 'cpu.cfs_period_us': '100000\n' } },
          },
          unified: { 'cpu.max': 'max 100000\n' },
        },
      },
    },
  })
  t.match(cpuQuota(root), { cores: 2, file: /docker\/abc\/cpu\.cfs_quota_us$/ })
  t.equal(cpuQuota(t.testdir({})), undefined, 'no /proc/self/cgroup: no quota')
})

t.test('the default worker count: one per CPU within the quota, rounded down, at least one', async (t) => {
  t.equal(workersPerCore(1024, undefined, 8), 8)
  t.equal(workersPerCore(1024, { cores: 2, file: 'f' }, 64), 2, 'CPUQuota=200% on 64 cores: 2 workers')
  t.equal(workersPerCore(1024, { cores: 1.5, file: 'f' }, 4), 1)
  t.equal(workersPerCore(1024, { cores: 0.2, file: 'f' }, 4), 1)
  t.equal(workersPerCore(1024, { cores: 16, file: 'f' }, 4), 4, 'a quota above the CPUs changes nothing')
  t.equal(workersPerCore(2, undefined, 8), 2)
  t.equal(workersPerCore(1024), Math.min(availableParallelism(), workersPerCore(1024, cpuQuota())), 'the defaults read this machine')
})

t.test('--help names the quota when there is one', async (t) => {
  t.equal(perCoreText(4, undefined), '4, one per CPU core')
  t.equal(perCoreText(2, { cores: 2.5, file: 'f' }), '2, one per CPU core within the CPU quota (2.5 cores)')
  t.equal(perCoreText(1, { cores: 1, file: 'f' }), '1, one per CPU core within the CPU quota (1 core)')
})

/**
 * A cgroup of its own with a CPU quota of one core, made in the kernel's
 * cgroup v2 tree when its cpu controller is enabled there, else in cgroup
 * v1's cpu hierarchy; undefined (with why) when neither can be made here.
 */
function quotaCgroup(name: string): { dir: string; cleanup: () => void } | string {
  if (process.getuid?.() !== 0) return 'needs root to make a cgroup'
  const v2 = '/sys/fs/cgroup'
  const v2Controllers = existsSync(join(v2, 'cgroup.subtree_control')) ? readFileSync(join(v2, 'cgroup.subtree_control'), 'utf8') : ''
  const candidates: Array<[string, (dir: string) => void]> = [
    ...(v2Controllers.split(/\s+/).includes('cpu') ? [[v2, (dir: string) => writeFileSync(join(dir, 'cpu.max'), '100000 100000')] as [string, (dir: string) => void]] : []),
    ['/sys/fs/cgroup/cpu', (dir) => writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(Number(readFileSync(join(dir, 'cpu.cfs_period_us'), 'utf8'))))],
  ]
  for (const [base, limit] of candidates) {
    const dir = join(base, name)
    try {
      mkdirSync(dir)
      limit(dir)
      return { dir, cleanup: () => rmdirSync(dir) }
    } catch {
      if (existsSync(dir)) rmdirSync(dir)
    }
  }
  return 'no cgroup cpu controller can be written here (cgroup v2 without cpu in cgroup.subtree_control, and no cgroup v1 cpu hierarchy)'
}

const cgroup = quotaCgroup(`sdserve-test-${process.pid}`)
t.test('sdserve in a cgroup with a one-core quota: one worker by default, and --help says why', { skip: typeof cgroup === 'string' ? cgroup : availableParallelism() < 2 && 'needs two CPUs or more' }, async (t) => {
  const { dir, cleanup } = cgroup as Exclude<typeof cgroup, string>
  const port = await freePort()
  // The shell joins the cgroup, then becomes sdserve: the master and its workers run under the quota.
  const inCgroup = (args: string[]): string[] => ['-c', `echo $$ > ${join(dir, 'cgroup.procs')} && exec "$0" "$@"`, process.execPath, cli, ...args]
  const child = spawnTracked(t, '/bin/sh', inCgroup(['-b', `127.0.0.1:${port}`, join(root, 'examples/frameworks/hello.mjs')]))
  t.teardown(async () => {
    child.kill('SIGKILL')
    await child.exited
    cleanup()
  })
  await waitForOutput(child, /worker 1 \(pid \d+, generation 1\) serving/)
  t.equal((await get({ port })).status, 200)
  child.kill('SIGTERM')
  t.equal(await child.exited, 0)
  t.notMatch(child.output(), /worker 2/, `one worker, not ${availableParallelism()}`)
  const help = spawnSync('/bin/sh', inCgroup(['--help']), { encoding: 'utf8' })
  t.match(help.stdout, '(default: 1, one per CPU core within the CPU quota (1 core))')
})
