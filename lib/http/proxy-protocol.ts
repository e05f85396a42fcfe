/**
 * The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's
 * proxy-protocol.txt specifies it: a header a load balancer sends first on
 * each connection to say whom the connection is really from.
 */
import type { Socket } from 'node:net'
import { ipFamily } from '../ip.js'

/** A malformed, missing or late PROXY protocol header. */
export class ProxyProtocolError extends Error {
  readonly code = 'SDSERVE_ERR_PROXY_PROTOCOL'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ProxyProtocolError'
  }
}

export interface ProxyAddress {
  /** An IP address, or for family unix the socket path (`@name` for an abstract socket). */
  address: string
  /** The port; 0 for family unix. */
  port: number
}

export interface ProxyHeader {
  version: 1 | 2
  /** LOCAL: the proxy's own connection (a health check): use the real endpoints. */
  command: 'PROXY' | 'LOCAL'
  /** The address family, named as in v1 whatever the transport: `tcp4` is AF_INET, `tcp6` AF_INET6. */
  family: 'tcp4' | 'tcp6' | 'unix' | 'unknown'
  /** `dgram` only from v2 for a UDP or SOCK_DGRAM original; `unspec` with family unknown. */
  transport: 'stream' | 'dgram' | 'unspec'
  /** The client, for command PROXY with a known family. */
  source?: ProxyAddress
  /** The address the client connected to. */
  destination?: ProxyAddress
  /** Bytes the header takes (TLVs included): the connection's own data starts there. */
  length: number
}

/** "PROXY " */
const V1_PREFIX = Buffer.from('PROXY ', 'latin1')
/** The v1 line, CRLF included, is at most 107 bytes. */
const V1_MAX = 107
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V2_HEADER = 16

/** Whether buf's first bytes agree with prefix (as far as buf goes). */
function agrees(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length)
  return buf.subarray(0, n).equals(prefix.subarray(0, n))
}

/**
 * Parse a PROXY protocol header at the start of buf. Returns 'incomplete'
 * when buf holds a valid beginning of a header (more bytes could complete
 * it), and throws ProxyProtocolError when no more bytes could make it valid.
 * Bytes after the header are not looked at: `length` says where they start.
 */
export function parseProxyHeader(buf: Buffer): ProxyHeader | 'incomplete' {
  if (buf.length === 0) return 'incomplete'
  if (agrees(buf, V1_PREFIX)) return parseV1(buf)
  if (agrees(buf, V2_SIGNATURE)) return parseV2(buf)
  throw new ProxyProtocolError('missing PROXY protocol header')
}

// ---- version 1 ----

const V1_PROTOCOLS = ['TCP4', 'TCP6', 'UNKNOWN']

function v1Error(problem: string): ProxyProtocolError {
  return new ProxyProtocolError(`invalid PROXY protocol v1 header: ${problem}`)
}

function validPort(text: string): boolean {
  return /^(?:0|[1-9]\d{0,4})$/.test(text) && Number(text) <= 65535
}

/**
 * Check the space-separated fields of a v1 line. With complete false the
 * line is still arriving: its last field need only be the start of a valid one.
 */
function checkV1Fields(fields: string[], complete: boolean): void {
  for (const [i, field] of fields.entries()) {
    const last = !complete && i === fields.length - 1
    if (i === 0) continue // "PROXY", checked by the caller
    if (i === 1) {
      if (last ? !V1_PROTOCOLS.some((p) => p.startsWith(field)) : !V1_PROTOCOLS.includes(field))
        throw v1Error(`unknown protocol ${JSON.stringify(field)}`)
      continue
    }
    const protocol = fields[1]!
    // After UNKNOWN the receiver ignores everything up to the CRLF.
    if (protocol === 'UNKNOWN') return
    const family = protocol === 'TCP4' ? 4 : 6
    if (i === 2 || i === 3) {
      const ok = last
        ? family === 4
          ? /^[\d.]{0,15}$/.test(field)
          : /^[\dA-Fa-f:.]{0,45}$/.test(field)
        : ipFamily(field) === family
      if (!ok) throw v1Error(`${JSON.stringify(field)} is not an IPv${family} address`)
    } else if (i === 4 || i === 5) {
      if (last ? !(field === '' || validPort(field)) : !validPort(field))
        throw v1Error(`${JSON.stringify(field)} is not a port (0 to 65535)`)
    } else throw v1Error('too many fields')
  }
  if (complete && fields[1] !== 'UNKNOWN' && fields.length < 6)
    throw v1Error(`expected "PROXY ${fields[1]!} SOURCE DESTINATION SPORT DPORT"`)
}

