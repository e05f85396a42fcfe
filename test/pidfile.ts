import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, InvalidArgumentError } from '../lib/errors.js'
import { readPidFile, removePidFile, renamePidFile, writePidFile } from '../lib/pidfile.js'
import { shortTmp, spawnTracked } from './helpers/proc.js'

const isRoot = process.getuid?.() === 0

/** The pid of a process that has surely exited: a short child we waited for. */
async function deadPid(t: Test): Promise<number> {
  const child = spawnTracked(t, 'true', [])
  const pid = child.pid!
  t.equal(await child.exited, 0, 'the short child exited')
  return pid
}

t.test('writes the pid and a newline atomically, mode 0644 whatever the umask', async (t) => {
  const dir = shortTmp(t)
  const file = join(dir, 'app.pid')
  const old = process.umask(0o077)
  try {
    writePidFile(file)
  } finally {
    process.umask(old)
  }
  t.equal(readFileSync(file, 'utf8'), `${process.pid}\n`)
  t.equal(statSync(file).mode & 0o777, 0o644)
  t.same(readdirSync(dir), ['app.pid'], 'no temporary file is left behind')

  // A rewrite replaces the file by rename: a hard link to the old one keeps the old content.
  const before = statSync(file).ino
  linkSync(file, join(dir, 'old-link'))
  writePidFile(file)
  t.equal(readFileSync(file, 'utf8'), `${process.pid}\n`, 'our own pid in the file: rewritten without complaint')
  t.not(statSync(file).ino, before, 'a new inode')
  t.equal(statSync(join(dir, 'old-link')).ino, before, 'the old inode is left as it was')
  t.same(readdirSync(dir).sort(), ['app.pid', 'old-link'])

  // Another pid (a dead one, or the file would be refused) replaces a stale file by rename too.
  const dead = await deadPid(t)
  writeFileSync(file, `${dead}\n`)
  const before2 = statSync(file).ino
  writePidFile(file, 4242)
  t.equal(readFileSync(file, 'utf8'), '4242\n')
  t.not(statSync(file).ino, before2, 'a new inode')
})

t.test('refuses a file held by another running process', async (t) => {
  const dir = shortTmp(t)
  const file = join(dir, 'app.pid')
  const sleeper = spawnTracked(t, 'sleep', ['60'])
  const other = sleeper.pid!
  writeFileSync(file, `${other}\n`)
  const err = t.throws(() => writePidFile(file)) as ConfigError
  t.ok(err instanceof ConfigError, 'a ConfigError')
  t.equal(err.code, 'SDSERVE_ERR_CONFIG')
  t.equal(err.option, 'pid')
  t.equal(err.value, file)
  t.match(err.message, `another process (pid ${other}) holds it`)
  t.match(err.message, /^pid must be /)
  t.match(err.message, JSON.stringify(file))
  t.equal(readFileSync(file, 'utf8'), `${other}\n`, 'the file is left alone')
  t.same(readdirSync(dir), ['app.pid'], 'no temporary file was created')

  // The same pid as the one being written is not "another" process.
  writePidFile(file, other)
  t.equal(readFileSync(file, 'utf8'), `${other}\n`)

  // The parent (tap's runner) is alive too.
  writeFileSync(file, String(process.ppid))
  t.throws(() => writePidFile(file), { option: 'pid', message: `(pid ${process.ppid})` })
})

t.test('a process we may not signal (EPERM) counts as running', async (t) => {
  const dir = shortTmp(t)
  const file = join(dir, 'app.pid')
  writeFileSync(file, '1\n')
  const realKill = process.kill.bind(process)
  process.kill = (pid: number, signal?: string | number) => {
    if (pid === 1 && signal === 0) throw Object.assign(new Error('kill EPERM'), { code: 'EPERM' })
    return realKill(pid, signal)
  }
  try {
    t.throws(() => writePidFile(file), { option: 'pid', message: 'another process (pid 1) holds it' })
  } finally {
    process.kill = realKill
  }
})

t.test('EPERM and EACCES for real, as an unprivileged user', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const dir = shortTmp(t)
  chmodSync(dir, 0o755)
  const open = join(dir, 'open')
  mkdirSync(open, { mode: 0o777 })
  chmodSync(open, 0o777)
  writeFileSync(join(open, 'init.pid'), '1\n')
  const nobody = execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim()
  const lib = fileURLToPath(new URL('../lib/pidfile.js', import.meta.url))
  const script = `
    import { writePidFile } from ${JSON.stringify(lib)}
    for (const p of process.argv.slice(1)) {
      try { writePidFile(p); console.log('written ' + p) }
      catch (e) { console.log(e.code + ' ' + e.message) }
    }`
  const out = execFileSync(
    process.execPath,
    ['--input-type=module', '-e', script, join(open, 'init.pid'), join(dir, 'app.pid'), join(open, 'mine.pid')],
    // A clean environment: tap's coverage hooks cannot write their files as nobody.
    { encoding: 'utf8', uid: Number(nobody), gid: Number(nobody), env: { PATH: process.env.PATH ?? '' }, timeout: 30000 },
  )
  const lines = out.trim().split('\n')
  t.match(lines[0], /^SDSERVE_ERR_CONFIG pid must be .*another process \(pid 1\) holds it/, 'pid 1 is alive though kill() says EPERM')
  t.match(lines[1], /^EACCES .*permission denied/)
  t.match(lines[1], join(dir, 'app.pid'), 'the error names the path')
  t.equal(lines[2], `written ${join(open, 'mine.pid')}`)
  t.equal(readFileSync(join(open, 'init.pid'), 'utf8'), '1\n')
})

