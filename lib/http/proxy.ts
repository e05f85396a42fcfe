/**
 * Trusted proxies and forwarded headers: which peers may tell sdserve who the
 * client is (`forwarded-allow-ips`, gunicorn's `forwarded_allow_ips`), what
 * they said (`Forwarded`, `X-Forwarded-For`, `-Proto`, `-Host`), and the
 * removal of those headers from requests of untrusted peers, so that an app
 * or framework told to trust proxies cannot be fooled by a client that talks
 * to sdserve directly.
 *
 * Addresses are matched with node:net's BlockList (CIDR for both families,
 * IPv4-mapped IPv6 peers against IPv4 entries); the only address parsing here
 * is ipFamily() (lib/ip.ts, net.isIP without its cost).
 */
import { BlockList, Socket } from 'node:net'
import { ipFamily } from '../ip.js'
import type { IncomingMessage } from 'node:http'
import { ConfigError } from '../errors.js'

/** The other end of a connection: an IP address, or a UNIX-socket peer (which has no address). */
export type Peer = { kind: 'inet'; address: string } | { kind: 'unix' }

/**
 * The default `forwarded-allow-ips`: the loopback addresses (gunicorn's
 * default, `127.0.0.1,::1`) and UNIX-socket peers. A peer on a UNIX socket is
 * a process on this machine that can open the socket file, which its mode and
 * owner restrict (`unix-socket-mode`, `unix-socket-owner`): the usual set-up
 * is nginx in front through a socket file, and gunicorn trusts such peers too
 * (it checks forwarded headers only for TCP peers).
 */
export const DEFAULT_FORWARDED_ALLOW_IPS = '127.0.0.1,::1,unix'

const ENTRY_EXPECTED = 'a comma-separated list of IP addresses, CIDR ranges (10.0.0.0/8, fd00::/8), "unix" or "*"'

/**
 * The set of trusted peers. Entries, comma-separated and/or as array items,
 * are trimmed and may be `*` (every peer, UNIX sockets included), an IPv4 or
 * IPv6 address, a CIDR range of either family, or `unix` (peers on a UNIX
 * socket). An empty value trusts nobody. IPv4-mapped IPv6 peers
 * (`::ffff:10.0.0.1`, what a dual-stack socket reports) match IPv4 entries;
 * conversely an IPv6 range that covers `::ffff:0:0/96` (such as `::/0`)
 * matches IPv4 peers.
 */
/** Addresses whose verdict an AllowList remembers before it starts afresh. */
export const ALLOW_CACHE_MAX = 4096

export class AllowList {
  private readonly cache = new Map<string, boolean>()
  /** clientInfo() of a request with this list: what resolveClient() stores for client() to call. */
  readonly resolve = (req: IncomingMessage): ClientInfo => clientInfo(req, this)

  private constructor(
    private readonly entries: readonly string[],
    private readonly any: boolean,
    private readonly unix: boolean,
    private readonly list: BlockList,
  ) {}

  static parse(value: string | string[], option = 'forwarded-allow-ips'): AllowList {
    const items: unknown[] = Array.isArray(value) ? value : [value]
    const entries: string[] = []
    for (const item of items) {
      if (typeof item !== 'string') throw new ConfigError(option, value, 'a string or an array of strings')
      for (const part of item.split(',')) entries.push(part.trim())
    }
    // '' and [] trust nobody; an empty entry among others is a typo.
    if (entries.every((e) => e === '')) return new AllowList([], false, false, new BlockList())
    let any = false
    let unix = false
    const list = new BlockList()
    for (const entry of entries) {
      if (entry === '') throw new ConfigError(option, value, `${ENTRY_EXPECTED}, without empty entries`)
      const lower = entry.toLowerCase()
      if (lower === '*') any = true
      else if (lower === 'unix') unix = true
      else addEntry(list, entry, option)
    }
    return new AllowList(entries, any, unix, list)
  }

