import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError } from '../lib/errors.js'
import {
  canChangeIdentity,
  ID_MAX,
  resolveGroup,
  resolveOwner,
  resolveUser,
  workerIdentity,
} from '../lib/identity.js'
import { shortTmp, spawnTracked } from './helpers/proc.js'

const isRoot = process.getuid?.() === 0

/** An entry as the system's own getent prints it, split on ':'; null when there is none. */
function entry(database: 'passwd' | 'group', key: string): string[] | null {
  const r = spawnSync('getent', [database, key], { encoding: 'utf8', timeout: 30000 })
  return r.status === 0 ? (r.stdout.split('\n', 1)[0] ?? '').split(':') : null
}

const nobody = entry('passwd', 'nobody')
const nogroup = entry('group', 'nogroup')
const rootGroupName = entry('group', '0')?.[0]
const needNobody = nobody === null ? 'no user "nobody" on this system' : false
const needNogroup = nogroup === null ? 'no group "nogroup" on this system' : false

/** A uid (and gid) from start down with neither a passwd nor a group entry. */
function unused(start: number): number {
  for (let id = start; ; id--) if (entry('passwd', String(id)) === null && entry('group', String(id)) === null) return id
}
/** Above what spawn() takes. */
const unusedId = unused(3999999999)
/** Within what spawn() takes. */
const unusedSmall = unused(2000000000)

/** Put a fake getent first in PATH for the rest of the test. */
function fakeGetent(t: Test, script: string, mode = 0o755): void {
  const dir = shortTmp(t)
  const file = join(dir, 'getent')
  writeFileSync(file, `#!/bin/sh\n${script}\n`)
  chmodSync(file, mode)
  const path = process.env.PATH
  // Only this directory when the fake is not executable: execvp() would go on to the real one.
  process.env.PATH = mode === 0o755 ? `${dir}:${path ?? ''}` : dir
  t.teardown(() => {
    process.env.PATH = path
  })
}

t.test('users by name and by uid', async (t) => {
  t.same(resolveUser('root'), { uid: 0, gid: 0, name: 'root' })
  t.same(resolveUser('0'), { uid: 0, gid: 0, name: 'root' })
  t.same(resolveUser(' root '), { uid: 0, gid: 0, name: 'root' }, 'surrounding blanks are ignored')
  t.same(resolveUser('000'), { uid: 0, gid: 0, name: 'root' })
  t.same(resolveUser(String(unusedId)), { uid: unusedId, gid: undefined, name: undefined }, 'a uid without an entry')
  t.same(resolveUser(String(ID_MAX)).uid, ID_MAX)
})

t.test('nobody and nogroup', { skip: needNobody || needNogroup }, async (t) => {
  const uid = Number(nobody![2])
  const gid = Number(nobody![3])
  t.same(resolveUser('nobody'), { uid, gid, name: 'nobody' })
  t.same(resolveUser(String(uid)), { uid, gid, name: 'nobody' })
  t.equal(resolveGroup('nogroup'), Number(nogroup![2]))
  t.equal(resolveGroup(' nogroup'), Number(nogroup![2]))
})

t.test('groups by name and by gid', async (t) => {
  t.equal(resolveGroup('0'), 0)
  t.equal(resolveGroup(rootGroupName ?? '0'), 0)
  t.equal(resolveGroup(String(unusedId)), unusedId, 'a gid is taken as it is, entry or not')
  t.equal(resolveGroup(String(ID_MAX)), ID_MAX)
})

t.test('unknown names and bad values name the option and echo the value', async (t) => {
  const check = (fn: () => unknown, option: string, message: string): void => {
    const err = t.throws(fn) as ConfigError
    t.ok(err instanceof ConfigError, `${message}: a ConfigError`)
    t.equal(err.code, 'SDSERVE_ERR_CONFIG')
    t.equal(err.option, option)
    t.equal(err.message, message)
  }
  check(() => resolveUser('nosuchuser'), 'user', 'user must be an existing user name or a uid, got "nosuchuser"')
  check(() => resolveUser('nosuchuser', '--user'), '--user', '--user must be an existing user name or a uid, got "nosuchuser"')
  check(() => resolveUser(''), 'user', 'user must be an existing user name or a uid, got ""')
  check(() => resolveUser('-1'), 'user', 'user must be an existing user name or a uid, got "-1"')
  check(() => resolveUser('--help'), 'user', 'user must be an existing user name or a uid, got "--help"')
  check(() => resolveUser('ro ot'), 'user', 'user must be an existing user name or a uid, got "ro ot"')
  check(() => resolveUser('root:root'), 'user', 'user must be an existing user name or a uid, got "root:root"')
  check(() => resolveUser('ro\0ot'), 'user', 'user must be an existing user name or a uid, got "ro\\u0000ot"')
  check(() => resolveUser(42 as unknown as string), 'user', 'user must be an existing user name or a uid, got 42')
  check(
    () => resolveUser('4294967295'),
    'user',
    'user must be an existing user name or a uid from 0 to 4294967294, got "4294967295"',
  )
  check(
    () => resolveUser('99999999999999999999999'),
    'user',
    'user must be an existing user name or a uid from 0 to 4294967294, got "99999999999999999999999"',
  )
  check(() => resolveGroup('nosuchgroup'), 'group', 'group must be an existing group name or a gid, got "nosuchgroup"')
  check(() => resolveGroup(''), 'group', 'group must be an existing group name or a gid, got ""')
  check(() => resolveGroup(undefined as unknown as string), 'group', 'group must be an existing group name or a gid, got undefined')
  check(
    () => resolveGroup('4294967295'),
    'group',
    'group must be an existing group name or a gid from 0 to 4294967294, got "4294967295"',
  )
})

