// The app the units in this folder serve, installed as /srv/app/app.mjs with
// sdserve in /srv/app/node_modules (npm install sdserve).
//
//   GET /           a greeting, with the client's address and scheme as
//                   sdserve resolved them from nginx's X-Forwarded-* headers
//   GET /slow?ms=N  answers after N milliseconds (a request in flight)
//   GET /stream     five chunks, 200 ms apart (nginx's unbuffered location)
import { client } from 'sdserve'

const GREETING = 'hello'

export default function app(req, res) {
  const url = new URL(req.url ?? '/', 'http://localhost')
  res.setHeader('content-type', 'text/plain; charset=utf-8')
  if (url.pathname === '/slow') {
    const ms = Math.min(Number(url.searchParams.get('ms')) || 1000, 60_000)
    setTimeout(() => res.end(`slept ${ms} ms in worker ${process.pid}\n`), ms)
    return
  }
  if (url.pathname === '/stream') {
    let chunk = 0
    const timer = setInterval(() => {
      chunk += 1
      res.write(`chunk ${chunk} from worker ${process.pid}\n`)
      if (chunk === 5) {
        clearInterval(timer)
        res.end()
      }
    }, 200)
    res.on('close', () => clearInterval(timer))
    return
  }
  const from = client(req)
  res.end(`${GREETING} from worker ${process.pid}: client ${from?.address ?? '-'} over ${from?.proto ?? '-'}\n`)
}
