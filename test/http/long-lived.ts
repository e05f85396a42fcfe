/**
 * LongLived against real HTTP servers and real `ws` clients and servers,
 * in process: what a drain ends, how, and what it leaves alone.
 */
import t, { type Test } from 'tap'
import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { WebSocket, WebSocketServer } from 'ws'
import { LongLived } from '../../lib/http/long-lived.js'
import { sleep, waitFor } from '../helpers/proc.js'

interface Served {
  server: Server
  port: number
  longLived: LongLived
  wss: WebSocketServer
  /** Responses in flight, as the worker's request counters know them. */
  responses: Set<ServerResponse>
}

/** An HTTP server watched by a LongLived, with a ws server on it (or not, noWs) and the app's handler. */
async function serve(t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void = (_q, r) => r.end('plain\n'), noWs = false): Promise<Served> {
  const responses = new Set<ServerResponse>()
  const server = createServer((req, res) => {
    responses.add(res)
    res.on('close', () => responses.delete(res))
    handler(req, res)
  })
  const longLived = new LongLived()
  longLived.watch(server)
  const wss = new WebSocketServer(noWs ? { noServer: true } : { server })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    wss.close()
    server.closeAllConnections()
    server.close()
  })
  return { server, port: (server.address() as AddressInfo).port, longLived, wss, responses }
}

/** A `ws` client that records its messages and its close. */
/** What the test was doing when a close arrived: set before each step, so closes are ordered without a clock. */
let phase = 'connecting'

async function wsClient(port: number): Promise<{ ws: WebSocket; messages: string[]; closed: Promise<{ code: number; phase: string }> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`)
  const messages: string[] = []
  ws.on('message', (d: Buffer) => messages.push(d.toString()))
  const closed = new Promise<{ code: number; phase: string }>((resolve) => ws.once('close', (code) => resolve({ code, phase })))
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  return { ws, messages, closed }
}

interface Frame {
  opcode: number
  payload: Buffer
}

/** Parse the unmasked frames a server sent; what is left over (a frame still coming) stays in rest. */
function parseFrames(buf: Buffer): { frames: Frame[]; rest: Buffer } {
  const frames: Frame[] = []
  for (;;) {
    if (buf.length < 2) break
    const len7 = buf[1]! & 0x7f
    const masked = (buf[1]! & 0x80) !== 0
    const hsize = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0)
    if (buf.length < hsize) break
    const len = len7 < 126 ? len7 : len7 === 126 ? buf.readUInt16BE(2) : Number(buf.readBigUInt64BE(2))
    if (buf.length < hsize + len) break
    // (the tests' masks are all zero: the payload reads as it is)
    frames.push({ opcode: buf[0]! & 0x0f, payload: buf.subarray(hsize, hsize + len) })
    buf = buf.subarray(hsize + len)
  }
  return { frames, rest: buf }
}

/**
 * A hand-made WebSocket client: it never answers a close frame and reads
 * only when told, so that a test sees every byte the server wrote.
 */
async function rawClient(port: number, protocol = 'websocket'): Promise<{ socket: Socket; frames: () => Frame[]; bytes: () => Buffer; ended: Promise<void> }> {
  const socket = connect(port, '127.0.0.1')
  let data = Buffer.alloc(0)
  const head = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      data = Buffer.concat([data, d])
      const i = data.indexOf('\r\n\r\n')
      if (i < 0) return
      socket.off('data', onData)
      const h = data.subarray(0, i).toString()
      data = data.subarray(i + 4)
      resolve(h)
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.write(
      `GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${protocol}\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    )
  })
  if (!head.startsWith('HTTP/1.1 101')) throw new Error(`no upgrade: ${head}`)
  const chunks: Buffer[] = [data]
  socket.on('data', (d: Buffer) => chunks.push(d))
  const ended = new Promise<void>((resolve) => socket.once('end', resolve))
  const bytes = (): Buffer => Buffer.concat(chunks)
  return { socket, bytes, frames: () => parseFrames(bytes()).frames, ended }
}

