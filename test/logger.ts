import t, { type Test } from 'tap'
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ConfigError } from '../lib/errors.js'
import { LogFile } from '../lib/log-file.js'
import { journalStderr, Logger, openErrorLog, parseLogLevel, type LoggerOptions, type LogLevel } from '../lib/logger.js'
import { root, shortTmp, spawnTracked } from './helpers/proc.js'

const LOGGER_URL = pathToFileURL(join(root, 'dist/lib/logger.js')).href
const LOG_FILE_URL = pathToFileURL(join(root, 'dist/lib/log-file.js')).href
const TEXT = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] \[(\d+)\] \[([A-Z]+)\] (.*)\n$/s

function capture(options: LoggerOptions = {}): { log: Logger; lines: string[] } {
  const lines: string[] = []
  const log = new Logger({ ...options, write: (line) => lines.push(line) })
  return { log, lines }
}

function logAll(log: Logger): void {
  log.debug('d')
  log.info('i')
  log.warn('w')
  log.error('e')
  log.critical('c')
}

t.test('text lines: [time] [pid] [LEVEL] message, filtered by level', async (t) => {
  const { log, lines } = capture()
  t.equal(log.level, 'info', 'info by default')
  t.equal(log.format, 'text')
  t.equal(log.journal, false, 'never the journal for a write function')
  logAll(log)
  t.equal(lines.length, 4, 'debug dropped')
  const parsed = lines.map((l) => TEXT.exec(l))
  t.same(
    parsed.map((m) => [m?.[2], m?.[3], m?.[4]]),
    [
      [String(process.pid), 'INFO', 'i'],
      [String(process.pid), 'WARNING', 'w'],
      [String(process.pid), 'ERROR', 'e'],
      [String(process.pid), 'CRITICAL', 'c'],
    ],
  )
  t.ok(!Number.isNaN(Date.parse(parsed[0]![1]!)), 'an ISO time')
  const expected: Record<LogLevel, number> = { debug: 5, info: 4, warning: 3, error: 2, critical: 1 }
  for (const [level, count] of Object.entries(expected) as Array<[LogLevel, number]>) {
    const c = capture({ level })
    logAll(c.log)
    t.equal(c.lines.length, count, `level ${level}`)
  }
  log.level = 'error'
  t.equal(log.enabled('warning'), false)
  t.equal(log.enabled('error'), true)
  t.equal(log.enabled('critical'), true)
})

t.test('json lines: one object per line', async (t) => {
  const { log, lines } = capture({ format: 'json', level: 'debug' })
  logAll(log)
  log.error('two\nlines "quoted"')
  t.equal(lines.length, 6)
  for (const l of lines) t.match(l, /^\{.*\}\n$/, 'one line')
  const objects = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  t.same(
    objects.map((o) => o.level),
    ['debug', 'info', 'warning', 'error', 'critical', 'error'],
  )
  t.same(Object.keys(objects[0]!), ['time', 'pid', 'level', 'message'])
  t.equal(objects[0]!.pid, process.pid)
  t.equal(objects[5]!.message, 'two\nlines "quoted"')
  t.ok(!Number.isNaN(Date.parse(String(objects[0]!.time))))
})

t.test('journal: every line starts with the sd-daemon priority', async (t) => {
  const { log, lines } = capture({ journal: true, level: 'debug' })
  t.equal(log.journal, true)
  logAll(log)
  t.same(
    lines.map((l) => l.slice(0, 3)),
    ['<7>', '<6>', '<4>', '<3>', '<2>'],
  )
  t.match(lines[3], /^<3>\[[^\]]+\] \[\d+\] \[ERROR\] e\n$/)
  log.error('Error: boom\n    at a (x.js:1:1)\n    at b (x.js:2:2)')
  t.match(lines[5], /^<3>\[[^\]]+\] \[\d+\] \[ERROR\] Error: boom\n<3> {4}at a \(x.js:1:1\)\n<3> {4}at b \(x.js:2:2\)\n$/, 'each line of a stack keeps its priority')
  const json = capture({ journal: true, format: 'json' })
  json.log.warn('careful')
  t.match(json.lines[0], /^<4>\{"time":"[^"]+","pid":\d+,"level":"warning","message":"careful"\}\n$/)
})

