/**
 * `sdserve ctl`'s side of the control socket: send one request line, read
 * one answer line (lib/control-protocol.ts).
 */
import { connect } from 'node:net'
import type { ControlAnswer, ControlRequest } from '../control-protocol.js'
import { CtlError } from '../errors.js'

/** The longest a timer can wait. */
const MAX_TIMER_MS = 2 ** 31 - 1

/** The shape every answer has (lib/control-protocol.ts); the rest is the command's. */
function isAnswer(value: unknown): value is ControlAnswer {
  if (typeof value !== 'object' || value === null) return false
  const a = value as Record<string, unknown>
  return typeof a.command === 'string' && (a.ok === true || (a.ok === false && typeof a.error === 'string'))
}

/** Send request to the master at path; resolves with its answer, rejects with a CtlError that says what went wrong. */
export function ask(path: string, request: ControlRequest, timeoutMs: number): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(path)
    let received = ''
    const fail = (message: string): void => {
      socket.destroy()
      reject(new CtlError(message))
    }
    // A timer beyond 2^31-1 ms would fire at once (TimeoutOverflowWarning): a longer --timeout waits that long.
    const timer = setTimeout(
      () => fail(`no answer from ${path} within ${timeoutMs / 1000} s; the master may still be working on ${request.command}`),
      Math.min(timeoutMs, MAX_TIMER_MS),
    )
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`))
    socket.on('data', (chunk: string) => {
      received += chunk
      const newline = received.indexOf('\n')
      if (newline < 0) return
      clearTimeout(timer)
      socket.end()
      let parsed: unknown
      try {
        parsed = JSON.parse(received.slice(0, newline))
      } catch {
        return reject(new CtlError(`the answer from ${path} is not JSON: ${JSON.stringify(received.slice(0, 80))}`))
      }
      if (isAnswer(parsed)) resolve(parsed)
      else reject(new CtlError(`the answer from ${path} is not an answer: ${JSON.stringify(received.slice(0, 80))}`))
    })
    const closed = `the master at ${path} closed the connection without an answer (is this user root or the master's?)`
    let connected = false
    socket.on('connect', () => (connected = true))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      // Once connected, an error (EPIPE, ECONNRESET) is the master hanging up: a peer it refuses sees just that.
      if (connected) return fail(closed)
      fail(`cannot reach the master at ${path}: ${err.code === 'ENOENT' ? 'no such socket (is sdserve running with this --control-socket?)' : err.message}`)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      // After an answer this is a no-op (the promise is settled).
      fail(closed)
    })
  })
}
