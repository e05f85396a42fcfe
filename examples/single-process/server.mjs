// A single-process app using sdserve's systemd primitives directly: it serves
// on the socket systemd passed (FileDescriptorName=web) or, when started by
// hand, binds $BIND (default 127.0.0.1:8000); it tells systemd when it is
// ready and stopping, and pings the watchdog while it runs.
import { createServer } from 'node:http'
import { listen, notifier, startWatchdog } from 'sdserve'

const server = createServer((_req, res) => {
  res.end('hello from a single process\n')
})
const { address, source } = await listen(server, { name: 'web', fallback: process.env.BIND ?? '127.0.0.1:8000' })

const systemd = notifier()
startWatchdog()
systemd.ready(`serving on ${address}`)
console.log(`listening on ${address} (${source === 'systemd' ? 'socket from systemd' : 'bound by the app'})`)

process.once('SIGTERM', () => {
  systemd.stopping('finishing in-flight requests')
  server.close(() => process.exit(0))
  server.closeIdleConnections()
})
