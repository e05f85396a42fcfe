import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { inheritedSockets, listenFds } from '../lib/activation.js'
import { ActivationError } from '../lib/errors.js'
import { pidfdIdSelf } from '../lib/native.js'
import { fixture, freePort, shortTmp, socketActivate, spawnTracked, waitForOutput } from './helpers/proc.js'
import { needs } from './helpers/needs.js'

const run = promisify(execFile)

/** The NODE_* and tap variables that carry coverage into a child with an otherwise clean env. */
function coverageEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      (e): e is [string, string] => (e[0].startsWith('NODE_') || e[0].startsWith('_TAPJS')) && e[1] !== undefined,
    ),
  )
}

interface Report {
  sockets: Array<{ fd: number; name: string; text: string; type: string; listening: boolean; cloexec: boolean }>
  env: Record<string, string | null>
}

async function curl(args: string[]): Promise<{ name: string; fd: number; text: string; pid: number }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', ...args])
  return JSON.parse(stdout) as { name: string; fd: number; text: string; pid: number }
}

t.test('systemd-socket-activate: TCP and UNIX sockets with names, served on every fd', needs(['systemd-socket-activate']), async (t) => {
  const port = await freePort()
  const path = join(shortTmp(t), 'app.sock')
  const sa = await socketActivate(t, [`127.0.0.1:${port}`, path], ['web', 'admin'], [
    process.execPath,
    fixture('activation-server.js'),
  ])
  // The first connection makes systemd-socket-activate exec the fixture; curl waits in the queue.
  const web = await curl([`http://127.0.0.1:${port}/`])
  t.match(web, { name: 'web', fd: 3, text: `127.0.0.1:${port}` })
  const admin = await curl(['--unix-socket', path, 'http://localhost/'])
  t.match(admin, { name: 'admin', fd: 4, text: `unix:${path}` })
  t.equal(admin.pid, web.pid, 'one process serves both sockets')
  const m = await waitForOutput(sa, /SOCKETS (.*)\n/)
  const report = JSON.parse(m[1] as string) as Report
  t.same(report.env, { LISTEN_PID: null, LISTEN_PIDFDID: null, LISTEN_FDS: null, LISTEN_FDNAMES: null }, 'env unset')
  t.same(
    report.sockets.map((s) => [s.fd, s.name, s.type, s.listening, s.cloexec]),
    [
      [3, 'web', 'stream', true, true],
      [4, 'admin', 'stream', true, true],
    ],
  )
})

t.test('systemd-socket-activate without --fdname: names default to "unknown"', needs(['systemd-socket-activate']), async (t) => {
  const port = await freePort()
  await socketActivate(t, [`127.0.0.1:${port}`], undefined, [process.execPath, fixture('activation-server.js')])
  t.match(await curl([`http://127.0.0.1:${port}/`]), { name: 'unknown', fd: 3 })
})

