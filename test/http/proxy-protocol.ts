import t from 'tap'
import { PassThrough } from 'node:stream'
import { createServer as createHttpServer } from 'node:http'
import { connect, createServer, Socket, type AddressInfo, type Server } from 'node:net'
import { parseProxyHeader, ProxyProtocolError, readProxyHeader, type ProxyHeader } from '../../lib/http/proxy-protocol.js'

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex')

/** A v2 header: signature, version 2 + command, family byte, length, body. */
function v2(command: number, fam: number, body: Buffer | number[]): Buffer {
  const b = Buffer.from(body)
  const len = Buffer.alloc(2)
  len.writeUInt16BE(b.length)
  return Buffer.concat([SIG, Buffer.from([0x20 | command, fam]), len, b])
}

const port = (n: number): number[] => [n >> 8, n & 0xff]
const inet4 = [192, 0, 2, 1, 198, 51, 100, 2, ...port(56324), ...port(443)]
const ip6 = (hex: string): number[] => [...Buffer.from(hex, 'hex')]
const inet6 = [
  ...ip6('20010db8000000000000000000000001'),
  ...ip6('20010db8000000000000000000000002'),
  ...port(65535),
  ...port(0),
]
function sunPath(path: string): Buffer {
  const b = Buffer.alloc(108)
  b.write(path, 'latin1')
  return b
}
const unixBody = [...sunPath('/run/haproxy.sock'), ...sunPath('/run/app.sock')]
/** TLVs: PP2_TYPE_ALPN "h2" and PP2_TYPE_NOOP with 3 bytes. */
const tlvs = [0x01, 0x00, 0x02, 0x68, 0x32, 0x04, 0x00, 0x03, 0, 0, 0]

const V1_TCP4 = 'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n'
const V1_TCP6 = 'PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n'
const V1_UNKNOWN = 'PROXY UNKNOWN\r\n'
const V1_UNKNOWN_ADDRS = 'PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n'
/** The longest v1 line the spec allows: 107 bytes with the CRLF. */
const V1_LONGEST = `PROXY UNKNOWN ${'x'.repeat(107 - 16)}\r\n`

