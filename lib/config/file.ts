/**
 * Config files: finding one (-c, else sdserve.config.{js,mjs,json} in the
 * working directory), reading it (.json, or a .js/.mjs/.cjs module whose
 * default export is the options or a function returning them) and
 * validating it. Every problem becomes a ConfigError that names the file
 * and, where it can, the line.
 */

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, realpath, stat } from 'node:fs/promises'
import { extname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ConfigError, show } from '../errors.js'
import type { Config } from './options.js'
import { configError, optionName, validateOptions } from './validate.js'

/** The config files looked for in the working directory, in this order, when -c is not given. */
export const CONFIG_FILE_NAMES = ['sdserve.config.js', 'sdserve.config.mjs', 'sdserve.config.json'] as const

let loads = 0

/** What went wrong with a config file, as a ConfigError naming it. */
function fileError(path: string, why: string, cause?: unknown): ConfigError {
  return configError(`config file ${path}`, path, `config file ${path}: ${why}`, cause)
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : show(err)
}

/** " (at line L:C)" of the first stack frame in the file at real (its real path), or ''. */
function frameIn(err: unknown, real: string): string {
  if (!(err instanceof Error) || err.stack === undefined) return ''
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const at = new RegExp(`(?:${escape(pathToFileURL(real).href)}|${escape(real)})(?:\\?[^:\\s]*)?:(\\d+):(\\d+)`)
  const m = at.exec(err.stack)
  return m === null ? '' : ` (at line ${m[1]}:${m[2]})`
}

/**
 * The line of a syntax error in the file at real: V8 puts "path:line" first
 * in the stack of a CommonJS module's error, but not of an ES module's, so
 * ask `node --check`.
 */
function syntaxErrorLine(err: Error, real: string): string | undefined {
  const lineOf = (text: string): string | undefined =>
    text.startsWith(`${real}:`) ? /^:(\d+)\n/.exec(text.slice(real.length))?.[1] : undefined
  const fromStack = lineOf(String(err.stack))
  if (fromStack !== undefined) return fromStack
  const check = spawnSync(process.execPath, ['--check', real], { encoding: 'utf8', timeout: 10000 })
  return lineOf(check.stderr)
}

/** Import a .js, .mjs or .cjs config; real is its path with symlinks resolved, as stack traces show it. */
export async function importConfig(path: string, real: string): Promise<unknown> {
  let mod: Record<string, unknown>
  // The query makes every load a new module instance, so that a reload sees
  // edits (modules the config file imports are still cached).
  const url = `${pathToFileURL(path).href}?t=${Date.now()}.${++loads}`
  try {
    mod = (await import(url)) as Record<string, unknown>
  } catch (err) {
    if (err instanceof SyntaxError && frameIn(err, real) === '') {
      const line = syntaxErrorLine(err, real)
      throw fileError(path, `syntax error${line === undefined ? ' (in it or in a module it imports)' : ` at line ${line}`}: ${err.message}`, err)
    }
    throw fileError(path, `loading it threw ${errorText(err)}${frameIn(err, real)}`, err)
  }
  if (mod.default === undefined)
    throw fileError(path, 'it has no default export; write `export default { workers: 4, ... }`')
  let value: unknown = mod.default
  if (typeof value === 'function') {
    try {
      value = await (value as () => unknown)()
    } catch (err) {
      throw fileError(path, `its default export, a function, threw ${errorText(err)}${frameIn(err, real)}`, err)
    }
  }
  if (!isPlainObject(value)) {
    const got = typeof value === 'function' ? 'a function' : show(value)
    throw configError(
      `config file ${path}`,
      value,
      `config file ${path}: the default export must be an object of options, or a function (sync or async) returning one, got ${got}`,
    )
  }
  return value
}

/** Read a .json config: a JSON object of options. */
export async function readJsonConfig(path: string): Promise<unknown> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw fileError(path, `cannot read it: ${(err as Error).message}`, err)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw fileError(path, `invalid JSON: ${(err as Error).message}`, err)
  }
  if (!isPlainObject(value)) throw configError(`config file ${path}`, value, `config file ${path}: must hold a JSON object of options, got ${show(value)}`)
  return value
}

/**
 * Load and validate one config file: .json (an object of options), or .js,
 * .mjs, .cjs (a module whose default export is an object of options, or a
 * function, sync or async, returning one). Every load re-reads the file.
 */
export async function loadConfigFile(path: string): Promise<Partial<Config>> {
  const ext = extname(path)
  if (!['.js', '.mjs', '.cjs', '.json'].includes(ext)) throw fileError(path, 'its name must end in .js, .mjs, .cjs or .json')
  let real, kind
  try {
    real = await realpath(path)
    kind = await stat(real)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw fileError(path, 'no such file', err)
    throw fileError(path, `cannot read it: ${(err as Error).message}`, err)
  }
  if (!kind.isFile()) throw fileError(path, 'not a regular file')
  const value = (ext === '.json' ? await readJsonConfig(path) : await importConfig(path, real)) as Record<string, unknown>
  if (value.config !== undefined)
    throw new ConfigError(optionName('config', path), value.config, 'given with -c/--config, not in a config file')
  return validateOptions(value, path)
}

/** The config file to read: -c (resolved against cwd), else the first of CONFIG_FILE_NAMES in cwd, else none. */
export function findConfigFile(named: string | undefined, cwd: string): string | undefined {
  if (named !== undefined) return resolve(cwd, named)
  return CONFIG_FILE_NAMES.map((name) => join(cwd, name)).find((path) => existsSync(path))
}
