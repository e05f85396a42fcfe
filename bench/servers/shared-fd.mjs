// d: the raw floor of sdserve's shared mode. The parent binds one listening
// socket and passes it to 2 children as fd 3 (stdio); each child serves it
// with http.createServer().listen({ fd: 3 }), as an sdserve worker does.
// argv: PORT [workers]. The child role is chosen by argv[2] === 'child'.
import { spawn } from 'node:child_process'
import { createServer as createNetServer } from 'node:net'
import { createServer } from 'node:http'
import { fileURLToPath } from 'node:url'
import hello from './handler.mjs'

if (process.argv[2] === 'child') {
  createServer(hello).listen({ fd: 3 }, () => console.log(`listening ${process.pid}`))
} else {
  const port = Number(process.argv[2])
  const workers = Number(process.argv[3] ?? 2)
  const listener = createNetServer()
  listener.listen({ host: '127.0.0.1', port, backlog: 2048 }, () => {
    // libuv in the parent would accept on this fd too; the children get their
    // own copies at spawn, then the parent closes its handle (the socket
    // stays open in the children), so only the children accept.
    const fd = listener._handle.fd
    const file = fileURLToPath(import.meta.url)
    for (let i = 0; i < workers; i++) {
      const child = spawn(process.execPath, [file, 'child'], { stdio: ['ignore', 'inherit', 'inherit', fd] })
      child.on('exit', () => process.exit(1))
    }
    listener.close()
  })
  process.on('SIGTERM', () => process.exit(0))
}
