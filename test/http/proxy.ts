import t from 'tap'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http'
import { connect, Socket, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { ConfigError } from '../../lib/errors.js'
import {
  ALLOW_CACHE_MAX,
  AllowList,
  CLIENT,
  clientAddress,
  client,
  clientInfo,
  DEFAULT_FORWARDED_ALLOW_IPS,
  FORWARDED_HEADERS,
  parseForwarded,
  resolveClient,
  socketPeer,
  stripForwarded,
  type ClientInfo,
} from '../../lib/http/proxy.js'
import { shortTmp } from '../helpers/proc.js'

const inet = (address: string) => ({ kind: 'inet', address }) as const
const UNIX = { kind: 'unix' } as const

t.test('AllowList entries: addresses, CIDR ranges, unix, *', async (t) => {
  const list = AllowList.parse(' 127.0.0.1 , ::1,10.0.0.0/8 ,2001:db8::/32, 192.168.1.0/24')
  t.equal(list.toString(), '127.0.0.1,::1,10.0.0.0/8,2001:db8::/32,192.168.1.0/24')
  t.ok(list.allows(inet('127.0.0.1')))
  t.notOk(list.allows(inet('127.0.0.2')))
  t.ok(list.allows(inet('::1')))
  t.ok(list.allows(inet('0:0:0:0:0:0:0:1')), 'IPv6 in another spelling')
  t.ok(list.allows(inet('10.255.0.1')))
  t.notOk(list.allows(inet('11.0.0.1')))
  t.ok(list.allows(inet('2001:db8:ffff::1')))
  t.notOk(list.allows(inet('2001:db9::1')))
  t.ok(list.allows(inet('192.168.1.77')))
  t.notOk(list.allows(inet('192.168.2.1')))
  t.notOk(list.allows(UNIX), 'no unix entry: UNIX peers are not trusted')
  t.notOk(list.allows(inet('not an address')))
  t.notOk(list.allows(inet('')))

  // What a dual-stack socket reports for IPv4 peers.
  t.ok(list.allows(inet('::ffff:127.0.0.1')), 'mapped IPv4 matches an IPv4 address entry')
  t.ok(list.allows(inet('::FFFF:10.1.2.3')), 'mapped IPv4 matches an IPv4 range')
  t.notOk(list.allows(inet('::ffff:11.1.2.3')))

  const host = AllowList.parse('10.0.0.1/8')
  t.ok(host.allows(inet('10.9.9.9')), 'host bits in a CIDR range are masked')
  t.ok(AllowList.parse('::/0').allows(inet('192.0.2.1')), '::/0 covers IPv4 as mapped addresses')
  t.notOk(AllowList.parse('0.0.0.0/0').allows(inet('2001:db8::1')), '0.0.0.0/0 is IPv4 only')
  t.ok(AllowList.parse('0.0.0.0/0').allows(inet('::ffff:192.0.2.1')))
  t.ok(AllowList.parse('::ffff:10.0.0.0/104').allows(inet('10.1.1.1')), 'a mapped IPv6 range matches IPv4 peers')

  const unix = AllowList.parse('unix')
  t.ok(unix.allows(UNIX))
  t.notOk(unix.allows(inet('127.0.0.1')))
  t.ok(AllowList.parse('UNIX').allows(UNIX), 'keywords are case-insensitive')

  const any = AllowList.parse('*')
  t.ok(any.allows(inet('203.0.113.9')))
  t.ok(any.allows(inet('2001:db8::9')))
  t.ok(any.allows(UNIX), '* includes UNIX-socket peers')
  t.ok(any.allows(inet('garbage')))
  t.equal(any.toString(), '*')

  const def = AllowList.parse(DEFAULT_FORWARDED_ALLOW_IPS)
  t.equal(DEFAULT_FORWARDED_ALLOW_IPS, '127.0.0.1,::1,unix')
  t.ok(def.allows(inet('127.0.0.1')) && def.allows(inet('::1')) && def.allows(UNIX) && def.allows(inet('::ffff:127.0.0.1')))
  t.notOk(def.allows(inet('127.0.0.2')), 'only 127.0.0.1, as gunicorn')
  t.notOk(def.allows(inet('192.0.2.1')))
})

t.test('AllowList array form and empty values', async (t) => {
  const list = AllowList.parse(['127.0.0.1', ' 10.0.0.0/8, unix ', 'fd00::/8'])
  t.equal(list.toString(), '127.0.0.1,10.0.0.0/8,unix,fd00::/8')
  t.ok(list.allows(inet('10.1.1.1')))
  t.ok(list.allows(UNIX))
  t.ok(list.allows(inet('fd12::1')))
  t.notOk(list.allows(inet('fe80::1')))
  for (const empty of ['', '  ', [], [''], [' , ']]) {
    const nobody = AllowList.parse(empty)
    t.equal(nobody.toString(), '', `${JSON.stringify(empty)} trusts nobody`)
    t.notOk(nobody.allows(inet('127.0.0.1')))
    t.notOk(nobody.allows(UNIX))
  }
})

t.test('AllowList bad entries name the option and echo the entry', async (t) => {
  const bad: Array<[unknown, unknown, RegExp]> = [
    ['foo', 'foo', /^forwarded-allow-ips must be a comma-separated list of IP addresses, CIDR ranges \(10\.0\.0\.0\/8, fd00::\/8\), "unix" or "\*", got "foo"$/],
    ['127.0.0.1, localhost', 'localhost', /got "localhost"$/],
    ['10.0.0.0/33', '10.0.0.0/33', /must be a CIDR range with a prefix length of at most 32, got "10.0.0.0\/33"$/],
    ['::/129', '::/129', /at most 128, got "::\/129"$/],
    ['10.0.0.0/', '10.0.0.0/', /CIDR ranges/],
    ['/8', '/8', /CIDR ranges/],
    ['10.0.0.0/x', '10.0.0.0/x', /CIDR ranges/],
    ['10.0.0.0/1000', '10.0.0.0/1000', /CIDR ranges/],
    ['10.0.0.0/8/8', '10.0.0.0/8/8', /CIDR ranges/],
    ['example.com/24', 'example.com/24', /CIDR ranges/],
    ['fe80::1%eth0', 'fe80::1%eth0', /got "fe80::1%eth0"$/],
    ['[::1]', '[::1]', /got "\[::1\]"$/],
    ['127.0.0.1:80', '127.0.0.1:80', /got "127.0.0.1:80"$/],
    ['256.0.0.1', '256.0.0.1', /got "256.0.0.1"$/],
    ['**', '**', /got "\*\*"$/],
    ['unix:/run/x.sock', 'unix:/run/x.sock', /got "unix:\/run\/x.sock"$/],
    ['127.0.0.1,,::1', '127.0.0.1,,::1', /without empty entries, got "127.0.0.1,,::1"$/],
    ['127.0.0.1,', '127.0.0.1,', /without empty entries/],
    [42, 42, /must be a string or an array of strings, got 42$/],
    [['127.0.0.1', 5], ['127.0.0.1', 5], /must be a string or an array of strings, got \["127.0.0.1",5\]$/],
    [null, null, /got null$/],
  ]
  for (const [value, echoed, re] of bad) {
    const err = t.throws(() => AllowList.parse(value as string)) as ConfigError
    t.ok(err instanceof ConfigError, `${JSON.stringify(value)} is a ConfigError`)
    t.equal(err.code, 'SDSERVE_ERR_CONFIG')
    t.equal(err.option, 'forwarded-allow-ips')
    t.same(err.value, echoed)
    t.match(err.message, re)
  }
  t.throws(() => AllowList.parse('nope', 'proxy-allow-ips'), { option: 'proxy-allow-ips', message: /^proxy-allow-ips must be/ })
})

/** A request as clientInfo sees it: a socket with remoteAddress (or the given socket) and headers. */
function fakeReq(socket: unknown, headers: IncomingHttpHeaders = {}): IncomingMessage {
  const s = typeof socket === 'string' ? { remoteAddress: socket } : socket
  return { socket: s, headers } as unknown as IncomingMessage
}

const allow = AllowList.parse('127.0.0.1,::1,unix,10.0.0.0/8,fd00::/8')
const info = (peer: unknown, headers: IncomingHttpHeaders = {}, list = allow): ClientInfo =>
  clientInfo(fakeReq(peer, { host: 'app.example', ...headers }), list)

const SPOOFED: IncomingHttpHeaders = {
  forwarded: 'for=198.51.100.1;proto=https;host=evil.example',
  'x-forwarded-for': '198.51.100.1',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'evil.example',
}

t.test('clientInfo: an untrusted peer is believed nothing', async (t) => {
  t.same(info('203.0.113.9', SPOOFED), { address: '203.0.113.9', proto: 'http', host: 'app.example', trusted: false })
  t.same(info('2001:db8::9', SPOOFED), { address: '2001:db8::9', proto: 'http', host: 'app.example', trusted: false })
  t.same(info('::ffff:203.0.113.9', SPOOFED), { address: '203.0.113.9', proto: 'http', host: 'app.example', trusted: false })
  t.same(info(new Socket(), SPOOFED, AllowList.parse('127.0.0.1')), {
    address: 'unix',
    proto: 'http',
    host: 'app.example',
    trusted: false,
  })
  t.same(info({ remoteAddress: '203.0.113.9', encrypted: true }, SPOOFED), {
    address: '203.0.113.9',
    proto: 'https',
    host: 'app.example',
    trusted: false,
  })
  t.equal(clientInfo(fakeReq('203.0.113.9'), allow).host, undefined, 'no Host header: host undefined')
})

t.test('clientInfo: a peer that cannot be told is never trusted', async (t) => {
  const any = AllowList.parse('*')
  // A TCP peer that reset the connection: no remoteAddress, but a local address.
  t.same(info({ localAddress: '127.0.0.1' }, SPOOFED, any), { address: '-', proto: 'http', host: 'app.example', trusted: false })
  t.same(info(null, SPOOFED, any), { address: '-', proto: 'http', host: 'app.example', trusted: false })
  t.same(info({}, SPOOFED, any), { address: '-', proto: 'http', host: 'app.example', trusted: false }, 'not a net.Socket')
  const gone = new Socket()
  gone.destroy()
  t.same(info(gone, SPOOFED, any), { address: '-', proto: 'http', host: 'app.example', trusted: false }, 'a destroyed socket')
  t.equal(socketPeer(undefined), undefined)
  t.same(socketPeer(new Socket()), UNIX)
  t.same(socketPeer({ remoteAddress: '::1' }), inet('::1'))
})

t.test('clientInfo: X-Forwarded-For from trusted peers', async (t) => {
  const xff = (value: string | string[], peer: unknown = '127.0.0.1', list = allow): string =>
    info(peer, { 'x-forwarded-for': value as string }, list).address
  t.same(info('127.0.0.1', { 'x-forwarded-for': '192.0.2.1' }), { address: '192.0.2.1', proto: 'http', host: 'app.example', trusted: true })
  t.equal(xff('192.0.2.1', '::1'), '192.0.2.1')
  t.equal(xff('192.0.2.1', '::ffff:127.0.0.1'), '192.0.2.1', 'a mapped IPv4 peer')
  t.equal(xff('192.0.2.1', new Socket()), '192.0.2.1', 'a UNIX-socket peer')
  t.equal(xff('198.51.100.66, 192.0.2.1'), '192.0.2.1', 'right-most: what the client wrote itself is ignored')
  t.equal(xff('198.51.100.66,192.0.2.1, 10.0.0.2 ,10.0.0.3'), '192.0.2.1', 'trusted hops are skipped')
  t.equal(xff('10.0.0.1, 10.0.0.2'), '10.0.0.1', 'every hop trusted: the left-most')
  t.equal(xff('198.51.100.66, 192.0.2.1', '203.0.113.1', AllowList.parse('*')), '198.51.100.66', '*: the left-most, as gunicorn')
  t.equal(xff('192.0.2.1, fd00::5'), '192.0.2.1', 'IPv6 trusted hop')
  t.equal(xff('2001:db8::1'), '2001:db8::1')
  t.equal(xff('::ffff:192.0.2.1'), '192.0.2.1', 'mapped addresses are shown as IPv4')
  t.equal(xff('192.0.2.1:5678'), '192.0.2.1', 'ports are dropped')
  t.equal(xff('[2001:db8::1]:443'), '2001:db8::1')
  t.equal(xff('[2001:db8::1]'), '2001:db8::1')
  t.equal(xff(['198.51.100.66', '192.0.2.1']), '192.0.2.1', 'repeated headers are one list')
  // Malformed: the walk ends at the last trusted hop, or the peer stays the client.
  t.equal(xff('garbage'), '127.0.0.1')
  t.equal(xff(''), '127.0.0.1')
  t.equal(xff('192.0.2.1,'), '127.0.0.1')
  t.equal(xff('192.0.2.1, garbage, 10.0.0.2'), '10.0.0.2')
  t.equal(xff('unknown'), '127.0.0.1')
  t.equal(xff('[::1'), '127.0.0.1')
  t.equal(xff('[192.0.2.1]:80'), '127.0.0.1')
  t.equal(xff('[2001:db8::1]:http'), '127.0.0.1')
  t.equal(xff('192.0.2.1:port'), '127.0.0.1')
  t.equal(xff('999.0.0.1:80'), '127.0.0.1')
  t.equal(xff('<script>'), '127.0.0.1')
})

t.test('clientInfo: Forwarded (RFC 7239) from trusted peers', async (t) => {
  const fwd = (value: string, extra: IncomingHttpHeaders = {}, list = allow): ClientInfo =>
    info('127.0.0.1', { forwarded: value, ...extra }, list)
  t.same(fwd('for=192.0.2.60;proto=https;by=203.0.113.43'), {
    address: '192.0.2.60',
    proto: 'https',
    host: 'app.example',
    trusted: true,
  })
  t.equal(fwd('For="[2001:db8:cafe::17]:4711"').address, '2001:db8:cafe::17', 'quoted IPv6 with a port')
  t.equal(fwd('for="[2001:db8:cafe::17]"').address, '2001:db8:cafe::17')
  t.equal(fwd('for="2001:db8:cafe::17"').address, '2001:db8:cafe::17', 'unbracketed IPv6 is unambiguous')
  t.equal(fwd('for="192.0.2.43:47011"').address, '192.0.2.43')
  t.equal(fwd('for="[::ffff:192.0.2.43]"').address, '192.0.2.43')
  t.equal(fwd('for=192.0.2.43, for=198.51.100.17').address, '198.51.100.17', 'right-most')
  t.equal(fwd('for=192.0.2.43, for="[fd00::1]", for=10.0.0.5').address, '192.0.2.43', 'trusted hops skipped')
  t.equal(fwd('for=10.0.0.1, for=10.0.0.2').address, '10.0.0.1', 'every hop trusted: the left-most')
  t.equal(fwd('for=192.0.2.43,,for=10.0.0.5 , ').address, '192.0.2.43', 'empty list elements are skipped')
  t.equal(fwd('for=unknown').address, 'unknown', 'unknown is kept')
  t.equal(fwd('for="unknown:1234"').address, 'unknown')
  t.equal(fwd('for=_hidden, for=10.0.0.5').address, '_hidden', 'an obfuscated identifier is kept')
  t.equal(fwd('for="_gazonk:_port"').address, '_gazonk')
  t.equal(fwd('for="192.0.2.43:_p1"').address, '192.0.2.43')
  t.equal(fwd('for=192.0.2.43;proto=https, for=10.0.0.5;proto=http').proto, 'https', 'proto of the client hop')
  t.equal(fwd('for=192.0.2.43;host="a.example:8443", for=10.0.0.5;host=b.example').host, 'a.example:8443')
  t.equal(fwd('for=192.0.2.43 ; proto=HTTPS').proto, 'https', 'whitespace around ; and case of values')
  t.equal(fwd('for="\\1\\9\\2.0.2.1"').address, '192.0.2.1', 'quoted pairs')
  // An element without a usable for ends the walk at the last trusted hop.
  t.same(fwd('proto=https;host=x.example'), { address: '127.0.0.1', proto: 'https', host: 'x.example', trusted: true })
  t.equal(fwd('proto=https', { 'x-forwarded-for': '192.0.2.9' }).address, '192.0.2.9', 'no for: X-Forwarded-For')
  t.equal(fwd('for=192.0.2.43, proto=https, for=10.0.0.5').address, '10.0.0.5')
  t.equal(fwd('for=nonsense').address, '127.0.0.1')
  t.equal(fwd('for="[zzz]"').address, '127.0.0.1')
  t.equal(fwd('for="[::1"').address, '127.0.0.1')
  t.equal(fwd('for="[::1]x"').address, '127.0.0.1')
  t.equal(fwd('for="[::1]:port"').address, '127.0.0.1')
  t.equal(fwd('for="[192.0.2.1]"').address, '127.0.0.1')
  t.equal(fwd('for="192.0.2.1:123456"').address, '127.0.0.1')
  t.equal(fwd('for="192.0.2.1/8"').address, '127.0.0.1')
})

t.test('clientInfo: Forwarded takes precedence, field by field', async (t) => {
  const both = info('127.0.0.1', {
    forwarded: 'for=192.0.2.1;proto=https;host=f.example',
    'x-forwarded-for': '198.51.100.2',
    'x-forwarded-proto': 'http',
    'x-forwarded-host': 'x.example',
  })
  t.same(both, { address: '192.0.2.1', proto: 'https', host: 'f.example', trusted: true })
  const forOnly = info('127.0.0.1', {
    forwarded: 'for=192.0.2.1',
    'x-forwarded-for': '198.51.100.2',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'x.example',
  })
  t.same(forOnly, { address: '192.0.2.1', proto: 'https', host: 'x.example', trusted: true })
})

t.test('clientInfo: a malformed Forwarded header is ignored', async (t) => {
  const malformed = [
    'for=',
    'for="192.0.2.1',
    'for="192.0.2.1\\',
    'for=192.0.2.1;for=192.0.2.2',
    'for=192.0.2.1 garbage',
    '=192.0.2.1',
    'for 192.0.2.1',
    'for=@@',
    'for="192.0.2.1\u0001"',
    'for=192.0.2.1,"quoted"',
    ',',
    '',
  ]
  for (const value of malformed) {
    const got = info('127.0.0.1', { forwarded: value, 'x-forwarded-for': '198.51.100.2', 'x-forwarded-proto': 'https' })
    t.same(got, { address: '198.51.100.2', proto: 'https', host: 'app.example', trusted: true }, JSON.stringify(value))
  }
  t.same(parseForwarded('for=a;by=b, ;, for="c d";Proto=x'), [
    new Map([['for', 'a'], ['by', 'b']]),
    new Map([['for', 'c d'], ['proto', 'x']]),
  ])
  t.same(parseForwarded('for="a\tb"'), [new Map([['for', 'a\tb']])], 'HTAB in a quoted string')
  t.same(parseForwarded(''), [])
})

t.test('clientInfo: X-Forwarded-Proto and X-Forwarded-Host', async (t) => {
  const proto = (value: string, peer: unknown = '127.0.0.1'): string => info(peer, { 'x-forwarded-proto': value }).proto
  t.equal(proto('https'), 'https')
  t.equal(proto('HTTPS'), 'https')
  t.equal(proto('http'), 'http')
  t.equal(proto('ftp'), 'http', 'anything else is ignored')
  t.equal(proto('wss'), 'http')
  t.equal(proto(''), 'http')
  t.equal(proto('http, https'), 'https', 'the right-most value')
  t.equal(proto('https, http'), 'http')
  t.equal(proto('http', { remoteAddress: '127.0.0.1', encrypted: true }), 'http', 'a proxy may say http on TLS')
  t.equal(proto('ftp', { remoteAddress: '127.0.0.1', encrypted: true }), 'https', 'the TLS default stays')
  t.equal(info('127.0.0.1', { forwarded: 'for=192.0.2.1;proto=ftp', 'x-forwarded-proto': 'https' }).proto, 'https')

  const host = (value: string): string | undefined => info('127.0.0.1', { 'x-forwarded-host': value }).host
  t.equal(host('api.example.com'), 'api.example.com')
  t.equal(host('api.example.com:8443'), 'api.example.com:8443')
  t.equal(host('[2001:db8::1]:8443'), '[2001:db8::1]:8443')
  t.equal(host('192.0.2.1'), '192.0.2.1')
  t.equal(host('a.example, b.example'), 'b.example', 'the right-most value')
  t.equal(host('evil.example/path'), 'app.example', 'not a host: ignored')
  t.equal(host('a b'), 'app.example')
  t.equal(host('user@evil.example'), 'app.example')
  t.equal(host(''), 'app.example')
  t.equal(host('a.example:port'), 'app.example')
  t.equal(info('127.0.0.1', { forwarded: 'for=192.0.2.1;host="bad host"', 'x-forwarded-host': 'ok.example' }).host, 'ok.example')
})

interface Seen {
  stripped: boolean
  again: boolean
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  distinct: string[]
  distinctBefore: string[]
  info: ClientInfo
  stored: ClientInfo | undefined
}

const SPOOF_REQUEST =
  'GET /spoof HTTP/1.1\r\n' +
  'Host: app.example\r\n' +
  'X-Forwarded-For: 198.51.100.1\r\n' +
  'FORWARDED: for=198.51.100.1;proto=https\r\n' +
  'User-Agent: test\r\n' +
  'x-forwarded-proto: https\r\n' +
  'X-Forwarded-Host: evil.example\r\n' +
  'X-Forwarded-Port: 443\r\n' +
  'X-Real-IP: 198.51.100.1\r\n' +
  'x-forwarded-for: 198.51.100.2\r\n' +
  'X-Custom: kept\r\n' +
  'Connection: close\r\n\r\n'

/** Send raw bytes, resolve with the whole response once the server closes. */
function raw(where: { port: number } | { path: string }, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = 'port' in where ? connect(where.port, '127.0.0.1') : connect(where.path)
    let out = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => (out += d))
    socket.on('end', () => resolve(out))
    socket.on('error', reject)
    socket.end(data)
  })
}

