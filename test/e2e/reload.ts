// `systemctl reload app` under a bounded client load: new code serves, no
// request fails, MainPID stays. On systemd >= 253 (Type=notify-reload) the
// reload returns only once the new generation serves; on 252 (Type=notify,
// ExecReload=kill -s HUP) it returns at once and STATUS= tells when it is done.
import t from 'tap'
import { describeLoad, startMixedLoad } from '../helpers/proc.js'
import { appSocket, container, getApp, installApp, must, prop, readFrom, run, until, untilState, writeInto } from './helpers/container.js'

const c = container()
const notifyReload = c.systemdVersion >= 253
await installApp(c)
await must(c, ['systemctl', 'enable', '--now', 'app.socket'])
await getApp(c)
await untilState(c, 'app.service', 'active')
const mainPid = await prop(c, 'app.service', 'MainPID')
const original = readFrom(c, '/srv/app/app.mjs')

/** Deploy a new version of the app: the greeting says which. */
const deploy = (source: string): void => writeInto(c, '/srv/app/app.mjs', source)
const greeting = (version: number): string => original.replace("const GREETING = 'hello'", `const GREETING = 'hello v${version}'`)

/** Client load over the UNIX socket until stop() resolves: 4 clients closing each connection, 4 keeping theirs alive. */
const startLoad = (): ReturnType<typeof startMixedLoad> => startMixedLoad({ socketPath: appSocket(c) }, { close: 4, keepAlive: 4 })

const generationOf = (status: string): number => Number(/\(generation (\d+)/.exec(status)?.[1])

t.test(`three reloads under load (${notifyReload ? 'Type=notify-reload' : 'Type=notify + ExecReload'})`, async (t) => {
  const traffic = startLoad()
  for (let version = 2; version <= 4; version++) {
    const before = generationOf(await prop(c, 'app.service', 'StatusText'))
    deploy(greeting(version))
    await must(c, ['systemctl', 'reload', 'app.service'])
    if (notifyReload) {
      // systemd ended the reload job on READY=1, which sdserve sends with the new generation serving.
      const status = await prop(c, 'app.service', 'StatusText')
      t.match(status, new RegExp(`^2 of 2 workers serving \\(generation ${before + 1}\\), \\d+ requests served$`), 'reload returned after the new generation served')
      t.equal(await prop(c, 'app.service', 'ActiveState'), 'active')
    } else {
      await until('the new generation to serve', async () => {
        const status = await prop(c, 'app.service', 'StatusText')
        return /reloading/.test(status) || generationOf(status) <= before ? undefined : status
      })
    }
    // The old generation may still finish what it accepted: ask until the new code answers.
    const answer = await until(`hello v${version}`, async () => {
      const body = (await getApp(c)).body
      return body.startsWith(`hello v${version} `) ? body : undefined
    })
    t.match(answer, new RegExp(`^hello v${version} from worker \\d+`))
  }
  const result = await traffic.stop()
  t.equal(result.failed, 0, `no request failed during the reloads (${describeLoad(result)})`)
  t.ok(result.ok > 0, 'the load ran')
  t.equal(await prop(c, 'app.service', 'MainPID'), mainPid, 'the master stayed: a reload replaces workers only')
  t.equal(await prop(c, 'app.service', 'NRestarts'), '0')
})

t.test('a reload whose app fails to load keeps the old workers serving and says why', async (t) => {
  const traffic = startLoad()
  deploy('export default function app( {\n')
  const reload = await run(c, ['systemctl', 'reload', 'app.service'])
  // systemd (up to 257 at least) has no way for a service to report a failed reload
  // other than failing itself: the job succeeds, STATUS= carries the failure.
  t.equal(reload.code, 0, reload.stderr)
  const status = await until('STATUS= to report the failed reload', async () => {
    const text = await prop(c, 'app.service', 'StatusText')
    return /last reload failed/.test(text) ? text : undefined
  })
  t.match(status, /^2 of 2 workers serving \(generation 4\), \d+ requests served; last reload failed: /)
  t.match((await getApp(c)).body, /^hello v4 from worker/, 'the last good version serves')
  const result = await traffic.stop()
  t.equal(result.failed, 0, `no request failed (${describeLoad(result)})`)
  t.equal(await prop(c, 'app.service', 'ActiveState'), 'active')

  deploy(greeting(5))
  await must(c, ['systemctl', 'reload', 'app.service'])
  await until('hello v5', async () => ((await getApp(c)).body.startsWith('hello v5 ') ? true : undefined))
  t.notMatch(await prop(c, 'app.service', 'StatusText'), /failed/, 'a good reload clears the failure note')
})
