/**
 * --user, --group and --unix-socket-owner to numeric ids. Names are looked
 * up with getent(1), that is through NSS, so /etc/passwd, LDAP/SSSD and
 * systemd's DynamicUser= users all resolve; numeric values are ids as given.
 */
import { execFileSync } from 'node:child_process'
import { ConfigError, show } from './errors.js'

/** The largest uid/gid: (uid_t)-1 means "no change" to chown(2) and setresuid(2). */
export const ID_MAX = 4294967294
/** child_process.spawn() takes uid and gid as int32 only. */
const SPAWN_ID_MAX = 2147483647
/** Bound on one NSS lookup (a slow LDAP server must not hang startup forever). */
const GETENT_TIMEOUT_MS = 30000

/** A user or group name getent could look up: not empty, no colon, whitespace or control character, no leading dash. */
const NAME = /^[^\s:\-\p{Cc}][^\s:\p{Cc}]*$/u

export interface ResolvedUser {
  uid: number
  /** The user's primary group; undefined for a uid without a passwd entry. */
  gid: number | undefined
  /** The user's name; undefined for a uid without a passwd entry. */
  name: string | undefined
}

/** The fields of the entry getent prints for key, or null when there is none (getent exits 2). */
function getent(database: 'passwd' | 'group', key: string): string[] | null {
  let out: string
  try {
    out = execFileSync('getent', [database, key], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: GETENT_TIMEOUT_MS,
    })
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { status?: number | null; stderr?: string }
    if (e.status === 2) return null
    if (e.code === 'ENOENT')
      throw new Error(
        `cannot look up ${database} entry ${show(key)}: the getent command was not found in PATH ` +
          `(it comes with the C library, e.g. Debian's libc-bin)${/^[0-9]+$/.test(key) ? '' : '; give a numeric id instead'}`,
        { cause: err },
      )
    const detail = (e.stderr ?? '').trim()
    throw new Error(`getent ${database} ${key} failed: ${detail === '' ? e.message : detail}`, { cause: err })
  }
  const line = out.split('\n', 1)[0] as string
  const fields = line.split(':')
  const idFields = database === 'passwd' ? fields.slice(2, 4) : fields.slice(2, 3)
  const wanted = database === 'passwd' ? 2 : 1
  if (idFields.length !== wanted || !idFields.every((f) => /^[0-9]{1,10}$/.test(f) && Number(f) <= ID_MAX))
    throw new Error(`getent ${database} ${key} printed an unexpected entry: ${show(line)}`)
  return fields
}

/** A numeric id, 'range' when it is out of 0..ID_MAX, or null when text is not a number. */
function numericId(text: string): number | 'range' | null {
  if (!/^[0-9]+$/.test(text)) return null
  const id = Number(text)
  return id <= ID_MAX ? id : 'range'
}

function lookupUser(text: string): ResolvedUser | 'range' | null {
  const id = numericId(text)
  if (id === 'range') return 'range'
  if (id === null && !NAME.test(text)) return null
  const fields = getent('passwd', text)
  if (fields === null) return id === null ? null : { uid: id, gid: undefined, name: undefined }
  return { uid: Number(fields[2]), gid: Number(fields[3]), name: fields[0] }
}

function lookupGroup(text: string): number | 'range' | null {
  const id = numericId(text)
  if (id !== null) return id
  if (!NAME.test(text)) return null
  const fields = getent('group', text)
  return fields === null ? null : Number(fields[2])
}

function userExpected(result: 'range' | null): string {
  return result === 'range' ? `an existing user name or a uid from 0 to ${ID_MAX}` : 'an existing user name or a uid'
}

function groupExpected(result: 'range' | null): string {
  return result === 'range' ? `an existing group name or a gid from 0 to ${ID_MAX}` : 'an existing group name or a gid'
}

/**
 * A user name or uid to its uid, primary gid and name. A uid without a
 * passwd entry is accepted, with gid and name undefined.
 */
export function resolveUser(value: string, option = 'user'): ResolvedUser {
  const result = typeof value === 'string' ? lookupUser(value.trim()) : null
  if (result === null || result === 'range') throw new ConfigError(option, value, userExpected(result))
  return result
}

/** A group name or gid to its gid. */
export function resolveGroup(value: string, option = 'group'): number {
  const result = typeof value === 'string' ? lookupGroup(value.trim()) : null
  if (result === null || result === 'range') throw new ConfigError(option, value, groupExpected(result))
  return result
}

/**
 * The owner of UNIX socket files, as chown(1) takes it: `USER` (the group is
 * left alone), `USER:GROUP`, `:GROUP`, or `USER:` (the user's login group).
 * Undefined ids are left unchanged (pass -1 to chown).
 */
export function resolveOwner(
  value: string,
  option = 'unix-socket-owner',
): { uid: number | undefined; gid: number | undefined } {
  const shape = 'USER, USER:GROUP or :GROUP'
  const text = typeof value === 'string' ? value.trim() : ''
  const colon = text.indexOf(':')
  const userPart = colon < 0 ? text : text.slice(0, colon)
  const groupPart = colon < 0 ? undefined : text.slice(colon + 1)
  if (userPart === '' && (groupPart === undefined || groupPart === ''))
    throw new ConfigError(option, value, shape)
  let uid: number | undefined
  let gid: number | undefined
  if (userPart !== '') {
    const user = lookupUser(userPart)
    if (user === null || user === 'range')
      throw new ConfigError(option, value, `${shape} with USER ${userExpected(user)}`)
    uid = user.uid
    if (groupPart === '') {
      if (user.gid === undefined)
        throw new ConfigError(option, value, `${shape}, or USER: with a USER that has a passwd entry (for its login group)`)
      gid = user.gid
    }
  }
  if (groupPart !== undefined && groupPart !== '') {
    const group = lookupGroup(groupPart)
    if (group === null || group === 'range')
      throw new ConfigError(option, value, `${shape} with GROUP ${groupExpected(group)}`)
    gid = group
  }
  return { uid, gid }
}

/**
 * The uid and gid workers run as, for child_process.spawn(): the user's uid
 * and primary group, the group (if given) overriding the latter. A uid
 * without a passwd entry needs a group: a worker would otherwise keep the
 * master's gid (root's, typically).
 */
export function workerIdentity(config: { user?: string | undefined; group?: string | undefined }): {
  uid?: number
  gid?: number
} {
  const identity: { uid?: number; gid?: number } = {}
  if (config.user !== undefined) {
    const user = resolveUser(config.user)
    if (user.uid > SPAWN_ID_MAX)
      throw new ConfigError('user', config.user, `a user with a uid from 0 to ${SPAWN_ID_MAX} (node cannot spawn workers with larger ids)`)
    identity.uid = user.uid
    if (config.group === undefined) {
      if (user.gid === undefined)
        throw new ConfigError('group', config.group, `given when user ${show(config.user)} has no passwd entry (its primary group is unknown)`)
      if (user.gid > SPAWN_ID_MAX)
        throw new ConfigError('user', config.user, `a user whose primary gid is at most ${SPAWN_ID_MAX} (node cannot spawn workers with larger ids), or give group`)
      identity.gid = user.gid
    }
  }
  if (config.group !== undefined) {
    const gid = resolveGroup(config.group)
    if (gid > SPAWN_ID_MAX)
      throw new ConfigError('group', config.group, `a group with a gid from 0 to ${SPAWN_ID_MAX} (node cannot spawn workers with larger ids)`)
    identity.gid = gid
  }
  return identity
}

/** Whether this process may run workers as another user or group (it runs as root). */
export function canChangeIdentity(): boolean {
  return process.getuid?.() === 0
}