interface Teardown {
  teardown(fn: () => void): void
}

function listen(t: Teardown, server: Server, where: number | string): Promise<{ port: number } | { path: string }> {
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return new Promise((resolve) => {
    if (typeof where === 'string') server.listen(where, () => resolve({ path: where }))
    else server.listen(where, '127.0.0.1', () => resolve({ port: (server.address() as AddressInfo).port }))
  })
}

/** A server whose handler records what stripForwarded and resolveClient did. */
function recorder(list: AllowList, options: { strip?: boolean; touchDistinct?: boolean } = {}): { server: Server; seen: Seen[] } {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    const distinctBefore = options.touchDistinct === true ? Object.keys(req.headersDistinct) : []
    const before = { ...req.headers }
    resolveClient(req, list, options)
    const infoNow = client(req)!
    const stripped = JSON.stringify(before) !== JSON.stringify(req.headers)
    const headers = { ...req.headers }
    const rawHeaders = [...req.rawHeaders]
    const distinct = Object.keys(req.headersDistinct)
    seen.push({ stripped, again: stripForwarded(req), headers, rawHeaders, distinct, distinctBefore, info: infoNow, stored: client(req) })
    res.end('ok')
  })
  return { server, seen }
}

t.test('stripForwarded removes spoofed headers from a real TCP request', async (t) => {
  const { server, seen } = recorder(AllowList.parse('unix'))
  const where = await listen(t, server, 0)
  const reply = await raw(where, SPOOF_REQUEST)
  t.match(reply, /^HTTP\/1.1 200 OK\r\n[\s\S]*\r\n\r\nok$/)
  t.equal(seen.length, 1)
  const s = seen[0]!
  t.ok(s.stripped)
  t.notOk(s.again, 'nothing left to strip')
  t.same(s.headers, { host: 'app.example', 'user-agent': 'test', 'x-custom': 'kept', connection: 'close' })
  t.same(s.rawHeaders, ['Host', 'app.example', 'User-Agent', 'test', 'X-Custom', 'kept', 'Connection', 'close'])
  t.same(s.distinct.sort(), ['connection', 'host', 'user-agent', 'x-custom'])
  t.same(s.info, { address: '127.0.0.1', proto: 'http', host: 'app.example', trusted: false })
  t.equal(s.stored, s.info, 'client(req) gives the stored ClientInfo')
})

