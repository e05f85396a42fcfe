// e: 2 processes, each with its own SO_REUSEPORT socket made by the npm
// package node-unix-socket (createReuseportFd), served with
// http.createServer().listen({ fd }). argv: PORT [workers]; a parent spawns
// the children (argv[2] === 'child').
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import hello from './handler.mjs'

if (process.argv[2] === 'child') {
  const { createReuseportFd } = createRequire(import.meta.url)('node-unix-socket')
  const fd = createReuseportFd(Number(process.argv[3]), '127.0.0.1')
  createServer(hello).listen({ fd }, () => console.log(`listening ${process.pid}`))
} else {
  const port = process.argv[2]
  const workers = Number(process.argv[3] ?? 2)
  const file = fileURLToPath(import.meta.url)
  for (let i = 0; i < workers; i++) {
    const child = spawn(process.execPath, [file, 'child', port], { stdio: ['ignore', 'inherit', 'inherit'] })
    child.on('exit', () => process.exit(1))
  }
  process.on('SIGTERM', () => process.exit(0))
}
