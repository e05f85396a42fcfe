/**
 * Validation of options from any source (command line, SDSERVE_CMD_ARGS, a
 * config file, serve()), with errors that name each option the way its
 * source spells it: `--workers`, `--workers (in SDSERVE_CMD_ARGS)`,
 * `workers (in /etc/app/sdserve.config.js)`.
 */

import { ConfigError } from '../errors.js'
import { OPTION_KEYS, OPTIONS, VALIDATORS, isOptionKey, type Config } from './options.js'
import { suggest } from './suggest.js'

/** validateOptions() origin for the command line: options are named by their flag (`--workers`). */
export const ORIGIN_COMMAND_LINE = 'command line'
/** validateOptions() origin for SDSERVE_CMD_ARGS: `--workers (in SDSERVE_CMD_ARGS)`. */
export const ORIGIN_ENV = 'SDSERVE_CMD_ARGS'

/** The name of an option as the user wrote it in origin, for error messages. */
export function optionName(key: string, origin: string): string {
  if (origin === ORIGIN_COMMAND_LINE) return key === 'app' ? 'APP' : `--${flagOf(key)}`
  if (origin === ORIGIN_ENV) return `--${flagOf(key)} (in ${ORIGIN_ENV})`
  return `${key} (in ${origin})`
}

function flagOf(key: string): string {
  return OPTIONS.find((o) => o.key === key)?.flag ?? key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

/** A ConfigError whose message is not the "must be ..., got ..." form. */
export function configError(option: string, value: unknown, message: string, cause?: unknown): ConfigError {
  const err = new ConfigError(option, value, '')
  err.message = message
  if (cause !== undefined) err.cause = cause
  return err
}

/**
 * Validate options given as camelCase Config keys. Values may be numbers or,
 * as the command line gives them, strings ("4", "2.5", "022"), converted
 * strictly: "", " 4", "4x", "1e3" and "NaN" are errors. An undefined value
 * is the same as an absent key. Unknown keys are errors.
 *
 * origin says where the options come from, and so how an error names one:
 * ORIGIN_COMMAND_LINE (`--workers`), ORIGIN_ENV (`--workers (in
 * SDSERVE_CMD_ARGS)`), or anything else, typically a config file's path
 * (`workers (in /etc/app/sdserve.config.js)`).
 */
export function validateOptions(input: Record<string, unknown>, origin: string): Partial<Config> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue
    const name = optionName(key, origin)
    if (!isOptionKey(key)) throw unknownOption(key, value, name, origin)
    out[key] = VALIDATORS[key](value, name)
  }
  return out
}

/** The error for a key that is no option, listing the known ones and suggesting the closest. */
function unknownOption(key: string, value: unknown, name: string, origin: string): ConfigError {
  const flags = origin === ORIGIN_COMMAND_LINE || origin === ORIGIN_ENV
  // config names the file the others come from, so a config file cannot set it.
  const known = flags ? OPTION_KEYS : OPTION_KEYS.filter((k) => k !== 'config')
  const err = new ConfigError(name, value, `a known option (${known.join(', ')})`)
  const guess = suggest(key, known)
  if (guess !== undefined) err.message += `; did you mean ${flags ? `--${flagOf(guess)}` : guess}?`
  return err
}
