// The hello handler under PM2 cluster mode: `pm2 start pm2-app.cjs -i 2 -- PORT`.
// CommonJS, since PM2's cluster workers load their script with require();
// the handler is the same ES module every other configuration serves.
// No SIGINT handler, as in the other baselines: PM2 stops a worker with
// SIGINT and the process ends at once.
const port = Number(process.argv[2] ?? process.env.PORT)
void (async () => {
  const { createServer } = await import('node:http')
  const { default: hello } = await import('./handler.mjs')
  createServer(hello).listen({ host: '127.0.0.1', port, backlog: 2048 }, () => console.log(`listening ${process.pid}`))
})()