t.test('a prefix starts every message: text, json and journal lines alike', async (t) => {
  t.equal(capture().log.prefix, '', 'none by default')
  const text = capture({ prefix: 'worker 3: ', journal: true })
  t.equal(text.log.prefix, 'worker 3: ')
  text.log.warn('careful')
  text.log.error('Error: boom\n    at a (x.js:1:1)')
  t.match(text.lines[0], /^<4>\[[^\]]+\] \[\d+\] \[WARNING\] worker 3: careful\n$/)
  t.match(text.lines[1], /^<3>\[[^\]]+\] \[\d+\] \[ERROR\] worker 3: Error: boom\n<3> {4}at a \(x.js:1:1\)\n$/, 'once, on the first line')
  const json = capture({ prefix: 'worker 3: ', format: 'json' })
  json.log.info('up')
  t.equal((JSON.parse(json.lines[0]!) as { message: string }).message, 'worker 3: up', "in json, part of the message")
})

t.test('openErrorLog: a file, a level, a format and a prefix', async (t) => {
  const path = join(shortTmp(t), 'error.log')
  const log = openErrorLog({ file: path, level: 'warning', format: 'text', prefix: 'worker 2: ' })
  log.info('dropped')
  log.warn('kept')
  await log.close()
  t.match(readFileSync(path, 'utf8'), /^\[[^\]]+\] \[\d+\] \[WARNING\] worker 2: kept\n$/)
  const stderr = openErrorLog({ file: '-', level: 'debug', format: 'json' })
  t.same([stderr.file, stderr.level, stderr.format, stderr.prefix], [undefined, 'debug', 'json', ''], "'-' is stderr; no prefix by default")
})

