// a: one Node process, http.createServer on 127.0.0.1:PORT.
import { createServer } from 'node:http'
import hello from './handler.mjs'

const port = Number(process.argv[2])
createServer(hello).listen({ host: '127.0.0.1', port, backlog: 2048 }, () => console.log(`listening ${process.pid}`))
