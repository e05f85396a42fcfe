/**
 * The master's pid file (--pid), written the way gunicorn writes it: the
 * pid and a newline, mode 0644, put in place atomically by rename so that a
 * reader (systemd's PIDFile=, a reload script) never sees a partial file.
 */
import { randomBytes } from 'node:crypto'
import { closeSync, fchmodSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs'
import { ConfigError, InvalidArgumentError, systemError } from './errors.js'

/** The largest pid_t. */
const PID_MAX = 2147483647

function checkPid(pid: unknown): number {
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid < 1 || pid > PID_MAX)
    throw new InvalidArgumentError('pid', pid, `an integer from 1 to ${PID_MAX}`)
  return pid
}

/** Whether a process with this pid exists (one we may not signal counts). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * The pid a pid file holds: null when the file is missing or is not one
 * positive integer (surrounding whitespace allowed). Other errors are thrown;
 * they name the path.
 */
export function readPidFile(path: string): number | null {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ENOENT') return null
    // Errors of read(2) itself (EISDIR, EIO) do not name the file; those of open(2) do.
    if (e.path === undefined) throw systemError('read', e.errno as number, { path })
    throw err
  }
  const m = /^\s*([0-9]{1,10})\s*$/.exec(text)
  if (m === null) return null
  const pid = Number(m[1])
  return pid >= 1 && pid <= PID_MAX ? pid : null
}

/**
 * Write `${pid}\n` to path atomically (a temporary file in the same
 * directory, mode 0644 whatever the umask, fsync, rename over path).
 * A file holding the pid of another running process is refused with a
 * ConfigError on 'pid'; a stale one (dead pid, garbage, empty) is replaced.
 * System errors (missing directory, EACCES) are thrown as they are.
 */
export function writePidFile(path: string, pid: number = process.pid): void {
  checkPid(pid)
  let holder: number | null
  try {
    holder = readPidFile(path)
  } catch (err) {
    // A directory in the way: let rename(2) report it, naming both paths.
    if ((err as NodeJS.ErrnoException).code !== 'EISDIR') throw err
    holder = null
  }
  if (holder !== null && holder !== pid && isAlive(holder))
    throw new ConfigError('pid', path, `a pid file no other running process holds (another process (pid ${holder}) holds it)`)
  const tmp = `${path}.${pid}.${randomBytes(6).toString('hex')}.tmp`
  const fd = openSync(tmp, 'wx', 0o644)
  try {
    try {
      fchmodSync(fd, 0o644)
      writeSync(fd, `${pid}\n`)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, path)
  } catch (err) {
    rmSync(tmp, { force: true })
    throw err
  }
}

/**
 * Remove path if it still holds pid, so that during a binary upgrade the old
 * master never removes the new master's file. Returns whether it removed it;
 * a missing file gives false.
 */
export function removePidFile(path: string, pid: number = process.pid): boolean {
  checkPid(pid)
  if (readPidFile(path) !== pid) return false
  rmSync(path, { force: true })
  return true
}

/** Rename a pid file (gunicorn's `.oldbin` convention during a binary upgrade); system errors are thrown. */
export function renamePidFile(from: string, to: string): void {
  renameSync(from, to)
}
