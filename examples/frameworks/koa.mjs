// A Koa app: export the Koa instance; sdserve serves app.callback().
//
//   sdserve examples/frameworks/koa.mjs
//
// Do not call app.listen(): sdserve's workers do the listening.
import Koa from 'koa'

const app = new Koa()

app.use(async (ctx, next) => {
  const started = Date.now()
  await next()
  ctx.set('x-response-time', `${Date.now() - started}ms`)
})

app.use(async (ctx) => {
  if (ctx.path === '/health') ctx.body = { ok: true, pid: process.pid }
  else ctx.body = `hello from Koa, worker ${process.pid}\n`
})

export default app
