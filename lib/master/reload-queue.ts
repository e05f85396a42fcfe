/**
 * Reloads run one at a time. A reload asked for while one runs is queued:
 * however many come meanwhile, one more runs after the current one (each
 * reload re-reads the config, so one more sees every change), unless a
 * stop began. Every caller gets the outcome of the last reload run.
 *
 * A reload asked for while the master starts waits for the start
 * (deferred): a supervisor's HUP right after it started sdserve reloads
 * once there is something to reload.
 */
export class ReloadQueue {
  private running: Promise<boolean> | undefined
  private again = false
  private readonly deferred: Array<(ok: boolean) => void> = []

  /** The reload that runs (and the ones queued after it), if any: a stop waits for it. */
  get current(): Promise<boolean> | undefined {
    return this.running
  }

  /** Queue a reload behind the running one (none runs: there is nothing to do, false). */
  queue(): Promise<boolean> {
    if (this.running === undefined) return Promise.resolve(false)
    this.again = true
    return this.running
  }

  /** Run once() now, and again while reloads were queued meanwhile and go() allows; then done(). */
  run(once: () => Promise<boolean>, go: () => boolean, done: () => void): Promise<boolean> {
    const loop = async (): Promise<boolean> => {
      let ok: boolean
      do {
        this.again = false
        ok = await once()
      } while (this.again && go())
      return ok
    }
    this.running = loop().finally(() => {
      this.running = undefined
      done()
    })
    return this.running
  }

  /** A reload that waits for the start; it gets the outcome settle() is given. */
  defer(): Promise<boolean> {
    return new Promise((resolve) => this.deferred.push(resolve))
  }

  /** Reloads deferred so far, if any, get this outcome: the reload run for them, or false (nothing ran). */
  settle(outcome: () => Promise<boolean>): void {
    if (this.deferred.length === 0) return
    const result = outcome()
    for (const resolve of this.deferred.splice(0)) void result.then(resolve)
  }
}
