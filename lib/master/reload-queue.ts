/**
 * Reloads run one at a time. A reload asked for while one runs is queued:
 * however many come meanwhile, one more runs after the current one (each
 * reload re-reads the config, so one more sees every change), unless a
 * stop began. Every caller gets the outcome of the last reload run.
 */
export class ReloadQueue {
  private running: Promise<boolean> | undefined
  private again = false

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
}
