/** The system's users, as tests that run a peer as another user need them. */
import { readFileSync } from 'node:fs'

/** A user's uid and gid from /etc/passwd; null when there is no such user. */
export function passwdIds(user: string): { uid: number; gid: number } | null {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`))
  if (line === undefined) return null
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}