/** Start the fixture with fd 3 = fd3 and the LISTEN_* variables given; LISTEN_PID=$$ comes from a sh shim. */
async function withEnv(
  t: Test,
  env: Record<string, string>,
  fd3: number | 'ignore',
  setPid = true,
): Promise<{ code: number | string; line: string }> {
  const script = `${setPid ? 'LISTEN_PID=$$ ' : ''}exec "$0" "$1"`
  const child = spawnTracked(t, 'sh', ['-c', script, process.execPath, fixture('activation-server.js')], {
    env: { ...coverageEnv(), PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe', fd3],
  })
  const code = await child.exited
  return { code, line: child.output().trim() }
}

function listeningFd(t: Test): Promise<number> {
  return new Promise((resolve) => {
    const server: Server = createServer()
    server.listen(0, '127.0.0.1', () => {
      t.teardown(() => {
        server.close()
      })
      resolve((server as unknown as { _handle: { fd: number } })._handle.fd)
    })
  })
}

t.test('malformed environments are typed errors naming the variable', async (t) => {
  const fd = await listeningFd(t)
  const cases: Array<[Record<string, string>, string, RegExp]> = [
    [{ LISTEN_FDS: 'abc' }, 'LISTEN_FDS', /LISTEN_FDS=abc: expected a non-negative decimal integer/],
    [{ LISTEN_FDS: '-1' }, 'LISTEN_FDS', /LISTEN_FDS=-1: expected a non-negative decimal integer/],
    [{ LISTEN_FDS: '99999999' }, 'LISTEN_FDS', /LISTEN_FDS=99999999: expected at most 65536/],
    [{}, 'LISTEN_FDS', /LISTEN_PID is set but LISTEN_FDS is not/],
    [{ LISTEN_FDS: '1', LISTEN_FDNAMES: 'a:b' }, 'LISTEN_FDNAMES', /exactly LISTEN_FDS=1 colon-separated names, got 2/],
    [{ LISTEN_FDS: '2', LISTEN_FDNAMES: 'a:b' }, 'LISTEN_FDS', /fd 4 \(b\) is not a socket/],
    [{ LISTEN_FDS: '1', LISTEN_PIDFDID: 'x' }, 'LISTEN_PIDFDID', /LISTEN_PIDFDID=x: expected a non-negative decimal integer/],
  ]
  for (const [env, variable, re] of cases) {
    const { code, line } = await withEnv(t, env, fd)
    t.equal(code, 1, `exit 1 for ${JSON.stringify(env)}`)
    const err = JSON.parse(line.replace(/^ERROR /, '')) as { code: string; message: string; variable: string }
    t.equal(err.code, 'SDSERVE_ERR_LISTEN_FDS')
    t.equal(err.variable, variable)
    t.match(err.message, re)
  }
})

t.test('LISTEN_PID that is not a number is an error', async (t) => {
  const { code, line } = await withEnv(t, { LISTEN_PID: 'x1', LISTEN_FDS: '1' }, 'ignore', false)
  t.equal(code, 1)
  t.match(line, /"variable":"LISTEN_PID"/)
})

t.test('a fd that is not a socket, or was not passed, is an error', async (t) => {
  const file = openSync(join(t.testdir(), 'plain'), 'w')
  t.teardown(() => {
    closeSync(file)
  })
  let r = await withEnv(t, { LISTEN_FDS: '1', LISTEN_FDNAMES: 'web' }, file)
  t.match(r.line, /fd 3 \(web\) is not a socket/)
  r = await withEnv(t, { LISTEN_FDS: '1' }, 'ignore')
  t.match(r.line, /fd 3 \(unknown\) is not a socket/, 'an fd that was not passed: Node reuses the number')
})

t.test('fds meant for another process are not taken, and the env is still unset', async (t) => {
  const fd = await listeningFd(t)
  const r = await withEnv(t, { LISTEN_PID: '1', LISTEN_FDS: '1', LISTEN_FDNAMES: 'web' }, fd, false)
  t.equal(r.code, 0)
  const report = JSON.parse(r.line.replace(/^SOCKETS /, '')) as Report
  t.same(report.sockets, [])
  t.same(report.env, { LISTEN_PID: null, LISTEN_PIDFDID: null, LISTEN_FDS: null, LISTEN_FDNAMES: null })
})

t.test('in-process parsing', async (t) => {
  const pid = process.pid
  t.same(listenFds({ env: {} }), [], 'not activated')
  const env: NodeJS.ProcessEnv = { LISTEN_PID: String(pid), LISTEN_FDS: '0', LISTEN_FDNAMES: '' }
  t.same(listenFds({ env, pid }), [])
  t.same(env, {}, 'unset')
  const kept: NodeJS.ProcessEnv = { LISTEN_PID: String(pid), LISTEN_FDS: '0' }
  listenFds({ env: kept, pid, unsetEnv: false })
  t.equal(kept.LISTEN_FDS, '0', 'unsetEnv: false keeps the variables')
  // LISTEN_PIDFDID (systemd >= 256): ours matches, a different one means the pid was recycled.
  const id = pidfdIdSelf()
  if (id !== null) {
    t.same(listenFds({ env: { LISTEN_PID: String(pid), LISTEN_PIDFDID: String(id), LISTEN_FDS: '0' }, pid }), [])
    t.same(listenFds({ env: { LISTEN_PID: String(pid), LISTEN_PIDFDID: String(id + 1n), LISTEN_FDS: 'x' }, pid }), [])
  }
  t.throws(() => listenFds({ env: { LISTEN_PID: String(pid), LISTEN_FDS: '1.5' }, pid }), ActivationError)
  t.same(inheritedSockets(), [], 'the test process was not activated')
  t.equal(inheritedSockets(), inheritedSockets(), 'memoized')
})
