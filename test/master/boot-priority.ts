import t from 'tap'
import { BootPriority, hasSysNice, niceLimit, whyNotRaise, NO_PRIORITY, SYSTEM_PRIORITY, type PrioritySystem } from '../../lib/master/boot-priority.js'
import { Logger } from '../../lib/logger.js'
import { cli, get, root, shortTmp, spawnTracked, freePort, waitForOutput } from '../helpers/proc.js'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = []
  return { log: new Logger({ level: 'debug', write: (s: string) => lines.push(s) }), lines }
}

function fakeSystem(base: number, mayRaise: boolean, fail?: (pid: number) => string | undefined): PrioritySystem & { set: [number, number][] } {
  const sys = {
    set: [] as [number, number][],
    threads: (pid: number) => (pid === 0 ? [] : [pid]),
    getPriority: () => base,
    setPriority: (pid: number, nice: number) => {
      const code = fail?.(pid)
      if (code !== undefined) throw Object.assign(new Error(`uv_os_setpriority returned ${code}`), { info: { code } })
      sys.set.push([pid, nice])
    },
    whyNotRaiseTo: () => (mayRaise ? undefined : 'uid 1000, RLIMIT_NICE 0 (nice 19 at best), no CAP_SYS_NICE'),
  }
  return sys
}

t.test('/proc parsing: RLIMIT_NICE and CAP_SYS_NICE', async (t) => {
  t.equal(niceLimit('Max nice priority         0                    0                    \n'), 0)
  t.equal(niceLimit('Max open files 1024 4096 files\nMax nice priority         20                   20\n'), 20)
  t.equal(niceLimit('Max nice priority         unlimited            unlimited\n'), 40)
  t.equal(niceLimit(''), 0)
  t.equal(hasSysNice('Name:\tnode\nCapEff:\t000001ffffffffff\n'), true)
  t.equal(hasSysNice('CapEff:\t0000000000800000\n'), true, 'bit 23 alone')
  t.equal(hasSysNice('CapEff:\t0000000000000000\n'), false)
  t.equal(hasSysNice(''), false)
})

t.test('who may come back up: root, RLIMIT_NICE, CAP_SYS_NICE', async (t) => {
  const limits = (n: number): string => `Max nice priority         ${n}                    ${n}\n`
  const caps = (hex: string): string => `CapEff:\t${hex}\n`
  t.equal(whyNotRaise(0, 0, limits(0), caps('0')), undefined, 'root')
  t.equal(whyNotRaise(0, 1000, limits(20), caps('0')), undefined, 'LimitNICE=+0 allows nice 0')
  t.equal(whyNotRaise(0, 1000, limits(19), caps('0')), 'uid 1000, RLIMIT_NICE 19 (nice 1 at best), no CAP_SYS_NICE', 'but not 19')
  t.equal(whyNotRaise(5, 1000, limits(15), caps('0')), undefined, 'a master at nice 5 needs 15')
  t.equal(whyNotRaise(0, 1000, limits(0), caps('800000')), undefined, 'CAP_SYS_NICE')
  t.equal(whyNotRaise(0, undefined, limits(0), caps('0')), 'uid ?, RLIMIT_NICE 0 (nice 19 at best), no CAP_SYS_NICE', 'RLIMIT_NICE 0 is as 1')
  // This process, as it is: root in the tests, which may always.
  t.same(SYSTEM_PRIORITY.threads(process.pid).includes(process.pid), true, 'a process lists its main thread')
  t.same(SYSTEM_PRIORITY.threads(2 ** 22 + 1), [], 'one that is gone has none')
  t.equal(SYSTEM_PRIORITY.whyNotRaiseTo(0), whyNotRaise(0, process.geteuid?.(), readFileSync('/proc/self/limits', 'utf8'), readFileSync('/proc/self/status', 'utf8')))
})

t.test('a worker booting while others serve is lowered, then raised back when it listens', async (t) => {
  const { log } = capture()
  const sys = fakeSystem(0, true)
  const p = new BootPriority(log, sys)
  p.booting(101, false, 10) // the first generation
  p.booting(102, true, 10)
  p.booting(103, true, 0) // --boot-nice 0
  p.booting(0, true, 10) // spawn failed: no pid
  t.same(sys.set, [[102, 10]])
  p.booted(101)
  p.booted(102)
  p.booted(102) // once only
  t.same(sys.set, [[102, 10], [102, 0]])
})

