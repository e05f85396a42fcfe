/**
 * Bind specifications, as given to --bind or listen():
 *   host:port, [v6addr]:port   a TCP address (numeric, or localhost / * / empty host)
 *   unix:/path                 a UNIX stream socket at an absolute path
 *   fd://N                     a listening socket already open as fd N
 *   systemd:NAME               the inherited socket named NAME in LISTEN_FDNAMES
 */
import { Socket } from 'node:net'
import { ipFamily } from './ip.js'
import { lstatSync, unlinkSync } from 'node:fs'
import { ConfigError } from './errors.js'
import { isValidFdName, SUN_PATH_MAX } from './limits.js'

export type BindSpec =
  | { kind: 'tcp'; host: string; port: number; family: 4 | 6; text: string }
  | { kind: 'unix'; path: string; text: string }
  | { kind: 'fd'; fd: number; text: string }
  | { kind: 'systemd'; name: string; text: string }

/** What sdserve binds when there is neither --bind nor LISTEN_FDS. */
export const DEFAULT_BIND = '127.0.0.1:8000'

/** listen() backlog when none is given, as gunicorn's (node's own default is 511). */
export const DEFAULT_BACKLOG = 2048

function parsePort(option: string, text: string, portText: string): number {
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535)
    throw new ConfigError(option, text, 'HOST:PORT with a port from 0 to 65535')
  return Number(portText)
}

/** Parse one bind spec; option names the setting in the error message. */
export function parseBind(text: unknown, option = 'bind'): BindSpec {
  if (typeof text !== 'string' || text.trim() === '')
    throw new ConfigError(option, text, 'HOST:PORT, [IPV6]:PORT, unix:/PATH, fd://N or systemd:NAME')
  const spec = text.trim()
  if (spec.startsWith('unix:')) {
    const path = spec.slice(5)
    if (!path.startsWith('/')) throw new ConfigError(option, text, 'unix: followed by an absolute path')
    if (Buffer.byteLength(path) > SUN_PATH_MAX) throw new ConfigError(option, text, `a UNIX socket path of at most ${SUN_PATH_MAX} bytes`)
    return { kind: 'unix', path, text: spec }
  }
  if (spec.startsWith('fd://')) {
    const n = spec.slice(5)
    if (!/^[0-9]{1,9}$/.test(n)) throw new ConfigError(option, text, 'fd:// followed by a file descriptor number')
    return { kind: 'fd', fd: Number(n), text: spec }
  }
  if (spec.startsWith('systemd:')) {
    const name = spec.slice(8)
    if (!isValidFdName(name))
      throw new ConfigError(option, text, 'systemd: followed by a LISTEN_FDNAMES name (FileDescriptorName=)')
    return { kind: 'systemd', name, text: spec }
  }
  let host: string
  let portText: string
  const v6 = /^\[([^\]]*)\]:(.*)$/.exec(spec)
  if (v6 !== null) {
    host = v6[1] as string
    portText = v6[2] as string
    if (ipFamily(host) !== 6) throw new ConfigError(option, text, '[IPV6]:PORT with a numeric IPv6 address')
  } else {
    const colon = spec.lastIndexOf(':')
    if (colon < 0) throw new ConfigError(option, text, 'HOST:PORT, [IPV6]:PORT, unix:/PATH, fd://N or systemd:NAME')
    host = spec.slice(0, colon)
    portText = spec.slice(colon + 1)
    if (host === '' || host === '*' || host === '0.0.0.0') host = '0.0.0.0'
    else if (host === 'localhost') host = '127.0.0.1'
    else if (ipFamily(host) !== 4)
      throw new ConfigError(option, text, 'HOST:PORT with a numeric IPv4 address, localhost or *, or [IPV6]:PORT')
  }
  const port = parsePort(option, text, portText)
  const family = ipFamily(host) === 6 ? 6 : 4
  return { kind: 'tcp', host, port, family, text: family === 6 ? `[${host}]:${port}` : `${host}:${port}` }
}

/**
 * Remove a UNIX socket file left by an earlier run, safely: only a socket
 * (never a regular file or a symlink), and only when nothing answers on it.
 * Throws EADDRINUSE when a live server owns the path; option names the
 * setting in the error for a path that is not a socket.
 */
export async function removeStaleUnixSocket(path: string, option = 'bind'): Promise<'absent' | 'removed'> {
  let stat
  try {
    stat = lstatSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent'
    /* c8 ignore next 2 -- EACCES on a parent directory; nothing to remove */
    throw err
  }
  if (!stat.isSocket())
    throw new ConfigError(option, `unix:${path}`, 'a path that is free or holds a stale socket (it is another kind of file)')
  const live = await new Promise<boolean>((resolve) => {
    const probe = new Socket()
    probe.once('connect', () => {
      probe.destroy()
      resolve(true)
    })
    probe.once('error', () => { resolve(false); })
    probe.connect(path)
  })
  if (live) {
    const err = new Error(`listen EADDRINUSE: address already in use ${path}`) as NodeJS.ErrnoException
    err.code = 'EADDRINUSE'
    err.syscall = 'listen'
    err.path = path
    throw err
  }
  unlinkSync(path)
  return 'removed'
}
