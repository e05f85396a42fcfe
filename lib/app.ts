/**
 * The application loader: what a worker serves.
 *
 * An APP spec names a module and, optionally, what in it to serve:
 *   app.js                 the default export (module.exports for CommonJS)
 *   app.js:handler         a named export; a dotted path (server.handler) is resolved property by property
 *   app.js:createApp()     a factory, sync or async, called with no arguments
 * as gunicorn's `module:name`. The module is a path (resolved against the
 * working directory, trying .js, .mjs and .cjs when it has no extension) or a
 * package specifier resolved from there.
 *
 * The value found is classified into an AppTarget: a request handler (a plain
 * (req, res) function, an Express app, a Koa app's callback()) or an
 * http.Server (one the app made, or a Fastify instance's, once ready()).
 */
import { Server, type IncomingMessage, type ServerResponse } from 'node:http'
import { statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { isAbsolute, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { AppLoadError, show } from './errors.js'
import { parseAppSpec, type AppSpec } from './app-spec.js'

export { parseAppSpec, type AppSpec }

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void

export type AppTarget =
  | { kind: 'handler'; handler: RequestHandler; description: string }
  | { kind: 'server'; server: Server; description: string }

const EXPECTED_APP = 'a request handler (req, res), an http.Server, or an Express, Koa or Fastify app'

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile()
  } catch {
    return false
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

function message(err: unknown): string {
  if (err instanceof Error) return err.message
  return show(err)
}

/**
 * Resolve an app module to a file URL string. A path (absolute, ./ or ../,
 * or an existing file relative to cwd) resolves against cwd, trying .js,
 * .mjs and .cjs when the file does not exist as given, and a directory as
 * require() would (its package.json "main", or index.js); anything else is a
 * package specifier resolved from cwd.
 */
export function resolveAppModule(module: string, cwd: string): string {
  if (module.startsWith('file:')) {
    let path: string
    try {
      path = fileURLToPath(module)
    } catch (err) {
      throw new AppLoadError(module, `cannot find app module ${module}: ${message(err)}`, err)
    }
    if (isFile(path)) return pathToFileURL(path).href
    throw new AppLoadError(module, `cannot find app module ${module}: no such file`)
  }
  const pathLike =
    isAbsolute(module) || module.startsWith('./') || module.startsWith('../') || module === '.' || module === '..'
  const base = resolve(cwd, module)
  for (const ext of ['', '.js', '.mjs', '.cjs']) if (isFile(base + ext)) return pathToFileURL(base + ext).href
  const require = createRequire(join(cwd, 'noop.js'))
  if (pathLike) {
    if (isDirectory(base)) {
      try {
        return pathToFileURL(require.resolve(base)).href
      } catch (err) {
        throw new AppLoadError(
          module,
          `cannot find app module ${module} in ${cwd}: ${base} is a directory with no package.json "main" or index.js`,
          err,
        )
      }
    }
    throw new AppLoadError(module, `cannot find app module ${module} in ${cwd}: no file ${base} (nor with .js, .mjs or .cjs)`)
  }
  try {
    return pathToFileURL(require.resolve(module)).href
  } catch (err) {
    const code = (err as { code?: unknown }).code
    const why = code === 'MODULE_NOT_FOUND' ? 'no such package' : message(err)
    throw new AppLoadError(
      module,
      `cannot find app module ${module} in ${cwd}: not a file there (nor with .js, .mjs or .cjs), and as a package: ${why}`,
      err,
    )
  }
}

type Bag = Record<PropertyKey, unknown>

function isObjectLike(value: unknown): value is Bag {
  return (typeof value === 'object' && value !== null) || typeof value === 'function'
}

function hasMethod(value: unknown, key: string): boolean {
  return isObjectLike(value) && typeof value[key] === 'function'
}

function isHttpServer(value: unknown): value is Server {
  return value instanceof Server
}

function isClass(value: object): boolean {
  return /^class\b/.test(Function.prototype.toString.call(value))
}

/** What a value is, for an error message: "a number (42)", "an instance of Foo", "a class (Foo)". */
export function describeValue(value: unknown): string {
  if (value === null) return 'null'
  switch (typeof value) {
    case 'undefined':
      return 'undefined'
    case 'function': {
      const kind = isClass(value) ? 'a class' : 'a function'
      return value.name === '' ? kind : `${kind} (${value.name})`
    }
    case 'object': {
      if (Array.isArray(value)) return `an array (${value.length} items)`
      const proto: unknown = Object.getPrototypeOf(value)
      const ctor = proto === null ? undefined : (proto as Bag).constructor
      if (typeof ctor === 'function' && ctor.name !== 'Object' && ctor.name !== '') return `an instance of ${ctor.name}`
      const keys = Object.keys(value)
      if (keys.length === 0) return 'an empty object'
      return `an object with keys ${keys.slice(0, 8).join(', ')}${keys.length > 8 ? ', …' : ''}`
    }
    case 'string':
      return `a string (${show(value)})`
    default:
      return `a ${typeof value} (${show(value)})`
  }
}

/** One export name an APP spec can select (not a dotted path, not a call). */
const EXPORT_NAME = /^[\p{ID_Start}$_][\p{ID_Continue}$]*$/u

function exportList(ns: Bag): string {
  // Only names the user can write after the colon: Node 26 also lists a
  // CommonJS module's `module.exports` (the default export again), and an ES
  // module may export any string, neither of which a spec can select.
  const names = Object.keys(ns).filter((name) => EXPORT_NAME.test(name))
  return names.length === 0 ? 'it has no exports' : `its exports: ${names.join(', ')}`
}

/** Pick the value to serve from a module namespace: the (dotted) name, else the default export. */
function pick(app: string, spec: AppSpec, ns: Bag): { value: unknown; self: unknown; what: string } {
  if (spec.name === undefined) {
    if (!('default' in ns))
      throw new AppLoadError(
        app,
        `${spec.module} has no default export: name the export to serve (APP=${spec.module}:name); ${exportList(ns)}`,
      )
    return { value: ns.default, self: undefined, what: `the default export of ${spec.module}` }
  }
  const parts = spec.name.split('.')
  const first = parts[0] as string
  let self: unknown = undefined
  let value: unknown
  if (first in ns) value = ns[first]
  // CommonJS: names are properties of module.exports, which Node's static
  // analysis does not always list as exports (module.exports = build()).
  else if (isObjectLike(ns.default) && first in ns.default) value = ns.default[first]
  else throw new AppLoadError(app, `${spec.module} has no export ${show(first)}; ${exportList(ns)}`)
  let path = first
  for (const part of parts.slice(1)) {
    if (!isObjectLike(value) || !(part in value))
      throw new AppLoadError(app, `${spec.module}: ${path} has no property ${show(part)} (${path} is ${describeValue(value)})`)
    self = value
    value = value[part]
    path += `.${part}`
  }
  return { value, self, what: `${spec.module}:${spec.name}` }
}

/** Classify what the module gave into something a worker can serve. */
async function classify(app: string, value: unknown, what: string): Promise<AppTarget> {
  if (isHttpServer(value)) {
    if (value.listening)
      throw new AppLoadError(app, `${what} is an http.Server that is already listening: export it without calling listen()`)
    return { kind: 'server', server: value, description: 'http.Server' }
  }
  if (isObjectLike(value) && isHttpServer(value.server) && hasMethod(value, 'ready')) {
    const server = value.server
    if (server.listening)
      throw new AppLoadError(app, `${what} is a Fastify app that is already listening: export it without calling listen()`)
    try {
      await (value.ready as () => Promise<unknown>)()
    } catch (err) {
      throw new AppLoadError(app, `${what} is a Fastify app that failed to become ready: ${message(err)}`, err)
    }
    return { kind: 'server', server, description: 'Fastify app' }
  }
  if (hasMethod(value, 'callback') && hasMethod(value, 'use')) {
    let handler: unknown
    try {
      handler = (value as { callback: () => unknown }).callback()
    } catch (err) {
      throw new AppLoadError(app, `${what} looks like a Koa app, but its callback() threw: ${message(err)}`, err)
    }
    if (typeof handler !== 'function')
      throw new AppLoadError(
        app,
        `${what} looks like a Koa app, but its callback() returned ${describeValue(handler)} instead of a request handler`,
      )
    return { kind: 'handler', handler: handler as RequestHandler, description: 'Koa app' }
  }
  if (typeof value === 'function') {
    if (isClass(value))
      throw new AppLoadError(app, `${what} is ${describeValue(value)}; expected ${EXPECTED_APP}: export an instance, not the class`)
    const express = hasMethod(value, 'handle') && hasMethod(value, 'use') && hasMethod(value, 'set')
    return { kind: 'handler', handler: value as RequestHandler, description: express ? 'Express app (function)' : 'request handler' }
  }
  if (hasMethod(value, 'fetch'))
    throw new AppLoadError(
      app,
      `${what} is a fetch-style app (it has a fetch(request) method, as Hono apps do); sdserve serves Node request handlers: ` +
        `export getRequestListener(app.fetch) from @hono/node-server instead`,
    )
  throw new AppLoadError(app, `${what} is ${describeValue(value)}; expected ${EXPECTED_APP}`)
}

/**
 * Load the app an APP spec names, from cwd: import the module, pick the
 * export, call it if it is a factory (awaiting what it returns), and classify
 * the value. A malformed spec is a ConfigError; everything else that goes
 * wrong is an AppLoadError whose cause is the original error.
 */
export async function loadApp(spec: string, cwd: string): Promise<AppTarget> {
  const parsed = parseAppSpec(spec)
  const url = resolveAppModule(parsed.module, cwd)
  let ns: Bag
  try {
    ns = (await import(url)) as Bag
  } catch (err) {
    const detail = err instanceof Error ? `${err.name}: ${err.message}${locate(err)}` : `it threw ${show(err)}`
    throw new AppLoadError(spec, `cannot import app module ${fileURLToPath(url)}: ${detail}`, err)
  }
  const picked = pick(spec, parsed, ns)
  let { value, what } = picked
  if (parsed.call) {
    if (typeof value !== 'function')
      throw new AppLoadError(spec, `${what} is ${describeValue(value)}, not a factory function to call`)
    try {
      value = Reflect.apply(value, picked.self, [])
    } catch (err) {
      throw new AppLoadError(spec, `${what}() threw: ${message(err)}`, err)
    }
    what = `${what}()`
  }
  // An async factory's promise, or an exported one. Other thenables are left
  // alone: a Fastify instance is one, and classify() awaits its ready().
  if (value instanceof Promise) {
    try {
      value = await value
    } catch (err) {
      throw new AppLoadError(spec, `${what} rejected: ${message(err)}`, err)
    }
  }
  return classify(spec, value, what)
}

/**
 * Where a syntax error is, when node knows: the stack of a CommonJS syntax
 * error starts with "/path/app.cjs:3" (an ESM one, on node 20, has no location).
 */
function locate(err: Error): string {
  const first = err.stack?.split('\n', 1)[0] ?? ''
  return /^\/.*:\d+$/.test(first) ? ` (at ${first})` : ''
}

/** The stack to show for a load failure: the app's own (where its code threw), not the loader's. */
export function appErrorStack(err: Error): string {
  const cause = err.cause instanceof Error ? err.cause : err
  return cause.stack ?? cause.message
}
