// `systemctl restart` of a service without a socket unit, under a bounded
// client load: with FileDescriptorStoreMax=4 (examples/systemd/without-socket-unit)
// no connection is refused; the same service without the fd store refuses
// some. systemd tells a service about its fd store from 254 on ($FDSTORE).
import t from 'tap'
import { load } from '../helpers/proc.js'
import { container, example, inRoot, installApp, must, prop, until, untilState } from './helpers/container.js'

const c = container()
const RESTARTS = 3

/** Restart the service RESTARTS times under load; count the answers and the refused connections. */
async function restartsUnderLoad(): Promise<{ ok: number; refused: number; other: string[] }> {
  const socketPath = inRoot(c, '/run/app/app.sock')
  let done = false
  const traffic = load({ socketPath, concurrency: 8, maxRequests: 200_000, until: () => done, timeoutMs: 60_000 })
  await until('some traffic', async () => (await must(c, ['test', '-S', '/run/app/app.sock']).then(() => true, () => undefined)))
  for (let i = 0; i < RESTARTS; i++) {
    await must(c, ['systemctl', 'restart', 'app.service'])
    await untilState(c, 'app.service', 'active')
  }
  done = true
  const result = await traffic
  const refused = result.errors.filter((e) => /ECONNREFUSED|ENOENT/.test(e)).length
  return { ok: result.ok, refused, other: result.errors.filter((e) => !/ECONNREFUSED|ENOENT/.test(e)) }
}

t.test('systemctl restart with the fd store: no connection refused', { skip: c.systemdVersion < 254 && `systemd ${c.systemdVersion} does not tell a service about its fd store ($FDSTORE, 254)` }, async (t) => {
  await installApp(c, { units: { 'app.service': example('systemd/without-socket-unit/app.service') } })
  await must(c, ['systemctl', 'start', 'app.service'])
  t.equal(await prop(c, 'app.service', 'NFileDescriptorStore'), '2', 'both sockets are in the store')
  const r = await restartsUnderLoad()
  t.equal(r.refused, 0, `with FileDescriptorStoreMax=4: ${r.refused} refused, ${r.ok} answered over ${RESTARTS} restarts`)
  t.same(r.other, [], 'and no other failure')
  t.equal(await prop(c, 'app.service', 'NFileDescriptorStore'), '2', 'the same two sockets, not more')
  await must(c, ['systemctl', 'stop', 'app.service'])
  t.equal(await prop(c, 'app.service', 'NFileDescriptorStore'), '0', 'a stop empties the store')

  // The same unit without the fd store: the refusals it prevents.
  await installApp(c, {
    units: { 'app.service': example('systemd/without-socket-unit/app.service') },
    dropIns: { 'app.service.d/no-fd-store.conf': '[Service]\nFileDescriptorStoreMax=0\n' },
  })
  await must(c, ['systemctl', 'start', 'app.service'])
  const without = await restartsUnderLoad()
  t.ok(without.refused > 0, `without it: ${without.refused} refused, ${without.ok} answered over ${RESTARTS} restarts`)
  t.comment(`refused connections over ${RESTARTS} restarts under load: ${r.refused} with the fd store (${r.ok} answered), ${without.refused} without (${without.ok} answered)`)
})
