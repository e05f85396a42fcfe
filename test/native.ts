/**
 * The native addon through lib/native.ts, against real sockets, fds and
 * processes: SO_REUSEPORT listeners, SCM_RIGHTS fd passing, sd_notify
 * datagrams, close-on-exec, socket descriptions, peer credentials, accept
 * queues, and the raw addon's own argument checks.
 */
import { chmodSync, closeSync, constants as fsConstants, fstatSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { constants as osConstants, tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t, { type Test } from 'tap'
import { InvalidArgumentError, show, type SystemError } from '../lib/errors.js'
import {
  formatAddress,
  getCloexec,
  listenReusePort,
  listenTcp,
  listenQueue,
  listenUnix,
  packageRoot,
  peerCredentials,
  pidfdIdSelf,
  pipe,
  recvFds,
  sendFds,
  sendNotifyDatagram,
  setCloexec,
  socketInfo,
  socketPair,
} from '../lib/native.js'
import { fixture, freePort, get, root, shortTmp, spawnTracked, waitForOutput } from './helpers/proc.js'
import { passwdIds } from './helpers/users.js'

const errno = osConstants.errno

// ---------------------------------------------------------------------------
// helpers

/** Fds a test owns: closed exactly once, by close() or at teardown. */
interface FdBag {
  own(fd: number): number
  ownAll<T extends number[]>(fds: T): T
  close(fd: number): void
}

function fdBag(t: Test): FdBag {
  const open = new Set<number>()
  t.teardown(() => {
    for (const fd of open) {
      try {
        closeSync(fd)
      } catch {
        // already gone; nothing to release
      }
    }
    open.clear()
  })
  return {
    own(fd) {
      open.add(fd)
      return fd
    },
    ownAll(fds) {
      for (const fd of fds) open.add(fd)
      return fds
    },
    close(fd) {
      open.delete(fd)
      closeSync(fd)
    },
  }
}

/** The error fn throws (fails the test by throwing when it does not). */
function thrown(fn: () => unknown): Error {
  try {
    fn()
  } catch (err) {
    if (err instanceof Error) return err
    throw new Error(`threw something that is not an Error: ${typeof err}`, { cause: err })
  }
  throw new Error('expected the call to throw')
}

function thrownSystemError(fn: () => unknown): SystemError {
  return thrown(fn) as SystemError
}

/** Assert an InvalidArgumentError naming `argument` and echoing `value`. */
function invalidArg(t: Test, fn: () => unknown, argument: string, value: unknown, what: string): void {
  const err = thrown(fn)
  t.ok(err instanceof InvalidArgumentError, `${what}: InvalidArgumentError`)
  t.match(err, { code: 'SDSERVE_ERR_INVALID_ARG', argument }, `${what}: code and argument`)
  t.ok(err.message.startsWith(`${argument} must be `), `${what}: message names ${argument}: ${err.message}`)
  t.ok(err.message.endsWith(`, got ${show(value)}`), `${what}: message echoes the value`)
}

/** Assert a node-style system error. */
function systemErr(t: Test, err: SystemError, code: keyof typeof errno, syscall: string, what: string): void {
  t.equal(err.code, code, `${what}: code`)
  t.equal(err.errno, -errno[code], `${what}: errno is -${code}`)
  t.equal(err.syscall, syscall, `${what}: syscall`)
  t.ok(err.message.startsWith(`${syscall} ${code}: `), `${what}: message reads like node's: ${err.message}`)
}

/** O_NONBLOCK, read from /proc/self/fdinfo (flags are octal). */
function isNonBlocking(fd: number): boolean {
  const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))
  if (m === null) throw new Error(`no flags in /proc/self/fdinfo/${fd}`)
  return (parseInt(m[1]!, 8) & fsConstants.O_NONBLOCK) !== 0
}

function openFdCount(): number {
  return readdirSync('/proc/self/fd').length
}

/** The fd under a node server's handle (an internal, but stable on Linux). */
function serverFd(server: Server): number {
  const handle = (server as unknown as { _handle: { fd: number } | null })._handle
  if (handle === null) throw new Error('server is not listening')
  return handle.fd
}

function listenNode(server: Server, options: { port: number; host: string } | { path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(options, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

function closeNode(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => { resolve() }))
}

function nodePort(server: Server): number {
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('not a TCP server')
  return a.port
}

/** Connect to a TCP listener and hang up again: proves the socket accepts. */
function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port })
    const timer = setTimeout(() => {
      s.destroy()
      resolve(false)
    }, 5000)
    s.once('connect', () => {
      clearTimeout(timer)
      s.destroy()
      resolve(true)
    })
    s.once('error', () => {
      clearTimeout(timer)
      resolve(false)
    })
  })
}

/** A distinctive payload: every byte value once, NULs included. */
const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))

// ---------------------------------------------------------------------------
// 1. listenReusePort

