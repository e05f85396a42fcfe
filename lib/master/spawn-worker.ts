/**
 * Starting one worker process: node running worker-main.js with the slot's
 * sockets at fds 4.. (protocol.ts LISTENER_FD_START), an IPC channel at fd
 * 3, an environment without systemd's variables, and its boot message.
 */
import { fileURLToPath } from 'node:url'
import { ACTIVATION_VARS } from '../activation.js'
import type { Config } from '../config.js'
import type { Logger } from '../logger.js'
import { WATCHDOG_VARS } from '../watchdog.js'
import { bootMessage } from './boot-message.js'
import type { HealthStatus } from './health.js'
import type { Runtime } from './runtime.js'
import type { WorkerSocket } from './socket-set.js'
import type { Timings } from './timings.js'
import { WorkerHandle, type WorkerHooks } from './worker-handle.js'

const WORKER_MAIN = fileURLToPath(new URL('../worker-main.js', import.meta.url))

/** The master alone talks to systemd (NotifyAccess=main), and the sockets are passed by fd: workers see none of these. */
const SCRUBBED = ['NOTIFY_SOCKET', ...WATCHDOG_VARS, ...ACTIVATION_VARS]

export interface WorkerSpawn {
  id: number
  generation: number
  sockets: WorkerSocket[]
  config: Config
  timings: Timings
  identity: { uid?: number; gid?: number }
  /** What its health checks answer until the master says otherwise. */
  health: HealthStatus
  hooks: WorkerHooks
  log: Logger
  rt: Runtime
}

export function spawnWorker(s: WorkerSpawn): WorkerHandle {
  const env: NodeJS.ProcessEnv = { ...process.env, SDSERVE_WORKER_ID: String(s.id) }
  for (const k of SCRUBBED) Reflect.deleteProperty(env, k)
  const child = s.rt.spawn(process.execPath, [...process.execArgv, WORKER_MAIN], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...s.sockets.map((x) => x.fd)],
    env,
    cwd: process.cwd(),
    ...s.identity,
  })
  const listeners = s.sockets.map(({ name, text }) => ({ name, text }))
  const boot = bootMessage(s.config, s.timings, { id: s.id, generation: s.generation, listeners, logLevel: s.log.level, health: s.health })
  return new WorkerHandle(child, boot, s.timings.bootMs, s.hooks, s.log, s.rt)
}