/** The server side of the latest upgraded connection. */
function lastWs(s: Served): Promise<import('ws').WebSocket> {
  return new Promise((resolve) => s.wss.once('connection', resolve))
}

t.test('a WebSocket left open is closed with 1001 within the window; its socket then leaves the count', async (t) => {
  const s = await serve(t)
  const clients = await Promise.all(Array.from({ length: 5 }, () => wsClient(s.port)))
  t.equal(s.longLived.size, 5)
  phase = 'draining'
  s.longLived.drain(s.responses, 200, Date.now() + 10000)
  const closes = await Promise.all(clients.map((c) => c.closed))
  for (const c of closes) {
    t.equal(c.code, 1001)
    t.equal(c.phase, 'draining', 'closed by the drain, once it began')
  }
  await waitFor(() => s.longLived.size === 0, 'the closed sockets forgotten')
})

t.test('a WebSocket the app closed itself keeps its code and gets no second close frame', async (t) => {
  const s = await serve(t)
  const connected = lastWs(s)
  const raw = await rawClient(s.port)
  const ws = await connected
  ws.close(4000, 'app says bye') // the raw client never answers: the socket stays open
  await waitFor(() => raw.frames().length >= 1, 'the app close frame')
  s.longLived.drain(s.responses, 20, Date.now() + 10000)
  await sleep(300) // well past the window
  const frames = raw.frames()
  t.equal(frames.length, 1, 'one frame only')
  t.equal(frames[0]?.opcode, 8)
  t.equal(frames[0]?.payload.readUInt16BE(0), 4000, "the app's code")
  t.equal(raw.socket.readyState, 'open', 'sdserve left the socket to the app')
  raw.socket.destroy()
})

t.test("a binary message whose payload starts like a close frame does not pass for the app's close", async (t) => {
  const s = await serve(t)
  const connected = lastWs(s)
  const client = await wsClient(s.port)
  const ws = await connected
  ws.send(Buffer.from([0x88, 0x02, 0x03, 0xe8]))
  ws.send('x'.repeat(200)) // a text message too (ws writes its payload as a string), with a 16-bit length
  await waitFor(() => client.messages.length === 2, 'both messages')
  s.longLived.drain(s.responses, 20, Date.now() + 10000)
  t.equal((await client.closed).code, 1001, 'still closed by the drain')
})

/** A hand-written WebSocket server side: the test writes its bytes itself, in whatever pieces it likes. */
async function handWritten(t: Test): Promise<{ s: Served; side: Duplex; raw: Awaited<ReturnType<typeof rawClient>> }> {
  const s = await serve(t, undefined, true)
  let side: Duplex | undefined
  s.server.on('upgrade', (_req, socket: Duplex) => {
    side = socket
    // The 101 in pieces, its blank line split across writes, with a stray CR before a line's end.
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r')
    socket.write(Buffer.from('\r\nConnection: Upgrade\r\n\r'))
    socket.write('\n')
  })
  const raw = await rawClient(s.port)
  return { s, side: side!, raw }
}

t.test('the frames written are followed across writes: split headers, 16- and 64-bit lengths, masks, strings', async (t) => {
  const { s, side, raw } = await handWritten(t)
  const payload = Buffer.alloc(70000, 0x88) // every byte of it looks like a close frame's first
  // A binary frame with a 64-bit length, its header byte by byte, its payload in two writes.
  const header = Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70])
  for (const byte of header) side.write(Buffer.from([byte]))
  side.write(payload.subarray(0, 1000))
  side.write(payload.subarray(1000))
  // A text frame with a 16-bit length, its payload a string (as ws writes text).
  side.write(Buffer.from([0x81, 126, 0, 200]))
  side.write('\u0088'.repeat(100)) // 200 bytes of UTF-8
  // A masked frame (a client's, say), with a string and its encoding.
  side.write(Buffer.concat([Buffer.from([0x82, 0x80 | 3]), Buffer.alloc(4)]))
  side.write('888', 'latin1')
  await waitFor(() => raw.frames().length === 3, 'three frames')
  s.longLived.drain(s.responses, 20, Date.now() + 10000)
  await raw.ended
  const frames = raw.frames()
  t.same(
    frames.map((f) => [f.opcode, f.payload.length]),
    [
      [2, 70000],
      [1, 200],
      [2, 3],
      [8, 2 + 'server going away'.length],
    ],
  )
  t.equal(frames[3]?.payload.readUInt16BE(0), 1001, 'closed by the drain: nothing before passed for a close frame')
})