t.test('listenReusePort', async (t) => {
  t.test('IPv4, port 0: an ephemeral port, described by socketInfo', async (t) => {
    const fds = fdBag(t)
    const fd = fds.own(listenReusePort({ host: '127.0.0.1', port: 0 }))
    t.ok(Number.isInteger(fd) && fd > 2, 'a real fd')
    t.equal(getCloexec(fd), true, 'close-on-exec')
    t.equal(isNonBlocking(fd), true, 'non-blocking')
    const info = socketInfo(fd)
    t.match(info, {
      type: 'stream',
      listening: true,
      reusePort: true,
      address: { kind: 'inet', family: 4, host: '127.0.0.1' },
    })
    const port = info.address.kind === 'inet' ? info.address.port : 0
    t.ok(port > 0 && port <= 65535, `ephemeral port ${port}`)
    t.equal(formatAddress(info.address), `127.0.0.1:${port}`)
    t.equal(await connects('127.0.0.1', port), true, 'accepts TCP connections')
  })

  t.test('two sockets on one port both bind (SO_REUSEPORT)', async (t) => {
    const fds = fdBag(t)
    const a = fds.own(listenReusePort({ host: '127.0.0.1', port: 0, backlog: 16 }))
    const infoA = socketInfo(a)
    const port = infoA.address.kind === 'inet' ? infoA.address.port : -1
    const b = fds.own(listenReusePort({ host: '127.0.0.1', port, backlog: 16 }))
    t.not(a, b, 'two fds')
    t.same(socketInfo(b), infoA, 'the second socket is described like the first')
    t.equal(fstatSync(a).ino === fstatSync(b).ino, false, 'two distinct sockets')
  })

  for (const ipv6Only of [true, false]) {
    t.test(`IPv6 ::1, ipv6Only ${ipv6Only}`, async (t) => {
      const fds = fdBag(t)
      const fd = fds.own(listenReusePort({ host: '::1', port: 0, ipv6Only }))
      t.equal(getCloexec(fd), true, 'close-on-exec')
      t.equal(isNonBlocking(fd), true, 'non-blocking')
      const info = socketInfo(fd)
      t.match(info, {
        type: 'stream',
        listening: true,
        reusePort: true,
        address: { kind: 'inet', family: 6, host: '::1' },
      })
      const port = info.address.kind === 'inet' ? info.address.port : 0
      t.ok(port > 0, `ephemeral port ${port}`)
      t.equal(formatAddress(info.address), `[::1]:${port}`)
      const again = fds.own(listenReusePort({ host: '::1', port, ipv6Only }))
      t.match(socketInfo(again), { reusePort: true, address: { port } }, 'a second ::1 socket shares the port')
      t.equal(await connects('::1', port), true, 'accepts TCP connections')
    })
  }

  t.test('EADDRINUSE when a plain node server holds the port', async (t) => {
    const server = createServer()
    t.teardown(() => closeNode(server))
    await listenNode(server, { port: 0, host: '127.0.0.1' })
    const port = nodePort(server)
    const err = thrownSystemError(() => listenReusePort({ host: '127.0.0.1', port }))
    t.equal(err.message, `bind EADDRINUSE: address already in use 127.0.0.1:${port}`)
    systemErr(t, err, 'EADDRINUSE', 'bind', 'v4')
    t.ok(err.errno < 0, 'errno is negative')
    t.equal(err.address, '127.0.0.1')
    t.equal(err.port, port)
  })

  t.test('EADDRINUSE on ::1 writes the address in brackets', async (t) => {
    const server = createServer()
    t.teardown(() => closeNode(server))
    await listenNode(server, { port: 0, host: '::1' })
    const port = nodePort(server)
    const err = thrownSystemError(() => listenReusePort({ host: '::1', port, ipv6Only: true }))
    t.equal(err.message, `bind EADDRINUSE: address already in use [::1]:${port}`)
    systemErr(t, err, 'EADDRINUSE', 'bind', 'v6')
    t.equal(err.port, port)
  })

  t.test('bad arguments', async (t) => {
    for (const host of ['localhost', 'x', '', '127.0.0.256']) {
      invalidArg(t, () => listenReusePort({ host, port: 0 }), 'host', host, `host ${show(host)}`)
    }
    for (const port of [70000, -1, 1.5, NaN, 65536]) {
      invalidArg(t, () => listenReusePort({ host: '127.0.0.1', port }), 'port', port, `port ${port}`)
    }
    for (const backlog of [0, -5, 2.5]) {
      invalidArg(t, () => listenReusePort({ host: '127.0.0.1', port: 0, backlog }), 'backlog', backlog, `backlog ${backlog}`)
    }
  })
})

// ---------------------------------------------------------------------------
// 2. two processes accepting on one port

t.test('two processes share a port through SO_REUSEPORT', async (t) => {
  const port = await freePort()
  const children = [0, 1].map(() => spawnTracked(t, process.execPath, [fixture('reuseport-server.js'), String(port)]))
  const ready = await Promise.all(children.map((c) => waitForOutput(c, /^ready pid=(\d+) port=(\d+)$/m)))
  const pids = new Set(ready.map((m) => m[1]!))
  t.equal(pids.size, 2, 'two servers are ready')
  t.same(new Set(children.map((c) => String(c.pid))), pids, 'they are the processes spawned')

  // Bounded by count; each request by its own timeout.
  const seen = new Set<string>()
  let requests = 0
  while (seen.size < 2 && requests < 200) {
    requests++
    const reply = await get({ port })
    t.equal(reply.status, 200)
    seen.add(reply.body)
  }
  t.same(seen, pids, `both processes answered (after ${requests} requests)`)
})

// ---------------------------------------------------------------------------
// 3. sendFds / recvFds

