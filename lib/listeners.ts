/**
 * The master's listening sockets: bind specs matched against the sockets
 * systemd passed, and sockets sdserve creates itself. A socket systemd gave
 * us is never closed or unlinked by us; one we created is closed (and its
 * UNIX path removed) when the master exits, unless systemd's fd store keeps
 * it for the next start or a new master took it over (binary upgrade).
 */
import { closeSync, lstatSync, unlinkSync } from 'node:fs'
import type { InheritedSocket } from './activation.js'
import { DEFAULT_BIND, parseBind, removeStaleUnixSocket, type BindSpec } from './binds.js'
import { ConfigError } from './errors.js'
import { formatAddress, listenTcp, listenUnix, setCloexec, socketInfo } from './native.js'

export interface Listener {
  /** LISTEN_FDNAMES name for inherited sockets, else the bind text. */
  name: string
  text: string
  fd: number
  /** True when sdserve created the socket (and so closes it at exit). */
  owned: boolean
  /** A UNIX socket path sdserve created, removed at exit. */
  unixPath?: string
  /** For reuse-port mode: the TCP address that per-worker sockets bind. */
  tcp?: { host: string; port: number; family: 4 | 6 }
  /** The socket has SO_REUSEPORT: in reuse-port mode it is worker slot 1's, and slots 2.. get their own. */
  reusePort?: boolean
  /** A duplicate is in systemd's fd store: its UNIX path must outlive this master. */
  stored?: boolean
}

export interface OpenOptions {
  backlog: number
  unixSocketMode?: number | undefined
  unixSocketOwner?: { uid: number | undefined; gid: number | undefined } | undefined
  /** Create TCP sockets with SO_REUSEPORT (balance reuse-port). */
  reusePort?: boolean
  /** Told about inherited sockets no bind asked for: they stay open, unserved. */
  warn?: (message: string) => void
  /** Inherited fds that sdserve created (handed over by an old master): owned, as if opened here. */
  owned?: ReadonlySet<number>
  /**
   * Inherited sockets that sdserve itself stored in systemd's fd store or
   * handed over in a binary upgrade: they serve the binds whose address they
   * have, never stand in for a missing --bind, and are not warned about when
   * unused (the caller removes them).
   */
  stored?: (s: InheritedSocket) => boolean
}

function sameAddress(spec: BindSpec & { kind: 'tcp' | 'unix' }, s: InheritedSocket): boolean {
  if (spec.kind === 'unix') return s.address.kind === 'unix' && s.address.path === spec.path
  return s.address.kind === 'inet' && s.address.host === spec.host && s.address.port === spec.port && spec.port !== 0
}

function fromInherited(s: InheritedSocket, options: OpenOptions): Listener {
  const owned = options.owned?.has(s.fd) === true
  const l: Listener = { name: s.name, text: s.text, fd: s.fd, owned }
  if (s.address.kind === 'inet') {
    l.tcp = { host: s.address.host, port: s.address.port, family: s.address.family }
    // An old master's own TCP socket was made for the same --balance.
    if (owned && options.reusePort === true) l.reusePort = true
  } else if (owned && s.address.kind === 'unix') l.unixPath = s.address.path
  return l
}

/**
 * Open every configured bind. With no binds: every socket the socket units
 * passed, or DEFAULT_BIND when there are none. A bind whose address matches
 * an inherited socket (a socket unit's or a stored one) uses that socket
 * instead of binding again.
 */