t.test('journalStderr: JOURNAL_STREAM must match the fd device and inode', async (t) => {
  const path = join(shortTmp(t), 'stream')
  const fd = openSync(path, 'w')
  t.teardown(() => closeSync(fd))
  const st = fstatSync(fd)
  t.equal(journalStderr({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }, fd), true)
  t.equal(journalStderr({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1}` }, fd), false, 'another inode')
  t.equal(journalStderr({ JOURNAL_STREAM: `${st.dev + 1}:${st.ino}` }, fd), false, 'another device')
  t.equal(journalStderr({}, fd), false, 'unset')
  t.equal(journalStderr({ JOURNAL_STREAM: 'x:1' }, fd), false, 'malformed')
  t.equal(journalStderr({ JOURNAL_STREAM: `${st.dev}:${st.ino}:` }, fd), false, 'malformed')
  t.equal(journalStderr({ JOURNAL_STREAM: '1:2' }, 987654), false, 'a closed fd')
  t.type(journalStderr(), 'boolean', 'defaults: process.env and fd 2')
})

/** Run a snippet in a child whose stderr (and stdout) is a file; returns what the file holds. */
async function inChild(t: Test, code: string, env: (dev: number, ino: number) => Record<string, string | undefined>): Promise<string> {
  const path = join(shortTmp(t), 'stderr.log')
  const fd = openSync(path, 'w')
  const st = fstatSync(fd)
  const script = `import { Logger } from ${JSON.stringify(LOGGER_URL)}\nimport { LogFile } from ${JSON.stringify(LOG_FILE_URL)}\n${code}`
  const child = spawnTracked(t, process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, JOURNAL_STREAM: undefined, ...env(st.dev, st.ino) },
  })
  closeSync(fd)
  t.equal(await child.exited, 0)
  return readFileSync(path, 'utf8')
}

t.test('by default, the journal prefix is on when stderr is the JOURNAL_STREAM', async (t) => {
  const code = `const log = new Logger({ level: 'debug' })
    log.debug('d'); log.info('i'); log.warn('w'); log.error('e'); log.critical('c')
    process.stderr.write('journal=' + log.journal + '\\n')`
  const journal = await inChild(t, code, (dev, ino) => ({ JOURNAL_STREAM: `${dev}:${ino}` }))
  t.same(
    journal.split('\n').map((l) => l.slice(0, 3)),
    ['<7>', '<6>', '<4>', '<3>', '<2>', 'jou', ''],
    journal,
  )
  t.match(journal, /journal=true/)
  const plain = await inChild(t, code, (dev, ino) => ({ JOURNAL_STREAM: `${dev}:${ino + 1}` }))
  t.match(plain, /^\[[^\]]+\] \[\d+\] \[DEBUG\] d\n/)
  t.match(plain, /journal=false/)
  const unset = await inChild(t, code, () => ({}))
  t.match(unset, /^\[/)
  // A LogFile on '-': stdout (fd 1) or stderr (fd 2) is checked; a file path never is.
  const toStdout = await inChild(
    t,
    `const out = new Logger({ file: LogFile.open('-', 'stdout') }); out.info('on stdout')
     const err = new Logger({ file: LogFile.open('-', 'stderr') }); err.warn('on stderr')
     const file = new Logger({ file: LogFile.open('/dev/null', 'stderr') })
     process.stdout.write('file journal=' + file.journal + '\\n')`,
    (dev, ino) => ({ JOURNAL_STREAM: `${dev}:${ino}` }),
  )
  t.match(toStdout, /^<6>\[[^\]]+\] \[\d+\] \[INFO\] on stdout\n<4>\[[^\]]+\] \[\d+\] \[WARNING\] on stderr\nfile journal=false\n$/)
})

t.test('a LogFile: lines go to it; reopen() switches files after logrotate', async (t) => {
  const dir = shortTmp(t)
  const path = join(dir, 'error.log')
  const file = LogFile.open(path, 'stderr')
  const log = new Logger({ file, level: 'debug' })
  t.equal(log.file, file)
  t.equal(log.journal, false, 'a file is never the journal')
  log.info('before')
  await log.flush()
  renameSync(path, `${path}.1`)
  await log.reopenFile()
  log.info('after')
  await log.flush()
  t.match(readFileSync(`${path}.1`, 'utf8'), /\[INFO\] before\n.*\[INFO\] reopening log files\n$/)
  t.match(readFileSync(path, 'utf8'), /^[^\n]*\[INFO\] after\n$/)
  // reopen() (the USR1 handler) returns at once.
  renameSync(path, `${path}.2`)
  log.reopen()
  await log.flush()
  await file.reopen() // queued behind the logger's reopen
  log.info('after 2')
  await log.close()
  t.match(readFileSync(path, 'utf8'), /^[^\n]*\[INFO\] after 2\n$/)
})

t.test('a file that cannot be reopened: logged, the old file stays', async (t) => {
  const dir = join(shortTmp(t), 'logs')
  mkdirSync(dir)
  const path = join(dir, 'error.log')
  const file = LogFile.open(path, 'stderr')
  const log = new Logger({ file })
  log.info('one')
  rmSync(dir, { recursive: true })
  await log.reopenFile()
  log.info('two')
  await log.flush()
  // The old file is unlinked; read it through our fd (private, element access).
  const old = readFileSync(`/proc/self/fd/${file['fd']}`, 'utf8')
  await log.close()
  t.match(old, /\[INFO\] one\n.*\[INFO\] reopening log files\n.*\[ERROR\] cannot reopen the log file, still writing to the old one: ENOENT: no such file or directory, open '[^']*error\.log'\n.*\[INFO\] two\n$/s)
})

t.test('without a file: reopen logs the line, flush and close do nothing', async (t) => {
  const { log, lines } = capture()
  log.reopen()
  await log.reopenFile()
  await log.flush()
  await log.close()
  t.equal(lines.length, 2)
  for (const l of lines) t.match(l, /\[INFO\] reopening log files\n$/)
})

t.test('parseLogLevel', async (t) => {
  for (const level of ['debug', 'info', 'warning', 'error', 'critical']) t.equal(parseLogLevel(level), level)
  t.equal(parseLogLevel(' WARNING '), 'warning', 'case-insensitive, trimmed')
  t.equal(parseLogLevel('Error'), 'error')
  for (const bad of ['warn', '', 'verbose', 3, undefined, null, ['info']]) {
    const err = t.throws(() => parseLogLevel(bad)) as ConfigError
    t.ok(err instanceof ConfigError)
    t.equal(err.option, 'log-level')
    t.match(err.message, /^log-level must be one of debug, info, warning, error, critical, got /)
  }
  t.throws(() => parseLogLevel('loud', '--log-level'), { option: '--log-level', message: /^--log-level must be one of .*, got "loud"$/ })
})