t.test('sendFds / recvFds', async (t) => {
  for (const type of ['stream', 'dgram', 'seqpacket'] as const) {
    t.test(`${type} socketpair`, async (t) => {
      const fds = fdBag(t)
      const [a, b] = fds.ownAll(socketPair(type))
      t.equal(socketInfo(a).type, type, `the pair is ${type}`)
      t.equal(recvFds(b), null, 'nothing queued: null')

      t.equal(sendFds(a, allBytes), allBytes.length, 'no fds: returns the bytes sent')
      const plain = recvFds(b)
      t.ok(plain !== null && plain.payload.equals(allBytes), 'payload arrives exactly')
      t.same(plain?.fds, [], 'no fds')

      const listener = fds.own(listenReusePort({ host: '127.0.0.1', port: 0 }))
      const listenInfo = socketInfo(listener)
      t.equal(sendFds(a, Buffer.from('one'), [listener]), 3)
      const one = recvFds(b)
      if (one === null) throw new Error('nothing received')
      fds.ownAll(one.fds)
      t.equal(one.payload.toString(), 'one')
      t.equal(one.fds.length, 1, 'one fd arrives')
      const got = one.fds[0]!
      t.not(got, listener, 'as a new fd number')
      t.equal(getCloexec(got), true, 'close-on-exec')
      t.same(socketInfo(got), listenInfo, 'the same listening socket (same port)')
      t.equal(fstatSync(got).ino, fstatSync(listener).ino, 'the same socket inode')

      const [pr, pw] = fds.ownAll(pipe())
      const sent = [listener, pr, pw, a]
      t.equal(sendFds(b, Buffer.from([0, 7, 0]), sent), 3, 'the other way round')
      const several = recvFds(a, { maxFds: 4 })
      if (several === null) throw new Error('nothing received')
      fds.ownAll(several.fds)
      t.same([...several.payload], [0, 7, 0], 'payload with NULs arrives exactly')
      t.equal(several.fds.length, 4, 'several fds arrive')
      several.fds.forEach((fd, i) => {
        const orig = sent[i]!
        t.notOk(sent.includes(fd), `fd ${i} is a new number`)
        t.equal(getCloexec(fd), true, `fd ${i} is close-on-exec`)
        t.equal(fstatSync(fd).ino, fstatSync(orig).ino, `fd ${i} refers to the same file`)
      })
      // The received pipe ends are the same pipe.
      writeSync(several.fds[2]!, 'through the copy')
      const buf = Buffer.alloc(64)
      const n = readSync(pr, buf)
      t.equal(buf.subarray(0, n).toString(), 'through the copy', 'the received pipe end writes into the original pipe')
      t.equal(recvFds(a), null, 'queue drained')
    })
  }

  for (const type of ['stream', 'dgram'] as const) {
    t.test(`${type}: more fds than maxFds is EMSGSIZE and leaks nothing`, async (t) => {
      const fds = fdBag(t)
      const [a, b] = fds.ownAll(socketPair(type))
      const [pr, pw] = fds.ownAll(pipe())
      const before = openFdCount()
      sendFds(a, Buffer.from('x'), [pr, pw, pr])
      const err = thrownSystemError(() => recvFds(b, { maxFds: 2 }))
      t.equal(openFdCount(), before, 'no fd of the discarded message stays open')
      systemErr(t, err, 'EMSGSIZE', 'recvmsg', 'maxFds 2')
      t.equal(err.message, 'recvmsg EMSGSIZE: message too long')
      t.equal(recvFds(b), null, 'the message is gone')

      sendFds(a, Buffer.from('y'), [pw])
      const zero = thrownSystemError(() => recvFds(b, { maxFds: 0 }))
      t.equal(openFdCount(), before, 'maxFds 0: nothing leaked either')
      t.equal(zero.code, 'EMSGSIZE', 'maxFds 0 with one fd')
      t.equal(recvFds(b), null, 'the message is gone')

      sendFds(a, Buffer.from('z'), [pw])
      const ok = recvFds(b, { maxFds: 1 })
      t.equal(ok?.fds.length, 1, 'exactly maxFds is fine')
      fds.ownAll(ok?.fds ?? [])
      t.equal(openFdCount(), before + 1)
    })
  }

  t.test('dgram: a payload longer than maxPayload is EMSGSIZE, fds closed', async (t) => {
    const fds = fdBag(t)
    const [a, b] = fds.ownAll(socketPair('dgram'))
    const [pr] = fds.ownAll(pipe())
    const before = openFdCount()
    sendFds(a, Buffer.alloc(100, 1), [pr])
    const err = thrownSystemError(() => recvFds(b, { maxPayload: 10 }))
    t.equal(err.code, 'EMSGSIZE')
    t.equal(openFdCount(), before, 'nothing leaked')
  })

  t.test('stream: a 253-fd message (SCM_MAX_FD) arrives whole', async (t) => {
    const fds = fdBag(t)
    const [a, b] = fds.ownAll(socketPair('stream'))
    const [pr] = fds.ownAll(pipe())
    const many = Array.from({ length: 253 }, () => pr)
    sendFds(a, Buffer.from('many'), many)
    const got = recvFds(b, { maxFds: 253 })
    fds.ownAll(got?.fds ?? [])
    t.equal(got?.fds.length, 253)
    t.equal(new Set(got?.fds).size, 253, 'each a distinct fd')
  })

  t.test('bad arguments', async (t) => {
    const fds = fdBag(t)
    const [a] = fds.ownAll(socketPair('stream'))
    const p = Buffer.from('p')
    for (const fd of [-1, 1.5, 'x', 2 ** 31]) {
      invalidArg(t, () => sendFds(fd as number, p), 'sock', fd, `sendFds sock ${show(fd)}`)
      invalidArg(t, () => recvFds(fd as number), 'sock', fd, `recvFds sock ${show(fd)}`)
    }
    invalidArg(t, () => sendFds(a, 'text' as unknown as Buffer), 'payload', 'text', 'payload a string')
    invalidArg(t, () => sendFds(a, Buffer.alloc(0)), 'payload', Buffer.alloc(0), 'payload empty')
    invalidArg(t, () => sendFds(a, p, 'nope' as unknown as number[]), 'fds', 'nope', 'fds not an array')
    const tooMany = Array.from({ length: 254 }, () => a)
    invalidArg(t, () => sendFds(a, p, tooMany), 'fds', tooMany, '254 fds')
    invalidArg(t, () => sendFds(a, p, [a, -3]), 'fds[1]', -3, 'a negative fd in the array')
    invalidArg(t, () => sendFds(a, p, [a, 0.5]), 'fds[1]', 0.5, 'a fractional fd in the array')
    for (const maxPayload of [0, -1, 1.5, 2 ** 20 + 1]) {
      invalidArg(t, () => recvFds(a, { maxPayload }), 'maxPayload', maxPayload, `maxPayload ${maxPayload}`)
    }
    for (const maxFds of [300, 254, -1, 1.5]) {
      invalidArg(t, () => recvFds(a, { maxFds }), 'maxFds', maxFds, `maxFds ${maxFds}`)
    }
  })

  t.test('system errors: closed fd, non-socket fd', async (t) => {
    const fds = fdBag(t)
    const dir = t.testdir({ 'plain.txt': 'not a socket' })
    const file = fds.own(openSync(join(dir, 'plain.txt'), 'r'))
    const enotsock = thrownSystemError(() => sendFds(file, Buffer.from('x')))
    systemErr(t, enotsock, 'ENOTSOCK', 'sendmsg', 'send on a file')
    const enotsockRecv = thrownSystemError(() => recvFds(file))
    systemErr(t, enotsockRecv, 'ENOTSOCK', 'recvmsg', 'recv on a file')

    const [x, y] = socketPair('stream')
    closeSync(x)
    closeSync(y)
    // Used at once, before anything else can be given the same numbers.
    const ebadf = thrownSystemError(() => sendFds(x, Buffer.from('x')))
    const ebadfRecv = thrownSystemError(() => recvFds(y))
    systemErr(t, ebadf, 'EBADF', 'sendmsg', 'send on a closed fd')
    t.equal(ebadf.message, 'sendmsg EBADF: bad file descriptor')
    systemErr(t, ebadfRecv, 'EBADF', 'recvmsg', 'recv on a closed fd')
  })

  t.test('sending a closed fd is EBADF', async (t) => {
    const fds = fdBag(t)
    const [a, b] = fds.ownAll(socketPair('stream'))
    const [pr, pw] = pipe()
    closeSync(pr)
    closeSync(pw)
    const err = thrownSystemError(() => sendFds(a, Buffer.from('x'), [pr]))
    systemErr(t, err, 'EBADF', 'sendmsg', 'a closed fd in the array')
    t.equal(recvFds(b), null, 'nothing was sent')
  })

  t.test('a peer that hung up: EPIPE, no SIGPIPE', async (t) => {
    const fds = fdBag(t)
    const [a, b] = fds.ownAll(socketPair('stream'))
    fds.close(b)
    const err = thrownSystemError(() => sendFds(a, Buffer.from('x')))
    systemErr(t, err, 'EPIPE', 'sendmsg', 'send to a closed peer')
    // End of stream is an empty message, not null (null means "nothing yet").
    t.same(recvFds(a), { payload: Buffer.alloc(0), fds: [] }, 'EOF: an empty payload')
  })
})

