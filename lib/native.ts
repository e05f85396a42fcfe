/**
 * The only importer of the C addon. Validates arguments, turns -errno results
 * into node-style system errors, and gives socket descriptions a typed shape.
 */
import { createRequire } from 'node:module'
import { ipFamily } from './ip.js'
import { fileURLToPath } from 'node:url'
import { InvalidArgumentError, NativeLoadError, systemError } from './errors.js'
import { SUN_PATH_MAX } from './limits.js'

interface RawSocketInfo {
  family: number
  type: number
  listening: boolean
  reusePort: boolean
  host: string
  port: number
  path: Buffer
  abstract: boolean
}

interface Addon {
  listenTcp(family: number, host: string, port: number, backlog: number, v6only: boolean, reuseport: boolean): number
  listenUnix(path: string, backlog: number, mode: number, uid: number, gid: number): number
  sendFds(sock: number, payload: Buffer, fds: number[]): number
  recvFds(sock: number, maxPayload: number, maxFds: number): number | { bytes: number; payload: Buffer; fds: number[] }
  notify(address: string, message: Buffer, fds: number[]): number
  setCloexec(fd: number, on: boolean): number
  getCloexec(fd: number): number
  socketInfo(fd: number): number | RawSocketInfo
  peerCredentials(fd: number): number | PeerCredentials
  listenQueue(fd: number): number | ListenQueue
  socketPair(type: number): number | [number, number]
  pipe(): number | [number, number]
  pidfdIdSelf(): number | bigint
  constants: {
    AF_UNIX: number
    AF_INET: number
    AF_INET6: number
    SOCK_STREAM: number
    SOCK_DGRAM: number
    SOCK_SEQPACKET: number
    MAX_FDS: number
  }
}

/** The package root: dist/lib/native.js -> ../.. */
export const packageRoot = fileURLToPath(new URL('../..', import.meta.url))

const require = createRequire(import.meta.url)
// node-gyp-build's rule for this machine's libc, shared with native/install.mjs, which runs at
// `npm install` before any TypeScript is built (so a plain CommonJS file in native/, not dist/).
const { libc } = require('../../native/libc.cjs') as { libc: () => string }

let addon: Addon | undefined

/**
 * Load the addon once (the local node-gyp build in build/Release when there is
 * one, else the prebuilt binary in prebuilds/ for this platform). Throws
 * NativeLoadError naming what was looked for and how to get it.
 */
export function loadAddon(): Addon {
  if (addon !== undefined) return addon
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => Addon
    addon = nodeGypBuild(packageRoot)
  } catch (cause) {
    const reason = (cause as Error).message.split('\n')[0]
    throw new NativeLoadError(
      `sdserve's native addon could not be loaded from ${packageRoot}: looked for build/Release/*.node and ` +
        `prebuilds/linux-${process.arch}/*.node for ${libc()}, and none loads: ${reason}. ` +
        'Prebuilt binaries ship for linux-x64 (glibc and musl) and linux-arm64 (glibc); elsewhere build it with ' +
        '`npm rebuild sdserve` (needs python3, make, a C compiler and g++).',
      cause,
    )
  }
  return addon
}

/** True when the addon loads; never throws. */
export function addonAvailable(): boolean {
  try {
    loadAddon()
    return true
  } catch {
    return false
  }
}

export function checkFd(fd: unknown, argument = 'fd'): number {
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff)
    throw new InvalidArgumentError(argument, fd, 'a non-negative integer file descriptor')
  return fd
}

function checkFds(fds: unknown, argument = 'fds'): number[] {
  const max = loadAddon().constants.MAX_FDS
  if (!Array.isArray(fds) || fds.length > max)
    throw new InvalidArgumentError(argument, fds, `an array of at most ${max} file descriptors`)
  return fds.map((fd, i) => checkFd(fd, `${argument}[${i}]`))
}