t.test("a close frame written in pieces is the app's: the drain leaves the socket alone", async (t) => {
  const { s, side, raw } = await handWritten(t)
  side.write(Buffer.from([0x81, 1]))
  side.write('a')
  side.write(Buffer.from([0x88]))
  side.write(Buffer.from([2, 0x0f, 0xa0])) // 4000
  await waitFor(() => raw.frames().length === 2, 'two frames')
  s.longLived.drain(s.responses, 20, Date.now() + 10000)
  await sleep(300)
  t.same(
    raw.frames().map((f) => f.opcode),
    [1, 8],
    'no second close frame',
  )
  t.notOk(side.writableEnded, 'not ended by the drain')
  raw.socket.destroy()
})

t.test('a WebSocket with data queued (a slow reader) is retried, and closed after its data, before the deadline', async (t) => {
  const s = await serve(t)
  const connected = lastWs(s)
  const raw = await rawClient(s.port)
  raw.socket.pause()
  const ws = await connected
  const big = Buffer.alloc(32 * 1024 * 1024, 7)
  ws.send(big)
  const socket = (ws as unknown as { _socket: Duplex })._socket
  await waitFor(() => socket.writableLength > 0, 'data queued')
  const start = Date.now()
  const deadline = start + 20000
  s.longLived.drain(s.responses, 20, deadline)
  await sleep(300) // past the window: the close waits for the data
  t.ok(socket.writableLength > 0, 'still queued')
  t.notOk(socket.writableEnded, 'not ended while the app writes')
  raw.socket.resume()
  await raw.ended
  const frames = raw.frames()
  t.equal(frames.length, 2, 'the message, then the close')
  t.equal(frames[0]?.payload.length, big.length, 'the whole message')
  t.equal(frames[1]?.opcode, 8)
  t.equal(frames[1]?.payload.readUInt16BE(0), 1001)
  t.ok(socket.writableEnded, 'ended by a retry once the data was out (retries stop at the deadline)')
})

t.test('retrying stops at the deadline: a reader that never reads is left to the worker', async (t) => {
  const s = await serve(t)
  const connected = lastWs(s)
  const raw = await rawClient(s.port)
  raw.socket.pause()
  const ws = await connected
  ws.send(Buffer.alloc(32 * 1024 * 1024))
  const socket = (ws as unknown as { _socket: Duplex })._socket
  await waitFor(() => socket.writableLength > 0, 'data queued')
  s.longLived.drain(s.responses, 10, Date.now() + 250)
  await sleep(600)
  t.notOk(socket.writableEnded, 'never ended: the worker cuts it at its deadline')
  raw.socket.destroy()
})

t.test('an upgrade during the drain is ended within what is left of the window, once the app has answered it', async (t) => {
  const s = await serve(t)
  phase = 'draining (deadline in 20 s)'
  s.longLived.drain(s.responses, 300, Date.now() + 20000)
  const client = await wsClient(s.port)
  t.equal((await client.closed).code, 1001, 'a WebSocket opened while draining')
  await sleep(400) // the window is over: what comes now is ended at once
  const late = await wsClient(s.port)
  const closed = await late.closed
  t.equal(closed.code, 1001, 'one opened after the window')
  t.equal(closed.phase, 'draining (deadline in 20 s)', 'both closed by the drain: no retry runs past its deadline')
})