// ---------------------------------------------------------------------------
// 4. sendNotifyDatagram (errors only; delivery is tested with a receiver elsewhere)

t.test('sendNotifyDatagram errors', async (t) => {
  // Addresses go into sun_path (108 bytes): a short dir, not tap's testdir under the checkout.
  const dir = shortTmp(t)
  writeFileSync(join(dir, 'regular-file'), '')
  const msg = Buffer.from('READY=1')

  const missing = join(dir, 'no-such-socket')
  const enoent = thrownSystemError(() => sendNotifyDatagram(missing, msg))
  systemErr(t, enoent, 'ENOENT', 'sendmsg', 'a path with nothing there')
  t.ok(enoent.message.endsWith(` ${missing}`), 'the message names the path')
  t.equal(enoent.path, missing)

  const notSocket = join(dir, 'regular-file')
  const refused = thrownSystemError(() => sendNotifyDatagram(notSocket, msg))
  systemErr(t, refused, 'ECONNREFUSED', 'sendmsg', 'a path that is not a socket')
  t.ok(refused.message.endsWith(` ${notSocket}`), 'the message names the path')

  const abstract = `@sdserve-test-nobody-${process.pid}`
  const abs = thrownSystemError(() => sendNotifyDatagram(abstract, msg))
  systemErr(t, abs, 'ECONNREFUSED', 'sendmsg', 'an abstract name nobody listens on')
  t.ok(abs.message.endsWith(` ${abstract}`), 'the message names the address')
  t.equal(abs.path, abstract)

  const relative = thrownSystemError(() => sendNotifyDatagram('relative/x', msg))
  systemErr(t, relative, 'EAFNOSUPPORT', 'sendmsg', 'a relative address')
  t.ok(relative.message.endsWith(' relative/x'))

  const long = `/${'a'.repeat(199)}`
  invalidArg(t, () => sendNotifyDatagram(long, msg), 'address', long, '200 bytes')
  for (const short of ['', 'x', '/', '@']) {
    invalidArg(t, () => sendNotifyDatagram(short, msg), 'address', short, `address ${show(short)}`)
  }
  invalidArg(t, () => sendNotifyDatagram(42 as unknown as string, msg), 'address', 42, 'address a number')
  invalidArg(t, () => sendNotifyDatagram(missing, Buffer.alloc(0)), 'message', Buffer.alloc(0), 'empty message')
  invalidArg(t, () => sendNotifyDatagram(missing, msg, [-1]), 'fds[0]', -1, 'negative fd')
})

// ---------------------------------------------------------------------------
// 5. close-on-exec

t.test('setCloexec / getCloexec', async (t) => {
  const fds = fdBag(t)
  const [a, b] = fds.ownAll(socketPair('stream'))
  t.equal(getCloexec(a), true, 'socketPair fds start close-on-exec')
  setCloexec(a, false)
  t.equal(getCloexec(a), false, 'cleared')
  t.equal(getCloexec(b), true, 'the other end is untouched')
  setCloexec(a, false)
  t.equal(getCloexec(a), false, 'clearing twice is fine')
  setCloexec(a, true)
  t.equal(getCloexec(a), true, 'set again')

  const [x] = socketPair('stream').map((fd) => {
    closeSync(fd)
    return fd
  })
  const getErr = thrownSystemError(() => getCloexec(x!))
  const setErr = thrownSystemError(() => { setCloexec(x!, true) })
  systemErr(t, getErr, 'EBADF', 'fcntl', 'getCloexec on a closed fd')
  t.equal(getErr.message, 'fcntl EBADF: bad file descriptor')
  systemErr(t, setErr, 'EBADF', 'fcntl', 'setCloexec on a closed fd')
  invalidArg(t, () => getCloexec(-1), 'fd', -1, 'getCloexec -1')
  invalidArg(t, () => { setCloexec(1.5, true) }, 'fd', 1.5, 'setCloexec 1.5')
})

// ---------------------------------------------------------------------------
// 6. socketInfo and formatAddress