function checkPayload(payload: unknown, argument: string, min: number, max: number): Buffer {
  if (!Buffer.isBuffer(payload) || payload.length < min || payload.length > max)
    throw new InvalidArgumentError(argument, payload, `a Buffer of ${min} to ${max} bytes`)
  return payload
}

const MAX_PAYLOAD = 1 << 20

export interface TcpListenOptions {
  host: string
  port: number
  backlog?: number
  ipv6Only?: boolean
  /** SO_REUSEPORT: several sockets on one port, the kernel balancing between them. */
  reusePort?: boolean
}
/** Options of listenReusePort(). */
export type ReusePortOptions = Omit<TcpListenOptions, 'reusePort'>

function checkBacklog(backlog: unknown): number {
  if (typeof backlog !== 'number' || !Number.isInteger(backlog) || backlog < 1 || backlog > 0x7fffffff)
    throw new InvalidArgumentError('backlog', backlog, 'a positive integer')
  return backlog
}

/**
 * A TCP listening socket (SO_REUSEADDR; SO_REUSEPORT when asked), close-on-exec
 * and non-blocking, made without Node's net module so that its fd can be
 * handed to workers. Returns the fd.
 */
export function listenTcp({ host, port, backlog = 511, ipv6Only = false, reusePort = false }: TcpListenOptions): number {
  const family = ipFamily(host)
  if (family === 0) throw new InvalidArgumentError('host', host, 'a numeric IPv4 or IPv6 address')
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new InvalidArgumentError('port', port, 'an integer from 0 to 65535')
  checkBacklog(backlog)
  const a = loadAddon()
  const r = a.listenTcp(family === 6 ? a.constants.AF_INET6 : a.constants.AF_INET, host, port, backlog, ipv6Only, reusePort)
  if (r < 0) throw systemError('bind', r, { address: family === 6 ? `[${host}]` : host, port })
  return r
}

/** A TCP listening socket with SO_REUSEPORT (and SO_REUSEADDR): what Node 20's `net` cannot make. Returns the fd. */
export function listenReusePort(options: ReusePortOptions): number {
  return listenTcp({ ...options, reusePort: true })
}

export interface UnixListenOptions {
  backlog?: number
  /** File mode, e.g. 0o660, set before listen(). */
  mode?: number
  uid?: number
  gid?: number
}

/**
 * A UNIX stream listening socket at an absolute path. Mode and owner are set
 * between bind() and listen(), so no client connects while they are wrong.
 * The path must be free (see removeStaleUnixSocket). Returns the fd.
 */
export function listenUnix(path: string, { backlog = 511, mode, uid, gid }: UnixListenOptions = {}): number {
  if (typeof path !== 'string' || !path.startsWith('/') || Buffer.byteLength(path) > SUN_PATH_MAX || path.includes('\0'))
    throw new InvalidArgumentError('path', path, `an absolute path of at most ${SUN_PATH_MAX} bytes`)
  checkBacklog(backlog)
  if (mode !== undefined && (!Number.isInteger(mode) || mode < 0 || mode > 0o7777))
    throw new InvalidArgumentError('mode', mode, 'a file mode from 0 to 0o7777')
  for (const [name, id] of [['uid', uid], ['gid', gid]] as const)
    if (id !== undefined && (!Number.isInteger(id) || id < 0 || id > 0x7fffffff))
      throw new InvalidArgumentError(name, id, 'a non-negative integer id')
  const r = loadAddon().listenUnix(path, backlog, mode ?? -1, uid ?? -1, gid ?? -1)
  if (r < 0) throw systemError('bind', r, { path })
  return r
}

/** Send payload (at least one byte) with fds as SCM_RIGHTS over an AF_UNIX socket. Returns bytes sent. */
export function sendFds(sock: number, payload: Buffer, fds: number[] = []): number {
  checkFd(sock, 'sock')
  checkPayload(payload, 'payload', 1, MAX_PAYLOAD)
  const r = loadAddon().sendFds(sock, payload, checkFds(fds))
  if (r < 0) throw systemError('sendmsg', r)
  return r
}

