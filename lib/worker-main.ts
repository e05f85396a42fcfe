/** The file the master spawns for each worker. */
import { runWorker } from './worker.js'

runWorker()