function parseV1(buf: Buffer): ProxyHeader | 'incomplete' {
  const limit = Math.min(buf.length, V1_MAX)
  let end = -1
  for (let i = 0; i < limit; i++) {
    const c = buf[i]
    if (c === 0x0a) throw v1Error('LF without CR')
    if (c === 0x0d) {
      end = i
      break
    }
  }
  // The CRLF must end by byte 107: a CR later than byte 106, or none in 106 bytes, is too late.
  if ((end === -1 ? buf.length : end) > V1_MAX - 2) throw v1Error(`no CRLF within ${V1_MAX} bytes`)
  if (end === -1) {
    // The line is still arriving: its last field need only be a valid beginning.
    checkV1Fields(buf.toString('latin1').split(' '), false)
    return 'incomplete'
  }
  if (end + 1 === buf.length) {
    // The line is complete; only its LF is missing.
    checkV1Fields(buf.toString('latin1', 0, end).split(' '), true)
    return 'incomplete'
  }
  if (buf[end + 1] !== 0x0a) throw v1Error('CR without LF')
  const fields = buf.toString('latin1', 0, end).split(' ')
  checkV1Fields(fields, true)
  const length = end + 2
  if (fields[1] === 'UNKNOWN') return { version: 1, command: 'PROXY', family: 'unknown', transport: 'unspec', length }
  return {
    version: 1,
    command: 'PROXY',
    family: fields[1] === 'TCP4' ? 'tcp4' : 'tcp6',
    transport: 'stream',
    source: { address: fields[2]!, port: Number(fields[4]) },
    destination: { address: fields[3]!, port: Number(fields[5]) },
    length,
  }
}

// ---- version 2 ----

function v2Error(problem: string): ProxyProtocolError {
  return new ProxyProtocolError(`invalid PROXY protocol v2 header: ${problem}`)
}

const hex = (byte: number): string => `0x${byte.toString(16).padStart(2, '0')}`

/** Address block sizes by address family (the high nibble of byte 13). */
const V2_FAMILIES: Record<number, { family: ProxyHeader['family']; size: number }> = {
  0x1: { family: 'tcp4', size: 12 },
  0x2: { family: 'tcp6', size: 36 },
  0x3: { family: 'unix', size: 216 },
}

/** The family-and-transport bytes the spec defines: UNSPEC, then STREAM and DGRAM of INET, INET6 and UNIX. */
const V2_FAMILY_BYTES: ReadonlySet<number> = new Set([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32])

/** RFC 5952 text of a 16-byte IPv6 address (`::ffff:1.2.3.4` for IPv4-mapped, as inet_ntop writes it). */
function formatIPv6(b: Buffer): string {
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff)
    return `::ffff:${b[12]!}.${b[13]!}.${b[14]!}.${b[15]!}`
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i))
  // The longest run of two or more zero groups (the first of equals) becomes "::".
  let bestStart = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const text = groups.map((g) => g.toString(16))
  if (bestStart === -1) return text.join(':')
  return `${text.slice(0, bestStart).join(':')}::${text.slice(bestStart + bestLen).join(':')}`
}

/** A sun_path: up to the first NUL; an abstract name (leading NUL) as `@name`, trailing NULs dropped. */
function unixPath(b: Buffer): string {
  if (b[0] === 0) {
    let end = b.length
    while (end > 1 && b[end - 1] === 0) end--
    return end === 1 ? '' : `@${b.toString('utf8', 1, end)}`
  }
  const nul = b.indexOf(0)
  return b.toString('utf8', 0, nul === -1 ? b.length : nul)
}

