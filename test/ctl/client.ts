/** `sdserve ctl`'s client: a request line out, an answer line back, and every way that goes wrong. */
import t, { type Test } from 'tap'
import { closeSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { ask } from '../../lib/ctl/client.js'
import { CtlError } from '../../lib/errors.js'
import { listenUnix } from '../../lib/native.js'
import { shortTmp } from '../helpers/proc.js'

/** A UNIX server at a fresh path; onLine gets each request line with its socket. */
async function server(t: Test, onLine: (line: string, socket: Socket) => void, onConnect?: (socket: Socket) => void): Promise<string> {
  const path = join(shortTmp(t), 'ctl.sock')
  const sockets = new Set<Socket>()
  const s = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => undefined)
    onConnect?.(socket)
    let buffered = ''
    socket.setEncoding('utf8').on('data', (d: string) => {
      buffered += d
      const i = buffered.indexOf('\n')
      if (i >= 0) onLine(buffered.slice(0, i), socket)
    })
  })
  await new Promise<void>((resolve) => s.listen(path, resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => s.close(resolve))
  })
  return path
}

t.test('the request goes as one JSON line; the answer comes back parsed', async (t) => {
  const seen: string[] = []
  const path = await server(t, (line, socket) => {
    seen.push(line)
    socket.write('{"ok":true,"command":"scale","workers":3}\n')
  })
  t.same(await ask(path, { command: 'scale', workers: 3 }, 10_000), { ok: true, command: 'scale', workers: 3 })
  t.same(seen, ['{"command":"scale","workers":3}'])
})

t.test('an answer in pieces, and only its first line counts', async (t) => {
  const path = await server(t, (_line, socket) => {
    socket.write('{"ok":false,"comm')
    setImmediate(() => socket.write('and":"reload","error":"boom"}\n{"ok":true}\n'))
  })
  t.same(await ask(path, { command: 'reload' }, 10_000), { ok: false, command: 'reload', error: 'boom' })
})

t.test('no socket at the path', async (t) => {
  const path = join(shortTmp(t), 'nothing.sock')
  await t.rejects(ask(path, { command: 'status' }, 10_000), new CtlError(`cannot reach the master at ${path}: no such socket (is sdserve running with this --control-socket?)`))
})

t.test('a socket file nobody listens on', async (t) => {
  const path = join(shortTmp(t), 'dead.sock')
  closeSync(listenUnix(path))
  await t.rejects(ask(path, { command: 'status' }, 10_000), { name: 'CtlError', message: new RegExp(`^cannot reach the master at ${path}: .*ECONNREFUSED`) })
})

t.test('the connection closed without an answer', async (t) => {
  const path = await server(t, () => undefined, (socket) => socket.destroy())
  await t.rejects(
    ask(path, { command: 'status' }, 10_000),
    new CtlError(`the master at ${path} closed the connection without an answer (is this user root or the master's?)`),
  )
  const half = await server(t, (_line, socket) => socket.end('{"ok":true,'))
  await t.rejects(ask(half, { command: 'status' }, 10_000), { message: /closed the connection without an answer/ }, 'half an answer, then the close')
})

t.test('an answer that is not JSON', async (t) => {
  const path = await server(t, (_line, socket) => socket.write('HTTP/1.1 400 Bad Request\n'))
  await t.rejects(ask(path, { command: 'status' }, 10_000), new CtlError(`the answer from ${path} is not JSON: "HTTP/1.1 400 Bad Request\\n"`))
})

t.test('JSON that is not an answer', async (t) => {
  for (const line of ['{"x":1}', '[]', 'null', '7', '{"ok":true}', '{"ok":"yes","command":"status"}', '{"ok":false,"command":"status"}']) {
    const path = await server(t, (_l, socket) => socket.write(`${line}\n`))
    await t.rejects(ask(path, { command: 'status' }, 10_000), new CtlError(`the answer from ${path} is not an answer: ${JSON.stringify(`${line}\n`)}`), line)
  }
})

t.test('no answer within the timeout', async (t) => {
  const path = await server(t, () => undefined)
  await t.rejects(ask(path, { command: 'reload' }, 50), new CtlError(`no answer from ${path} within 0.05 s; the master may still be working on reload`))
})

t.test('a timeout beyond what a timer holds still waits for the answer', async (t) => {
  const warnings: string[] = []
  const onWarning = (w: Error): void => void warnings.push(w.name)
  process.on('warning', onWarning)
  t.teardown(() => process.off('warning', onWarning))
  // The answer comes after a few turns of the event loop: a timer that overflowed would have fired by then.
  const path = await server(t, (_l, socket) => setTimeout(() => socket.write('{"ok":true,"command":"stop"}\n'), 100))
  t.same(await ask(path, { command: 'stop' }, 2 ** 32 * 1000), { ok: true, command: 'stop' })
  t.notOk(warnings.includes('TimeoutOverflowWarning'), 'no TimeoutOverflowWarning')
})