t.test('socketInfo', async (t) => {
  t.test('a UNIX listening socket made by node', async (t) => {
    const path = join(shortTmp(t), 's.sock')
    t.ok(Buffer.byteLength(path) < 108, `socket path fits sun_path: ${path}`)
    const server = createServer()
    t.teardown(() => closeNode(server))
    await listenNode(server, { path })
    const info = socketInfo(serverFd(server))
    t.same(info, { type: 'stream', listening: true, reusePort: false, address: { kind: 'unix', path } })
    t.equal(formatAddress(info.address), `unix:${path}`)
  })

  t.test('an abstract-namespace socket made by node', async (t) => {
    const name = `sdserve-test-abstract-${process.pid}`
    const server = createServer()
    t.teardown(() => closeNode(server))
    await listenNode(server, { path: `\0${name}` })
    const info = socketInfo(serverFd(server))
    t.match(info, { type: 'stream', listening: true, address: { kind: 'abstract' } })
    const reported = info.address.kind === 'abstract' ? info.address.name : ''
    // Node 20 (libuv 1.46) binds '\0name' with the whole sun_path, so the
    // kernel's name is the given one padded with NULs: report exactly that.
    t.ok(reported.startsWith(name), 'the name comes first')
    t.equal(reported.replace(/\0+$/, ''), name, 'followed by nothing but NUL padding')
  })

  t.test('socket pairs: unnamed, and each type', async (t) => {
    const fds = fdBag(t)
    for (const type of ['stream', 'dgram', 'seqpacket'] as const) {
      const [a, b] = fds.ownAll(socketPair(type))
      t.equal(isNonBlocking(a) && isNonBlocking(b), true, `${type}: both ends non-blocking`)
      t.equal(getCloexec(a) && getCloexec(b), true, `${type}: both ends close-on-exec`)
      const info = socketInfo(a)
      t.same(info, { type, listening: false, reusePort: false, address: { kind: 'unnamed' } }, `${type} pair end`)
      t.equal(formatAddress(info.address), 'unix:(unnamed)')
    }
  })

  t.test('not a socket', async (t) => {
    const fds = fdBag(t)
    const dir = t.testdir({ f: 'x' })
    const file = fds.own(openSync(join(dir, 'f'), 'r'))
    systemErr(t, thrownSystemError(() => socketInfo(file)), 'ENOTSOCK', 'getsockopt', 'a regular file')
    const [r] = fds.ownAll(pipe())
    systemErr(t, thrownSystemError(() => socketInfo(r)), 'ENOTSOCK', 'getsockopt', 'a pipe')
    const [x] = socketPair('dgram').map((fd) => {
      closeSync(fd)
      return fd
    })
    systemErr(t, thrownSystemError(() => socketInfo(x!)), 'EBADF', 'getsockopt', 'a closed fd')
    for (const bad of [-1, 1.5, 'x', null]) {
      invalidArg(t, () => socketInfo(bad as number), 'fd', bad, `fd ${show(bad)}`)
    }
  })

  t.test('formatAddress', async (t) => {
    t.equal(formatAddress({ kind: 'inet', family: 4, host: '127.0.0.1', port: 80 }), '127.0.0.1:80')
    t.equal(formatAddress({ kind: 'inet', family: 6, host: '::1', port: 8080 }), '[::1]:8080')
    t.equal(formatAddress({ kind: 'inet', family: 6, host: 'fe80::1', port: 0 }), '[fe80::1]:0')
    t.equal(formatAddress({ kind: 'unix', path: '/run/app.sock' }), 'unix:/run/app.sock')
    t.equal(formatAddress({ kind: 'abstract', name: 'app' }), 'unix:@app')
    t.equal(formatAddress({ kind: 'unnamed' }), 'unix:(unnamed)')
    t.equal(formatAddress({ kind: 'other', family: 16 }), 'family 16')
  })

  t.test('socketPair rejects an unknown type', async (t) => {
    invalidArg(t, () => socketPair('raw' as 'stream'), 'type', 'raw', 'type raw')
  })
})

// ---------------------------------------------------------------------------
// 7. pipe and pidfdIdSelf

t.test('pipe', async (t) => {
  const fds = fdBag(t)
  const [r, w] = fds.ownAll(pipe())
  t.not(r, w)
  t.equal(getCloexec(r), true, 'read end close-on-exec')
  t.equal(getCloexec(w), true, 'write end close-on-exec')
  t.equal(isNonBlocking(r) && isNonBlocking(w), true, 'both ends non-blocking')
  const buf = Buffer.alloc(16)
  t.match(thrown(() => readSync(r, buf)), { code: 'EAGAIN' }, 'an empty non-blocking pipe: EAGAIN')
  t.equal(writeSync(w, Buffer.from('hello')), 5)
  const n = readSync(r, buf)
  t.equal(buf.subarray(0, n).toString(), 'hello', 'what goes in [1] comes out of [0]')
  fds.close(w)
  t.equal(readSync(r, buf), 0, 'EOF once the write end is closed')
})

t.test('pidfdIdSelf', async (t) => {
  const id = pidfdIdSelf()
  t.equal(typeof id, 'bigint', 'a bigint (this kernel has pidfs)')
  t.ok(id !== null && id > 0n, `positive: ${String(id)}`)
  t.equal(pidfdIdSelf(), id, 'stable across calls')
})

// ---------------------------------------------------------------------------
// 8. the raw addon's own checks

