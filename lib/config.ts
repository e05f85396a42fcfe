/**
 * sdserve's configuration: defaults in one object, validation of every
 * option, and merging of the sources in order of precedence (later wins):
 * defaults < config file < SDSERVE_CMD_ARGS < command line.
 */

export type Balance = 'shared' | 'reuse-port'

export interface Config {
  /** The application: `path/to/app.js`, `app.js:name`, or `app.js:factory()`. */
  app: string
  /** Worker processes (-w). */
  workers: number
  /** Bind specs (-b, repeatable). Empty: every inherited socket, or DEFAULT_BIND without LISTEN_FDS. */
  bind: string[]
  /** How connections reach workers: one shared socket, or one SO_REUSEPORT socket per worker (TCP binds). */
  balance: Balance
  /** Listen backlog of sockets sdserve creates. */
  backlog: number
  /** Seconds a worker may go without a heartbeat (event loop blocked) before it is killed; 0 disables. Also bounds a worker's boot. */
  timeout: number
  /** Seconds workers get to finish in-flight requests on stop and reload before they are killed. */
  gracefulTimeout: number
  /** Seconds an idle keep-alive connection is kept open. */
  keepAlive: number
  /** Requests after which a worker is replaced; 0 disables. */
  maxRequests: number
  /** A random 0..maxRequestsJitter added to maxRequests per worker, so workers do not all recycle at once. */
  maxRequestsJitter: number
  /** Pid file of the master. */
  pid: string | undefined
  /** Directory to change to before loading the app. */
  chdir: string | undefined
  /** Workers run as this user (name or uid); needs root. */
  user: string | undefined
  /** Workers run as this group (name or gid); needs root. */
  group: string | undefined
  /** File mode creation mask of the master and workers, e.g. 0o022. */
  umask: number | undefined
  /** Mode of UNIX socket files sdserve creates, e.g. 0o660. */
  unixSocketMode: number | undefined
  /** Owner of UNIX socket files sdserve creates: `user`, `user:group` or `:group`. */
  unixSocketOwner: string | undefined
  /** The config file this configuration was read from, if any. */
  config: string | undefined
}