export interface ReceivedMessage {
  payload: Buffer
  /** Received descriptors, close-on-exec: the receiver owns them. */
  fds: number[]
}

/**
 * Receive one message and its SCM_RIGHTS fds. Returns null when nothing is
 * queued (EAGAIN on a non-blocking socket). A message carrying more than maxFds
 * descriptors is discarded whole (its fds closed) with an EMSGSIZE error.
 */
export function recvFds(sock: number, { maxPayload = 65536, maxFds = 16 } = {}): ReceivedMessage | null {
  checkFd(sock, 'sock')
  const a = loadAddon()
  if (!Number.isInteger(maxPayload) || maxPayload < 1 || maxPayload > MAX_PAYLOAD)
    throw new InvalidArgumentError('maxPayload', maxPayload, `an integer from 1 to ${MAX_PAYLOAD}`)
  if (!Number.isInteger(maxFds) || maxFds < 0 || maxFds > a.constants.MAX_FDS)
    throw new InvalidArgumentError('maxFds', maxFds, `an integer from 0 to ${a.constants.MAX_FDS}`)
  const r = a.recvFds(sock, maxPayload, maxFds)
  if (typeof r === 'number') {
    if (r === -11) return null // EAGAIN
    throw systemError('recvmsg', r)
  }
  return { payload: r.payload, fds: r.fds }
}

/** Send one datagram to an sd_notify address ('/path' or '@abstract'). Returns bytes sent. */
export function sendNotifyDatagram(address: string, message: Buffer, fds: number[] = []): number {
  if (typeof address !== 'string' || Buffer.byteLength(address) < 2 || Buffer.byteLength(address) > SUN_PATH_MAX)
    throw new InvalidArgumentError('address', address, `an absolute path or @name of 2 to ${SUN_PATH_MAX} bytes`)
  checkPayload(message, 'message', 1, MAX_PAYLOAD)
  const r = loadAddon().notify(address, message, checkFds(fds))
  if (r < 0) throw systemError('sendmsg', r, { path: address })
  return r
}

export function setCloexec(fd: number, on: boolean): void {
  checkFd(fd)
  const r = loadAddon().setCloexec(fd, on)
  if (r < 0) throw systemError('fcntl', r)
}

export function getCloexec(fd: number): boolean {
  checkFd(fd)
  const r = loadAddon().getCloexec(fd)
  if (r < 0) throw systemError('fcntl', r)
  return r === 1
}

export type SocketAddress =
  | { kind: 'inet'; family: 4 | 6; host: string; port: number }
  | { kind: 'unix'; path: string }
  | { kind: 'abstract'; name: string }
  | { kind: 'unnamed' }
  | { kind: 'other'; family: number }

export interface SocketInfo {
  type: 'stream' | 'dgram' | 'seqpacket' | 'other'
  listening: boolean
  reusePort: boolean
  address: SocketAddress
}

/** Describe a socket fd: family, type, listening or not, local address. */
export function socketInfo(fd: number): SocketInfo {
  checkFd(fd)
  const a = loadAddon()
  const c = a.constants
  const r = a.socketInfo(fd)
  if (typeof r === 'number') throw systemError('getsockopt', r)
  /* c8 ignore start -- raw and packet sockets, and families other than inet and unix, are described for completeness */
  const type =
    r.type === c.SOCK_STREAM
      ? 'stream'
      : r.type === c.SOCK_DGRAM
        ? 'dgram'
        : r.type === c.SOCK_SEQPACKET
          ? 'seqpacket'
          : 'other'
  let address: SocketAddress
  if (r.family === c.AF_INET || r.family === c.AF_INET6)
    address = { kind: 'inet', family: r.family === c.AF_INET ? 4 : 6, host: r.host, port: r.port }
  else if (r.family === c.AF_UNIX) {
    if (r.abstract) address = { kind: 'abstract', name: r.path.toString() }
    else if (r.path.length > 0) address = { kind: 'unix', path: r.path.toString() }
    else address = { kind: 'unnamed' }
  } else address = { kind: 'other', family: r.family }
  /* c8 ignore stop */
  return { type, listening: r.listening, reusePort: r.reusePort, address }
}