t.test('raw addon: TypeError / RangeError, never a crash', async (t) => {
  type RawFn = (...args: unknown[]) => unknown
  const load = createRequire(import.meta.url)('node-gyp-build') as (dir: string) => Record<string, RawFn>
  const raw = load(packageRoot)
  const call = (name: string, ...args: unknown[]): unknown => {
    const fn = raw[name]
    if (fn === undefined) throw new Error(`the addon has no ${name}`)
    return fn(...args)
  }
  const describeArg = (a: unknown): string => {
    if (Array.isArray(a) && a.length > 3) return `[${a.length} items]`
    if (Buffer.isBuffer(a)) return `<Buffer ${a.length}>`
    if (typeof a === 'string') return JSON.stringify(a.length > 20 ? `${a.slice(0, 20)}…` : a)
    if (typeof a === 'number' || typeof a === 'bigint' || typeof a === 'boolean') return show(a)
    return JSON.stringify(a)
  }
  const p = Buffer.from('p')
  const cases: [string, unknown[], 'TypeError' | 'RangeError'][] = [
    ['sendFds', ['x', p, []], 'TypeError'],
    ['sendFds', [], 'TypeError'],
    ['sendFds', [0, 'p', []], 'TypeError'],
    ['sendFds', [0, p, 'nope'], 'TypeError'],
    ['sendFds', [0, p, ['x']], 'TypeError'],
    ['sendFds', [0, p, [-1]], 'RangeError'],
    ['sendFds', [0, p, Array.from({ length: 254 }, () => 0)], 'RangeError'],
    ['sendFds', [0, Buffer.alloc((1 << 20) + 1), []], 'RangeError'],
    ['listenTcp', [2, 5, 0, 1, false, true], 'TypeError'],
    ['listenTcp', [2, '127.0.0.1', '80', 1, false, true], 'TypeError'],
    ['listenTcp', [2, '127.0.0.1', 0, 1, 'yes', true], 'TypeError'],
    ['listenTcp', [2, '127.0.0.1', 0, 1, false], 'TypeError'],
    ['listenTcp', [2, '1'.repeat(100), 0, 1, false, true], 'RangeError'],
    ['listenTcp', [2.5, '127.0.0.1', 0, 1, false, true], 'RangeError'],
    ['listenUnix', [5, 1, -1, -1, -1], 'TypeError'],
    ['listenUnix', [`/${'x'.repeat(200)}`, 1, -1, -1, -1], 'RangeError'],
    ['listenUnix', ['/tmp/x', 1, '0660', -1, -1], 'TypeError'],
    ['listenUnix', ['/tmp/x', 1, -1, 1.5, -1], 'RangeError'],
    ['socketInfo', [1.5], 'RangeError'],
    ['socketInfo', [-1], 'RangeError'],
    ['socketInfo', [2 ** 31], 'RangeError'],
    ['socketInfo', [10n], 'TypeError'],
    ['socketInfo', [], 'TypeError'],
    ['notify', [123, p, []], 'TypeError'],
    ['notify', ['/x'.repeat(100), p, []], 'RangeError'],
    ['notify', ['/x', 'msg', []], 'TypeError'],
    ['recvFds', [0, 0, 0], 'RangeError'],
    ['recvFds', [0, 1, 254], 'RangeError'],
    ['recvFds', [0, (1 << 20) + 1, 0], 'RangeError'],
    ['recvFds', [0, 'big', 0], 'TypeError'],
    ['setCloexec', [0, 'on'], 'TypeError'],
    ['getCloexec', [Infinity], 'RangeError'],
    ['getCloexec', [NaN], 'RangeError'],
    ['socketPair', ['stream'], 'TypeError'],
    ['peerCredentials', [1.5], 'RangeError'],
    ['peerCredentials', ['3'], 'TypeError'],
    ['listenQueue', [-1], 'RangeError'],
    ['listenQueue', [], 'TypeError'],
  ]
  for (const [name, args, kind] of cases) {
    const what = `${name}(${args.map(describeArg).join(', ')})`
    const err = thrown(() => call(name, ...args))
    t.equal(err.constructor.name, kind, `${what}: ${kind}`)
    t.equal(
      (err as Error & { code?: unknown }).code,
      kind === 'TypeError' ? 'ERR_INVALID_ARG_TYPE' : 'ERR_OUT_OF_RANGE',
      `${what}: code`,
    )
    t.ok(err.message.length > 0, `${what}: says what is wrong: ${err.message}`)
  }
  // Still alive, and the addon still works after all of that.
  t.equal(typeof call('pidfdIdSelf'), 'bigint', 'the process and the addon are fine')
  t.equal(call('getCloexec', 1_000_000), -errno.EBADF, 'raw calls return -errno, they do not throw')
})

// ---------------------------------------------------------------------------
// 9. no usable binary: NativeLoadError
// SDSERVE_PREBUILD (node-gyp-build's override of where this package's build/ and
// prebuilds/ are) names an empty directory: a checkout with prebuilds/ from
// `npm pack` finds nothing either.

t.test('no build and no prebuilds: NativeLoadError', async (t) => {
  const script = `
    const m = await import(process.env.SDSERVE_TEST_NATIVE_URL)
    const e = await import(process.env.SDSERVE_TEST_ERRORS_URL)
    const r = { packageRoot: m.packageRoot, loaded: false }
    try {
      m.loadAddon()
      r.loaded = true
    } catch (err) {
      Object.assign(r, {
        isNativeLoadError: err instanceof e.NativeLoadError,
        name: err.name,
        code: err.code,
        message: err.message,
        cause: err.cause instanceof Error ? err.cause.message : null,
      })
    }
    r.available = m.addonAvailable()
    r.availableAgain = m.addonAvailable()
    process.stdout.write('RESULT ' + JSON.stringify(r) + '\\n')
  `
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SDSERVE_TEST_NATIVE_URL: pathToFileURL(join(root, 'dist', 'lib', 'native.js')).href,
    SDSERVE_TEST_ERRORS_URL: pathToFileURL(join(root, 'dist', 'lib', 'errors.js')).href,
    SDSERVE_PREBUILD: shortTmp(t),
  }
  const child = spawnTracked(t, process.execPath, ['--input-type=module', '-e', script], { cwd: root, env })
  const m = await waitForOutput(child, /^RESULT (.*)$/m)
  t.equal(await child.exited, 0, 'the child exits cleanly')
  const r = JSON.parse(m[1]!) as Record<string, unknown>
  const expectedRoot = join(root, '/')
  t.equal(r.packageRoot, expectedRoot, 'the package root')
  t.equal(r.loaded, false, 'loadAddon throws')
  t.equal(r.isNativeLoadError, true, 'a NativeLoadError')
  t.equal(r.name, 'NativeLoadError', 'named NativeLoadError')
  t.equal(r.code, 'SDSERVE_ERR_NATIVE', 'code SDSERVE_ERR_NATIVE')
  const message = typeof r.message === 'string' ? r.message : ''
  t.ok(message.includes('`npm rebuild sdserve`'), `the message says how to fix it: ${message}`)
  t.ok(message.includes(expectedRoot), 'the message names where it looked')
  t.ok(message.includes(`prebuilds/linux-${process.arch}`), 'and the prebuild it wanted')
  t.ok(
    message.includes(`build/Release/*.node and prebuilds/linux-${process.arch}/*.node for glibc, and none loads: No native build`),
    'what it looked for, for which libc, and why none loaded',
  )
  t.equal(typeof r.cause, 'string', 'the cause is kept')
  t.equal(r.available, false, 'addonAvailable() is false')
  t.equal(r.availableAgain, false, 'and stays false')
})

