/** RequestCounters against a real HTTP server: status classes, durations, in flight, aborted requests. */
import t from 'tap'
import { createServer, request, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { DURATION_BUCKETS, RequestCounters, STATUS_CLASSES } from '../../lib/http/request-counters.js'

t.test('counts each ended request once, by status class and duration bucket', async (t) => {
  const counters = new RequestCounters()
  const held: ServerResponse[] = []
  let started = 0
  const server = createServer((req, res) => {
    counters.start(res)
    started++
    const status = Number(new URL(String(req.url), 'http://x').searchParams.get('status') ?? 200)
    if (req.url?.startsWith('/hold')) return void held.push(res)
    if (req.url?.startsWith('/slow')) return void setTimeout(() => res.writeHead(status).end('late'), 60)
    res.writeHead(status).end('ok')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as AddressInfo
  const get = (path: string): Promise<number> =>
    new Promise((resolve, reject) => {
      request({ port, host: '127.0.0.1', path, agent: false }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      })
        .on('error', reject)
        .end()
    })
  t.same(await Promise.all(['/?status=200', '/?status=204', '/?status=302', '/?status=404', '/?status=503', '/slow?status=200'].map(get)), [200, 204, 302, 404, 503, 200])

  // A request whose client goes away before its response ends.
  const aborted = request({ port, host: '127.0.0.1', path: '/hold', agent: false })
  aborted.on('error', () => undefined)
  aborted.end()
  for (let i = 0; i < 200 && held.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(counters.snapshot().inflight, 1, 'one request in flight')
  aborted.destroy()
  for (let i = 0; i < 200 && counters.snapshot().inflight > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))

  const s = counters.snapshot()
  t.equal(s.inflight, 0)
  t.same(Object.fromEntries(STATUS_CLASSES.map((c, i) => [c, s.responses[i]])), { '1xx': 0, '2xx': 3, '3xx': 1, '4xx': 1, '5xx': 1, aborted: 1 })
  t.equal(s.buckets.length, DURATION_BUCKETS.length + 1, 'a bucket per bound and +Inf')
  t.equal(
    s.buckets.reduce((a, b) => a + b, 0),
    started,
    'every ended request is in one bucket',
  )
  // The slow request took at least 60 ms: it is in a bucket above 0.05 s (a lower bound, not a timing threshold).
  const above50ms = s.buckets.slice(DURATION_BUCKETS.indexOf(0.05) + 1).reduce((a, b) => a + b, 0)
  t.ok(above50ms >= 1, 'the slow request is above 50 ms')
  t.ok(s.seconds >= 0.06, 'the durations add up to at least the slow one')
  t.not(counters.snapshot().responses, s.responses, 'a snapshot is a copy')
})

t.test('afterEnd: called with each ended response, after it is counted, from the same listener', async (t) => {
  const counters = new RequestCounters()
  const seen: Array<[number, number]> = []
  counters.afterEnd = (res) => seen.push([res.statusCode, counters.snapshot().responses[1]!])
  const server = createServer((_req, res) => {
    counters.start(res)
    res.end('ok')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve, reject) => {
    request({ port, host: '127.0.0.1', agent: false }, (res) => {
      res.resume()
      res.on('end', resolve)
    })
      .on('error', reject)
      .end()
  })
  for (let i = 0; i < 200 && seen.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.same(seen, [[200, 1]], 'one call, the request already counted')
})