function parseV2(buf: Buffer): ProxyHeader | 'incomplete' {
  if (buf.length > 12) {
    const verCmd = buf[12]!
    if (verCmd >> 4 !== 2) throw v2Error(`unsupported version ${verCmd >> 4}`)
    if ((verCmd & 0xf) > 1) throw v2Error(`unknown command ${verCmd & 0xf}`)
  }
  if (buf.length > 13) {
    const fam = buf[13]!
    if (!V2_FAMILY_BYTES.has(fam)) throw v2Error(`unknown address family and protocol ${hex(fam)}`)
  }
  if (buf.length < V2_HEADER) return 'incomplete'
  const local = (buf[12]! & 0xf) === 0
  const fam = buf[13]!
  const addrLen = buf.readUInt16BE(14)
  const length = V2_HEADER + addrLen
  const spec = V2_FAMILIES[fam >> 4]
  if (!local && spec !== undefined && addrLen < spec.size)
    throw v2Error(`${addrLen} bytes of addresses, family ${spec.family} needs ${spec.size}`)
  if (buf.length < length) return 'incomplete'
  // LOCAL: "the receiver must ... use the real connection endpoints and discard the protocol block including the family".
  if (local || spec === undefined) return { version: 2, command: local ? 'LOCAL' : 'PROXY', family: 'unknown', transport: 'unspec', length }
  const transport = (fam & 0xf) === 1 ? 'stream' : 'dgram'
  const a = buf.subarray(V2_HEADER, V2_HEADER + spec.size)
  let source: ProxyAddress
  let destination: ProxyAddress
  if (spec.family === 'tcp4') {
    source = { address: `${a[0]!}.${a[1]!}.${a[2]!}.${a[3]!}`, port: a.readUInt16BE(8) }
    destination = { address: `${a[4]!}.${a[5]!}.${a[6]!}.${a[7]!}`, port: a.readUInt16BE(10) }
  } else if (spec.family === 'tcp6') {
    source = { address: formatIPv6(a.subarray(0, 16)), port: a.readUInt16BE(32) }
    destination = { address: formatIPv6(a.subarray(16, 32)), port: a.readUInt16BE(34) }
  } else {
    source = { address: unixPath(a.subarray(0, 108)), port: 0 }
    destination = { address: unixPath(a.subarray(108, 216)), port: 0 }
  }
  // TLVs (addrLen beyond the addresses) are skipped.
  return { version: 2, command: 'PROXY', family: spec.family, transport, source, destination, length }
}

/**
 * Read the PROXY protocol header a freshly accepted socket starts with.
 * Reads with socket.read() in paused mode and puts every byte after the
 * header back with socket.unshift(), so that what follows (an HTTP request)
 * can be read as if the header had never been there, for example by
 * `httpServer.emit('connection', socket)`. Rejects with ProxyProtocolError
 * when the header is malformed or missing, when it is not complete within
 * timeoutMs, or when the connection ends, fails or closes first; the socket
 * is then destroyed. On success every listener readProxyHeader added is
 * removed again: the socket needs an 'error' listener of its new owner.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyHeader> {
  return new Promise((resolve, reject) => {
    let acc: Buffer = Buffer.alloc(0)
    // Called once: it removes every listener that could call it again, and the timer.
    const finish = (err: ProxyProtocolError | undefined, header?: ProxyHeader): void => {
      clearTimeout(timer)
      socket.off('readable', onReadable)
      socket.off('end', onEnd)
      socket.off('error', onError)
      socket.off('close', onClose)
      if (err === undefined) resolve(header!)
      else {
        // Nothing valid can follow a bad header; and a socket without an 'error' listener must not stay open.
        socket.destroy()
        reject(err)
      }
    }
    const onReadable = (): void => {
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
        acc = acc.length === 0 ? chunk : Buffer.concat([acc, chunk])
        let header: ProxyHeader | 'incomplete'
        try {
          header = parseProxyHeader(acc)
        } catch (err) {
          finish(err as ProxyProtocolError)
          return
        }
        if (header === 'incomplete') continue
        finish(undefined, header)
        if (acc.length > header.length) socket.unshift(acc.subarray(header.length))
        return
      }
    }
    const onEnd = (): void => finish(new ProxyProtocolError('connection ended before the PROXY protocol header was complete'))
    const onClose = (): void => finish(new ProxyProtocolError('connection closed before the PROXY protocol header was complete'))
    const onError = (err: Error): void =>
      finish(new ProxyProtocolError(`connection failed before the PROXY protocol header was complete: ${err.message}`, { cause: err }))
    const timer = setTimeout(
      () => finish(new ProxyProtocolError(`no complete PROXY protocol header within ${timeoutMs} ms`)),
      timeoutMs,
    )
    socket.on('readable', onReadable)
    socket.once('end', onEnd)
    socket.once('error', onError)
    socket.once('close', onClose)
    if (socket.destroyed || socket.readableEnded) onClose()
  })
}
