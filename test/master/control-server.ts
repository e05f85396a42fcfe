/**
 * The control socket in-process, with a fake master: the file, every
 * command's answer (refusals and failures too), the connection rules, and
 * a peer of another uid.
 */
import t, { type Test } from 'tap'
import { chmodSync, closeSync, existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ControlServer } from '../../lib/master/control-server.js'
import { controlSocketPath } from '../../lib/control-protocol.js'
import { MAX_REQUEST_BYTES } from '../../lib/control-protocol.js'
import { Logger } from '../../lib/logger.js'
import { listenUnix } from '../../lib/native.js'
import { FakeMaster, lineClient, worker } from '../helpers/control.js'
import { shortTmp, spawnTracked, waitFor, waitForOutput } from '../helpers/proc.js'
import { passwdIds } from '../helpers/users.js'

async function open(t: Test, options: { path?: string; master?: FakeMaster } = {}) {
  const path = options.path ?? join(shortTmp(t), 'ctl.sock')
  const master = options.master ?? new FakeMaster()
  const lines: string[] = []
  const log = new Logger({ level: 'debug', write: (l) => lines.push(l) })
  const server = await ControlServer.open(path, master, log)
  let closed = false
  const close = async (): Promise<void> => {
    closed = true
    await server.close()
  }
  t.teardown(async () => {
    if (!closed) await server.close()
  })
  return { path, master, server, lines, close, client: () => lineClient(t, path) }
}

t.test('controlSocketPath', async (t) => {
  t.equal(controlSocketPath('none', { RUNTIME_DIRECTORY: '/run/a' }), undefined, "'none' turns it off")
  t.equal(controlSocketPath('/x/c.sock', { RUNTIME_DIRECTORY: '/run/a' }), '/x/c.sock', 'the option wins')
  t.equal(controlSocketPath(undefined, { RUNTIME_DIRECTORY: '/run/a' }), '/run/a/sdserve.ctl')
  t.equal(controlSocketPath(undefined, { RUNTIME_DIRECTORY: '/run/a:/run/b' }), '/run/a/sdserve.ctl', "several directories: the first, the unit's own")
  t.equal(controlSocketPath(undefined, { RUNTIME_DIRECTORY: '' }), undefined, 'an empty RUNTIME_DIRECTORY')
  t.equal(controlSocketPath(undefined, {}), undefined, 'no RUNTIME_DIRECTORY: none')
})

t.test('the socket file: 0600, a socket, logged', async (t) => {
  const c = await open(t)
  const st = lstatSync(c.path)
  t.ok(st.isSocket(), 'a socket')
  t.equal(st.mode & 0o777, 0o600, 'mode 0600')
  t.equal(st.uid, process.getuid!(), "owned by the master's user")
  t.equal(c.server.path, c.path)
  t.match(c.lines.join('\n'), `control socket: ${c.path}`)
})

t.test('a stale socket file is replaced', async (t) => {
  const path = join(shortTmp(t), 'ctl.sock')
  closeSync(listenUnix(path)) // a socket file nothing listens on: a master that died
  t.ok(lstatSync(path).isSocket())
  const c = await open(t, { path })
  const client = await c.client()
  client.send('status\n')
  t.match(await client.next(), { ok: true, command: 'status' }, 'served')
})

t.test('a file that is not a socket: open() rejects and leaves it', async (t) => {
  const path = join(shortTmp(t), 'ctl.sock')
  writeFileSync(path, 'precious')
  await t.rejects(ControlServer.open(path, new FakeMaster(), new Logger({ write: () => undefined })), { code: 'EADDRINUSE' })
  t.equal(readFileSync(path, 'utf8'), 'precious', 'the file is untouched')
})

t.test('status and workers', async (t) => {
  const c = await open(t)
  c.master.workers = [worker(1, 1), worker(2, 1, 'booting')]
  c.master.target = 3
  const client = await c.client()
  client.send('status\n')
  const status = await client.next()
  // As JSON carries them: fields that are undefined are left out.
  const json = (v: unknown): unknown => JSON.parse(JSON.stringify(v))
  t.same(status, { ok: true, command: 'status', stats: json(c.master.stats()) })
  client.send('{"command":"workers"}\n')
  t.same(await client.next(), { ok: true, command: 'workers', target: 3, workers: json(c.master.workers) })
  t.match(c.lines.join('\n'), /control socket: status[\s\S]*control socket: workers/, 'each command is logged')
})

t.test('reopen-logs', async (t) => {
  const c = await open(t)
  const client = await c.client()
  client.send('reopen-logs\n')
  t.same(await client.next(), { ok: true, command: 'reopen-logs' })
  t.same(c.master.calls, ['reopen-logs'])
})