t.test('socket owner: USER, USER:GROUP, :GROUP, USER:', async (t) => {
  t.same(resolveOwner('root'), { uid: 0, gid: undefined }, 'USER leaves the group alone, as chown does')
  t.same(resolveOwner('0:0'), { uid: 0, gid: 0 })
  t.same(resolveOwner('root:0'), { uid: 0, gid: 0 })
  t.same(resolveOwner(':0'), { uid: undefined, gid: 0 })
  t.same(resolveOwner('root:'), { uid: 0, gid: 0 }, "USER: is the user's login group")
  t.same(resolveOwner(` ${unusedId}:${unusedId} `), { uid: unusedId, gid: unusedId })
  t.same(resolveOwner(String(unusedId)), { uid: unusedId, gid: undefined })
  if (nobody !== null && nogroup !== null) {
    const uid = Number(nobody[2])
    const gid = Number(nogroup[2])
    t.same(resolveOwner('nobody:nogroup'), { uid, gid })
    t.same(resolveOwner(':nogroup'), { uid: undefined, gid })
    t.same(resolveOwner('nobody'), { uid, gid: undefined })
    t.same(resolveOwner('nobody:'), { uid, gid: Number(nobody[3]) })
    t.same(resolveOwner('root:nogroup'), { uid: 0, gid })
  }
})

t.test('socket owner errors', async (t) => {
  const shape = 'unix-socket-owner must be USER, USER:GROUP or :GROUP'
  const bad: Array<[unknown, string]> = [
    ['', `${shape}, got ""`],
    [':', `${shape}, got ":"`],
    [' ', `${shape}, got " "`],
    [7, `${shape}, got 7`],
    ['nosuchuser', `${shape} with USER an existing user name or a uid, got "nosuchuser"`],
    ['nosuchuser:0', `${shape} with USER an existing user name or a uid, got "nosuchuser:0"`],
    ['4294967295:0', `${shape} with USER an existing user name or a uid from 0 to 4294967294, got "4294967295:0"`],
    ['root:nosuchgroup', `${shape} with GROUP an existing group name or a gid, got "root:nosuchgroup"`],
    [':nosuchgroup', `${shape} with GROUP an existing group name or a gid, got ":nosuchgroup"`],
    [':4294967295', `${shape} with GROUP an existing group name or a gid from 0 to 4294967294, got ":4294967295"`],
    ['root:a:b', `${shape} with GROUP an existing group name or a gid, got "root:a:b"`],
    [
      `${unusedId}:`,
      `${shape}, or USER: with a USER that has a passwd entry (for its login group), got "${unusedId}:"`,
    ],
  ]
  for (const [value, message] of bad) {
    const err = t.throws(() => resolveOwner(value as string)) as ConfigError
    t.ok(err instanceof ConfigError)
    t.equal(err.option, 'unix-socket-owner')
    t.equal(err.message, message)
  }
  t.throws(() => resolveOwner('nosuchuser', '--unix-socket-owner'), {
    option: '--unix-socket-owner',
    message: /^--unix-socket-owner must be /,
  })
})

