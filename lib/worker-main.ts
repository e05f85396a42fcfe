/**
 * The file the master spawns for each worker. It turns on the compile cache
 * first, then imports the worker, so that the worker's modules and the
 * app's are compiled with the cache (lib/compile-cache.ts).
 */
import { enableCompileCache } from './compile-cache.js'

enableCompileCache()
const { runWorker } = await import('./worker.js')
runWorker()
