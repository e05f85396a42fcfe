/**
 * An APP spec (`app.js`, `app.js:handler`, `app.js:createApp()`), parsed:
 * apart from the loader (lib/app.ts), so that the master, which checks the
 * spec but never loads the app, does not load node:http for it.
 */
import { ConfigError } from './errors.js'

export interface AppSpec {
  /** The module: a path or a package specifier. */
  module: string
  /** The export to serve (a dotted path), or undefined for the default export. */
  name: string | undefined
  /** Whether the export is a factory to call (`name()`). */
  call: boolean
}

const EXPECTED_SPEC = 'a module path or package, optionally followed by :name or :factory() (app.js, app.js:handler, app.js:createApp())'

/** A name after the last ':': identifiers joined by dots, optionally followed by (). */
const NAME = /^([\p{ID_Start}$_][\p{ID_Continue}$]*(?:\.[\p{ID_Start}$_][\p{ID_Continue}$]*)*)(\(\))?$/u
/** What a (possibly mistyped) name is made of: a tail like this is never taken as part of a path. */
const NAME_LIKE = /^[\p{ID_Continue}$.()]*$/u

/**
 * Parse an APP spec. The spec is split on its last ':' when what follows is a
 * name (`handler`, `server.handler`, `createApp()`), so a path with a ':' in a
 * directory name still works; a tail that looks like a name but is not a
 * valid one (`app.js:`, `app.js:1x`, `app.js:a(b)`) is an error.
 */
export function parseAppSpec(spec: string): AppSpec {
  const text = spec.trim()
  const colon = text.lastIndexOf(':')
  if (colon < 0) {
    if (text === '') throw new ConfigError('APP', spec, EXPECTED_SPEC)
    return { module: text, name: undefined, call: false }
  }
  const tail = text.slice(colon + 1)
  const m = NAME.exec(tail)
  if (m === null) {
    if (NAME_LIKE.test(tail)) throw new ConfigError('APP', spec, EXPECTED_SPEC)
    return { module: text, name: undefined, call: false }
  }
  const module = text.slice(0, colon)
  if (module === '') throw new ConfigError('APP', spec, EXPECTED_SPEC)
  return { module, name: m[1], call: m[2] !== undefined }
}
