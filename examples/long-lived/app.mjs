// WebSockets and server-sent events that end cleanly when sdserve drains a
// worker (a reload, a stop, a recycle, a binary upgrade).
//
//   sdserve --balance reuse-port -b 127.0.0.1:8000 examples/long-lived/app.mjs
//
// - /ws: a WebSocket that sends {"n":1}, {"n":2}, ... every 100 ms.
// - /events: an event stream with ids; a client that reconnects with
//   Last-Event-ID resumes after it, so nothing is lost across a reload.
// - POST /upload: counts the bytes of a request body.
//
// When the worker starts to drain, the app says so to each client (a last
// message, a `retry:` hint) and leaves the closing to sdserve, which ends
// each connection at its own moment within --drain-window: WebSockets with
// close code 1001 "going away", streams with their last chunk. The clients
// reconnect to the new workers a few at a time, not all at once.
// LONG_LIVED_IGNORE_DRAIN=1 makes the app ignore the drain, to show that
// sdserve's closing alone is clean too.
import { createServer } from 'node:http'
import { onDrain } from 'sdserve'
import { WebSocketServer } from 'ws'

const TICK_MS = 100
const ignoreDrain = process.env.LONG_LIVED_IGNORE_DRAIN === '1'
const worker = `${process.env.SDSERVE_WORKER_ID ?? '-'}/${process.pid}`

/** Open event streams, for the drain. */
const streams = new Set()

function events(req, res) {
  // Event n is the same on every worker, so a client resumes anywhere: ids are the count itself.
  let n = Number(req.headers['last-event-id'] ?? 0) || 0
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' })
  res.write(`retry: 200\n: served by ${worker}\n\n`)
  const timer = setInterval(() => res.write(`id: ${++n}\ndata: ${n}\n\n`), TICK_MS)
  streams.add(res)
  res.on('close', () => {
    clearInterval(timer)
    streams.delete(res)
  })
}

function upload(req, res) {
  let bytes = 0
  req.on('data', (chunk) => (bytes += chunk.length))
  req.on('end', () => res.end(`${bytes} bytes received by ${worker}\n`))
}

const server = createServer((req, res) => {
  if (req.url.startsWith('/events')) return events(req, res)
  if (req.method === 'POST' && req.url === '/upload') return upload(req, res)
  res.end(`long-lived example, worker ${worker}\n`)
})

const wss = new WebSocketServer({ server, path: '/ws' })
wss.on('connection', (ws) => {
  let n = 0
  ws.send(JSON.stringify({ hello: worker }))
  const timer = setInterval(() => ws.send(JSON.stringify({ n: ++n })), TICK_MS)
  ws.on('close', () => clearInterval(timer))
})

if (!ignoreDrain)
  onDrain(({ reason }) => {
    // The last word to every client; sdserve closes the connections, spread over --drain-window.
    for (const ws of wss.clients) ws.send(JSON.stringify({ draining: reason }))
    for (const res of streams) res.write(`event: draining\ndata: ${reason}\n\n`)
  })

export default server
