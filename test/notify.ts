import t, { type Test } from 'tap'
import { closeSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { NotifyError, type SystemError } from '../lib/errors.js'
import { listenReusePort, pipe, socketInfo } from '../lib/native.js'
import {
  monotonicUsec,
  Notifier,
  NOTIFY_MESSAGE_MAX,
  oneLine,
  type NotifyResult,
} from '../lib/notify.js'
import { abstractName as makeAbstractName, settle, startReceiver } from './helpers/notify-receiver.js'
import { fixture, shortTmp, spawnTracked } from './helpers/proc.js'
import { needs } from './helpers/needs.js'

const abstractName = (): string => makeAbstractName('sdserve-test-notify')

const openFds = (): number => readdirSync('/proc/self/fd').length

/** fn() must throw a NotifyError whose message contains every part. */
function throwsNotify(t: Test, fn: () => unknown, parts: string[], what: string): void {
  let caught: unknown
  try {
    fn()
  } catch (err) {
    caught = err
  }
  if (!(caught instanceof NotifyError)) {
    t.fail(`${what}: expected a NotifyError, got ${String(caught)}`)
    return
  }
  t.equal(caught.code, 'SDSERVE_ERR_NOTIFY', `${what}: code`)
  for (const part of parts) t.ok(caught.message.includes(part), `${what}: message has ${part.slice(0, 40)}`, { found: caught.message })
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (err: unknown) => err,
  )
}

// ---- delivery to a real receiver ----

for (const kind of ['path', 'abstract'] as const) {
  t.test(`${kind} receiver`, needs(['python3']), async (t) => {
    const address = kind === 'path' ? path.join(shortTmp(t), 'notify.sock') : abstractName()
    t.ok(Buffer.byteLength(address) < 108, `address fits in sun_path: ${address}`)
    const rx = await startReceiver(t, address)
    const n = new Notifier({ socket: address })
    t.equal(n.enabled, true)
    t.equal(n.socket, address)

    // RELOADING=1 and MONOTONIC_USEC travel in one datagram, with the clock read during the call.
    const before = monotonicUsec()
    const reload = n.reloading()
    const after = monotonicUsec()
    const [first] = await rx.waitFor(1)
    t.equal(first?.data, reload.message, 'the receiver got exactly the reported message')
    const m = /^RELOADING=1\nMONOTONIC_USEC=([0-9]+)$/.exec(first?.data ?? '')
    t.ok(m, `one datagram with both fields: ${JSON.stringify(first?.data)}`)
    const usec = BigInt(m?.[1] ?? '-1')
    t.ok(usec >= before && usec <= after, `MONOTONIC_USEC ${usec} within [${before}, ${after}]`)
    t.same(first?.fds, [])

    const expected: string[] = []
    const sent = (result: NotifyResult, message: string): void => {
      t.same(result, { sent: true, message }, message.length > 60 ? `${message.slice(0, 60)}…` : message)
      expected.push(message)
    }
    sent(n.ready('serving'), 'READY=1\nSTATUS=serving')
    sent(n.ready(), 'READY=1')
    const reload2 = n.reloading('reloading config')
    t.match(reload2.message, /^RELOADING=1\nMONOTONIC_USEC=[0-9]+\nSTATUS=reloading config$/)
    sent(reload2, reload2.message)
    sent(n.stopping(), 'STOPPING=1')
    sent(n.stopping('draining'), 'STOPPING=1\nSTATUS=draining')
    sent(n.status('12 workers'), 'STATUS=12 workers')
    sent(n.status(''), 'STATUS=')
    sent(n.errno(0), 'ERRNO=0')
    sent(n.errno(98, 'address in use'), 'ERRNO=98\nSTATUS=address in use')
    sent(n.errno(0n as unknown as number), 'ERRNO=0') // JavaScript callers may pass a bigint
    sent(n.mainPid(1234), 'MAINPID=1234')
    sent(n.watchdog(), 'WATCHDOG=1')
    sent(n.watchdogTrigger(), 'WATCHDOG=trigger')
    sent(n.watchdogTrigger('stuck'), 'WATCHDOG=trigger\nSTATUS=stuck')
    sent(n.watchdogUsec(3000000), 'WATCHDOG_USEC=3000000')
    sent(n.watchdogUsec(18446744073709551615n), 'WATCHDOG_USEC=18446744073709551615')
    sent(n.extendTimeout(5000000), 'EXTEND_TIMEOUT_USEC=5000000')
    sent(n.extendTimeout(7n), 'EXTEND_TIMEOUT_USEC=7')
    sent(n.fdStoreRemove('web'), 'FDSTOREREMOVE=1\nFDNAME=web')
    sent(
      n.send([
        ['X_CUSTOM1', 'tab\tinside'],
        ['N', 2n],
      ]),
      'X_CUSTOM1=tab\tinside\nN=2',
    )
    const big = 'x'.repeat(NOTIFY_MESSAGE_MAX - 'STATUS='.length)
    sent(n.status(big), `STATUS=${big}`)
    sent(n.status('grüße'), 'STATUS=grüße')
    const all = await rx.waitFor(1 + expected.length)
    t.same(
      all.slice(1).map((d) => d.data),
      expected,
      'every message arrived once, in order, byte for byte',
    )
    t.ok(
      all.every((d) => d.fds.length === 0),
      'no fds without fdStore',
    )
  })
}