t.test('workerIdentity', async (t) => {
  t.same(workerIdentity({}), {})
  t.same(workerIdentity({ user: undefined, group: undefined }), {})
  t.same(workerIdentity({ user: 'root' }), { uid: 0, gid: 0 })
  t.same(workerIdentity({ group: '0' }), { gid: 0 })
  t.same(workerIdentity({ user: String(unusedSmall), group: '0' }), { uid: unusedSmall, gid: 0 }, 'a uid without an entry, with a group')
  if (nobody !== null) {
    const uid = Number(nobody[2])
    t.same(workerIdentity({ user: 'nobody' }), { uid, gid: Number(nobody[3]) }, "the user's primary group")
    t.same(workerIdentity({ user: 'nobody', group: '0' }), { uid, gid: 0 }, 'the group overrides it')
    if (nogroup !== null)
      t.same(workerIdentity({ user: 'nobody', group: 'nogroup' }), { uid, gid: Number(nogroup[2]) })
  }
  t.throws(() => workerIdentity({ user: 'nosuchuser' }), { option: 'user', message: /got "nosuchuser"$/ })
  t.throws(() => workerIdentity({ user: 'root', group: 'nosuchgroup' }), { option: 'group', message: /got "nosuchgroup"$/ })

  // A uid without a passwd entry has no known primary group: a worker would keep the master's gid.
  t.throws(() => workerIdentity({ user: String(unusedSmall) }), {
    option: 'group',
    message: `group must be given when user "${unusedSmall}" has no passwd entry (its primary group is unknown), got undefined`,
  })

  // child_process.spawn() takes int32 ids only.
  t.throws(() => workerIdentity({ user: '2147483648', group: '0' }), {
    option: 'user',
    message: /^user must be a user with a uid from 0 to 2147483647 \(node cannot spawn workers with larger ids\), got "2147483648"$/,
  })
  t.throws(() => workerIdentity({ user: 'root', group: '2147483648' }), {
    option: 'group',
    message: /^group must be a group with a gid from 0 to 2147483647 .*, got "2147483648"$/,
  })
  t.same(workerIdentity({ user: '2147483647', group: '2147483647' }), { uid: 2147483647, gid: 2147483647 })
})

t.test('canChangeIdentity', async (t) => {
  t.equal(canChangeIdentity(), isRoot)
})

t.test('workers really run as nobody', { skip: needNobody || (isRoot ? false : 'needs root') }, async (t) => {
  const id = workerIdentity({ user: 'nobody' })
  const child = spawnTracked(t, 'sh', ['-c', 'id -u; id -g'], { ...id })
  t.equal(await child.exited, 0)
  t.equal(child.output(), `${nobody![2]}\n${nobody![3]}\n`)
  t.equal(child.output(), `${id.uid}\n${id.gid}\n`)

  const withGroup = workerIdentity({ user: 'nobody', group: '0' })
  const child2 = spawnTracked(t, 'sh', ['-c', 'id -u; id -g; id -G'], { ...withGroup })
  t.equal(await child2.exited, 0)
  t.equal(child2.output(), `${nobody![2]}\n0\n0\n`, 'no supplementary groups of root are kept')
})

t.test('getent missing or failing', async (t) => {
  t.test('not in PATH', async (t) => {
    const path = process.env.PATH
    process.env.PATH = '/nonexistent'
    t.teardown(() => {
      process.env.PATH = path
    })
    t.throws(() => resolveUser('root'), {
      message: /^cannot look up passwd entry "root": the getent command was not found in PATH .*give a numeric id instead$/,
    })
    t.throws(() => resolveGroup('wheel'), { message: /^cannot look up group entry "wheel": the getent command was not found/ })
    t.throws(() => resolveUser('0'), { message: /^cannot look up passwd entry "0": .*libc-bin\)$/ })
    t.equal(resolveGroup('5'), 5, 'a gid needs no lookup')
    t.same(resolveOwner(':5'), { uid: undefined, gid: 5 })
  })
  t.test('fails with a message', async (t) => {
    fakeGetent(t, 'echo "nss: backend exploded" >&2; exit 3')
    const err = t.throws(() => resolveUser('root')) as Error
    t.notOk(err instanceof ConfigError)
    t.equal(err.message, 'getent passwd root failed: nss: backend exploded')
    t.ok(err.cause instanceof Error)
  })
  t.test('not executable', async (t) => {
    fakeGetent(t, 'exit 0', 0o644)
    const err = t.throws(() => resolveUser('root')) as Error
    t.match(err.message, /^getent passwd root failed: .*EACCES/)
  })
  t.test('fails silently', async (t) => {
    fakeGetent(t, 'exit 1')
    t.throws(() => resolveGroup('staff'), { message: /^getent group staff failed: Command failed: getent group staff/ })
  })
  t.test('prints something unexpected', async (t) => {
    fakeGetent(t, 'echo "weird output"')
    t.throws(() => resolveUser('root'), { message: 'getent passwd root printed an unexpected entry: "weird output"' })
    t.throws(() => resolveGroup('staff'), { message: 'getent group staff printed an unexpected entry: "weird output"' })
  })
  t.test('a uid out of range', async (t) => {
    fakeGetent(t, 'echo "big:x:4294967295:0::/:/bin/sh"')
    t.throws(() => resolveUser('big'), { message: /printed an unexpected entry: "big:x:4294967295:0::\/:\/bin\/sh"/ })
  })
  t.test("a user whose primary gid node cannot spawn with", async (t) => {
    fakeGetent(t, 'echo "big:x:1000:3000000000::/:/bin/sh"')
    t.same(resolveUser('big'), { uid: 1000, gid: 3000000000, name: 'big' })
    t.throws(() => workerIdentity({ user: 'big' }), {
      option: 'user',
      message: /^user must be a user whose primary gid is at most 2147483647 .*or give group, got "big"$/,
    })
    t.same(workerIdentity({ user: 'big', group: '0' }), { uid: 1000, gid: 0 })
  })
})