/** How sdserve writes an address in logs and bind specs: `127.0.0.1:80`, `[::1]:80`, `unix:/run/app.sock`. */
export function formatAddress(address: SocketAddress): string {
  switch (address.kind) {
    case 'inet':
      return address.family === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`
    case 'unix':
      return `unix:${address.path}`
    case 'abstract':
      // Node pads abstract names with NULs to the full sun_path length.
      return `unix:@${address.name.replace(/\0+$/, '')}`
    case 'unnamed':
      return 'unix:(unnamed)'
    case 'other':
      return `family ${address.family}`
  }
}

export interface PeerCredentials {
  pid: number
  uid: number
  gid: number
}

/**
 * The process on the other end of a connected UNIX stream socket (SO_PEERCRED,
 * as the kernel recorded it at connect() time): what a control socket checks
 * to serve only root and its own uid.
 */
export function peerCredentials(fd: number): PeerCredentials {
  checkFd(fd)
  const r = loadAddon().peerCredentials(fd)
  if (typeof r === 'number') throw systemError('getsockopt', r)
  return { pid: r.pid, uid: r.uid, gid: r.gid }
}

export interface ListenQueue {
  /** Connections the kernel has completed and that wait for accept(). */
  queued: number
  /** The most that may wait: listen()'s backlog, capped by net.core.somaxconn. */
  backlog: number
}

/**
 * The accept queue of a listening TCP or UNIX stream socket: a saturation
 * metric (workers that fall behind leave connections queued). TCP reads
 * TCP_INFO; UNIX asks NETLINK_SOCK_DIAG, since SIOCINQ is EINVAL on a UNIX
 * listener. Where netlink sockets are forbidden (systemd's
 * RestrictAddressFamilies= without AF_NETLINK) a UNIX socket throws the system
 * error (EAFNOSUPPORT): callers treat that as "unavailable".
 */
export function listenQueue(fd: number): ListenQueue {
  const info = socketInfo(fd)
  if (!info.listening || info.type !== 'stream')
    throw new InvalidArgumentError('fd', fd, 'a listening TCP or UNIX stream socket')
  // Other families (listening SCTP is inet; vsock is not) get EAFNOSUPPORT from the addon.
  const r = loadAddon().listenQueue(fd)
  // Only the UNIX path fails once socketInfo() has accepted the fd: TCP_INFO on a TCP listener does not.
  if (typeof r === 'number') throw systemError('sock_diag', r)
  return { queued: r.queued, backlog: r.backlog }
}

/** An AF_UNIX socket pair, close-on-exec and non-blocking. */
export function socketPair(type: 'stream' | 'dgram' | 'seqpacket' = 'stream'): [number, number] {
  const a = loadAddon()
  const types = { stream: a.constants.SOCK_STREAM, dgram: a.constants.SOCK_DGRAM, seqpacket: a.constants.SOCK_SEQPACKET }
  if (typeof type !== 'string' || !Object.hasOwn(types, type))
    throw new InvalidArgumentError('type', type, '"stream", "dgram" or "seqpacket"')
  const r = a.socketPair(types[type])
  /* c8 ignore next -- socketpair() fails only when out of fds or memory */
  if (typeof r === 'number') throw systemError('socketpair', r)
  return r
}

/** A pipe, close-on-exec and non-blocking: [read end, write end]. */
export function pipe(): [number, number] {
  const r = loadAddon().pipe()
  /* c8 ignore next -- pipe2() fails only when out of fds or memory */
  if (typeof r === 'number') throw systemError('pipe2', r)
  return r
}

/** The inode id of a pidfd for this process (what systemd sets LISTEN_PIDFDID to), or null without pidfs. */
export function pidfdIdSelf(): bigint | null {
  const r = loadAddon().pidfdIdSelf()
  /* c8 ignore next -- kernels without pidfs (before 6.9) */
  return typeof r === 'number' ? null : r
}