t.test('fdStore passes a listening socket with SCM_RIGHTS', needs(['python3']), async (t) => {
  const rx = await startReceiver(t, abstractName())
  const n = new Notifier({ socket: rx.address })
  const fd = listenReusePort({ host: '127.0.0.1', port: 0 })
  t.teardown(() => {
    closeSync(fd)
  })
  const info = socketInfo(fd)
  const port = info.address.kind === 'inet' ? info.address.port : -1
  t.ok(port > 0, `listening on 127.0.0.1:${port}`)
  t.same(n.fdStore([fd], 'web'), { sent: true, message: 'FDSTORE=1\nFDNAME=web' })
  const [d] = await rx.waitFor(1)
  t.equal(d?.data, 'FDSTORE=1\nFDNAME=web')
  t.same(d?.fds, [{ type: 'socket', sockname: ['127.0.0.1', port], listening: true }], 'exactly that socket arrived')
  t.equal(socketInfo(fd).listening, true, 'our copy of the fd is still open')
})

t.test('fdStore with poll: false adds FDPOLL=0', needs(['python3']), async (t) => {
  const rx = await startReceiver(t, abstractName())
  const n = new Notifier({ socket: rx.address })
  const [readEnd, writeEnd] = pipe()
  t.teardown(() => {
    closeSync(readEnd)
    closeSync(writeEnd)
  })
  t.same(n.fdStore([readEnd], 'pipe', { poll: false }), {
    sent: true,
    message: 'FDSTORE=1\nFDNAME=pipe\nFDPOLL=0',
  })
  t.same(n.fdStore([readEnd, writeEnd], 'both', { poll: true }), {
    sent: true,
    message: 'FDSTORE=1\nFDNAME=both',
  })
  const got = await rx.waitFor(2)
  t.same(got, [
    { data: 'FDSTORE=1\nFDNAME=pipe\nFDPOLL=0', fds: [{ type: 'fifo' }] },
    { data: 'FDSTORE=1\nFDNAME=both', fds: [{ type: 'fifo' }, { type: 'fifo' }] },
  ])
})

// ---- BARRIER=1 ----

t.test('barrier() resolves once the receiver closed the pipe, and closes its fds', needs(['python3']), async (t) => {
  const rx = await startReceiver(t, abstractName())
  const n = new Notifier({ socket: rx.address })
  n.status('last words')
  const fdsBefore = openFds()
  t.same(await n.barrier(), { sent: true, message: 'BARRIER=1' })
  await settle(() => openFds() === fdsBefore)
  t.equal(openFds(), fdsBefore, 'both pipe ends are closed')
  const got = await rx.waitFor(2)
  t.same(got, [
    { data: 'STATUS=last words', fds: [] },
    { data: 'BARRIER=1', fds: [{ type: 'fifo' }] },
  ])
})

