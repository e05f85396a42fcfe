/**
 * Helpers for the control socket's tests: a fake master (a Controllable the
 * test drives) and a line client that reads answers one by one.
 */
import type { HealthStatus } from '../../lib/master/health.js'
import { EventEmitter, once } from 'node:events'
import { connect, type Socket } from 'node:net'
import type { Controllable } from '../../lib/master/control-server.js'
import type { MasterEvents } from '../../lib/master/events.js'
import type { Phase } from '../../lib/master/phase.js'
import type { MasterStats } from '../../lib/master/stats.js'

export type Worker = MasterStats['workers'][number]

export function worker(id: number, generation: number, state: Worker['state'] = 'ready'): Worker {
  return {
    id,
    pid: 1000 + id + 100 * generation,
    generation,
    state,
    uptimeMs: 1000,
    lastBeatMs: 100,
    requests: 0,
    inflight: 0,
    connections: 0,
    rss: 0,
    cpuPercent: 0,
    loopP99Ms: 0,
    loopMaxMs: 0,
    restarts: 0,
    lastExit: undefined,
  }
}

/** A master whose state and answers the test sets; calls records what it was asked. */
export class FakeMaster extends EventEmitter<MasterEvents> implements Controllable {
  phase: Phase = 'serving'
  generation = 1
  target = 2
  health: HealthStatus = 'ok'
  workers: Worker[] = [worker(1, 1), worker(2, 1)]
  readonly calls: string[] = []
  onReload: () => Promise<boolean> = async () => {
    this.emit('reload', { ok: true, generation: ++this.generation })
    return true
  }
  scaleOk = true
  onUpgrade: () => Promise<boolean> = async () => false
  onStop: () => Promise<number> = () => new Promise(() => undefined)
  statsError: Error | undefined

  stats(): MasterStats {
    if (this.statsError !== undefined) throw this.statsError
    return {
      pid: 1,
      version: '0.0.0',
      phase: this.phase,
      startedAt: 0,
      lastBootMs: 0,
      generation: this.generation,
      pending: undefined,
      target: this.target,
      workers: this.workers,
      slots: [],
      health: this.health,
      exits: { crash: 0, timeout: 0, 'boot-failed': 0, 'max-requests': 0, memory: 0, reload: 0, scale: 0, upgrade: 0, stop: 0 },
      reloads: { ok: 0, failed: 0 },
      upgrades: { ok: 0, failed: 0 },
      sockets: [],
    }
  }
  reload(): Promise<boolean> {
    this.calls.push('reload')
    return this.onReload()
  }
  scaleTo(workers: number): boolean {
    this.calls.push(`scale ${workers}`)
    return this.scaleOk
  }
  reopenLogs(): void {
    this.calls.push('reopen-logs')
  }
  setLameDuck(on: boolean): void {
    this.calls.push(`lame-duck ${on}`)
    this.health = on ? 'lame-duck' : 'ok'
  }
  upgrade(): Promise<boolean> {
    this.calls.push('upgrade')
    return this.onUpgrade()
  }
  stop(graceful?: boolean): Promise<number> {
    this.calls.push(`stop ${graceful}`)
    return this.onStop()
  }
}

export interface LineClient {
  socket: Socket
  send(line: string): void
  /** The next answer line, parsed; rejects once the connection has closed without one. */
  next(): Promise<Record<string, unknown>>
  /** Every line received so far. */
  received: string[]
  /** Resolves once the server has closed the connection. */
  closed: Promise<void>
}

/** A connection to a control socket at path; the teardown destroys it. */
export async function lineClient(t: { teardown(fn: () => void): void }, path: string): Promise<LineClient> {
  const socket = connect(path)
  t.teardown(() => void socket.destroy())
  await once(socket, 'connect')
  socket.setEncoding('utf8')
  const received: string[] = []
  let buffered = ''
  let read = 0
  let ended = false
  const waiting: (() => void)[] = []
  const wake = (): void => {
    for (const w of waiting.splice(0)) w()
  }
  socket.on('data', (chunk: string) => {
    buffered += chunk
    let i: number
    while ((i = buffered.indexOf('\n')) >= 0) {
      received.push(buffered.slice(0, i))
      buffered = buffered.slice(i + 1)
    }
    wake()
  })
  socket.on('error', () => undefined)
  const closed = new Promise<void>((resolve) =>
    socket.on('close', () => {
      ended = true
      wake()
      resolve()
    }),
  )
  socket.on('end', () => socket.end())
  const next = async (): Promise<Record<string, unknown>> => {
    // Each round waits for data or the close: bounded by what the server sends.
    for (let round = 0; round < 10_000; round++) {
      const line = received[read]
      if (line !== undefined) {
        read++
        return JSON.parse(line) as Record<string, unknown>
      }
      if (ended) throw new Error(`the connection closed without an answer (received: ${JSON.stringify(received)})`)
      await new Promise<void>((resolve) => waiting.push(resolve))
    }
    throw new Error('too many reads without a whole answer')
  }
  return { socket, send: (line) => socket.write(line), next, received, closed }
}