// ---------------------------------------------------------------------------
// 10. listenTcp without SO_REUSEPORT, listenUnix

t.test('listenTcp without reusePort, and listenUnix', async (t) => {
  const a = listenTcp({ host: '127.0.0.1', port: 0 })
  t.teardown(() => closeSync(a))
  const info = socketInfo(a)
  t.match(info, { type: 'stream', listening: true, reusePort: false })
  const port = (info.address as { port: number }).port
  t.throws(() => listenTcp({ host: '127.0.0.1', port }), { code: 'EADDRINUSE' }, 'a plain socket owns its port')
  t.throws(() => listenTcp({ host: '127.0.0.1', port: 0, backlog: 0 }), { code: 'SDSERVE_ERR_INVALID_ARG' })

  const dir = shortTmp(t)
  const path = join(dir, 'u.sock')
  const u = listenUnix(path, { mode: 0o600, uid: process.getuid!(), gid: process.getgid!() })
  t.teardown(() => closeSync(u))
  t.equal(statSync(path).mode & 0o777, 0o600, 'mode set before listen()')
  t.same(socketInfo(u).address, { kind: 'unix', path })
  t.equal(getCloexec(u), true)
  t.throws(() => listenUnix(path), { code: 'EADDRINUSE', message: `bind EADDRINUSE: address already in use ${path}` })
  // chown to an id that does not exist still works as root; a failing chmod/chown removes the file again
  const denied = join(dir, 'no-such-dir', 'x.sock')
  t.throws(() => listenUnix(denied), { code: 'ENOENT' })
  for (const [args, re] of [
    [['relative.sock'], /path must be an absolute path/],
    [[`/${'x'.repeat(120)}`], /path must be an absolute path of at most 107 bytes/],
    [[path, { backlog: -1 }], /backlog must be a positive integer/],
    [[path, { mode: 0o10000 }], /mode must be a file mode/],
    [[path, { uid: -2 }], /uid must be a non-negative integer id/],
    [[path, { gid: 1.5 }], /gid must be a non-negative integer id/],
  ] as const)
    t.throws(() => listenUnix(...(args as unknown as Parameters<typeof listenUnix>)), { code: 'SDSERVE_ERR_INVALID_ARG', message: re })
})

// ---------------------------------------------------------------------------
// 11. peerCredentials

/** The fd under a net.Socket's handle (an internal, but stable on Linux). */
function socketFd(socket: Socket): number {
  return (socket as unknown as { _handle: { fd: number } })._handle.fd
}

/** A connected client, destroyed at teardown; rejects on error or after 5 s. */
function connected(t: Test, options: { path: string } | { host: string; port: number }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(options)
    t.teardown(() => {
      s.destroy()
    })
    const timer = setTimeout(() => {
      reject(new Error(`no connection to ${JSON.stringify(options)} within 5 s`))
    }, 5000)
    s.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    s.once('connect', () => {
      clearTimeout(timer)
      resolve(s)
    })
  })
}

/** The next connection a node server accepts, destroyed at teardown. */
function accepted(t: Test, server: Server): Promise<Socket> {
  return new Promise((resolve) => {
    server.once('connection', (s) => {
      t.teardown(() => {
        s.destroy()
      })
      resolve(s)
    })
  })
}

/** uid and gid of a user from /etc/passwd, or null. */
const isRoot = process.getuid?.() === 0