t.test('barrier() rejects after its timeout when the receiver does not answer', needs(['python3']), async (t) => {
  const rx = await startReceiver(t, abstractName())
  const n = new Notifier({ socket: rx.address })
  rx.child.kill('SIGSTOP')
  t.teardown(() => {
    rx.child.kill('SIGCONT')
  })
  const fdsBefore = openFds()
  const err = await rejection(n.barrier(200))
  t.ok(err instanceof NotifyError, `a NotifyError: ${String(err)}`)
  t.equal((err as NotifyError).code, 'SDSERVE_ERR_NOTIFY')
  t.match((err as Error).message, `BARRIER=1 not acknowledged by ${rx.address} within 200 ms`)
  await settle(() => openFds() === fdsBefore)
  t.equal(openFds(), fdsBefore, 'the pipe fds are closed after a timeout too')
  rx.child.kill('SIGCONT')
  const [d] = await rx.waitFor(1)
  t.equal(d?.data, 'BARRIER=1', 'the late receiver still gets the barrier')
})

t.test('barrier() argument and failure paths', async (t) => {
  const off = new Notifier({ socket: undefined })
  t.same(await off.barrier(), { sent: false, message: 'BARRIER=1' })
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    const err = await rejection(off.barrier(bad))
    t.match(err, { code: 'SDSERVE_ERR_INVALID_ARG', name: 'InvalidArgumentError' }, `barrier(${bad})`)
    t.ok((err as Error).message.includes('timeoutMs'), 'names the argument')
  }
  const nowhere = path.join(shortTmp(t), 'nobody.sock')
  const n = new Notifier({ socket: nowhere })
  const fdsBefore = openFds()
  const err = await rejection(n.barrier())
  t.match(err, { code: 'ENOENT', syscall: 'sendmsg', path: nowhere })
  t.equal(openFds(), fdsBefore, 'the pipe fds are closed when the send fails')
})

// ---- validation ----