const valid: Array<[string, Buffer, ProxyHeader]> = [
  [
    'v1 TCP4',
    Buffer.from(V1_TCP4),
    {
      version: 1,
      command: 'PROXY',
      family: 'tcp4',
      transport: 'stream',
      source: { address: '192.0.2.1', port: 56324 },
      destination: { address: '198.51.100.2', port: 443 },
      length: V1_TCP4.length,
    },
  ],
  [
    'v1 TCP6',
    Buffer.from(V1_TCP6),
    {
      version: 1,
      command: 'PROXY',
      family: 'tcp6',
      transport: 'stream',
      source: { address: '2001:db8::1', port: 65535 },
      destination: { address: '2001:db8::2', port: 0 },
      length: V1_TCP6.length,
    },
  ],
  ['v1 UNKNOWN', Buffer.from(V1_UNKNOWN), { version: 1, command: 'PROXY', family: 'unknown', transport: 'unspec', length: 15 }],
  [
    'v1 UNKNOWN with ignored fields',
    Buffer.from(V1_UNKNOWN_ADDRS),
    { version: 1, command: 'PROXY', family: 'unknown', transport: 'unspec', length: V1_UNKNOWN_ADDRS.length },
  ],
  ['v1 of 107 bytes', Buffer.from(V1_LONGEST), { version: 1, command: 'PROXY', family: 'unknown', transport: 'unspec', length: 107 }],
  [
    'v2 PROXY inet stream',
    v2(1, 0x11, inet4),
    {
      version: 2,
      command: 'PROXY',
      family: 'tcp4',
      transport: 'stream',
      source: { address: '192.0.2.1', port: 56324 },
      destination: { address: '198.51.100.2', port: 443 },
      length: 28,
    },
  ],
  [
    'v2 PROXY inet dgram with TLVs',
    v2(1, 0x12, [...inet4, ...tlvs]),
    {
      version: 2,
      command: 'PROXY',
      family: 'tcp4',
      transport: 'dgram',
      source: { address: '192.0.2.1', port: 56324 },
      destination: { address: '198.51.100.2', port: 443 },
      length: 28 + tlvs.length,
    },
  ],
  [
    'v2 PROXY inet6',
    v2(1, 0x21, inet6),
    {
      version: 2,
      command: 'PROXY',
      family: 'tcp6',
      transport: 'stream',
      source: { address: '2001:db8::1', port: 65535 },
      destination: { address: '2001:db8::2', port: 0 },
      length: 52,
    },
  ],
  [
    'v2 PROXY inet6 with TLVs',
    v2(1, 0x22, [...inet6, ...tlvs]),
    {
      version: 2,
      command: 'PROXY',
      family: 'tcp6',
      transport: 'dgram',
      source: { address: '2001:db8::1', port: 65535 },
      destination: { address: '2001:db8::2', port: 0 },
      length: 52 + tlvs.length,
    },
  ],
  [
    'v2 PROXY unix',
    v2(1, 0x31, unixBody),
    {
      version: 2,
      command: 'PROXY',
      family: 'unix',
      transport: 'stream',
      source: { address: '/run/haproxy.sock', port: 0 },
      destination: { address: '/run/app.sock', port: 0 },
      length: 232,
    },
  ],
  [
    'v2 PROXY unix with TLVs',
    v2(1, 0x32, [...unixBody, ...tlvs]),
    {
      version: 2,
      command: 'PROXY',
      family: 'unix',
      transport: 'dgram',
      source: { address: '/run/haproxy.sock', port: 0 },
      destination: { address: '/run/app.sock', port: 0 },
      length: 232 + tlvs.length,
    },
  ],
  ['v2 LOCAL unspec', v2(0, 0x00, []), { version: 2, command: 'LOCAL', family: 'unknown', transport: 'unspec', length: 16 }],
  ['v2 LOCAL inet (addresses discarded)', v2(0, 0x11, inet4), { version: 2, command: 'LOCAL', family: 'unknown', transport: 'unspec', length: 28 }],
  ['v2 LOCAL inet6', v2(0, 0x21, inet6), { version: 2, command: 'LOCAL', family: 'unknown', transport: 'unspec', length: 52 }],
  ['v2 LOCAL unix', v2(0, 0x31, unixBody), { version: 2, command: 'LOCAL', family: 'unknown', transport: 'unspec', length: 232 }],
  ['v2 LOCAL with a short block', v2(0, 0x11, []), { version: 2, command: 'LOCAL', family: 'unknown', transport: 'unspec', length: 16 }],
  ['v2 PROXY unspec with TLVs', v2(1, 0x00, tlvs), { version: 2, command: 'PROXY', family: 'unknown', transport: 'unspec', length: 16 + tlvs.length }],
]

t.test('valid headers parse; bytes after them are not looked at', async (t) => {
  for (const [name, buf, expected] of valid) {
    t.same(parseProxyHeader(buf), expected, name)
    t.same(parseProxyHeader(Buffer.concat([buf, Buffer.from('GET / HTTP/1.1\r\n')])), expected, `${name} + request`)
    t.same(parseProxyHeader(Buffer.concat([buf, Buffer.from([0xff, 0x00])])), expected, `${name} + binary`)
  }
})

t.test('every proper prefix of a valid header is incomplete', async (t) => {
  let checked = 0
  for (const [name, buf] of valid) {
    for (let i = 0; i < buf.length; i++) {
      const got = parseProxyHeader(buf.subarray(0, i))
      if (got !== 'incomplete') t.fail(`${name}: ${i} bytes gave ${JSON.stringify(got)}`)
      checked++
    }
  }
  t.pass(`${checked} prefixes incomplete`)
  t.equal(parseProxyHeader(Buffer.alloc(0)), 'incomplete')
})

