import t, { type Test } from 'tap'
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { LogFile } from '../lib/log-file.js'
import { root, shortTmp, spawnTracked, waitFor } from './helpers/proc.js'

const LOG_FILE_URL = pathToFileURL(join(root, 'dist/lib/log-file.js')).href

const lines = (from: number, to: number, tag = 'line'): string[] => {
  const out: string[] = []
  for (let i = from; i <= to; i++) out.push(`${tag} ${i}`)
  return out
}
const writeLines = (file: LogFile, ls: string[]): void => {
  for (const l of ls) file.write(`${l}\n`)
}
const read = (path: string): string[] => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '')
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
/** Private state, for assertions about batching (TypeScript allows element access to private members). */
const batches = (file: LogFile): number => file['batches']

/** Capture what is written to process.stderr until teardown. */
function captureStderr(t: Test): string[] {
  const seen: string[] = []
  const original = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string | Uint8Array) => {
    seen.push(String(chunk))
    return true
  })
  t.teardown(() => {
    process.stderr.write = original
  })
  return seen
}

/** Run an ES module snippet in a child node that can import the compiled LogFile as LogFile. */
function runSnippet(t: Test, code: string, options: { shell?: string; env?: Record<string, string> } = {}) {
  const script = `import { LogFile } from ${JSON.stringify(LOG_FILE_URL)}\n${code}`
  if (options.shell !== undefined)
    return spawnTracked(t, 'bash', ['-c', `${options.shell}; exec "$0" --input-type=module -e "$1"`, process.execPath, script], {
      env: { ...process.env, ...options.env },
    })
  return spawnTracked(t, process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...options.env } })
}

t.test('many lines written in one turn are one batch, in order', async (t) => {
  const path = join(shortTmp(t), 'a.log')
  const file = LogFile.open(path, 'stderr')
  t.equal(file.kind, 'file')
  t.equal(file.target, path)
  const first = lines(1, 2000)
  writeLines(file, first)
  t.equal(batches(file), 0, 'nothing written synchronously')
  t.equal(readFileSync(path, 'utf8'), '')
  await file.flush()
  t.equal(batches(file), 1, 'one write for 2000 lines')
  t.same(read(path), first)
  // Lines written over several turns, flushed: all there, in order.
  const more = lines(2001, 2100)
  for (let i = 0; i < more.length; i += 10) {
    writeLines(file, more.slice(i, i + 10))
    await nextTurn()
  }
  await file.flush()
  t.same(read(path), [...first, ...more])
  await file.flush() // nothing pending: resolves at once
  await file.close()
})

t.test('opening appends to an existing file', async (t) => {
  const path = join(shortTmp(t), 'a.log')
  writeFileSync(path, 'before\n')
  const file = LogFile.open(path, 'stdout')
  file.write('after\n')
  await file.close()
  t.same(read(path), ['before', 'after'])
})

t.test('bufferSize: the buffer is written when the next line would not fit; flushMs: else when its oldest line is that old', async (t) => {
  const path = join(shortTmp(t), 'a.log')
  const file = LogFile.open(path, 'stderr', { bufferSize: 100, flushMs: 60_000 })
  const line = (i: number, length = 49): string => `${String(i).padStart(length - 1, '-')}\n`
  file.write(line(1))
  file.write(line(2))
  await nextTurn()
  t.equal(batches(file), 0, '98 bytes wait for the timer')
  file.write(line(3))
  t.equal(batches(file), 1, 'the third line does not fit: the first two are written at once')
  t.equal(read(path).length, 2)
  file.write(line(4, 51))
  t.equal(batches(file), 2, '49 + 51 bytes fill the buffer: written at once')
  t.equal(read(path).length, 4)
  file.write(`é${line(5, 149)}`)
  t.equal(batches(file), 3, 'a line longer than the buffer (151 bytes, 150 characters) is written on its own')
  file.write(line(6))
  await file.close()
  t.equal(batches(file), 4, 'close writes the rest')
  t.same(read(path), [line(1), line(2), line(3), line(4, 51), `é${line(5, 149)}`, line(6)].map((l) => l.trimEnd()))

  // A short flushMs: the timer writes the lines.
  const timed = join(shortTmp(t), 'b.log')
  const soon = LogFile.open(timed, 'stderr', { flushMs: 5 })
  writeLines(soon, lines(1, 3))
  await waitFor(() => batches(soon) === 1, 'the timer writes the buffer')
  t.same(read(timed), lines(1, 3))
  await soon.close()
})

t.test('flushSync writes what is buffered at once', async (t) => {
  const path = join(shortTmp(t), 'a.log')
  const file = LogFile.open(path, 'stderr')
  writeLines(file, lines(1, 10))
  file.flushSync()
  t.same(read(path), lines(1, 10), 'written synchronously')
  t.equal(batches(file), 1)
  file.flushSync() // nothing buffered
  await nextTurn() // the timer finds nothing to write
  t.equal(batches(file), 1)
  await file.close() // no timer pending
  t.same(read(path), lines(1, 10))
})

