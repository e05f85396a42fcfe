/**
 * What a Master emits. The first four are for library users; the lifecycle
 * events after them are what the systemd reporter (and anyone else who
 * wants to follow the master) hooks into.
 */
import type { WorkerExit } from './generations.js'
import type { HealthStatus } from './health.js'
import type { Phase } from './phase.js'

export interface MasterEvents {
  /** Every worker of the first generation listens. */
  ready: [{ generation: number; workers: number }]
  /** A reload finished: the new generation serves (ok), or the old one still does (error says why). */
  reload: [{ ok: boolean; generation: number; error?: string }]
  'worker-exit': [WorkerExit]
  /** The master has stopped; code is its exit status. */
  stopped: [{ code: number }]

  phase: [{ phase: Phase; previous: Phase }]
  /** A generation's workers were spawned; they have timeoutMs to listen. first: the start's generation. */
  booting: [{ generation: number; workers: number; timeoutMs: number; first: boolean }]
  /** A reload begins; it will start this generation. */
  reloading: [{ generation: number }]
  /** Something a status line shows has changed (workers, requests). */
  status: []
  /** A binary upgrade begins. */
  upgrading: []
  'upgrade-failed': [{ error: string }]
  /** A binary upgrade handed over: the new master (pid) serves, and this one stops. */
  upgraded: [{ pid: number }]
  /** A graceful stop begins with a lame duck of ms (health 503, everything served); then 'stopping'. */
  'lame-duck': [{ ms: number }]
  /** What the health endpoint answers has changed. */
  health: [{ status: HealthStatus }]
  /** A stop begins: workers drain (graceful, within timeoutMs) or exit now. */
  stopping: [{ graceful: boolean; workers: number; timeoutMs: number }]
  /** The start failed; the master cleans up and start() rejects with this error. */
  failed: [{ error: Error }]
}
