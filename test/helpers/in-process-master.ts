/**
 * A Master in-process: real sockets, fake worker processes (FakeChild) and a
 * fake clock, driven by the test.
 */
import { DEFAULTS, type Config } from '../../lib/config.js'
import { Logger } from '../../lib/logger.js'
import { Master } from '../../lib/master.js'
import { Notifier } from '../../lib/notify.js'
import { FakeRuntime, settle, type FakeChild } from './fake-runtime.js'

export function make(options: Partial<Config> = {}) {
  const config: Config = { ...DEFAULTS, app: 'app.js', bind: ['127.0.0.1:0'], workers: 2, config: undefined, ...options }
  const rt = new FakeRuntime()
  const lines: string[] = []
  const logger = new Logger({ level: 'debug', write: (l) => lines.push(l) })
  let next: Promise<Config> | Config = config
  const master = new Master(config, { runtime: rt, logger, signals: false, notifier: new Notifier({ socket: undefined }), reloadConfig: async () => next })
  const booting = (): FakeChild[] => rt.children.filter((c) => c.acts().join() === 'boot')
  const listen = (children = booting()): void => {
    for (const c of children) c.say({ act: 'listening', description: 'x' })
  }
  /** Every child told to stop exits. */
  const exitStopped = async (): Promise<void> => {
    await settle()
    for (const c of rt.children) if (c.exitCode === null && c.acts().includes('stop')) c.exit(0)
  }
  /** Start, every worker listens: serving. */
  const serve = async (): Promise<void> => {
    const started = master.start()
    await settle()
    listen()
    await started
  }
  return { master, rt, lines, log: () => lines.join(''), booting, listen, exitStopped, serve, setNext: (c: Partial<Config> | Promise<Config>) => (next = c instanceof Promise ? c : { ...config, ...c }) }
}