export async function openListeners(binds: string[], inherited: InheritedSocket[], options: OpenOptions): Promise<Listener[]> {
  const stored = (s: InheritedSocket): boolean => options.stored?.(s) === true
  const fromUnits = inherited.filter((s) => !stored(s))
  if (binds.length === 0 && fromUnits.length > 0) {
    const unusable = fromUnits.find((s) => s.type !== 'stream' || !s.listening)
    if (unusable !== undefined)
      throw new ConfigError('LISTEN_FDS', `${unusable.name}=${unusable.text}`, 'listening stream sockets (ListenStream=, Accept=no)')
    return fromUnits.map((s) => fromInherited(s, options))
  }
  const specs = (binds.length > 0 ? binds : [DEFAULT_BIND]).map((b) => parseBind(b))
  const used = new Set<number>()
  const listeners: Listener[] = []
  try {
    for (const spec of specs) {
      const match =
        spec.kind === 'systemd'
          ? inherited.find((s) => s.name === spec.name)
          : spec.kind === 'fd'
            ? undefined
            : inherited.find((s) => sameAddress(spec, s))
      if (spec.kind === 'systemd' && match === undefined)
        throw new ConfigError(
          'bind',
          spec.text,
          inherited.length > 0
            ? `the name of an inherited socket (${inherited.map((s) => s.name).join(', ')})`
            : 'the name of an inherited socket, but systemd passed none (LISTEN_FDS is not set)',
        )
      if (match !== undefined) {
        used.add(match.fd)
        listeners.push(fromInherited(match, options))
        continue
      }
      listeners.push(await openOwn(spec, options))
    }
  } catch (err) {
    closeListeners(listeners)
    throw err
  }
  for (const s of inherited)
    if (!used.has(s.fd) && !stored(s)) options.warn?.(`inherited socket ${s.name} (${s.text}) is not in --bind: left open, not served`)
  return listeners
}

async function openOwn(spec: BindSpec, options: OpenOptions): Promise<Listener> {
  switch (spec.kind) {
    case 'tcp': {
      const reusePort = options.reusePort === true
      const fd = listenTcp({ host: spec.host, port: spec.port, backlog: options.backlog, ipv6Only: spec.family === 6, reusePort })
      const info = socketInfo(fd)
      /* c8 ignore next -- a TCP socket always has an inet address */
      const port = info.address.kind === 'inet' ? info.address.port : spec.port
      const text = formatAddress(info.address)
      return { name: spec.text, text, fd, owned: true, reusePort, tcp: { host: spec.host, port, family: spec.family } }
    }
    case 'unix': {
      await removeStaleUnixSocket(spec.path)
      const fd = listenUnix(spec.path, {
        backlog: options.backlog,
        mode: options.unixSocketMode,
        uid: options.unixSocketOwner?.uid,
        gid: options.unixSocketOwner?.gid,
      })
      return { name: spec.text, text: spec.text, fd, owned: true, unixPath: spec.path }
    }
    case 'fd': {
      let info
      try {
        info = socketInfo(spec.fd)
      } catch (err) {
        throw new ConfigError('bind', spec.text, `an open listening socket (${(err as Error).message})`)
      }
      if (info.type !== 'stream' || !info.listening) throw new ConfigError('bind', spec.text, 'a listening stream socket')
      setCloexec(spec.fd, true)
      const l: Listener = { name: spec.text, text: formatAddress(info.address), fd: spec.fd, owned: false }
      if (info.address.kind === 'inet') l.tcp = { host: info.address.host, port: info.address.port, family: info.address.family }
      return l
    }
    /* c8 ignore next 2 -- systemd: binds are matched by name before openOwn() */
    case 'systemd':
      throw new ConfigError('bind', spec.text, 'an inherited socket')
  }
}

/** One more SO_REUSEPORT socket on a listener's TCP address, for one worker slot. */
export function openReusePortSocket(listener: Listener, backlog: number): number {
  const tcp = listener.tcp
  /* c8 ignore next -- callers only ask for TCP listeners */
  if (tcp === undefined) throw new ConfigError('balance', 'reuse-port', `TCP binds only (${listener.text} is not TCP)`)
  return listenTcp({ host: tcp.host, port: tcp.port, backlog, ipv6Only: tcp.family === 6, reusePort: true })
}

/**
 * Close the sockets sdserve created and remove their UNIX paths; inherited
 * sockets stay untouched. Paths stay too when `unlink` is false (a new master
 * serves them) and for sockets in systemd's fd store.
 */
export function closeListeners(listeners: Listener[], options: { unlink?: boolean } = {}): void {
  for (const l of listeners) {
    if (!l.owned) continue
    try {
      closeSync(l.fd)
      /* c8 ignore next 3 -- only if something else closed our fd */
    } catch {
      // already closed
    }
    if (l.unixPath !== undefined && options.unlink !== false && l.stored !== true) {
      try {
        // Only the path we bound: a socket systemd gave us is never unlinked.
        removeIfSocket(l.unixPath)
        /* c8 ignore next 3 -- someone removed the path while we ran */
      } catch {
        // gone already, or replaced by something we must not touch
      }
    }
  }
}

function removeIfSocket(path: string): void {
  if (lstatSync(path).isSocket()) unlinkSync(path)
}