t.test('IPv6 and UNIX addresses of v2 are written as the kernel writes them', async (t) => {
  const six = (a: string): string | undefined => {
    const h = parseProxyHeader(v2(1, 0x21, [...ip6(a), ...ip6('00000000000000000000000000000001'), 0, 80, 0, 81]))
    return h === 'incomplete' ? undefined : h.source?.address
  }
  t.equal(six('00000000000000000000000000000000'), '::')
  t.equal(six('00000000000000000000000000000001'), '::1')
  t.equal(six('00010000000000000000000000000000'), '1::')
  t.equal(six('00010002000300040005000600070008'), '1:2:3:4:5:6:7:8')
  t.equal(six('00010000000200030004000500060007'), '1:0:2:3:4:5:6:7', 'one zero group is not compressed')
  t.equal(six('00010000000000020000000000000003'), '1:0:0:2::3', 'the longest run')
  t.equal(six('00010000000000020003000000000004'), '1::2:3:0:0:4', 'the first of equal runs')
  t.equal(six('fe80000000000000abcdef0012345678'), 'fe80::abcd:ef00:1234:5678')
  t.equal(six('00000000000000000000ffffc0000201'), '::ffff:192.0.2.1', 'IPv4-mapped')

  const unix = (src: Buffer): string | undefined => {
    const h = parseProxyHeader(v2(1, 0x31, [...src, ...sunPath('/x')]))
    return h === 'incomplete' ? undefined : h.source?.address
  }
  t.equal(unix(sunPath('\0haproxy')), '@haproxy', 'abstract')
  t.equal(unix(sunPath('')), '', 'unnamed')
  t.equal(unix(Buffer.alloc(108, 0x61)), 'a'.repeat(108), 'a path filling sun_path, no NUL')
  t.equal(unix(sunPath('/run/é.sock')), Buffer.from('/run/é.sock', 'latin1').toString('utf8'), 'bytes as UTF-8')
})