t.test('from a niced master: relative to its nice, never past 19', async (t) => {
  const sys = fakeSystem(15, true)
  const p = new BootPriority(capture().log, sys)
  p.booting(7, true, 10)
  p.booted(7)
  t.same(sys.set, [[7, 19], [7, 15]])
  const top = fakeSystem(19, true)
  new BootPriority(capture().log, top).booting(8, true, 10)
  t.same(top.set, [], 'a master at 19 has no lower priority to give')
})

t.test('every thread of the worker; one that is gone meanwhile is skipped; a worker with none left is not lowered', async (t) => {
  const sys = fakeSystem(0, true, (tid) => (tid === 12 ? 'ESRCH' : undefined))
  sys.threads = (pid) => (pid === 10 ? [10, 11, 12, 13] : [])
  const p = new BootPriority(capture().log, sys)
  p.booting(10, true, 10)
  p.booting(20, true, 10) // gone before it was lowered
  p.booted(10)
  p.booted(20)
  t.same(sys.set, [
    [10, 10],
    [11, 10],
    [13, 10],
    [10, 0],
    [11, 0],
    [13, 0],
  ])
})

t.test('off when a worker could not come back, warned once with the reason', async (t) => {
  const { log, lines } = capture()
  const sys = fakeSystem(0, false)
  const p = new BootPriority(log, sys)
  p.booting(5, true, 10)
  p.booting(6, true, 10)
  p.booted(5)
  t.same(sys.set, [])
  t.same(
    lines.filter((l) => l.includes('is off')).map((l) => l.replace(/^.*\] /, '')),
    [
      '--boot-nice 10 is off: a worker at a lower priority could not come back to nice 0 (uid 1000, RLIMIT_NICE 0 (nice 19 at best), no CAP_SYS_NICE); ' +
        'root, CAP_SYS_NICE or LimitNICE=+0 would allow it (systemd sets LimitNICE= only where it holds CAP_SYS_RESOURCE)\n',
    ],
  )
  const none = new BootPriority(log, undefined)
  const before = lines.length
  none.booting(5, true, 10)
  none.booted(5)
  // Without a priority system (a test's fake processes), nothing is ever changed, and nothing is said.
  t.same([NO_PRIORITY.getPriority(), NO_PRIORITY.whyNotRaiseTo(0), NO_PRIORITY.threads(1), NO_PRIORITY.setPriority(1, 10)], [0, undefined, [], undefined])
  t.equal(lines.length, before)
})

t.test('a worker already gone is no error; another failure is logged and leaves it be', async (t) => {
  const { log, lines } = capture()
  const sys = fakeSystem(0, true, (pid) => (pid === 1 ? 'ESRCH' : pid === 2 ? 'EPERM' : undefined))
  const p = new BootPriority(log, sys)
  p.booting(1, true, 10)
  p.booting(2, true, 10)
  p.booted(1)
  p.booted(2)
  t.same(sys.set, [])
  t.equal(lines.length, 1)
  t.match(lines[0], /cannot set the priority of worker pid 2 to nice 10: .*EPERM/)
})

t.test('the real command: with --boot-nice 10 a reload boots at nice 10, serves at 0; the first generation, and the default, at 0', async (t) => {
  const dir = shortTmp(t)
  const app = join(root, 'test/fixtures/apps/nice-app.mjs')
  type Seen = { atLoad: number; now: number; threads: number }
  const run = async (extra: string[]): Promise<Seen[]> => {
    const port = await freePort()
    // At nice 10 on a loaded machine a boot may take many seconds: it gets the CPU
    // the processes at nice 0 leave. Waits and the boot timeout are generous.
    const child = spawnTracked(t, process.execPath, [cli, '-w', '1', '-b', `127.0.0.1:${port}`, '--boot-timeout', '120', ...extra, app], { cwd: dir })
    await waitForOutput(child, /generation 1\) serving/, 120_000)
    const seen = [JSON.parse((await get({ port })).body) as Seen]
    child.kill('SIGHUP')
    await waitForOutput(child, /reloaded: generation 2 serving/, 120_000)
    seen.push(JSON.parse((await get({ port })).body) as Seen)
    child.kill('SIGTERM')
    t.equal(await child.exited, 0)
    return seen.map(({ atLoad, now, threads }) => ({ atLoad, now, threads }))
  }
  // Every thread comes back, V8's and libuv's too, not just the main one.
  t.same(await run(['--boot-nice', '10']), [
    { atLoad: 0, now: 0, threads: 0 },
    { atLoad: 10, now: 0, threads: 0 },
  ])
  t.same(await run([]), [
    { atLoad: 0, now: 0, threads: 0 },
    { atLoad: 0, now: 0, threads: 0 },
  ])
})