t.test('peerCredentials', async (t) => {
  const self = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() }

  t.test('both ends of a socket pair: this process', async (t) => {
    const fds = fdBag(t)
    const [a, b] = fds.ownAll(socketPair('stream'))
    t.same(peerCredentials(a), self, 'one end')
    t.same(peerCredentials(b), self, 'the other end')
  })

  t.test('both ends of a connection to a node UNIX server', async (t) => {
    const path = join(shortTmp(t), 'c.sock')
    const server = createServer()
    t.teardown(() => closeNode(server))
    await listenNode(server, { path })
    const serverSide = accepted(t, server)
    const client = await connected(t, { path })
    const conn = await serverSide
    t.same(peerCredentials(socketFd(conn)), self, 'the accepted socket: the client is this process')
    t.same(peerCredentials(socketFd(client)), self, 'the client socket: the server is this process')
  })

  const nobody = passwdIds('nobody')
  const needNobody = nobody === null ? 'no user "nobody" on this system' : false
  t.test('a client of another uid', { skip: needNobody || (isRoot ? false : 'needs root to run a client as nobody') }, async (t) => {
    if (nobody === null) throw new Error('unreachable: skipped without nobody')
    // A directory nobody can reach, and a socket file nobody may connect to.
    const dir = mkdtempSync(join(tmpdir(), 'sds-peer-'))
    t.teardown(() => {
      rmSync(dir, { recursive: true, force: true })
    })
    chmodSync(dir, 0o777)
    const path = join(dir, 'p.sock')
    const server = createServer()
    t.teardown(() => closeNode(server))
    await listenNode(server, { path })
    chmodSync(path, 0o666)
    const serverSide = accepted(t, server)
    // The client stays connected until the server hangs up.
    const script = `require('net').connect(${JSON.stringify(path)}).on('connect', () => console.log('connected')).on('close', () => process.exit(0)).resume()`
    const child = spawnTracked(t, process.execPath, ['-e', script], {
      uid: nobody.uid,
      gid: nobody.gid,
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    })
    const conn = await serverSide
    await waitForOutput(child, /^connected$/m)
    t.same(peerCredentials(socketFd(conn)), { pid: child.pid, uid: nobody.uid, gid: nobody.gid }, 'the client: nobody')
    conn.destroy()
    t.equal(await child.exited, 0, 'the client exits once the server hangs up')
  })

  t.test('errors', async (t) => {
    const [x] = socketPair('stream').map((fd) => {
      closeSync(fd)
      return fd
    })
    systemErr(t, thrownSystemError(() => peerCredentials(x!)), 'EBADF', 'getsockopt', 'a closed fd')
    const fds = fdBag(t)
    const [r] = fds.ownAll(pipe())
    systemErr(t, thrownSystemError(() => peerCredentials(r)), 'ENOTSOCK', 'getsockopt', 'a pipe')
    for (const bad of [-1, 1.5, '3', null]) {
      invalidArg(t, () => peerCredentials(bad as number), 'fd', bad, `fd ${show(bad)}`)
    }
  })
})

// ---------------------------------------------------------------------------
// 12. listenQueue

/** True when ::1 can be bound here (IPv6 loopback exists). */
function hasIpv6Loopback(): boolean {
  try {
    closeSync(listenTcp({ host: '::1', port: 0 }))
    return true
  } catch {
    return false
  }
}

t.test('listenQueue', async (t) => {
  for (const host of ['127.0.0.1', '::1']) {
    const skip = host === '::1' && !hasIpv6Loopback() ? 'no IPv6 loopback' : false
    t.test(`TCP on ${host}: connections nobody accepted`, { skip }, async (t) => {
      const fds = fdBag(t)
      const fd = fds.own(listenTcp({ host, port: 0, backlog: 16 }))
      const port = (socketInfo(fd).address as { port: number }).port
      t.same(listenQueue(fd), { queued: 0, backlog: 16 }, 'nothing queued yet')
      for (let i = 0; i < 3; i++) await connected(t, { host, port })
      t.same(listenQueue(fd), { queued: 3, backlog: 16 }, 'three connections wait for accept()')
    })
  }

  t.test('UNIX: connections nobody accepted', async (t) => {
    const fds = fdBag(t)
    const path = join(shortTmp(t), 'q.sock')
    const fd = fds.own(listenUnix(path, { backlog: 8 }))
    t.same(listenQueue(fd), { queued: 0, backlog: 8 }, 'nothing queued yet')
    for (let i = 0; i < 2; i++) await connected(t, { path })
    t.same(listenQueue(fd), { queued: 2, backlog: 8 }, 'two connections wait for accept()')
  })

  const unshare = ['/usr/bin/unshare', '/bin/unshare'].find((p) => {
    try {
      return statSync(p).isFile()
    } catch {
      return false
    }
  })
  const needUnshare = unshare === undefined ? 'needs unshare (Debian package util-linux)' : false
  t.test('a UNIX listener from another network namespace: sock_diag cannot see it', { skip: needUnshare || (isRoot ? false : 'needs root for unshare --net') }, async (t) => {
    if (unshare === undefined) throw new Error('unreachable: skipped without unshare')
    const fds = fdBag(t)
    const fd = fds.own(listenUnix(join(shortTmp(t), 'n.sock'), { backlog: 4 }))
    // The child gets the listener as fd 3; its netlink socket lives in a new network namespace.
    const script = `
      const m = await import(process.env.SDSERVE_TEST_NATIVE_URL)
      try {
        process.stdout.write('RESULT ' + JSON.stringify(m.listenQueue(3)) + '\\n')
      } catch (err) {
        process.stdout.write('RESULT ' + JSON.stringify({ code: err.code, syscall: err.syscall, message: err.message }) + '\\n')
      }
    `
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      SDSERVE_TEST_NATIVE_URL: pathToFileURL(join(root, 'dist', 'lib', 'native.js')).href,
    }
    const child = spawnTracked(t, unshare, ['--net', process.execPath, '--input-type=module', '-e', script], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe', fd],
    })
    const m = await waitForOutput(child, /^RESULT (.*)$/m)
    t.equal(await child.exited, 0, 'the child exits cleanly')
    t.same(JSON.parse(m[1]!), {
      code: 'ENOENT',
      syscall: 'sock_diag',
      message: 'sock_diag ENOENT: no such file or directory',
    })
  })

  t.test('not a listening stream socket', async (t) => {
    const fds = fdBag(t)
    const [a] = fds.ownAll(socketPair('stream'))
    invalidArg(t, () => listenQueue(a), 'fd', a, 'a connected socket pair end')
    t.match(thrown(() => listenQueue(a)), { message: `fd must be a listening TCP or UNIX stream socket, got ${a}` })
    const [d] = fds.ownAll(socketPair('dgram'))
    invalidArg(t, () => listenQueue(d), 'fd', d, 'a datagram socket')
    const [r] = fds.ownAll(pipe())
    systemErr(t, thrownSystemError(() => listenQueue(r)), 'ENOTSOCK', 'getsockopt', 'a pipe')
    const [x] = socketPair('stream').map((fd) => {
      closeSync(fd)
      return fd
    })
    systemErr(t, thrownSystemError(() => listenQueue(x!)), 'EBADF', 'getsockopt', 'a closed fd')
    for (const bad of [-1, 1.5, 'x', null]) {
      invalidArg(t, () => listenQueue(bad as number), 'fd', bad, `fd ${show(bad)}`)
    }
  })
})
