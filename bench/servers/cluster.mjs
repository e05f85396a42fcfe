// b/c: Node's cluster module with 2 workers. argv: PORT rr|none.
// The policy must be set before the first fork (NODE_CLUSTER_SCHED_POLICY works too).
import cluster from 'node:cluster'
import { createServer } from 'node:http'
import hello from './handler.mjs'

const port = Number(process.argv[2])
const workers = Number(process.argv[4] ?? 2)
if (cluster.isPrimary) {
  cluster.schedulingPolicy = process.argv[3] === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR
  for (let i = 0; i < workers; i++) cluster.fork()
  cluster.on('exit', () => process.exit(1))
} else {
  createServer(hello).listen({ host: '127.0.0.1', port, backlog: 2048 }, () => console.log(`listening ${process.pid}`))
}