t.test('a WebSocket whose 101 is not out yet is not written to: its close comes after the 101', async (t) => {
  const s = await serve(t, undefined, true)
  s.server.on('upgrade', (_req, socket: Duplex) => {
    // The app answers late (an asynchronous check, say), after the drain's moment for this socket.
    setTimeout(() => socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'), 300)
  })
  s.longLived.drain(s.responses, 0, Date.now() + 20000)
  const raw = await rawClient(s.port)
  await raw.ended
  t.same(
    raw.frames().map((f) => [f.opcode, f.payload.readUInt16BE(0)]),
    [[8, 1001]],
    'the 101, then the close frame',
  )
})

t.test('another upgraded protocol is just ended, with no WebSocket frame', async (t) => {
  const s = await serve(t, undefined, true)
  s.server.on('upgrade', (_req, socket: Duplex) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n')
    socket.write('hello\n')
  })
  const raw = await rawClient(s.port, 'foo')
  t.equal(s.longLived.size, 1)
  s.longLived.drain(s.responses, 20, Date.now() + 10000)
  await raw.ended
  t.equal(raw.bytes().toString(), 'hello\n', 'what the app wrote, and nothing else')
  raw.socket.destroy()
})

/** GET path, resolving with the body and how the response ended ('end' or an error). */
function fetchText(port: number, path: string, onResponse?: (res: IncomingMessage) => void): Promise<{ body: string; how: string }> {
  return new Promise((resolve) => {
    let body = ''
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      onResponse?.(res)
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ body, how: 'end' }))
      res.on('error', (err) => resolve({ body, how: err.message }))
    })
    req.on('error', (err) => resolve({ body, how: err.message }))
    req.end()
  })
}

t.test('an event stream is ended cleanly; other responses in flight are left alone', async (t) => {
  const held: ServerResponse[] = []
  const s = await serve(t, (req, res) => {
    if (req.url === '/events') {
      // As most apps write it: headers given to writeHead() (getHeader() does not see them).
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' })
      res.write('data: 1\n\n')
      return
    }
    if (req.url === '/nothing-yet') return // no header set, nothing written
    if (req.url === '/events-unsent') {
      // Headers set, nothing written yet.
      res.setHeader('Content-Type', 'text/event-stream')
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('part 1\n')
    held.push(res)
  })
  const streams = Array.from({ length: 3 }, () => fetchText(s.port, '/events'))
  const unsent = fetchText(s.port, '/events-unsent')
  const slow = fetchText(s.port, '/slow')
  const nothingYet = fetchText(s.port, '/nothing-yet')
  await waitFor(() => s.responses.size === 6, 'six responses in flight')
  s.longLived.drain(s.responses, 100, Date.now() + 10000)
  for (const r of await Promise.all(streams)) t.same(r, { body: 'data: 1\n\n', how: 'end' }, 'the client sees the end, not an error')
  t.same(await unsent, { body: '', how: 'end' }, 'a stream whose head was not out yet too')
  await sleep(200)
  t.equal(s.responses.size, 2, 'the plain responses are still in flight')
  held[0]!.end('part 2\n')
  t.same(await slow, { body: 'part 1\npart 2\n', how: 'end' }, 'and complete')
  for (const res of s.responses) res.end('late\n')
  t.same(await nothingYet, { body: 'late\n', how: 'end' })
})

t.test("an event stream's connection is ended with it, even a kept-alive one: the client reconnects elsewhere", async (t) => {
  const s = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: 1\n\n')
  })
  const agent = new Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  let socketClosed: Promise<void> | undefined
  const stream = new Promise<string>((resolve) => {
    request({ host: '127.0.0.1', port: s.port, agent }, (res) => {
      socketClosed = new Promise((r) => res.socket.once('close', () => r()))
      res.resume()
      res.on('end', () => resolve('end'))
    }).end()
  })
  await waitFor(() => s.responses.size === 1, 'the stream open')
  s.longLived.drain(s.responses, 20, Date.now() + 10000)
  t.equal(await stream, 'end')
  await socketClosed
  t.pass('the connection closed too')
})