t.test('drain and resume: lame duck on and off, answered with what health checks now say', async (t) => {
  const c = await open(t)
  const client = await c.client()
  client.send('drain\n')
  t.same(await client.next(), { ok: true, command: 'drain', health: 'lame-duck' })
  client.send('{"command":"resume"}\n')
  t.same(await client.next(), { ok: true, command: 'resume', health: 'ok' })
  t.same(c.master.calls, ['lame-duck true', 'lame-duck false'])
})

t.test('reload: the new generation, the failure, the refusal', async (t) => {
  const c = await open(t)
  const client = await c.client()
  client.send('reload\n')
  t.same(await client.next(), { ok: true, command: 'reload', generation: 2 }, 'ok: the generation from the reload event')

  c.master.onReload = async () => {
    c.master.emit('reload', { ok: false, generation: 2, error: 'the app threw' })
    return false
  }
  client.send('reload\n')
  t.same(await client.next(), { ok: false, command: 'reload', error: 'the app threw' }, "failed: the reload event's error")

  c.master.onReload = async () => false
  c.master.phase = 'stopping'
  client.send('reload\n')
  t.same(await client.next(), { ok: false, command: 'reload', error: 'refused: the master is stopping' }, 'refused: no reload event')
  t.equal(c.master.listenerCount('reload'), 0, 'no listener is left behind')

  c.master.onReload = () => Promise.reject(new Error('kaput'))
  client.send('reload\n')
  t.same(await client.next(), { ok: false, command: 'reload', error: 'kaput' }, 'a master that rejects: an error answer')
  t.match(c.lines.join('\n'), /control socket: reload failed: kaput/)
  t.equal(c.master.listenerCount('reload'), 0)
  client.send('status\n')
  t.match(await client.next(), { ok: true, command: 'status' }, 'the connection still works')
})

t.test('a master whose stats() throws: an error answer, the connection still works', async (t) => {
  const c = await open(t)
  const client = await c.client()
  c.master.statsError = new Error('no stats')
  client.send('status\n')
  t.same(await client.next(), { ok: false, command: 'status', error: 'no stats' })
  c.master.statsError = undefined
  client.send('status\n')
  t.match(await client.next(), { ok: true, command: 'status' })
})

t.test('scale: refused', async (t) => {
  const c = await open(t)
  c.master.scaleOk = false
  c.master.phase = 'starting'
  const client = await c.client()
  client.send('scale 3\n')
  t.same(await client.next(), { ok: false, command: 'scale', error: 'refused: the master is starting' })
  t.same(c.master.calls, ['scale 3'])
})

t.test('scale: answered at once when the count is there already', async (t) => {
  const c = await open(t)
  const client = await c.client()
  client.send('scale 2\n')
  t.same(await client.next(), { ok: true, command: 'scale', workers: 2 })
})

t.test('scale: answered only once the serving generation has that many ready workers, and no more', async (t) => {
  const c = await open(t)
  const m = c.master
  const client = await c.client()
  client.send('scale 3\n')
  const answered = client.next()
  const waiting = (): Promise<void> => waitFor(() => m.listenerCount('status') === 1 && m.listenerCount('phase') === 1, 'the scale waiting for a status')
  await waiting()
  t.same(m.calls, ['scale 3'])
  const steps: [string, typeof m.workers][] = [
    ['a third worker booting', [worker(1, 1), worker(2, 1), worker(3, 1, 'booting')]],
    ["an old generation's ready worker does not count", [worker(1, 2), worker(2, 2), worker(3, 1)]],
    ['a retiring one neither', [worker(1, 1), worker(2, 1), worker(3, 1, 'retiring')]],
    ['four, one of them booting', [worker(1, 1), worker(2, 1), worker(3, 1), worker(4, 1, 'booting')]],
  ]
  for (const [what, workers] of steps) {
    m.workers = workers
    m.emit('status')
    // Still waiting: it has listened again for the next change.
    await waiting()
    t.same(client.received, [], `no answer yet: ${what}`)
  }
  m.workers = [worker(1, 1), worker(2, 1), worker(3, 1), worker(4, 1, 'stopping')]
  m.emit('status')
  t.same(await answered, { ok: true, command: 'scale', workers: 3 }, 'three ready (a stopping one does not count)')
  t.equal(m.listenerCount('status') + m.listenerCount('phase'), 0, 'no listener is left behind')
})

t.test('scale: a stop ends the wait', async (t) => {
  const c = await open(t)
  const m = c.master
  const client = await c.client()
  client.send('scale 5\n')
  await waitFor(() => m.listenerCount('phase') === 1, 'the scale waiting')
  m.phase = 'stopping'
  m.emit('phase', { phase: 'stopping', previous: 'serving' })
  t.same(await client.next(), { ok: false, command: 'scale', error: 'the master is stopping' })
  t.equal(m.listenerCount('status') + m.listenerCount('phase'), 0, 'no listener is left behind')
})

