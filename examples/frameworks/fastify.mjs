// A Fastify app: export the Fastify instance. sdserve awaits app.ready()
// (so every plugin has loaded) and then serves app.server.
//
//   sdserve examples/frameworks/fastify.mjs
//
// Do not call app.listen(): sdserve's workers do the listening.
import Fastify from 'fastify'

const app = Fastify({ logger: false })

app.get('/', async (request, reply) => {
  reply.type('text/plain')
  return `hello from Fastify, worker ${process.pid}\n`
})

app.get('/health', async () => ({ ok: true, pid: process.pid }))

export default app