t.test('an event stream with data queued is ended after it; one already ended or destroyed is skipped', async (t) => {
  let big: ServerResponse | undefined
  const s = await serve(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    if (req.url === '/big') {
      big = res
      res.write(`data: ${'x'.repeat(32 * 1024 * 1024)}\n\n`)
    }
  })
  let paused: IncomingMessage | undefined
  const bigStream = fetchText(s.port, '/big', (res) => {
    paused = res
    res.pause()
  })
  const other = fetchText(s.port, '/other')
  const third = fetchText(s.port, '/third')
  await waitFor(() => s.responses.size === 3 && paused !== undefined && big !== undefined && big.writableLength > 0, 'a stream with data queued')
  const [, otherRes, thirdRes] = [...s.responses]
  otherRes!.end() // the app ends one itself
  thirdRes!.destroy() // and another breaks
  const responses = [...s.responses, otherRes!, thirdRes!]
  s.longLived.drain(responses, 20, Date.now() + 20000)
  await sleep(300)
  t.notOk(big!.writableEnded, 'not ended while its data is queued')
  paused!.resume()
  const r = await bigStream
  t.equal(r.how, 'end')
  t.equal(r.body.length, 32 * 1024 * 1024 + 8, 'every byte, then the end')
  t.equal((await other).how, 'end')
  t.not((await third).how, 'end')
})

t.test('drain() again with a shorter window reschedules', async (t) => {
  const s = await serve(t)
  const client = await wsClient(s.port)
  phase = 'first drain (10 min window)'
  s.longLived.drain(s.responses, 600_000, Date.now() + 1_200_000)
  await sleep(100)
  phase = 'second drain'
  s.longLived.drain(s.responses, 100, Date.now() + 5000)
  const c = await client.closed
  t.equal(c.code, 1001)
  t.equal(c.phase, 'second drain', 'closed by the second, shorter drain')
})

t.test('watch() leaves an upgrade nobody handles to the request listener, as Node serves it', async (t) => {
  const s = await serve(t, (req, res) => res.end(`plain ${req.headers.upgrade}\n`), true)
  t.equal(s.server.listenerCount('upgrade'), 0)
  const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: s.port, agent: false, headers: { connection: 'Upgrade', upgrade: 'websocket' } }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => (body += d.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('upgrade', () => reject(new Error('upgraded')))
    req.on('error', reject)
    req.end()
  })
  t.same(reply, { status: 200, body: 'plain websocket\n' })
  t.equal(s.longLived.size, 0, 'nothing tracked')
})

t.test('an upgrade passed on from one watched server to another is tracked once', async (t) => {
  const s = await serve(t) // its ws server handles the upgrades
  const front = createServer()
  s.longLived.watch(front)
  front.on('upgrade', (req, socket, head) => s.server.emit('upgrade', req, socket, head))
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    front.closeAllConnections()
    front.close()
  })
  const client = await wsClient((front.address() as AddressInfo).port)
  t.equal(s.longLived.size, 1)
  s.longLived.drain(s.responses, 20, Date.now() + 10000)
  t.equal((await client.closed).code, 1001, 'one close frame: the client sees a clean 1001')
})

t.test('a response that begins during the drain: an event stream is ended within the window, anything else is left alone', async (t) => {
  let held: ServerResponse | undefined
  const s = await serve(t, (req, res) => {
    s.longLived.late(res)
    if (req.url === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: late\n\n')
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('part 1\n')
    held = res
  })
  const before = fetchText(s.port, '/plain-before')
  await waitFor(() => held !== undefined, 'a response before the drain')
  held = undefined
  s.longLived.drain(s.responses, 200, Date.now() + 10000)
  t.same(await fetchText(s.port, '/events'), { body: 'data: late\n\n', how: 'end' }, 'the late stream is ended')
  const plain = fetchText(s.port, '/plain')
  await waitFor(() => held !== undefined, 'a plain response during the drain')
  await sleep(300)
  t.equal(s.responses.size, 2, 'the plain ones are still in flight after the window')
  held!.end('part 2\n')
  t.same(await plain, { body: 'part 1\npart 2\n', how: 'end' })
  for (const res of s.responses) res.end('part 2\n')
  t.same(await before, { body: 'part 1\npart 2\n', how: 'end' })
})
