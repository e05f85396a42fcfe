/**
 * The command line and SDSERVE_CMD_ARGS: flags parsed strictly with
 * util.parseArgs from a table derived from OPTIONS and ACTION_FLAGS, and
 * parseArgs' errors turned into ConfigErrors that name the flag and suggest
 * the one meant.
 */

import { parseArgs, type ParseArgsConfig } from 'node:util'
import { splitCommandLine } from '../cmd-args.js'
import { ConfigError } from '../errors.js'
import { OPTIONS, type Config } from './options.js'
import { closest } from './suggest.js'
import { ORIGIN_ENV, configError, validateOptions } from './validate.js'

/** What sdserve does: serve, or print something and exit. */
export type Action = 'serve' | 'help' | 'version' | 'check-config' | 'print-config'

/** The flags that choose what sdserve does instead of serving. */
export const ACTION_FLAGS = [
  { flag: 'check-config', help: 'validate the configuration, print "config OK: FILE" and exit' },
  { flag: 'print-config', help: 'print the merged configuration as JSON and exit' },
  { flag: 'help', short: 'h', help: 'print this help and exit' },
  { flag: 'version', short: 'v', help: 'print the version and exit' },
] as const

export interface ParsedArgs {
  /** Option values by Config key, as strings (arrays for --bind). */
  options: Record<string, unknown>
  positionals: string[]
  actions: Set<string>
}

type FlagConfig = NonNullable<ParseArgsConfig['options']>[string]

const PARSE_OPTIONS: Record<string, FlagConfig> = Object.fromEntries([
  ...OPTIONS.map((o): [string, FlagConfig] => [
    o.flag,
    o.boolean === true
      ? { type: 'boolean' }
      : { type: 'string', multiple: o.multiple === true, ...(o.short === undefined ? {} : { short: o.short }) },
  ]),
  ...ACTION_FLAGS.map((a): [string, FlagConfig] => [a.flag, { type: 'boolean', ...('short' in a ? { short: a.short } : {}) }]),
])

/** Parse arguments strictly; `where` (e.g. " in SDSERVE_CMD_ARGS") goes into error messages. */
export function parseFlags(args: string[], where: string): ParsedArgs {
  let parsed
  try {
    parsed = parseArgs({ args, options: PARSE_OPTIONS, strict: true, allowPositionals: true })
  } catch (err) {
    throw flagError(err, where)
  }
  const values: Record<string, unknown> = parsed.values
  const options: Record<string, unknown> = {}
  for (const o of OPTIONS) options[o.key] = values[o.flag]
  const actions = new Set<string>(ACTION_FLAGS.filter((a) => values[a.flag] === true).map((a) => a.flag))
  return { options, positionals: parsed.positionals, actions }
}

/** Turn parseArgs' error into a ConfigError naming the flag. */
export function flagError(err: unknown, where: string): unknown {
  const e = err as { code?: unknown; message: string }
  // Node quotes the flag first: "Unknown option '--wrokers'. ...", "Option
  // '-w, --workers <value>' argument missing", "Option '-w' argument is
  // ambiguous. ...", "Option '-h, --help' does not take an argument".
  const quoted = /'(?:-\w, )?(-[^' ]*)/.exec(e.message)
  const unknown = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
  /* c8 ignore next -- with allowPositionals parseArgs raises only these two errors, each quoting the flag */
  if (quoted === null || (!unknown && e.code !== 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE')) return err
  const written = quoted[1] as string
  if (unknown) {
    const guess = written.startsWith('--') ? closest(written.slice(2), Object.keys(PARSE_OPTIONS)) : undefined
    return configError(written, written, `unknown option ${JSON.stringify(written)}${where}${guess === undefined ? '' : ` (did you mean --${guess}?)`}; see sdserve --help`)
  }
  // Name a known short flag by its long form.
  const long = Object.entries(PARSE_OPTIONS).find(([, c]) => `-${c.short ?? ''}` === written)?.[0]
  const flag = long === undefined ? written : `--${long}`
  if (e.message.includes('does not take an argument'))
    return configError(flag, flag, `${flag}${where} takes no value; see sdserve --help`)
  return configError(flag, flag, `${flag}${where} needs a value (to give one that starts with "-", write ${flag}=VALUE); see sdserve --help`)
}

/** The action the command line's action flags choose; --help wins over --version, over --print-config, over --check-config. */
export function actionOf(actions: Set<string>): Action {
  if (actions.has('help')) return 'help'
  if (actions.has('version')) return 'version'
  if (actions.has('print-config')) return 'print-config'
  if (actions.has('check-config')) return 'check-config'
  return 'serve'
}

/** The options in SDSERVE_CMD_ARGS (text), validated; options only, no APP and no action flags. */
export function envOptions(text: string | undefined): Partial<Config> {
  if (text === undefined) return {}
  const parsed = parseFlags(splitCommandLine(text), ` in ${ORIGIN_ENV}`)
  if (parsed.positionals.length > 0)
    throw new ConfigError(ORIGIN_ENV, text, 'options only (APP goes on the command line or in the config file)')
  if (parsed.actions.size > 0)
    throw new ConfigError(ORIGIN_ENV, text, 'options only (--help, --version, --check-config and --print-config go on the command line)')
  return validateOptions(parsed.options, ORIGIN_ENV)
}
