/**
 * --warm-up: before a new worker listens, it sends its own app a number of
 * requests, so that V8 has compiled the app's hot paths, and the app has
 * filled its caches and pools, before the first client waits on them. The
 * first few hundred requests of a cold worker run interpreted code and are
 * several times slower; without a warm-up, the clients of a reload pay for
 * them.
 *
 * The requests go over a private UNIX socket (an abstract address, nothing
 * on disk) to a server of their own that calls the app's request handler:
 * they are real HTTP through Node's parser, and they are neither counted nor
 * access-logged. Each carries `x-sdserve-warm-up: 1`, so an app can leave
 * out side effects. A warm-up that fails is logged and the worker boots
 * anyway: it is an optimisation, not a health check.
 */
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'

export interface WarmUpSpec {
  /** `PATH` or `METHOD PATH`, taken in turn. */
  requests: string[]
  /** Requests in all. */
  count: number
}

export interface WarmUpResult {
  sent: number
  /** Responses by status code. */
  statuses: Map<number, number>
  /** Requests that got no response, and the first one's error. */
  failed: number
  error: string | undefined
  ms: number
}

/** Requests in flight at a time: enough to exercise concurrency in the app, few enough not to queue. */
const CONCURRENCY = 4
/** A request that takes longer ends the warm-up: the app is waiting on something, and the boot must not. */
const REQUEST_TIMEOUT_MS = 5000

export interface WarmUpOptions {
  /** Per request; default REQUEST_TIMEOUT_MS. */
  timeoutMs?: number
  /** Where the private server listens; default a fresh abstract UNIX address. */
  socketPath?: string
}
export const WARM_UP_HEADER = 'x-sdserve-warm-up'

function parse(text: string): { method: string; path: string } {
  const space = text.indexOf(' ')
  return space === -1 ? { method: 'GET', path: text } : { method: text.slice(0, space), path: text.slice(space + 1) }
}

function send(socketPath: string, agent: Agent, method: string, path: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, agent, method, path, headers: { host: 'localhost', [WARM_UP_HEADER]: '1' }, timeout: timeoutMs }, (res) => {
      res.resume()
      // A server response always has a status code.
      res.on('end', () => resolve(res.statusCode!))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no response within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

/** Send `spec.count` requests to `app` and resolve with what they got; never rejects. */
export async function warmUp(
  app: (req: IncomingMessage, res: ServerResponse) => void,
  spec: WarmUpSpec,
  options: WarmUpOptions = {},
): Promise<WarmUpResult> {
  const started = performance.now()
  const requests = spec.requests.map(parse)
  const timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS
  const socketPath = options.socketPath ?? `\0sdserve-warm-up-${process.pid}-${Math.random().toString(36).slice(2)}`
  const server = createServer(app)
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  const result: WarmUpResult = { sent: 0, statuses: new Map(), failed: 0, error: undefined, ms: 0 }
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(socketPath, () => resolve())
    })
    let next = 0
    let stop = false
    const lane = async (): Promise<void> => {
      while (!stop && next < spec.count) {
        const { method, path } = requests[next++ % requests.length]!
        result.sent++
        try {
          const status = await send(socketPath, agent, method, path, timeoutMs)
          result.statuses.set(status, (result.statuses.get(status) ?? 0) + 1)
        } catch (err) {
          result.failed++
          result.error ??= (err as Error).message
          // One lost request is the app's business; a hung one ends the warm-up.
          if (/no response within/.test((err as Error).message)) stop = true
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, spec.count) }, lane))
  } catch (err) {
    result.error ??= (err as Error).message
  } finally {
    agent.destroy()
    server.closeAllConnections()
    server.close()
  }
  result.ms = performance.now() - started
  return result
}

/** The result in a log line's words: `500 requests in 212 ms: 200 x480, 404 x20`. */
export function describeWarmUp(r: WarmUpResult): string {
  const statuses = [...r.statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s} x${n}`)
  // A failed request always keeps its error.
  if (r.failed > 0) statuses.push(`no response x${r.failed} (${r.error!})`)
  return `${r.sent} request${r.sent === 1 ? '' : 's'} in ${Math.round(r.ms)} ms: ${statuses.join(', ') || 'none answered'}`
}