t.test('scale: a ctl that goes away ends the wait', async (t) => {
  const c = await open(t)
  const m = c.master
  const client = await c.client()
  client.send('scale 5\n')
  await waitFor(() => m.listenerCount('status') === 1, 'the scale waiting')
  client.socket.destroy()
  await waitFor(() => m.listenerCount('status') + m.listenerCount('phase') === 0, 'the wait ended, its listeners removed')
  // The server is fine: another client is served.
  const other = await c.client()
  other.send('status\n')
  t.match(await other.next(), { ok: true, command: 'status' })
})

t.test('upgrade: answered at the hand-over with the new pid', async (t) => {
  const c = await open(t)
  const m = c.master
  // The real upgrade() resolves only once the old master has stopped, long after 'upgraded'.
  m.onUpgrade = () => {
    setImmediate(() => m.emit('upgraded', { pid: 4321 }))
    return new Promise(() => undefined)
  }
  const client = await c.client()
  client.send('upgrade\n')
  t.same(await client.next(), { ok: true, command: 'upgrade', pid: 4321 })
  t.equal(m.listenerCount('upgraded') + m.listenerCount('upgrade-failed'), 0, 'no listener is left behind')
})

t.test('upgrade: failed, refused', async (t) => {
  const c = await open(t)
  const m = c.master
  m.onUpgrade = async () => {
    m.emit('upgrade-failed', { error: 'the new master exited with code 4' })
    return false
  }
  const client = await c.client()
  client.send('upgrade\n')
  t.same(await client.next(), { ok: false, command: 'upgrade', error: 'the new master exited with code 4' })
  m.onUpgrade = async () => false
  m.phase = 'reloading'
  client.send('upgrade\n')
  t.same(await client.next(), { ok: false, command: 'upgrade', error: 'refused: the master is reloading' })
  t.equal(m.listenerCount('upgraded') + m.listenerCount('upgrade-failed'), 0)
})

t.test('stop: answered at close(), then the connection and the file are gone', async (t) => {
  const c = await open(t)
  const client = await c.client()
  const bystander = await c.client()
  client.send('stop\n')
  await waitFor(() => c.master.calls.length === 1, 'the stop asked for')
  t.same(c.master.calls, ['stop true'], 'a graceful stop')
  // Status works while the master stops.
  bystander.send('status\n')
  t.match(await bystander.next(), { ok: true })
  t.same(client.received, [], 'no answer before close()')
  await c.close()
  t.same(await client.next(), { ok: true, command: 'stop' })
  await client.closed
  await bystander.closed
  t.same(bystander.received.length, 1, 'the bystander gets no stop answer')
  t.notOk(existsSync(c.path), 'the socket file is removed')
})

t.test('several requests on one connection: answered in order', async (t) => {
  const c = await open(t)
  const m = c.master
  let finish!: () => void
  m.onReload = () =>
    new Promise((resolve) => {
      finish = () => {
        m.emit('reload', { ok: true, generation: 7 })
        resolve(true)
      }
    })
  const client = await c.client()
  client.send('reload\nstatus\n\n  \n{"command":"workers"}\nreopen-logs\n')
  await waitFor(() => m.calls.includes('reload'), 'the reload started')
  t.same(client.received, [], 'nothing is answered before the reload')
  finish()
  t.same(await client.next(), { ok: true, command: 'reload', generation: 7 })
  t.match(await client.next(), { ok: true, command: 'status' })
  t.match(await client.next(), { ok: true, command: 'workers' })
  t.same(await client.next(), { ok: true, command: 'reopen-logs' })
  // And in pieces: a request split across writes.
  client.send('sta')
  client.send('tus\nwork')
  client.send('ers\n')
  t.match(await client.next(), { command: 'status' })
  t.match(await client.next(), { command: 'workers' })
})

t.test('a malformed line: an error answer, and the connection still works', async (t) => {
  const c = await open(t)
  const client = await c.client()
  client.send('restart\n{"command":\nscale 0\n')
  t.match(await client.next(), { ok: false, command: '', error: /^unknown command "restart"/ })
  t.match(await client.next(), { ok: false, command: '', error: /^not JSON/ })
  t.match(await client.next(), { ok: false, command: '', error: /^scale needs a worker count from 1 to 1024, got "0"/ })
  client.send('status\n')
  t.match(await client.next(), { ok: true, command: 'status' })
  t.same(c.master.calls, [], 'nothing was run')
})

