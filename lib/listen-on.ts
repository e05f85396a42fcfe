import type { ListenOptions, Server } from 'node:net'

/**
 * server.listen() as a promise: resolves once listening, rejects with the
 * listen error. The backlog is passed where node reads it for a listen({ fd }):
 * the second argument (node calls listen(2) again on an inherited socket, with
 * 511 unless told, which would shrink a socket unit's Backlog=).
 */
export function listenOn(server: Server, options: ListenOptions & { fd?: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(options, options.backlog, () => {
      server.off('error', reject)
      resolve()
    })
  })
}
