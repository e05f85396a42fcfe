// An Express app: export the app itself (an Express app is a request handler).
//
//   sdserve examples/frameworks/express.mjs
//
// Do not call app.listen(): sdserve's workers serve the app on the sockets
// the master (or systemd) opened.
import express from 'express'

const app = express()

app.get('/', (req, res) => {
  res.type('text/plain').send(`hello from Express, worker ${process.pid}\n`)
})

app.get('/health', (req, res) => {
  res.json({ ok: true, pid: process.pid })
})

export default app
