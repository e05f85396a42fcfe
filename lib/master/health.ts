/**
 * What the health endpoint says (--health-path on the serving binds, and
 * /healthz on the metrics bind): whether a load balancer should send this
 * host traffic. The master decides; workers answer from what it last told
 * them, so a check costs the app nothing.
 *
 * - `ok`: serving, with at least half the target workers ready and beating;
 * - `lame-duck`: a stop with --lame-duck has begun, or `sdserve ctl drain`:
 *   everything is still served, but the balancer should take the host out;
 * - `unhealthy`: fewer than half the target workers are ready with a fresh
 *   heartbeat (stuck, crashing, failing to boot), or the master is not
 *   serving yet.
 * A draining worker answers 503 on its own.
 */
export type HealthStatus = 'ok' | 'lame-duck' | 'unhealthy'

export interface HealthInputs {
  serving: boolean
  lameDuck: boolean
  /** Workers of the serving generation that are ready with a fresh heartbeat, and the target count. */
  beating: number
  target: number
}

export function healthOf(i: HealthInputs): HealthStatus {
  if (i.lameDuck) return 'lame-duck'
  if (!i.serving || i.beating < Math.ceil(i.target / 2)) return 'unhealthy'
  return 'ok'
}
