/**
 * loadConfig(): the configuration from every source, merged in order of
 * precedence (later wins): defaults < config file < SDSERVE_CMD_ARGS <
 * command line. Each source is parsed and validated by its own module; this
 * one only decides the order and makes paths absolute.
 */

import { resolve } from 'node:path'
import { ConfigError } from '../errors.js'
import { actionOf, envOptions, parseFlags, type Action } from './argv.js'
import { findConfigFile, loadConfigFile } from './file.js'
import { DEFAULTS, type Config } from './options.js'
import { ORIGIN_COMMAND_LINE, ORIGIN_ENV, configError, validateOptions } from './validate.js'

export interface ConfigSources {
  /** The command-line arguments after `sdserve` (process.argv.slice(2)). */
  argv: string[]
  /** The environment; only SDSERVE_CMD_ARGS is read. */
  env: NodeJS.ProcessEnv
  /** The directory config files are looked for in and relative paths (-c, --pid, --chdir) are resolved against. */
  cwd: string
}

/**
 * The configuration from every source, later winning: DEFAULTS < config
 * file < SDSERVE_CMD_ARGS < command line. A later source's `bind` list
 * replaces an earlier one. Relative `pid` and `chdir` paths are made
 * absolute against sources.cwd; `config` is the absolute path of the file
 * read, if any. Calling it again (on SIGHUP) re-reads the config file.
 *
 * For --help and --version nothing but the command line is parsed, and the
 * config returned is DEFAULTS with an empty app.
 */
export async function loadConfig(sources: ConfigSources): Promise<{ action: Action; config: Config }> {
  const cli = parseFlags(sources.argv, '')
  const action = actionOf(cli.actions)
  if (action === 'help' || action === 'version') return { action, config: { ...DEFAULTS, bind: [], app: '' } }
  if (cli.positionals.length > 1) throw new ConfigError('APP', cli.positionals, 'a single argument (every option goes before or after it)')
  const fromCli = validateOptions({ ...cli.options, app: cli.positionals[0] }, ORIGIN_COMMAND_LINE)
  const fromEnv = envOptions(sources.env[ORIGIN_ENV])
  const file = findConfigFile(fromCli.config ?? fromEnv.config, sources.cwd)
  const fromFile = file === undefined ? {} : await loadConfigFile(file)
  // gunicorn's convention: FORWARDED_ALLOW_IPS is the default of --forwarded-allow-ips.
  const envAllow = sources.env.FORWARDED_ALLOW_IPS
  const fromAllowEnv = envAllow === undefined ? {} : validateOptions({ forwardedAllowIps: envAllow }, 'FORWARDED_ALLOW_IPS')
  const config: Config = { ...DEFAULTS, app: '', ...fromAllowEnv, ...fromFile, ...fromEnv, ...fromCli, config: file }
  config.bind = [...config.bind]
  if (config.pid !== undefined) config.pid = resolve(sources.cwd, config.pid)
  if (config.chdir !== undefined) config.chdir = resolve(sources.cwd, config.chdir)
  if (config.app === '')
    throw configError('APP', undefined, `APP must be given: sdserve [OPTIONS] APP, or app in ${file ?? 'a config file'} (see sdserve --help)`)
  return { action, config }
}