t.test('an overlong request: an error and the connection is closed', async (t) => {
  const error = { ok: false, command: '', error: `request longer than ${MAX_REQUEST_BYTES} bytes` }
  const c = await open(t)

  const noNewline = await c.client()
  noNewline.send('x'.repeat(MAX_REQUEST_BYTES + 1))
  t.same(await noNewline.next(), error, 'no newline yet')
  await noNewline.closed

  const withNewline = await c.client()
  withNewline.send(`status${' '.repeat(MAX_REQUEST_BYTES)}\nstatus\n`)
  t.same(await withNewline.next(), error, 'a whole line that is too long')
  await withNewline.closed
  t.equal(withNewline.received.length, 1, 'what came after it is not read')

  const afterAnother = await c.client()
  afterAnother.send(`reopen-logs\n${'y'.repeat(MAX_REQUEST_BYTES + 10)}`)
  t.same(await afterAnother.next(), { ok: true, command: 'reopen-logs' }, 'the request before it is answered first')
  t.same(await afterAnother.next(), error)
  await afterAnother.closed

  const fits = await c.client()
  fits.send(`${' '.repeat(MAX_REQUEST_BYTES - 'status'.length)}status\n`)
  t.match(await fits.next(), { ok: true, command: 'status' }, 'a line of exactly the limit is served')
})

t.test('close() removes the file only while it is ours', async (t) => {
  const c = await open(t)
  unlinkSync(c.path)
  const fd = listenUnix(c.path) // a new master's socket at the same path
  t.teardown(() => closeSync(fd))
  const ino = statSync(c.path).ino
  await c.close()
  t.ok(existsSync(c.path), 'the other socket file is left')
  t.equal(statSync(c.path).ino, ino)

  const gone = await open(t)
  unlinkSync(gone.path)
  await gone.close() // removed by hand already: no error
  t.notOk(existsSync(gone.path))
})


const nobody = passwdIds('nobody')
const skipPeer = nobody === null ? 'no user "nobody" on this system' : process.getuid?.() !== 0 ? 'needs root to run a client as nobody' : false

t.test('a peer of another uid: no answer, the connection closed, a log line', { skip: skipPeer }, async (t) => {
  if (nobody === null) throw new Error('unreachable: skipped without nobody')
  const dir = mkdtempSync(join(tmpdir(), 'sds-ctl-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  chmodSync(dir, 0o755)
  const c = await open(t, { path: join(dir, 'ctl.sock') })
  chmodSync(c.path, 0o666) // only SO_PEERCRED stands in the way now
  const script = `const s = require('net').connect(${JSON.stringify(c.path)})
s.on('connect', () => { console.log('connected'); s.write('status\\n') })
s.setEncoding('utf8').on('data', (d) => console.log('answer ' + d.trim()))
s.on('error', (e) => console.log('error ' + e.code))
s.on('close', () => { console.log('closed'); process.exit(0) })`
  const child = spawnTracked(t, process.execPath, ['-e', script], {
    uid: nobody.uid,
    gid: nobody.gid,
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  })
  t.equal(await child.exited, 0, 'the client exits once the master hangs up')
  t.match(child.output(), /^closed$/m)
  t.notMatch(child.output(), /answer/, 'no answer')
  t.match(c.lines.join('\n'), `control socket: refused a peer with uid ${nobody.uid}: only root and uid 0 are served`)
  t.same(c.master.calls, [])
  // Root is served.
  const client = await c.client()
  client.send('status\n')
  t.match(await client.next(), { ok: true })
  await waitForOutput(child, /closed/)
})

t.test("a peer whose credentials cannot be read is refused", async (t) => {
  const native = await import('../../lib/native.js')
  // Absolute URLs: tap would resolve relative ones from the source-mapped test/ file, not dist/test/.
  const url = (path: string): string => new URL(path, import.meta.url).href
  const { ControlServer: Mocked } = await t.mockImport<typeof import('../../lib/master/control-server.js')>(url('../../lib/master/control-server.js'), {
    [url('../../lib/native.js')]: {
      ...native,
      peerCredentials: () => {
        throw new Error('getsockopt failed')
      },
    },
  })
  const path = join(shortTmp(t), 'ctl.sock')
  const lines: string[] = []
  const master = new FakeMaster()
  const server = await Mocked.open(path, master, new Logger({ write: (l) => lines.push(l) }))
  t.teardown(() => server.close())
  const client = await lineClient(t, path)
  client.send('status\n')
  await client.closed
  t.same(client.received, [], 'no answer')
  t.match(lines.join('\n'), /cannot read a peer's credentials: getsockopt failed[\s\S]*refused a peer with uid -1/)
})
