/**
 * Sockets kept in systemd's fd store. When sdserve binds a socket itself under
 * a service with FileDescriptorStoreMax= > 0, it gives systemd a duplicate
 * (FDSTORE=1, FDNAME=sdserve-<bind>). systemd hands it back in LISTEN_FDS on
 * the next start, so a `systemctl restart` keeps the socket open: clients that
 * connect meanwhile wait in its queue instead of being refused.
 *
 * The same names label the sockets an old master hands a new one in a binary
 * upgrade (lib/upgrade.ts).
 */
import { isValidFdName } from './limits.js'

/** FDNAME prefix of the sockets sdserve stores; socket units name theirs otherwise. */
export const STORED_PREFIX = 'sdserve-'

/**
 * The FDNAME for a bind: `sdserve-` and the bind text with `%` and `:` (which
 * LISTEN_FDNAMES uses as its separator) percent-encoded, e.g.
 * `sdserve-127.0.0.1%3A8000`. undefined when the result is not a valid FDNAME
 * (over 255 characters, or not printable ASCII).
 */
export function storedName(bindText: string): string | undefined {
  const name = STORED_PREFIX + bindText.replaceAll('%', '%25').replaceAll(':', '%3A')
  return isValidFdName(name) ? name : undefined
}

/** Whether an inherited socket's name is one sdserve gave it. */
export function isStoredName(name: string): boolean {
  return name.startsWith(STORED_PREFIX)
}

/**
 * How many fds systemd keeps for this service: $FDSTORE, which systemd 254 and
 * later set to FileDescriptorStoreMax=. 0 without it (no fd store, or an older
 * systemd, where a service cannot tell).
 */
export function fdStoreMax(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.FDSTORE
  return text !== undefined && /^[0-9]{1,9}$/.test(text) ? Number(text) : 0
}
