/**
 * Socket activation as sd_listen_fds(3) defines it, plus a description of each
 * inherited fd so that a bind can be matched by name or by address.
 */
import { ActivationError } from './errors.js'
import { formatAddress, pidfdIdSelf, setCloexec, socketInfo, type SocketInfo } from './native.js'

/** The first passed fd, SD_LISTEN_FDS_START. */
export const LISTEN_FDS_START = 3
/** More fds than this is not a socket unit, it is a corrupt environment. */
export const LISTEN_FDS_MAX = 65536

export interface InheritedSocket extends SocketInfo {
  fd: number
  /** From LISTEN_FDNAMES; "unknown" when systemd passed no names, as sd_listen_fds_with_names(3). */
  name: string
  /** The address as sdserve writes it: `127.0.0.1:8080`, `[::1]:80`, `unix:/run/app.sock`. */
  text: string
}

export interface ListenFdsOptions {
  /** The environment to read (default process.env). */
  env?: NodeJS.ProcessEnv
  /** Our pid (default process.pid). */
  pid?: number
  /**
   * Unset LISTEN_PID, LISTEN_PIDFDID, LISTEN_FDS and LISTEN_FDNAMES (default
   * true), so processes we spawn do not think the fds are theirs.
   */
  unsetEnv?: boolean
}

/** The variables of socket activation: they concern only the process they were set for. */
export const ACTIVATION_VARS = ['LISTEN_PID', 'LISTEN_PIDFDID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const

function parseDecimal(variable: string, value: string, max: bigint): bigint {
  if (!/^[0-9]{1,20}$/.test(value)) throw new ActivationError(variable, value, 'expected a non-negative decimal integer')
  const n = BigInt(value)
  if (n > max) throw new ActivationError(variable, value, `expected at most ${max}`)
  return n
}

/**
 * The sockets systemd (or systemd-socket-activate) passed to this process, in
 * order, each set close-on-exec and described. Empty when the process was not
 * socket-activated or the fds are meant for another process. Throws
 * ActivationError when the environment is malformed or an fd is not a socket.
 */
export function listenFds(options: ListenFdsOptions = {}): InheritedSocket[] {
  const env = options.env ?? process.env
  const pid = options.pid ?? process.pid
  const values = Object.fromEntries(ACTIVATION_VARS.map((v) => [v, env[v]])) as Record<(typeof ACTIVATION_VARS)[number], string | undefined>
  if (options.unsetEnv ?? true) for (const v of ACTIVATION_VARS) Reflect.deleteProperty(env, v)

  const pidText = values.LISTEN_PID
  if (pidText === undefined) return []
  if (parseDecimal('LISTEN_PID', pidText, 0x7fffffffn) !== BigInt(pid)) return []

  const pidfdText = values.LISTEN_PIDFDID
  if (pidfdText !== undefined) {
    const wanted = parseDecimal('LISTEN_PIDFDID', pidfdText, 0xffffffffffffffffn)
    const ours = pidfdIdSelf()
    // A pid reused since systemd forked us: the fds are not ours (systemd >= 256).
    if (ours !== null && ours !== wanted) return []
  }

  const countText = values.LISTEN_FDS
  if (countText === undefined) throw new ActivationError('LISTEN_FDS', undefined, 'LISTEN_PID is set but LISTEN_FDS is not')
  const count = Number(parseDecimal('LISTEN_FDS', countText, BigInt(LISTEN_FDS_MAX)))

  const namesText = values.LISTEN_FDNAMES
  let names: string[]
  if (namesText === undefined) names = Array.from({ length: count }, () => 'unknown')
  else {
    names = count === 0 && namesText === '' ? [] : namesText.split(':')
    if (names.length !== count)
      throw new ActivationError(
        'LISTEN_FDNAMES',
        namesText,
        `expected exactly LISTEN_FDS=${count} colon-separated names, got ${names.length}`,
      )
  }

  const sockets: InheritedSocket[] = []
  for (let i = 0; i < count; i++) {
    const fd = LISTEN_FDS_START + i
    const name = names[i] as string
    let info: SocketInfo
    try {
      // First: however we got here, the fd must not leak into processes the app spawns.
      setCloexec(fd, true)
      info = socketInfo(fd)
    } catch (err) {
      const code = (err as { code?: string }).code
      // A fd that was never passed is rarely EBADF in Node: its own epoll and
      // eventfd descriptors take the lowest free numbers at startup (ENOTSOCK).
      /* c8 ignore next 3 -- EBADF and other failures need fds Node has not reused */
      let problem = `fd ${fd} (${name}) cannot be used: ${(err as Error).message}`
      if (code === 'EBADF') problem = `fd ${fd} (${name}) is not open`
      if (code === 'ENOTSOCK') problem = `fd ${fd} (${name}) is not a socket (was it passed?)`
      throw new ActivationError('LISTEN_FDS', countText, problem)
    }
    sockets.push({ fd, name, text: formatAddress(info.address), ...info })
  }
  return sockets
}

let inherited: InheritedSocket[] | undefined

/**
 * listenFds() on process.env, once per process: the first call consumes the
 * environment, later calls return the same sockets.
 */
export function inheritedSockets(): InheritedSocket[] {
  inherited ??= listenFds()
  return inherited
}