t.test('reopen after logrotate renamed the file: nothing lost, nothing in the old file afterwards', async (t) => {
  const dir = shortTmp(t)
  const path = join(dir, 'app.log')
  const rotated = join(dir, 'app.log.1')
  const file = LogFile.open(path, 'stderr')
  writeLines(file, lines(1, 50))
  renameSync(path, rotated)
  const reopened = file.reopen()
  await nextTurn() // the new file is being opened; 1..50 went to the old fd
  writeLines(file, lines(51, 60)) // written while the reopen opens the new file
  const during: string[] = []
  for (let i = 0; i < 20; i++) {
    await nextTurn() // while the new file is being opened
    const l = `during ${i}`
    during.push(l)
    file.write(`${l}\n`)
  }
  await reopened
  writeLines(file, lines(61, 100))
  await file.flush()
  const old = read(rotated)
  const fresh = read(path)
  t.same(old.slice(0, 50), lines(1, 50), 'lines before the reopen are in the rotated file')
  t.same([...old, ...fresh].filter((l) => !l.startsWith('during')), lines(1, 100), 'no line lost or repeated, in order')
  t.same([...old, ...fresh].filter((l) => l.startsWith('during')), during, 'lines written during the reopen: all there')
  t.same(fresh.slice(-40), lines(61, 100), 'lines after the reopen are in the new file')
  t.notOk(old.some((l) => l === 'line 61'), 'nothing after the reopen in the rotated file')
  // Two reopens at once run one after the other.
  renameSync(path, `${rotated}.2`)
  await Promise.all([file.reopen(), file.reopen()])
  file.write('last\n')
  await file.close()
  t.same(read(path), ['last'])
  await file.reopen() // closed: nothing to do
})

t.test('reopen of a buffered file: the buffered lines go to the old file, later ones to the new', async (t) => {
  const dir = shortTmp(t)
  const path = join(dir, 'access.log')
  const rotated = join(dir, 'access.log.1')
  const file = LogFile.open(path, 'stdout', { bufferSize: 64 * 1024, flushMs: 60_000 })
  writeLines(file, lines(1, 50))
  renameSync(path, rotated)
  const reopened = file.reopen()
  writeLines(file, lines(51, 60)) // while the new file is being opened
  await reopened
  t.same(read(rotated), lines(1, 60), 'everything written before the reopen resolved, in the rotated file')
  writeLines(file, lines(61, 70))
  await file.close()
  t.same(read(path), lines(61, 70))
})

t.test('a reopen that cannot open the path keeps the old fd', async (t) => {
  const dir = join(shortTmp(t), 'logs')
  mkdirSync(dir)
  const path = join(dir, 'app.log')
  const file = LogFile.open(path, 'stderr')
  file.write('one\n')
  await file.flush()
  rmSync(dir, { recursive: true })
  await t.rejects(file.reopen(), { code: 'ENOENT', path })
  file.write('two\n') // to the old (now unlinked) file: no crash
  await file.flush()
  mkdirSync(dir)
  await file.reopen()
  file.write('three\n')
  await file.close()
  t.same(read(path), ['three'])
})

t.test('open errors are node system errors naming the path', async (t) => {
  const dir = shortTmp(t)
  const missing = join(dir, 'nope', 'app.log')
  t.throws(() => LogFile.open(missing, 'stderr'), { code: 'ENOENT', path: missing, message: new RegExp(missing) })
  t.throws(() => LogFile.open(dir, 'stderr'), { code: 'EISDIR', path: dir })
  if (process.getuid?.() !== 0) {
    const locked = join(dir, 'locked.log')
    writeFileSync(locked, '', { mode: 0o400 })
    t.throws(() => LogFile.open(locked, 'stderr'), { code: 'EACCES', path: locked })
  }
})

t.test('write errors (disk full) are reported once on stderr and never thrown', async (t) => {
  const seen = captureStderr(t)
  const file = LogFile.open('/dev/full', 'stderr')
  writeLines(file, lines(1, 10))
  await file.flush()
  writeLines(file, lines(11, 20))
  await file.flush()
  file.write('sync\n')
  file.flushSync()
  t.equal(seen.length, 1, 'reported once')
  t.match(seen[0], /^sdserve: cannot write to log \/dev\/full: ENOSPC: no space left on device/)
  await file.close()
  // Another file: the synchronous path reports too.
  const other = LogFile.open('/dev/full', 'stderr')
  other.write('x\n')
  other.flushSync()
  t.equal(seen.length, 2)
  await other.close()
})