const malformed: Array<[string, Buffer, RegExp]> = [
  ['v1 unknown protocol', Buffer.from('PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n'), /v1 header: unknown protocol "TCP5"/],
  ['v1 empty protocol', Buffer.from('PROXY \r\n'), /unknown protocol ""/],
  ['v1 lower case', Buffer.from('PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n'), /unknown protocol "tcp4"/],
  ['v1 bad IPv4', Buffer.from('PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n'), /"1.2.3" is not an IPv4 address/],
  ['v1 IPv6 in TCP4', Buffer.from('PROXY TCP4 ::1 ::2 1 2\r\n'), /"::1" is not an IPv4 address/],
  ['v1 IPv4 in TCP6', Buffer.from('PROXY TCP6 ::1 5.6.7.8 1 2\r\n'), /"5.6.7.8" is not an IPv6 address/],
  ['v1 bracketed IPv6', Buffer.from('PROXY TCP6 [::1] ::2 1 2\r\n'), /"\[::1\]" is not an IPv6 address/],
  ['v1 port too big', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'), /"65536" is not a port/],
  ['v1 port with a leading zero', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 02\r\n'), /"02" is not a port/],
  ['v1 negative port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n'), /"-1" is not a port/],
  ['v1 named port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 http 2\r\n'), /"http" is not a port/],
  ['v1 too many fields', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n'), /too many fields/],
  ['v1 trailing space', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n'), /too many fields/],
  ['v1 too few fields', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'), /expected "PROXY TCP4 SOURCE DESTINATION SPORT DPORT"/],
  ['v1 protocol only', Buffer.from('PROXY TCP6\r\n'), /expected "PROXY TCP6 /],
  ['v1 double space', Buffer.from('PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n'), /"" is not an IPv4 address/],
  ['v1 LF only', Buffer.from('PROXY UNKNOWN\n'), /LF without CR/],
  ['v1 CR without LF', Buffer.from('PROXY UNKNOWN\rX'), /CR without LF/],
  ['v1 of 108 bytes', Buffer.from(`PROXY UNKNOWN ${'x'.repeat(92)}\r\n`), /no CRLF within 107 bytes/],
  ['v1 without CRLF', Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}`), /no CRLF within 107 bytes/],
  ['v1 CR at byte 107', Buffer.from(`PROXY UNKNOWN ${'x'.repeat(92)}\r`), /no CRLF within 107 bytes/],
  // Detected before the line is complete: no byte that follows could make these valid.
  ['v1 partial bad protocol', Buffer.from('PROXY FOO'), /unknown protocol "FOO"/],
  ['v1 partial bad address', Buffer.from('PROXY TCP4 1.2.3.4x'), /"1.2.3.4x" is not an IPv4 address/],
  ['v1 partial bad IPv6', Buffer.from('PROXY TCP6 2001:db8::g'), /not an IPv6 address/],
  ['v1 partial complete bad address', Buffer.from('PROXY TCP4 1.2.3.4.5 '), /"1.2.3.4.5" is not an IPv4 address/],
  ['v1 partial bad port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999'), /"99999" is not a port/],
  ['v1 complete but for the LF', Buffer.from('PROXY TCP4\r'), /expected "PROXY TCP4 /],
  ['v1 partial too many', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3'), /too many fields/],
  ['v2 version 1', Buffer.concat([SIG, Buffer.from([0x11])]), /v2 header: unsupported version 1/],
  ['v2 version 3', v2(1, 0x11, inet4).fill(0x31, 12, 13), /unsupported version 3/],
  ['v2 command 2', Buffer.concat([SIG, Buffer.from([0x22])]), /unknown command 2/],
  ['v2 command 15', v2(15, 0x11, inet4), /unknown command 15/],
  ['v2 family 0x41', Buffer.concat([SIG, Buffer.from([0x21, 0x41])]), /unknown address family and protocol 0x41/],
  ['v2 family 0x13', v2(1, 0x13, inet4), /0x13/],
  ['v2 family 0x10', v2(1, 0x10, inet4), /0x10/],
  ['v2 family 0x01', v2(1, 0x01, inet4), /0x01/],
  ['v2 family 0x13 with LOCAL', v2(0, 0x13, []), /0x13/],
  ['v2 inet block too short', v2(1, 0x11, inet4.slice(0, 11)).subarray(0, 16), /11 bytes of addresses, family tcp4 needs 12/],
  ['v2 inet6 block too short', v2(1, 0x21, inet6.slice(0, 35)), /35 bytes of addresses, family tcp6 needs 36/],
  ['v2 unix block too short', v2(1, 0x31, unixBody.slice(0, 215)), /215 bytes of addresses, family unix needs 216/],
  ['v2 bad signature', Buffer.from('0d0a0d0a000d0a51554954', 'hex').fill(0x0b, 10), /^missing PROXY protocol header$/],
  ['HTTP', Buffer.from('GET / HTTP/1.1\r\n'), /^missing PROXY protocol header$/],
  ['POST', Buffer.from('POST / HTTP/1.1\r\n'), /^missing PROXY protocol header$/],
  ['TLS', Buffer.from([0x16, 0x03, 0x01]), /^missing PROXY protocol header$/],
  ['lower-case proxy', Buffer.from('proxy TCP4'), /^missing PROXY protocol header$/],
  ['PROXY without space', Buffer.from('PROXYTCP4'), /^missing PROXY protocol header$/],
  ['CRLF then not v2', Buffer.from('\r\nGET'), /^missing PROXY protocol header$/],
]

t.test('malformed headers throw ProxyProtocolError', async (t) => {
  for (const [name, buf, re] of malformed) {
    const err = t.throws(() => parseProxyHeader(buf), name) as ProxyProtocolError
    t.ok(err instanceof ProxyProtocolError, `${name}: a ProxyProtocolError`)
    t.equal(err.code, 'SDSERVE_ERR_PROXY_PROTOCOL')
    t.equal(err.name, 'ProxyProtocolError')
    t.match(err.message, re, name)
  }
})

interface Harness {
  port: number
  /** One entry per accepted connection: the header, or the rejection. */
  results: Array<Promise<ProxyHeader>>
  /** Server-side sockets, in accept order. */
  sockets: Socket[]
}

/**
 * A TCP server on 127.0.0.1 that reads a PROXY header from each connection
 * and then hands the socket to an http.Server answering with what it got.
 */
async function harness(t: { teardown(fn: () => void): void }, timeoutMs = 10000, pauseOnConnect = false): Promise<Harness> {
  const http = createHttpServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (d: string) => (body += d))
    req.on('end', () => res.end(`${req.method ?? ''} ${req.url ?? ''} ${req.headers.host ?? ''} [${body}]`))
  })
  const h: Harness = { port: 0, results: [], sockets: [] }
  const server: Server = createServer({ pauseOnConnect }, (socket) => {
    h.sockets.push(socket)
    const result = readProxyHeader(socket, timeoutMs)
    h.results.push(result)
    result.then(
      () => http.emit('connection', socket),
      () => undefined,
    )
  })
  t.teardown(() => {
    for (const s of h.sockets) s.destroy()
    server.close()
    http.close()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  h.port = (server.address() as AddressInfo).port
  return h
}

/** Connect, run send(socket), and resolve with everything the server answers until it closes. */
function exchange(port: number, send: (s: Socket) => Promise<void> | void): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    socket.setNoDelay(true)
    let out = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => (out += d))
    socket.on('close', () => resolve(out))
    // The server may reset a connection it refuses: what counts is that it answered nothing.
    socket.on('error', () => undefined)
    socket.once('connect', () => {
      Promise.resolve(send(socket)).catch(reject)
    })
  })
}

const write = (s: Socket, data: Buffer | string): Promise<void> =>
  new Promise((resolve, reject) => s.write(data, (err) => (err ? reject(err) : resolve())))

const POST = 'POST /submit?x=1 HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello'

/** Wait (bounded) until the server has accepted n connections. */
async function accepted(h: Harness, n: number): Promise<void> {
  for (let i = 0; i < 500 && h.results.length < n; i++) await new Promise((r) => setTimeout(r, 10))
}

t.test('readProxyHeader: header and request in one write', async (t) => {
  const h = await harness(t)
  const v2Header = v2(1, 0x11, [...inet4, ...tlvs])
  for (const header of [Buffer.from(V1_TCP4), v2Header]) {
    const reply = await exchange(h.port, (s) => {
      s.end(Buffer.concat([header, Buffer.from(POST)]))
    })
    t.match(reply, /^HTTP\/1.1 200 OK\r\n[\s\S]*\r\n\r\nPOST \/submit\?x=1 app.example \[hello\]$/)
  }
  t.match(await h.results[0], { version: 1, family: 'tcp4', source: { address: '192.0.2.1', port: 56324 } })
  t.match(await h.results[1], { version: 2, family: 'tcp4', length: 28 + tlvs.length })
})

t.test('readProxyHeader: byte by byte, on a socket paused on connect', async (t) => {
  for (const pause of [false, true]) {
    const h = await harness(t, 10000, pause)
    for (const header of [Buffer.from(V1_TCP6), v2(1, 0x21, inet6)]) {
      const data = Buffer.concat([header, Buffer.from(POST)])
      const reply = await exchange(h.port, async (s) => {
        for (let i = 0; i < data.length; i++) await write(s, data.subarray(i, i + 1))
        s.end()
      })
      t.match(reply, /\r\n\r\nPOST \/submit\?x=1 app.example \[hello\]$/, `pauseOnConnect ${pause}, v${header[0] === 0x50 ? 1 : 2}`)
    }
    t.match(await h.results[0], { version: 1, family: 'tcp6', source: { address: '2001:db8::1' } })
    t.match(await h.results[1], { version: 2, family: 'tcp6', destination: { address: '2001:db8::2', port: 0 } })
  }
})

t.test('readProxyHeader: the header alone, the request after it resolved', async (t) => {
  const h = await harness(t)
  const reply = await exchange(h.port, async (s) => {
    await write(s, V1_UNKNOWN)
    await accepted(h, 1)
    t.match(await h.results[0], { family: 'unknown', length: 15 })
    s.end(POST)
  })
  t.match(reply, /\[hello\]$/)
})

t.test('readProxyHeader rejects malformed and missing headers', async (t) => {
  const h = await harness(t)
  const cases: Array<[string | Buffer, RegExp]> = [
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n' + POST, /"99999" is not a port/],
    ['PROXY TCP4 not-an-address', /not an IPv4 address/],
    [POST, /^missing PROXY protocol header$/],
    [v2(2, 0x11, inet4), /unknown command 2/],
  ]
  for (const [i, [data, re]] of cases.entries()) {
    const reply = await exchange(h.port, (s) => {
      s.end(data)
    })
    t.equal(reply, '', 'the connection is closed without an answer')
    await t.rejects(h.results[i]!, re)
    await t.rejects(h.results[i]!, ProxyProtocolError)
  }
})

t.test('readProxyHeader rejects when the connection ends first or the header is late', async (t) => {
  const h = await harness(t)
  await exchange(h.port, (s) => {
    s.end('PROXY TCP4 1.2.3.4')
  })
  await t.rejects(h.results[0]!, { message: 'connection ended before the PROXY protocol header was complete' })
  await exchange(h.port, (s) => {
    s.end()
  })
  await t.rejects(h.results[1]!, { message: /ended before/ }, 'nothing at all')

  const slow = await harness(t, 50)
  await exchange(slow.port, async (s) => {
    await write(s, 'PROXY TCP4 ')
    await accepted(slow, 1)
    await t.rejects(slow.results[0]!, { message: 'no complete PROXY protocol header within 50 ms', code: 'SDSERVE_ERR_PROXY_PROTOCOL' })
    s.end()
  })
  await exchange(slow.port, async () => {
    await accepted(slow, 2)
    await t.rejects(slow.results[1]!, { message: /within 50 ms/ }, 'silent client')
  })
})

t.test('readProxyHeader rejects when the socket fails or closes', async (t) => {
  const server = createServer()
  t.teardown(() => server.close())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port: p } = server.address() as AddressInfo
  const accept = (): Promise<{ server: Socket; client: Socket }> =>
    new Promise((resolve) => {
      server.once('connection', (s: Socket) => resolve({ server: s, client }))
      const client = connect(p, '127.0.0.1')
      client.on('error', () => undefined)
      t.teardown(() => client.destroy())
    })

  const a = await accept()
  const failed = readProxyHeader(a.server, 10000)
  a.server.destroy(new Error('boom'))
  const err = (await failed.then(
    () => undefined,
    (e: unknown) => e,
  )) as ProxyProtocolError
  t.ok(err instanceof ProxyProtocolError)
  t.equal(err.message, 'connection failed before the PROXY protocol header was complete: boom')
  t.ok(a.server.destroyed)
  t.match(err.cause, { message: 'boom' })

  const b = await accept()
  const before = (['readable', 'end', 'error', 'close'] as const).map((e) => b.server.listenerCount(e))
  const closed = readProxyHeader(b.server, 10000)
  b.server.destroy()
  await t.rejects(closed, { message: 'connection closed before the PROXY protocol header was complete' })

  await t.rejects(readProxyHeader(b.server, 10000), { message: /closed before/ }, 'an already destroyed socket')
  const unconnected = new Socket()
  unconnected.destroy()
  await t.rejects(readProxyHeader(unconnected, 10000), ProxyProtocolError)
  t.same(
    (['readable', 'end', 'error', 'close'] as const).map((e) => b.server.listenerCount(e)),
    before,
    'listeners are removed',
  )
})

t.test('readProxyHeader leaves no listeners behind and the data in order', async (t) => {
  const server = createServer()
  t.teardown(() => server.close())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port: p } = server.address() as AddressInfo
  const got = new Promise<Socket>((resolve) => server.once('connection', resolve))
  const client = connect(p, '127.0.0.1')
  t.teardown(() => client.destroy())
  client.end(Buffer.concat([v2(0, 0x00, []), Buffer.from('after the header')]))
  const s = await got
  const events = ['readable', 'end', 'error', 'close'] as const
  const before = events.map((e) => s.listenerCount(e))
  const header = await readProxyHeader(s, 10000)
  t.match(header, { command: 'LOCAL', length: 16 })
  t.same(
    events.map((e) => s.listenerCount(e)),
    before,
    'listeners are removed',
  )
  let rest = ''
  s.setEncoding('utf8')
  s.on('data', (d: string) => (rest += d))
  await new Promise((resolve) => s.once('end', resolve))
  t.equal(rest, 'after the header')
  s.destroy()
})

t.test('readProxyHeader: a header split across reads is put together (one read at a time)', async (t) => {
  // A stream rather than TCP: a loaded machine may deliver every piece sent over loopback in one read.
  const stream = new PassThrough()
  const result = readProxyHeader(stream as unknown as Socket, 10000)
  const data = Buffer.from(`${V1_TCP4}GET`)
  for (const piece of [data.subarray(0, 10), data.subarray(10, 20), data.subarray(20)]) {
    stream.write(piece)
    await new Promise((resolve) => setImmediate(resolve)) // 'readable' has fired and the piece was read
  }
  t.match(await result, { version: 1, family: 'tcp4', length: V1_TCP4.length })
  t.equal(String(stream.read()), 'GET', 'what follows the header is put back, in order')
})