t.test('replaces a stale file: dead pid, garbage, empty', async (t) => {
  const dir = shortTmp(t)
  const file = join(dir, 'app.pid')
  const dead = await deadPid(t)
  const stale = [`${dead}\n`, 'garbage\n', '', '0\n', '-5\n', '99999999999\n', '12 34\n', '1\n2\n']
  for (const content of stale) {
    writeFileSync(file, content)
    writePidFile(file)
    t.equal(readFileSync(file, 'utf8'), `${process.pid}\n`, `replaced ${JSON.stringify(content)}`)
  }
  t.same(readdirSync(dir), ['app.pid'])
})

t.test('readPidFile', async (t) => {
  const dir = shortTmp(t)
  const file = join(dir, 'app.pid')
  t.equal(readPidFile(file), null, 'missing')
  t.equal(readPidFile(join(dir, 'no/such/dir/app.pid')), null, 'missing directory')
  const cases: Array<[string, number | null]> = [
    ['123\n', 123],
    ['123', 123],
    ['  42 \n\n', 42],
    ['2147483647\n', 2147483647],
    ['2147483648\n', null],
    ['99999999999\n', null],
    ['', null],
    ['\n', null],
    ['0\n', null],
    ['-1\n', null],
    ['+7\n', null],
    ['1.5\n', null],
    ['0x10\n', null],
    ['abc\n', null],
    ['12 34\n', null],
    ['1\n2\n', null],
  ]
  for (const [content, want] of cases) {
    writeFileSync(file, content)
    t.equal(readPidFile(file), want, JSON.stringify(content))
  }
})

t.test('readPidFile errors name the path', async (t) => {
  const dir = shortTmp(t)
  const sub = join(dir, 'sub')
  mkdirSync(sub)
  const err = t.throws(() => readPidFile(sub)) as NodeJS.ErrnoException
  t.equal(err.code, 'EISDIR')
  t.equal(err.path, sub)
  t.match(err.message, sub)
  const file = join(dir, 'file')
  writeFileSync(file, '1\n')
  const err2 = t.throws(() => readPidFile(join(file, 'app.pid'))) as NodeJS.ErrnoException
  t.equal(err2.code, 'ENOTDIR')
  t.match(err2.message, join(file, 'app.pid'))
})

t.test('removePidFile removes only a file that holds our pid', async (t) => {
  const dir = shortTmp(t)
  const file = join(dir, 'app.pid')
  t.equal(removePidFile(file), false, 'missing: false')
  writePidFile(file)
  t.equal(removePidFile(file), true, 'ours: removed')
  t.notOk(existsSync(file))
  t.equal(removePidFile(file), false, 'already gone: false')

  // A binary upgrade: the new master (another pid) has written the file.
  writePidFile(file, 777)
  t.equal(removePidFile(file), false, 'another pid: kept')
  t.equal(readFileSync(file, 'utf8'), '777\n')
  t.equal(removePidFile(file, 777), true, 'removed for its own pid')
  t.notOk(existsSync(file))

  writeFileSync(file, 'garbage')
  t.equal(removePidFile(file), false, 'garbage: kept')
  t.ok(existsSync(file))
})

t.test('renamePidFile', async (t) => {
  const dir = shortTmp(t)
  const file = join(dir, 'app.pid')
  writePidFile(file)
  renamePidFile(file, `${file}.oldbin`)
  t.notOk(existsSync(file))
  t.equal(readPidFile(`${file}.oldbin`), process.pid)
  // The new master writes its own file; the old one's .oldbin is untouched.
  writePidFile(file, 9999)
  t.equal(readPidFile(`${file}.oldbin`), process.pid)
  t.equal(removePidFile(`${file}.oldbin`), true)
  const err = t.throws(() => renamePidFile(join(dir, 'missing.pid'), join(dir, 'x'))) as NodeJS.ErrnoException
  t.equal(err.code, 'ENOENT')
  t.match(err.message, join(dir, 'missing.pid'))
})

t.test('system errors are thrown as they are and name the path', async (t) => {
  const dir = shortTmp(t)
  const missing = join(dir, 'no-such-dir', 'app.pid')
  const err = t.throws(() => writePidFile(missing)) as NodeJS.ErrnoException
  t.equal(err.code, 'ENOENT')
  t.match(err.message, missing)
  t.notOk(err instanceof ConfigError)

  // A file where a directory should be: reading the old file fails already.
  const file = join(dir, 'file')
  writeFileSync(file, '')
  const err3 = t.throws(() => writePidFile(join(file, 'app.pid'))) as NodeJS.ErrnoException
  t.equal(err3.code, 'ENOTDIR')
  t.match(err3.message, join(file, 'app.pid'))

  // A directory where the file should be: rename(2) fails, the temporary file is cleaned up.
  const sub = join(dir, 'app.pid')
  mkdirSync(sub)
  const err2 = t.throws(() => writePidFile(sub)) as NodeJS.ErrnoException
  t.equal(err2.code, 'EISDIR')
  t.match(err2.message, sub)
  t.same(readdirSync(dir).sort(), ['app.pid', 'file'], 'no temporary file is left behind')
})

t.test('a bad pid argument', async (t) => {
  const dir = shortTmp(t)
  const file = join(dir, 'app.pid')
  for (const pid of [0, -1, 1.5, NaN, 2 ** 31, '12' as unknown as number]) {
    t.throws(() => writePidFile(file, pid), InvalidArgumentError, String(pid))
    t.throws(() => removePidFile(file, pid), { code: 'SDSERVE_ERR_INVALID_ARG', argument: 'pid' })
  }
  t.notOk(existsSync(file))
})