t.test('short writes (file size limit) write the rest, then report the error', async (t) => {
  const dir = shortTmp(t)
  const path = join(dir, 'big.log')
  // A sparse file ending 100 bytes below the file size limit (ulimit -f: 1 GiB, SIGXFSZ ignored and
  // inherited through exec): the first write is short, the next fails with EFBIG. Files the child
  // writes from offset 0 (coverage data) stay far below the limit.
  const limit = 1024 * 1024 * 1024
  writeFileSync(path, '')
  truncateSync(path, limit - 100)
  const child = runSnippet(
    t,
    // Under tap, signal-exit handles SIGXFSZ and re-raises it unless another listener exists.
    `process.on('SIGXFSZ', () => undefined)
     const file = LogFile.open(${JSON.stringify(path)}, 'stderr')
     file.write('a'.repeat(60) + '\\n')
     await file.flush()
     file.write('b'.repeat(60) + '\\n')
     await file.flush()
     file.write('c'.repeat(60) + '\\n')
     file.flushSync()
     await file.close()
     process.stdout.write('done\\n')`,
    { shell: `trap '' XFSZ; ulimit -f ${limit / 1024}` },
  )
  t.equal(await child.exited, 0, child.output())
  t.match(child.output(), /done/)
  t.equal((child.output().match(/cannot write to log .*EFBIG/g) ?? []).length, 1, child.output())
  t.equal(statSync(path).size, limit, 'written up to the limit')
})

t.test("'-' writes to stdout (or stderr) at once", async (t) => {
  const child = runSnippet(
    t,
    `const out = LogFile.open('-', 'stdout')
     const err = LogFile.open('-', 'stderr')
     out.write('to stdout\\n')
     err.write('to stderr\\n')
     await out.flush()
     out.flushSync()
     await out.reopen()
     await out.close()
     await out.close()
     out.write('ignored after close\\n')
     await err.close()`,
  )
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  t.equal(await child.exited, 0, child.output())
  t.equal(stdout, 'to stdout\n')
  t.equal(stderr, 'to stderr\n')
  const mine = LogFile.open('-', 'stderr')
  t.equal(mine.kind, 'stderr')
  t.equal(mine.target, '-')
  await mine.close()
})

t.test("'-' whose reader went away (EPIPE): reported once on stderr, the process goes on", async (t) => {
  const child = runSnippet(
    t,
    `const out = LogFile.open('-', 'stdout')
     let failed = false
     process.stdout.on('error', () => (failed = true))
     for (let i = 0; i < 500 && !failed; i++) {
       out.write('x'.repeat(100) + '\\n')
       await new Promise((r) => setTimeout(r, 10))
     }
     out.write('after the error\\n')
     await new Promise((r) => setTimeout(r, 10))
     process.stderr.write('still alive ' + failed + '\\n')`,
  )
  child.stdout?.destroy()
  t.equal(await child.exited, 0, child.output())
  t.match(child.output(), /still alive true/)
  t.equal((child.output().match(/cannot write to log stdout: .*EPIPE/g) ?? []).length, 1, child.output())
})

t.test('process.exit() right after writing: every line is in the file', async (t) => {
  const dir = shortTmp(t)
  const path = join(dir, 'exit.log')
  const child = runSnippet(
    t,
    `const file = LogFile.open(${JSON.stringify(path)}, 'stderr')
     for (let i = 1; i <= 5000; i++) file.write('line ' + i + '\\n')
     process.on('exit', () => file.write('from a later exit handler\\n'))
     process.exit(0)`,
  )
  t.equal(await child.exited, 0, child.output())
  t.same(read(path), [...lines(1, 5000), 'from a later exit handler'])
})

t.test('a process that ends with lines still buffered (an unref\'d timer): every line is in the file', async (t) => {
  const path = join(shortTmp(t), 'end.log')
  const child = runSnippet(
    t,
    `const file = LogFile.open(${JSON.stringify(path)}, 'stderr', { bufferSize: 1 << 20, flushMs: 60000 })
     for (let i = 1; i <= 100; i++) file.write('line ' + i + '\\n')`,
  )
  t.equal(await child.exited, 0, child.output())
  t.same(read(path), lines(1, 100))
})

t.test('close flushes, later writes are ignored, the exit handler is removed', async (t) => {
  const path = join(shortTmp(t), 'a.log')
  const before = process.listenerCount('exit')
  const file = LogFile.open(path, 'stderr')
  t.equal(process.listenerCount('exit'), before + 1)
  writeLines(file, lines(1, 5))
  const closing = file.close()
  file.write('ignored\n')
  await closing
  t.equal(process.listenerCount('exit'), before)
  file.write('ignored too\n')
  file.flushSync()
  await file.flush()
  await file.close()
  t.same(read(path), lines(1, 5))
  // The fd is closed: another open file may take its number, untouched by this LogFile.
  const fd = openSync(path, 'r')
  closeSync(fd)
})
