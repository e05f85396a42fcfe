/**
 * The master's endpoints (the control socket here) with a fake master:
 * where the socket goes, a binary upgrade's hand-over both ways, and what a
 * bind failure does at a start and at a takeover.
 */
import t, { type Test } from 'tap'
import { existsSync, lstatSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DEFAULTS, type Config } from '../../lib/config.js'
import { Logger } from '../../lib/logger.js'
import { Endpoints } from '../../lib/master/endpoints.js'
import { FakeMaster, lineClient } from '../helpers/control.js'
import { shortTmp, waitFor } from '../helpers/proc.js'

function setup(t: Test, controlSocket: string | undefined) {
  const config: Config = { ...DEFAULTS, app: 'app.js', controlSocket }
  const master = new FakeMaster()
  const lines: string[] = []
  const log = new Logger({ level: 'debug', write: (l) => lines.push(l) })
  const opened: Endpoints[] = []
  const open = async (upgrade = false): Promise<Endpoints> => {
    const e = await Endpoints.open(config, master, log, upgrade)
    opened.push(e)
    return e
  }
  t.teardown(async () => {
    for (const e of opened) await e.close()
  })
  return { master, lines, open }
}

/** Run fn with RUNTIME_DIRECTORY set to dir (or unset), restoring it after. */
function withRuntimeDirectory(t: Test, dir: string | undefined): void {
  const saved = process.env.RUNTIME_DIRECTORY
  if (dir === undefined) delete process.env.RUNTIME_DIRECTORY
  else process.env.RUNTIME_DIRECTORY = dir
  t.teardown(() => {
    if (saved === undefined) delete process.env.RUNTIME_DIRECTORY
    else process.env.RUNTIME_DIRECTORY = saved
  })
}

t.test("'none': no control socket, even with RUNTIME_DIRECTORY", async (t) => {
  const dir = shortTmp(t)
  withRuntimeDirectory(t, dir)
  const s = setup(t, 'none')
  await s.open()
  t.notOk(existsSync(join(dir, 'sdserve.ctl')))
  t.notMatch(s.lines.join('\n'), /control socket/)
})

t.test('unset, no RUNTIME_DIRECTORY: none', async (t) => {
  withRuntimeDirectory(t, undefined)
  const s = setup(t, undefined)
  const e = await s.open()
  t.notMatch(s.lines.join('\n'), /control socket/)
  await e.close()
})

t.test('unset, RUNTIME_DIRECTORY set: sdserve.ctl in it', async (t) => {
  const dir = shortTmp(t)
  withRuntimeDirectory(t, `${dir}:/run/other`)
  const s = setup(t, undefined)
  const e = await s.open()
  const path = join(dir, 'sdserve.ctl')
  t.ok(lstatSync(path).isSocket())
  const client = await lineClient(t, path)
  client.send('status\n')
  t.match(await client.next(), { ok: true, command: 'status' })
  await e.close()
  t.notOk(existsSync(path), 'closed: the file is gone')
  await e.close() // twice: nothing more to do
})

t.test('a path', async (t) => {
  const path = join(shortTmp(t), 'c.sock')
  const s = setup(t, path)
  const e = await s.open()
  t.ok(lstatSync(path).isSocket())
  t.match(s.lines.join('\n'), `control socket: ${path}`)
  await e.close()
  t.notOk(existsSync(path))
})

t.test('a bind failure at the start rejects', async (t) => {
  const path = join(shortTmp(t), 'c.sock')
  writeFileSync(path, '')
  const s = setup(t, path)
  await t.rejects(s.open(), { code: 'EADDRINUSE' })
  await t.rejects(setup(t, join(shortTmp(t), 'missing', 'c.sock')).open(), { code: 'ENOENT' }, 'no such directory')
})

t.test("an upgrade's new master opens it once promoted ('ready')", async (t) => {
  const path = join(shortTmp(t), 'c.sock')
  const s = setup(t, path)
  await s.open(true)
  t.notOk(existsSync(path), 'not before the hand-over')
  s.master.emit('ready', { generation: 1, workers: 2 })
  await waitFor(() => existsSync(path), 'the control socket')
  const client = await lineClient(t, path)
  client.send('status\n')
  t.match(await client.next(), { ok: true })
})

t.test('the takeover retries while the old path is in use, then gives up with a log line', async (t) => {
  const path = join(shortTmp(t), 'c.sock')
  writeFileSync(path, '') // in use: bind says EADDRINUSE
  const s = setup(t, path)
  await s.open(true)
  s.master.emit('ready', { generation: 1, workers: 2 })
  // The first try has failed already (the bind is synchronous): the next one finds the path free.
  unlinkSync(path)
  await waitFor(() => existsSync(path), 'the control socket, at a later try')
  t.ok(lstatSync(path).isSocket())
  t.notMatch(s.lines.join('\n'), /cannot open/)

  const stuck = join(shortTmp(t), 'c.sock')
  writeFileSync(stuck, '')
  const s2 = setup(t, stuck)
  await s2.open(true)
  s2.master.emit('ready', { generation: 1, workers: 2 })
  await waitFor(() => s2.lines.some((l) => l.includes('cannot open the control socket or metrics after the upgrade')), 'the log line')
  t.match(s2.lines.join('\n'), /cannot open the control socket or metrics after the upgrade: .*EADDRINUSE/)
  t.equal(lstatSync(stuck).isFile(), true, 'the file is left')
})

t.test('a takeover that cannot bind for another reason: logged at once', async (t) => {
  const s = setup(t, join(shortTmp(t), 'missing', 'c.sock'))
  await s.open(true)
  s.master.emit('ready', { generation: 1, workers: 2 })
  await waitFor(() => s.lines.some((l) => l.includes('cannot open')), 'the log line')
  t.match(s.lines.join('\n'), /cannot open the control socket or metrics after the upgrade: .*ENOENT/)
})

t.test('closed while the takeover binds: the socket does not stay open', async (t) => {
  const path = join(shortTmp(t), 'c.sock')
  const s = setup(t, path)
  const e = await s.open(true)
  s.master.emit('ready', { generation: 1, workers: 2 })
  t.ok(existsSync(path), 'bound (listen still to come)')
  await e.close()
  await waitFor(() => !existsSync(path), 'the socket file removed')
  await t.rejects(lineClient(t, path), { code: 'ENOENT' })
})

t.test('closed before the promotion: nothing is opened', async (t) => {
  const path = join(shortTmp(t), 'c.sock')
  const s = setup(t, path)
  const e = await s.open(true)
  await e.close()
  s.master.emit('ready', { generation: 1, workers: 2 })
  t.notOk(existsSync(path))
})

t.test("the old master gives it up at 'upgraded', after answering the ctl upgrade", async (t) => {
  const path = join(shortTmp(t), 'c.sock')
  const s = setup(t, path)
  await s.open()
  s.master.onUpgrade = () => {
    s.master.emit('upgraded', { pid: 999 })
    return new Promise(() => undefined)
  }
  const client = await lineClient(t, path)
  client.send('upgrade\n')
  t.same(await client.next(), { ok: true, command: 'upgrade', pid: 999 })
  await client.closed
  t.ok(existsSync(path), 'the file is left for the new master, which replaces it')
  await t.rejects(lineClient(t, path), { code: 'ECONNREFUSED' }, 'nobody listens on it any more')
})
