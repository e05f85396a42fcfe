/**
 * `sdserve ctl`'s side of the control socket: send one request line, read
 * one answer line (lib/control-protocol.ts).
 */
import { connect } from 'node:net'
import type { ControlAnswer, ControlRequest } from '../control-protocol.js'
import { CtlError } from '../errors.js'

/** Send request to the master at path; resolves with its answer, rejects with a CtlError that says what went wrong. */
export function ask(path: string, request: ControlRequest, timeoutMs: number): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(path)
    let received = ''
    const fail = (message: string): void => {
      socket.destroy()
      reject(new CtlError(message))
    }
    const timer = setTimeout(
      () => fail(`no answer from ${path} within ${timeoutMs / 1000} s; the master may still be working on ${request.command}`),
      timeoutMs,
    )
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`))
    socket.on('data', (chunk: string) => {
      received += chunk
      const newline = received.indexOf('\n')
      if (newline < 0) return
      clearTimeout(timer)
      socket.end()
      try {
        resolve(JSON.parse(received.slice(0, newline)) as ControlAnswer)
      } catch {
        reject(new CtlError(`the answer from ${path} is not JSON: ${JSON.stringify(received.slice(0, 80))}`))
      }
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      fail(`cannot reach the master at ${path}: ${err.code === 'ENOENT' ? 'no such socket (is sdserve running with this --control-socket?)' : err.message}`)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      // After an answer this is a no-op (the promise is settled).
      fail(`the master at ${path} closed the connection without an answer (is this user root or the master's?)`)
    })
  })
}