  /** Whether forwarded headers from this peer are believed. */
  allows(peer: Peer): boolean {
    if (this.any) return true
    if (peer.kind === 'unix') return this.unix
    // BlockList.check() builds a native SocketAddress per call: ~6% of a
    // worker's CPU at one check per request. The verdict per address is
    // cached, in a map that is emptied when it holds ALLOW_CACHE_MAX addresses.
    let verdict = this.cache.get(peer.address)
    if (verdict === undefined) {
      const family = ipFamily(peer.address)
      verdict = family !== 0 && this.list.check(peer.address, family === 4 ? 'ipv4' : 'ipv6')
      if (this.cache.size >= ALLOW_CACHE_MAX) this.cache.clear()
      this.cache.set(peer.address, verdict)
    }
    return verdict
  }

  /** The entries, comma-separated, as given (trimmed). */
  toString(): string {
    return this.entries.join(',')
  }
}

function addEntry(list: BlockList, entry: string, option: string): void {
  const bad = (): ConfigError => new ConfigError(option, entry, ENTRY_EXPECTED)
  // A zone id (fe80::1%eth0) would be ignored by BlockList: refuse rather than match every interface.
  if (entry.includes('%')) throw bad()
  const slash = entry.indexOf('/')
  if (slash === -1) {
    const family = ipFamily(entry)
    if (family === 0) throw bad()
    list.addAddress(entry, family === 4 ? 'ipv4' : 'ipv6')
    return
  }
  const address = entry.slice(0, slash)
  const prefix = entry.slice(slash + 1)
  const family = ipFamily(address)
  if (family === 0 || !/^\d{1,3}$/.test(prefix)) throw bad()
  const bits = Number(prefix)
  if (bits > (family === 4 ? 32 : 128))
    throw new ConfigError(option, entry, `a CIDR range with a prefix length of at most ${family === 4 ? 32 : 128}`)
  list.addSubnet(address, bits, family === 4 ? 'ipv4' : 'ipv6')
}

/**
 * Set on a socket whose connection began with a PROXY protocol header: the
 * peer it names (the real client, as the load balancer saw it) stands in for
 * the connection's own address.
 */
export const PROXIED = Symbol('sdserve.proxied')

/**
 * The peer of a connection, or undefined when it cannot be told. A TCP peer
 * that reset the connection has no remoteAddress while its socket still has
 * a local address: that is not a UNIX peer (trusting it as one would let any
 * client that sends a request and a RST be believed), so only a live
 * net.Socket with neither address is a UNIX-socket peer.
 */
export function socketPeer(socket: unknown): Peer | undefined {
  if (typeof socket !== 'object' || socket === null) return undefined
  const proxied = (socket as { [PROXIED]?: Peer })[PROXIED]
  if (proxied !== undefined) return proxied
  const s = socket as Partial<Socket>
  if (typeof s.remoteAddress === 'string') return { kind: 'inet', address: s.remoteAddress }
  if (socket instanceof Socket && !socket.destroyed && socket.localAddress === undefined) return { kind: 'unix' }
  return undefined
}

/** What sdserve believes about the client of a request. */
export interface ClientInfo {
  /**
   * The client's IP address (an IPv4-mapped IPv6 address shown as IPv4),
   * `unix` for a peer on a UNIX socket that forwarded nothing, `-` when the
   * peer could not be told (the connection was already gone), or, from a
   * trusted proxy's `Forwarded` header, `unknown` or an obfuscated
   * identifier (`_hidden`) as the proxy wrote it.
   * (See client() for when the peer is read.)
   */
  address: string
  /** `http` or `https`. */
  proto: string
  /** The host the client asked for: the forwarded host from a trusted peer, else the Host header. */
  host: string | undefined
  /** Whether the peer is in the allow list, so that forwarded headers were believed. */
  trusted: boolean
}

/** What ClientInfo.address says of a peer that forwarded nothing. */
function peerText(peer: Peer | undefined): string {
  return peer === undefined ? '-' : peer.kind === 'unix' ? 'unix' : unmap(peer.address)
}

/** `::ffff:1.2.3.4` -> `1.2.3.4`; anything else unchanged. */
function unmap(address: string): string {
  if (address.length > 7 && address.slice(0, 7).toLowerCase() === '::ffff:' && ipFamily(address.slice(7)) === 4)
    return address.slice(7)
  return address
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name]
  return Array.isArray(value) ? value.join(', ') : value
}