t.test('stripForwarded fixes headersDistinct built before it ran', async (t) => {
  const { server, seen } = recorder(AllowList.parse(''), { touchDistinct: true })
  const where = await listen(t, server, 0)
  await raw(where, SPOOF_REQUEST)
  t.ok(seen[0]!.distinctBefore.includes('x-forwarded-for'), 'headersDistinct was built with the spoofed headers')
  t.same(seen[0]!.distinct.sort(), ['connection', 'host', 'user-agent', 'x-custom'])
  t.equal(seen[0]!.rawHeaders.length, 8)
})

t.test('stripForwarded on a request over a UNIX socket, and without forwarded headers', async (t) => {
  const dir = shortTmp(t)
  const { server, seen } = recorder(AllowList.parse('127.0.0.1'))
  const where = await listen(t, server, join(dir, 'app.sock'))
  await raw(where, SPOOF_REQUEST)
  t.ok(seen[0]!.stripped)
  t.same(seen[0]!.info, { address: 'unix', proto: 'http', host: 'app.example', trusted: false })
  t.same(seen[0]!.rawHeaders, ['Host', 'app.example', 'User-Agent', 'test', 'X-Custom', 'kept', 'Connection', 'close'])

  await raw(where, 'GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded: not ours\r\nConnection: close\r\n\r\n')
  t.notOk(seen[1]!.stripped)
  t.notOk(seen[1]!.again, 'nothing to strip: false')
  t.same(seen[1]!.rawHeaders, ['Host', 'a', 'X-Forwarded', 'not ours', 'Connection', 'close'])
  t.same(seen[1]!.info, { address: 'unix', proto: 'http', host: 'a', trusted: false }, 'worked out when client() asked')
  t.equal(seen[1]!.stored, seen[1]!.info, 'once')
})

