/**
 * The master's own endpoints for operators: the control socket and the
 * metrics server. Both are served by the master, not the workers, so they
 * answer when every worker is wedged.
 *
 * Invariants:
 * - at a start, a control socket or metrics address that cannot be bound
 *   fails the start (a bad setting is never half-applied);
 * - in a binary upgrade they belong to whichever master is the main one: the
 *   old master gives them up at the hand-over, and the new one takes them
 *   once promoted (a failure then is logged: the old master is gone);
 * - close() is the last thing a stop does before "stopped": `ctl stop`
 *   answers then, and `ctl status` works during the drain.
 */
import type { Config } from '../config.js'
import type { Logger } from '../logger.js'
import { controlSocketPath } from '../control-protocol.js'
import { ControlServer, type Controllable } from './control-server.js'
import type { MetricsServer } from './metrics-server.js'

/** How long a promoted new master retries the old one's addresses, which are closing. */
const TAKEOVER_TRIES = 20
const TAKEOVER_DELAY_MS = 100

export class Endpoints {
  private control: ControlServer | undefined
  private metrics: MetricsServer | undefined
  private closed = false

  private constructor(
    private readonly config: Config,
    private readonly master: Controllable,
    private readonly log: Logger,
  ) {
    // After this turn: the `ctl upgrade` that asked for it gets its answer first.
    master.once('upgraded', () => setImmediate(() => void this.close(true)))
  }

  /** Open them now; upgrade: this master is a binary upgrade's new one, so not until it is promoted. */
  static async open(config: Config, master: Controllable, log: Logger, upgrade: boolean): Promise<Endpoints> {
    const endpoints = new Endpoints(config, master, log)
    if (!upgrade)
      await endpoints.bind().catch(async (err: unknown) => {
        // The start fails: the one that did open must not outlive it.
        await endpoints.close()
        throw err
      })
    else
      master.once('ready', () => {
        void endpoints.takeOver()
      })
    return endpoints
  }

  /** Open what is not open yet: a takeover retries it after one of them found its address still taken. */
  private async bind(): Promise<void> {
    const path = controlSocketPath(this.config.controlSocket, process.env)
    if (path !== undefined && !this.closed && this.control === undefined) {
      const control = await ControlServer.open(path, this.master, this.log)
      // Closed while it was opening (a stop while a promoted new master takes over): it is not kept open.
      if (this.closed) return control.close()
      this.control = control
    }
    const bind = this.config.metricsBind
    if (bind !== undefined && !this.closed && this.metrics === undefined) {
      // Loaded when wanted: a master without metrics does not load node:http (5-25 ms of its start).
      const { MetricsServer } = await import('./metrics-server.js')
      const metrics = await MetricsServer.open(bind, () => this.master.stats(), this.log)
      if (this.closed) return metrics.close()
      this.metrics = metrics
      this.log.info(`metrics: listening on ${metrics.address}`)
    }
  }

  private async takeOver(): Promise<void> {
    for (let i = 1; ; i++) {
      try {
        return await this.bind()
      } catch (err) {
        if (i === TAKEOVER_TRIES || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
          this.log.error(`cannot open the control socket or metrics after the upgrade: ${(err as Error).message}`)
          return
        }
        await new Promise((resolve) => setTimeout(resolve, TAKEOVER_DELAY_MS))
      }
    }
  }

  /** handedOver: a binary upgrade's new master takes the addresses over; the socket file is its own now. */
  async close(handedOver = false): Promise<void> {
    this.closed = true
    const { control, metrics } = this
    this.control = undefined
    this.metrics = undefined
    await Promise.all([control?.close(handedOver), metrics?.close()])
  }
}