/** An X-Forwarded-For entry: an IP, optionally with a port (1.2.3.4:80, [::1]:80). */
function xffAddress(entry: string): string | undefined {
  if (ipFamily(entry) !== 0) return entry
  const v6 = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(entry)
  if (v6 !== null) return ipFamily(v6[1]!) === 6 ? v6[1] : undefined
  const v4 = /^([\d.]+):\d{1,5}$/.exec(entry)
  if (v4 !== null && ipFamily(v4[1]!) === 4) return v4[1]
  return undefined
}

/** A forwarded host: RFC 3986 host (reg-name or IP-literal) with an optional port; nothing else. */
const HOST_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+;=%]+)(?::\d{0,5})?$/

function validHost(value: string | undefined): string | undefined {
  return value !== undefined && HOST_RE.test(value) ? value : undefined
}

function validProto(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const lower = value.toLowerCase()
  return lower === 'http' || lower === 'https' ? lower : undefined
}

/** The right-most comma-separated value, trimmed (the one the adjacent proxy wrote). */
function rightMost(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  return value.slice(value.lastIndexOf(',') + 1).trim()
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/

/**
 * Parse an RFC 7239 Forwarded header into its elements (parameter names
 * lowercased, quoted values unquoted), or undefined when it is malformed.
 * Empty list elements are skipped; a parameter repeated in one element makes
 * the header malformed (RFC 7239 section 4).
 */
export function parseForwarded(value: string): Array<Map<string, string>> | undefined {
  const elements: Array<Map<string, string>> = []
  let i = 0
  const n = value.length
  const ows = (): void => {
    while (i < n && (value[i] === ' ' || value[i] === '\t')) i++
  }
  const token = (): string => {
    const start = i
    while (i < n && TCHAR.test(value[i]!)) i++
    return value.slice(start, i)
  }
  let element = new Map<string, string>()
  for (;;) {
    ows()
    if (i < n && value[i] !== ',' && value[i] !== ';') {
      const name = token().toLowerCase()
      if (name === '' || value[i] !== '=' || element.has(name)) return undefined
      i++
      let v: string
      if (value[i] === '"') {
        i++
        v = ''
        for (;;) {
          const c = value[i]
          if (c === undefined) return undefined
          i++
          if (c === '"') break
          if (c === '\\') {
            const next = value[i]
            if (next === undefined) return undefined
            v += next
            i++
          } else if (c < ' ' && c !== '\t') return undefined
          else v += c
        }
      } else {
        v = token()
        if (v === '') return undefined
      }
      element.set(name, v)
      ows()
    }
    if (i >= n) break
    if (value[i] === ';') i++
    else if (value[i] === ',') {
      if (element.size > 0) elements.push(element)
      element = new Map()
      i++
    } else return undefined
  }
  if (element.size > 0) elements.push(element)
  return elements
}

const OBF = /^_[A-Za-z0-9._-]+$/

/** A Forwarded `for` node: { ip } for an address, { text } for unknown or an obfuscated identifier. */
function forwardedNode(value: string): { ip: string } | { text: string } | undefined {
  let name = value
  let port: string | undefined
  if (value.startsWith('[')) {
    const end = value.indexOf(']')
    if (end === -1) return undefined
    name = value.slice(1, end)
    const rest = value.slice(end + 1)
    if (rest !== '') {
      if (!rest.startsWith(':')) return undefined
      port = rest.slice(1)
    }
    if (ipFamily(name) !== 6) return undefined
  } else if (ipFamily(value) === 6) {
    // Not RFC 7239 (which brackets IPv6), but unambiguous.
    return { ip: value }
  } else {
    const colon = value.indexOf(':')
    if (colon !== -1) {
      name = value.slice(0, colon)
      port = value.slice(colon + 1)
    }
  }
  if (port !== undefined && !/^\d{1,5}$/.test(port) && !OBF.test(port)) return undefined
  if (ipFamily(name) !== 0) return { ip: name }
  if (name.toLowerCase() === 'unknown' || OBF.test(name)) return { text: name }
  return undefined
}

/** What a trusted peer's Forwarded header says: the client (if it could be told), proto and host. */
function fromForwarded(
  elements: Array<Map<string, string>>,
  allow: AllowList,
): { address: string | undefined; proto: string | undefined; host: string | undefined } {
  // Walk from the right: skip hops that are themselves trusted proxies; the first one that is not is the client.
  let address: string | undefined
  let stop = elements[0]!
  for (let k = elements.length - 1; k >= 0; k--) {
    const element = elements[k]!
    stop = element
    const raw = element.get('for')
    const node = raw === undefined ? undefined : forwardedNode(raw)
    // A hop that did not say (or said nonsense) whom it forwarded for ends the walk at the last trusted hop.
    if (node === undefined) break
    if ('text' in node) {
      address = node.text
      break
    }
    address = unmap(node.ip)
    if (!allow.allows({ kind: 'inet', address: node.ip })) break
  }
  return { address, proto: validProto(stop.get('proto')), host: validHost(stop.get('host')) }
}

/** The client X-Forwarded-For names: walking from the right over trusted proxies to the first untrusted address. */
function fromXForwardedFor(value: string, allow: AllowList): string | undefined {
  const entries = value.split(',')
  let address: string | undefined
  for (let k = entries.length - 1; k >= 0; k--) {
    const ip = xffAddress(entries[k]!.trim())
    // Anything that is not an address ends the walk at the last trusted hop (or says nothing at all).
    if (ip === undefined) break
    address = unmap(ip)
    if (!allow.allows({ kind: 'inet', address: ip })) break
  }
  return address
}

/**
 * Who the client of a request is. From a peer the allow list trusts:
 *
 * - the address comes from `Forwarded` (RFC 7239) if it names one, else from
 *   `X-Forwarded-For`. Either list is walked from the right, skipping
 *   addresses that are themselves in the allow list; the first address that
 *   is not is the client (with `*`, every hop is trusted and the left-most
 *   entry is taken, which is gunicorn's behaviour). gunicorn always takes the
 *   left-most entry, which any client can write: a proxy that appends to
 *   X-Forwarded-For leaves the client's own value in front. An entry that is
 *   not an address (or a Forwarded element without `for`) ends the walk at
 *   the last trusted hop. `for=unknown` and obfuscated identifiers
 *   (`for=_hidden`) are kept as text; ports and IPv6 brackets are dropped.
 * - `proto` comes from the `proto` of the Forwarded element the walk stopped
 *   at, else from `X-Forwarded-Proto`; only `http` and `https` are believed.
 * - `host` comes from that element's `host`, else from `X-Forwarded-Host`,
 *   if it is a syntactically valid host[:port].
 *
 * X-Forwarded-Proto and X-Forwarded-Host are single-valued by convention; a
 * proxy that appends makes a list, of which the right-most value (the one
 * the adjacent, trusted proxy wrote) is used. From an untrusted peer nothing
 * forwarded is believed. Malformed headers are ignored, never thrown. Proto
 * defaults to `https` on a TLS socket and `http` otherwise; host to the Host
 * header.
 */
export function clientInfo(req: IncomingMessage, allow: AllowList): ClientInfo {
  const peer = socketPeer(req.socket)
  const encrypted = (req.socket as { encrypted?: unknown } | null)?.encrypted === true
  const info: ClientInfo = {
    address: peerText(peer),
    proto: encrypted ? 'https' : 'http',
    host: header(req, 'host'),
    trusted: peer !== undefined && allow.allows(peer),
  }
  if (!info.trusted) return info
  const forwardedHeader = header(req, 'forwarded')
  const elements = forwardedHeader === undefined ? undefined : parseForwarded(forwardedHeader)
  const forwarded = elements === undefined || elements.length === 0 ? undefined : fromForwarded(elements, allow)
  const xff = header(req, 'x-forwarded-for')
  const address = forwarded?.address ?? (xff === undefined ? undefined : fromXForwardedFor(xff, allow))
  if (address !== undefined) info.address = address
  const proto = forwarded?.proto ?? validProto(rightMost(header(req, 'x-forwarded-proto')))
  if (proto !== undefined) info.proto = proto
  const host = forwarded?.host ?? validHost(rightMost(header(req, 'x-forwarded-host')))
  if (host !== undefined) info.host = host
  return info
}

/** The headers a proxy sets to describe the client, lowercase. */
export const FORWARDED_HEADERS = [
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-real-ip',
] as const

const FORWARDED_SET: ReadonlySet<string> = new Set(FORWARDED_HEADERS)

/**
 * Delete every FORWARDED_HEADERS header from req.headers, req.rawHeaders
 * (name/value pairs stay aligned) and req.headersDistinct; returns whether
 * anything was removed.
 */
export function stripForwarded(req: IncomingMessage): boolean {
  const raw = req.rawHeaders
  let inRaw = false
  for (let r = 0; r < raw.length && !inRaw; r += 2) inRaw = FORWARDED_SET.has(raw[r]!.toLowerCase())
  // node builds req.headers and req.headersDistinct lazily from rawHeaders, reading as many
  // entries as it parsed: build both before rawHeaders shrinks, then remove from each.
  const headers = req.headers
  let removed = inRaw
  for (const name of FORWARDED_HEADERS) {
    if (name in headers) {
      removed = true
      // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- the names are our own constants
      delete headers[name]
    }
  }
  if (!inRaw) return removed
  const distinct = req.headersDistinct
  // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- the names are our own constants
  for (const name of FORWARDED_HEADERS) delete distinct[name]
  let w = 0
  for (let r = 0; r + 1 < raw.length; r += 2) {
    const name = raw[r]!
    if (FORWARDED_SET.has(name.toLowerCase())) continue
    raw[w] = name
    raw[w + 1] = raw[r + 1]!
    w += 2
  }
  raw.length = w
  return true
}

/**
 * Where sdserve stores a request's ClientInfo (a registered symbol: any copy
 * of sdserve reads it): the ClientInfo, or a function of the request that
 * works it out (client() calls it once and stores its answer).
 */
export const CLIENT: unique symbol = Symbol.for('sdserve.client') as typeof CLIENT

type Stored = ClientInfo | ((req: IncomingMessage) => ClientInfo)
type WithClient = IncomingMessage & { [CLIENT]?: Stored }

/**
 * The ClientInfo sdserve worked out for a request it served (`import { client }
 * from 'sdserve'`), or undefined for a request sdserve did not serve.
 *
 * For a request without forwarded headers, the client is the connection's
 * peer, whose address node reads with a getpeername() system call: sdserve
 * reads it when client() is first called for the request (a client that sends
 * one request per connection would otherwise pay it on every request). Call
 * client() while the connection is open (during the request, or at its
 * response's 'finish'): once the client has gone, `address` is `-` and
 * `trusted` false, as for a client that reset the connection before its
 * request was read.
 */
export function client(req: IncomingMessage): ClientInfo | undefined {
  const stored = (req as WithClient)[CLIENT]
  if (typeof stored !== 'function') return stored
  const info = stored(req)
  ;(req as WithClient)[CLIENT] = info
  return info
}

/**
 * client(req)?.address (`-` for a request sdserve did not serve), without
 * working out the rest of the ClientInfo when it is not there yet (the access
 * log's %(h)s, for every request).
 */
export function clientAddress(req: IncomingMessage): string {
  const stored = (req as WithClient)[CLIENT]
  if (typeof stored === 'function') return peerText(socketPeer(req.socket))
  return stored?.address ?? '-'
}

/**
 * What a worker does for each request: work out who the client is, for
 * client(), and, when the peer is not trusted, strip the forwarded headers
 * (so that a framework set to trust proxies sees none) unless `strip` is false
 * (`untrusted-forwarded: keep`). A request without forwarded headers has
 * nothing to strip or believe: its ClientInfo is worked out when client()
 * first asks for it.
 */
export function resolveClient(req: IncomingMessage, allow: AllowList, options: { strip?: boolean } = {}): void {
  if (!hasForwarded(req)) {
    ;(req as WithClient)[CLIENT] = allow.resolve
    return
  }
  const info = clientInfo(req, allow)
  if (!info.trusted && options.strip !== false) stripForwarded(req)
  ;(req as WithClient)[CLIENT] = info
}

/** Does the request carry any of FORWARDED_HEADERS? (req.headers has a lowercase key for every field node kept.) */
function hasForwarded(req: IncomingMessage): boolean {
  const headers = req.headers
  for (const name of FORWARDED_HEADERS) if (headers[name] !== undefined) return true
  return false
}