t.test('bad messages are NotifyErrors naming the field and echoing the value; nothing is sent', needs(['python3']), async (t) => {
  const rx = await startReceiver(t, abstractName())
  const n = new Notifier({ socket: rx.address })
  throwsNotify(t, () => n.status('a\nb'), ['STATUS', JSON.stringify('a\nb')], 'status with a newline')
  throwsNotify(t, () => n.status('a\0b'), ['STATUS', JSON.stringify('a\0b')], 'status with NUL')
  throwsNotify(t, () => n.ready('x\ny'), ['STATUS', JSON.stringify('x\ny')], 'ready status with a newline')
  throwsNotify(t, () => n.send([['ready', '1']]), ['field name', '"ready"'], 'lower-case key')
  throwsNotify(t, () => n.send([['1X', '1']]), ['field name', '"1X"'], 'key starting with a digit')
  throwsNotify(t, () => n.send([['A=B', '1']]), ['field name', '"A=B"'], 'key with =')
  throwsNotify(t, () => n.send([]), ['at least one field'], 'no fields')
  const tooBig = 'x'.repeat(NOTIFY_MESSAGE_MAX - 'STATUS='.length + 1)
  throwsNotify(t, () => n.status(tooBig), [`at most ${NOTIFY_MESSAGE_MAX} bytes`, `got ${NOTIFY_MESSAGE_MAX + 1}`], 'too big')
  throwsNotify(t, () => n.status('é'.repeat(2045)), ['got 4097'], 'too big counted in bytes, not characters')
  throwsNotify(t, () => n.mainPid(0), ['MAINPID', 'got 0'], 'mainPid(0)')
  throwsNotify(t, () => n.mainPid(-1), ['MAINPID', 'got -1'], 'mainPid(-1)')
  throwsNotify(t, () => n.mainPid(1.5), ['MAINPID', 'got 1.5'], 'mainPid(1.5)')
  throwsNotify(t, () => n.mainPid(Number.NaN), ['MAINPID', 'got NaN'], 'mainPid(NaN)')
  throwsNotify(t, () => n.mainPid(2 ** 53), ['MAINPID', `got ${2 ** 53}`], 'mainPid beyond safe integers')
  throwsNotify(t, () => n.mainPid('12' as unknown as number), ['MAINPID', 'got "12"'], 'mainPid as a string')
  throwsNotify(t, () => n.errno(-1), ['ERRNO', 'non-negative', 'got -1'], 'errno(-1)')
  throwsNotify(t, () => n.errno(-1n as unknown as number), ['ERRNO', 'got -1n'], 'errno(-1n)')
  throwsNotify(t, () => n.watchdogUsec(0), ['WATCHDOG_USEC', 'positive', 'got 0'], 'watchdogUsec(0)')
  throwsNotify(t, () => n.watchdogUsec(0n), ['WATCHDOG_USEC', 'got 0n'], 'watchdogUsec(0n)')
  throwsNotify(t, () => n.extendTimeout(-5), ['EXTEND_TIMEOUT_USEC', 'got -5'], 'extendTimeout(-5)')
  throwsNotify(t, () => n.extendTimeout(-5n), ['EXTEND_TIMEOUT_USEC', 'got -5n'], 'extendTimeout(-5n)')
  throwsNotify(t, () => n.fdStore([], 'x'), ['FDSTORE', 'got []'], 'fdStore without fds')
  throwsNotify(t, () => n.fdStore('3' as unknown as number[], 'x'), ['FDSTORE', 'got "3"'], 'fdStore fds not an array')
  const badNames = ['', 'a:b', 'n'.repeat(256), 'tab\there', 'bell\x07', 'del\x7f', 'naïve']
  for (const name of badNames) {
    throwsNotify(t, () => n.fdStore([0], name), ['FDNAME', `got ${JSON.stringify(name)}`], `fdStore name ${JSON.stringify(name)}`)
    throwsNotify(t, () => n.fdStoreRemove(name), ['FDNAME', `got ${JSON.stringify(name)}`], `fdStoreRemove name ${JSON.stringify(name)}`)
  }
  t.throws(() => n.fdStore([-1], 'x'), { code: 'SDSERVE_ERR_INVALID_ARG' }, 'a negative fd number')

  // Nothing above reached the receiver: the next datagram it sees is this one.
  n.ready()
  const [d] = await rx.waitFor(1)
  t.equal(d?.data, 'READY=1')
  t.equal(rx.datagrams().length, 1)
})

t.test('NOTIFY_SOCKET values are checked at construction', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['relative', ['NOTIFY_SOCKET', '"relative"', 'absolute path']],
    ['run/notify', ['NOTIFY_SOCKET', '"run/notify"']],
    ['vsock:2:1234', ['NOTIFY_SOCKET=vsock:2:1234', 'AF_VSOCK']],
    ['@', ['NOTIFY_SOCKET', '"@"', '2 to 107 bytes']],
    ['/', ['NOTIFY_SOCKET', '"/"']],
    [`/${'p'.repeat(199)}`, ['NOTIFY_SOCKET', JSON.stringify(`/${'p'.repeat(199)}`)]],
    [`@${'q'.repeat(108)}`, ['NOTIFY_SOCKET']],
  ]
  for (const [socket, parts] of cases) throwsNotify(t, () => new Notifier({ socket }), parts, `NOTIFY_SOCKET=${socket}`)
})

t.test('the longest accepted abstract name works end to end', needs(['python3']), async (t) => {
  const address = `@sdserve-test-notify-${process.pid}-`.padEnd(107, 'L')
  t.equal(Buffer.byteLength(address), 107)
  const rx = await startReceiver(t, address)
  t.same(new Notifier({ socket: address }).status('long'), { sent: true, message: 'STATUS=long' })
  t.equal((await rx.waitFor(1))[0]?.data, 'STATUS=long')
})

