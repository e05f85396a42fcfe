/** A real AF_UNIX datagram receiver for sd_notify (python3), independent of our code. */
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { root, spawnTracked, waitForOutput, type Tracked } from './proc.js'

export interface FdInfo {
  type: string
  sockname?: unknown
  listening?: boolean
}
export interface Datagram {
  data: string
  fds: FdInfo[]
}
export interface Receiver {
  address: string
  child: Tracked
  datagrams(): Datagram[]
  /** Payloads received so far, in order. */
  payloads(): string[]
  /** Resolves once at least n datagrams arrived (bounded). */
  waitFor(n: number): Promise<Datagram[]>
}

interface Teardown {
  teardown(fn: () => void | Promise<void>): void
}

const receiverScript = path.join(root, 'test/fixtures/notify-receiver.py')
let names = 0
/** A fresh abstract-namespace address. */
export const abstractName = (prefix = 'sdserve-test'): string => `@${prefix}-${process.pid}-${++names}`

/** Poll check() every 10 ms until it returns true, at most timeoutMs. Returns the last answer. */
export async function settle(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  for (let i = 0; i < timeoutMs / 10; i++) {
    if (check()) return true
    await delay(10)
  }
  return check()
}

export async function startReceiver(t: Teardown, address = abstractName()): Promise<Receiver> {
  const child = spawnTracked(t, 'python3', [receiverScript, address], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stdin?.on('error', () => undefined) // the receiver may already be gone
  // Teardowns run last-in first-out: this one (end stdin, let it exit) runs before spawnTracked's SIGKILL.
  t.teardown(async () => {
    child.stdin?.end()
    await Promise.race([child.exited, delay(2000, undefined, { ref: false })])
  })
  await waitForOutput(child, /^READY$/m, 10000)
  const datagrams = (): Datagram[] =>
    out
      .split('\n')
      .slice(0, -1)
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Datagram)
  return {
    address,
    child,
    datagrams,
    payloads: () => datagrams().map((d) => d.data),
    async waitFor(n) {
      if (!(await settle(() => datagrams().length >= n)))
        throw new Error(`receiver got ${datagrams().length} datagrams, wanted ${n}; output:\n${child.output()}`)
      return datagrams()
    },
  }
}
