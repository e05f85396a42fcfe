/**
 * The master's phase, one value, and the one table that says what each
 * phase allows. Every operation (a signal, a library call, a worker's
 * request to retire, a crash to replace) asks here first, so "may this
 * happen now?" has one answer in one place.
 *
 *   starting ──► serving ──► reloading ──► serving
 *      │            │  └────► upgrading ──► serving (rolled back)
 *      │            │              └──────► stopping (handed over)
 *      └────────────┴──────────────────────► stopping
 *
 * stopping is final: whatever runs when it begins finishes or gives up, and
 * nothing new starts.
 */

export type Phase = 'starting' | 'serving' | 'reloading' | 'upgrading' | 'stopping'

export type Operation = 'reload' | 'upgrade' | 'scale' | 'respawn' | 'recycle' | 'stop'

/**
 * - run: do it now;
 * - queue: do it after the running one of its kind (a second HUP during a reload);
 * - defer: record it; it takes effect when the phase allows (TTIN during a reload, HUP during the start);
 * - `refuse: why`: do not, and warn why: the operator asked for something that cannot be done now;
 * - ignore: do not, silently (a stop is under way, or nothing serves yet).
 */
export type Rule = 'run' | 'queue' | 'defer' | 'ignore' | `refuse: ${string}`

const TABLE: Readonly<Record<Phase, Readonly<Record<Operation, Rule>>>> = {
  starting: {
    reload: 'defer',
    upgrade: 'refuse: still starting',
    scale: 'defer',
    respawn: 'ignore',
    recycle: 'ignore',
    stop: 'run',
  },
  serving: { reload: 'run', upgrade: 'run', scale: 'run', respawn: 'run', recycle: 'run', stop: 'run' },
  reloading: { reload: 'queue', upgrade: 'refuse: a reload is running', scale: 'defer', respawn: 'run', recycle: 'run', stop: 'run' },
  upgrading: {
    reload: 'refuse: a binary upgrade is running',
    upgrade: 'refuse: an upgrade is running',
    scale: 'run',
    respawn: 'run',
    recycle: 'run',
    stop: 'run',
  },
  stopping: { reload: 'ignore', upgrade: 'refuse: stopping', scale: 'ignore', respawn: 'ignore', recycle: 'ignore', stop: 'queue' },
}

export function rule(phase: Phase, operation: Operation): Rule {
  return TABLE[phase][operation]
}

/** The rule for an operation now; a refusal is reported with its reason. */
export function ask(phase: Phase, operation: Operation, refused: (why: string) => void): Rule {
  const r = TABLE[phase][operation]
  if (r.startsWith('refuse: ')) refused(r.slice('refuse: '.length))
  return r
}