t.test('a 108-byte path NOTIFY_SOCKET', async (t) => {
  let constructed = true
  try {
    new Notifier({ socket: `/${'r'.repeat(107)}` })
  } catch {
    constructed = false
  }
  t.notOk(constructed, 'is refused at construction, as systemd refuses addresses over 107 bytes')
})

t.test('without NOTIFY_SOCKET nothing is sent', async (t) => {
  for (const socket of [undefined, '']) {
    const n = new Notifier({ socket })
    t.equal(n.enabled, false)
    t.equal(n.socket, undefined)
    t.same(n.ready(), { sent: false, message: 'READY=1' })
    t.same(n.ready('up'), { sent: false, message: 'READY=1\nSTATUS=up' })
    t.same(n.fdStore([0], 'stdin'), { sent: false, message: 'FDSTORE=1\nFDNAME=stdin' })
    t.same(await n.barrier(), { sent: false, message: 'BARRIER=1' })
    throwsNotify(t, () => n.status('a\nb'), ['STATUS'], 'still validates')
  }
})

t.test('undeliverable', needs(['python3']), async (t) => {
  const dir = shortTmp(t)
  const nowhere = path.join(dir, 'missing.sock')
  let caught: unknown
  try {
    new Notifier({ socket: nowhere }).ready()
  } catch (err) {
    caught = err
  }
  t.match(caught, { code: 'ENOENT', syscall: 'sendmsg', path: nowhere }, 'nothing at the path')
  t.ok((caught as SystemError).message.includes(nowhere), (caught as Error).message)

  // A socket file whose owner is gone: ECONNREFUSED.
  const stale = path.join(dir, 'stale.sock')
  const rx = await startReceiver(t, stale)
  rx.child.kill('SIGKILL')
  await rx.child.exited
  caught = undefined
  try {
    new Notifier({ socket: stale }).watchdog()
  } catch (err) {
    caught = err
  }
  t.match(caught, { code: 'ECONNREFUSED', syscall: 'sendmsg', path: stale }, 'nobody listening on the socket file')
  t.ok((caught as SystemError).message.includes(stale), (caught as Error).message)

  // An abstract name nobody bound.
  const unbound = abstractName()
  t.throws(() => new Notifier({ socket: unbound }).ready(), { code: 'ECONNREFUSED', path: unbound })
})

t.test('notifier() makes one Notifier from process.env.NOTIFY_SOCKET', needs(['python3']), async (t) => {
  const rx = await startReceiver(t, abstractName())
  const child = spawnTracked(t, process.execPath, [fixture('notify-default.js'), 'notifier'], {
    env: { ...process.env, NOTIFY_SOCKET: rx.address },
  })
  t.equal(await child.exited, 0, child.output())
  t.same(JSON.parse(child.output()), { same: true, socket: rx.address, enabled: true, sent: true })
  t.same(
    (await rx.waitFor(1)).map((d) => d.data),
    ['READY=1\nSTATUS=from fixture'],
  )

  const env = { ...process.env }
  delete env.NOTIFY_SOCKET
  const off = spawnTracked(t, process.execPath, [fixture('notify-default.js'), 'notifier'], { env })
  t.equal(await off.exited, 0, off.output())
  t.same(JSON.parse(off.output()), { same: true, socket: null, enabled: false, sent: false })
})

// ---- pure helpers ----

t.test('oneLine', async (t) => {
  t.equal(oneLine('a\nb\tc '), 'a b c')
  t.equal(oneLine('  x\r\n\r\ny\x00z\x7f'), 'x y z')
  t.equal(oneLine(''), '')
  t.equal(oneLine('plain'), 'plain')
})

t.test('monotonicUsec follows CLOCK_MONOTONIC in microseconds', async (t) => {
  const a = monotonicUsec()
  const ns = process.hrtime.bigint()
  const b = monotonicUsec()
  t.equal(typeof a, 'bigint')
  t.ok(a <= ns / 1000n && ns / 1000n <= b, 'between hrtime readings, in µs')
})