t.test('without forwarded headers, client() reads the peer when first called', async (t) => {
  const list = AllowList.parse('unix')
  const requests: IncomingMessage[] = []
  let arrived = (): void => undefined
  let before: unknown
  let during: ClientInfo | undefined
  let address: string | undefined
  const server = createServer((req, res) => {
    resolveClient(req, list)
    requests.push(req)
    arrived()
    if (req.url !== '/answer') return
    before = (req as unknown as Record<symbol, unknown>)[CLIENT]
    address = clientAddress(req)
    during = client(req)
    res.end('ok')
  })
  const where = (await listen(t, server, 0)) as { port: number }
  await raw(where, 'GET /answer HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
  t.equal(typeof before, 'function', 'nothing worked out before client() asked')
  t.equal(address, '127.0.0.1', 'clientAddress() reads the peer alone')
  t.same(during, { address: '127.0.0.1', proto: 'http', host: 'a', trusted: false })
  t.equal(client(requests[0]!), during, 'the answer is kept')

  // Asked only after the client has gone (it reset the connection): the peer cannot be told, and a
  // TCP peer is never taken for a UNIX one.
  const seen = new Promise<void>((resolve) => (arrived = resolve))
  const closed = new Promise<void>((resolve) => server.once('connection', (s: Socket) => s.once('close', () => resolve())))
  const c = connect(where.port, '127.0.0.1')
  c.on('error', () => undefined)
  c.write('GET /hold HTTP/1.1\r\nHost: a\r\n\r\n')
  await seen
  c.resetAndDestroy()
  await closed
  t.same(client(requests[1]!), { address: '-', proto: 'http', host: 'a', trusted: false })
})

t.test('a trusted UNIX-socket peer keeps its headers and is believed', async (t) => {
  const dir = shortTmp(t)
  const { server, seen } = recorder(AllowList.parse(DEFAULT_FORWARDED_ALLOW_IPS))
  const where = await listen(t, server, join(dir, 'app.sock'))
  await raw(where, SPOOF_REQUEST)
  const s = seen[0]!
  t.notOk(s.stripped)
  t.same(s.info, { address: '198.51.100.1', proto: 'https', host: 'evil.example', trusted: true })
  t.equal(s.headers['x-forwarded-for'], '198.51.100.1, 198.51.100.2')
  t.ok(s.again, 'stripForwarded itself strips whatever the peer')
})

t.test('a trusted TCP peer is believed; strip: false keeps an untrusted peer\'s headers', async (t) => {
  const trusted = recorder(AllowList.parse(DEFAULT_FORWARDED_ALLOW_IPS))
  const w1 = await listen(t, trusted.server, 0)
  await raw(w1, SPOOF_REQUEST)
  t.same(trusted.seen[0]!.info, { address: '198.51.100.1', proto: 'https', host: 'evil.example', trusted: true })

  const keep = recorder(AllowList.parse('unix'), { strip: false })
  const w2 = await listen(t, keep.server, 0)
  await raw(w2, SPOOF_REQUEST)
  t.notOk(keep.seen[0]!.stripped)
  t.equal(keep.seen[0]!.info.trusted, false)
  t.equal(keep.seen[0]!.headers['x-forwarded-host'], 'evil.example')
})

t.test('a TCP client that resets the connection is never taken for a UNIX peer', async (t) => {
  // Its socket has no remoteAddress once the RST has arrived; with unix trusted it must still not be believed.
  const list = AllowList.parse('unix')
  const infos: ClientInfo[] = []
  const server = createServer((req) => infos.push(clientInfo(req, list)))
  const where = (await listen(t, server, 0)) as { port: number }
  for (let i = 0; i < 10; i++) {
    const closed = new Promise<void>((resolve) => server.once('connection', (s: Socket) => s.once('close', () => resolve())))
    const c = connect(where.port, '127.0.0.1')
    c.on('error', () => undefined)
    c.write(SPOOF_REQUEST, () => c.resetAndDestroy())
    await closed
  }
  for (const got of infos) {
    t.equal(got.trusted, false)
    t.ok(got.address === '127.0.0.1' || got.address === '-', `address ${got.address}`)
  }
  t.comment(`${infos.filter((i) => i.address === '-').length} of ${infos.length} requests seen after the reset`)
})

t.test('client() reads the symbol; FORWARDED_HEADERS', async (t) => {
  const req = fakeReq('127.0.0.1')
  t.equal(client(req), undefined)
  t.equal(clientAddress(req), '-', 'a request sdserve did not serve')
  const stored: ClientInfo = { address: '192.0.2.1', proto: 'https', host: undefined, trusted: true }
  ;(req as unknown as Record<symbol, unknown>)[Symbol.for('sdserve.client')] = stored
  t.equal(client(req), stored)
  t.equal(clientAddress(req), '192.0.2.1')
  t.equal(CLIENT, Symbol.for('sdserve.client'))
  t.same(FORWARDED_HEADERS, ['forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip'])
})

t.test('AllowList remembers verdicts per address, within a bound', async (t) => {
  const allow = AllowList.parse('10.0.0.0/8')
  for (let i = 0; i < ALLOW_CACHE_MAX + 10; i++) {
    const inside = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
    if (!allow.allows({ kind: 'inet', address: inside })) t.fail(`${inside} should be allowed`)
  }
  t.equal(allow.allows({ kind: 'inet', address: '10.0.0.1' }), true, 'still right after the cache was emptied')
  t.equal(allow.allows({ kind: 'inet', address: '11.0.0.1' }), false)
  t.equal(allow.allows({ kind: 'inet', address: '11.0.0.1' }), false, 'a cached refusal')
  t.equal(allow.allows({ kind: 'inet', address: 'not-an-ip' }), false)
})
