/**
 * sdserve's configuration, the stable import path for it. The parts live in
 * lib/config/, one concept per file, each depending only on those above it:
 *
 * - validators.ts: validators of values (integer, seconds, mode, ...)
 * - suggest.ts: "did you mean ...?" for mistyped names
 * - options.ts: the table of every option (flags, help, default,
 *   validator); Config, DEFAULTS, OPTIONS and formatConfig derive from it
 * - validate.ts: validateOptions, and naming options as their source does
 * - argv.ts: the command line and SDSERVE_CMD_ARGS
 * - file.ts: finding, reading and validating a config file
 * - load.ts: loadConfig, merging the sources (later wins): defaults <
 *   config file < SDSERVE_CMD_ARGS < command line
 */

export {
  DEFAULTS,
  MAX_SECONDS,
  MAX_WORKERS,
  OPTIONS,
  OPTION_KEYS,
  formatConfig,
  workersText,
  type Balance,
  type Config,
  type OptionInfo,
} from './config/options.js'
export { ORIGIN_COMMAND_LINE, ORIGIN_ENV, optionName, validateOptions } from './config/validate.js'
export { ACTION_FLAGS, type Action } from './config/argv.js'
export { CONFIG_FILE_NAMES, loadConfigFile } from './config/file.js'
export { loadConfig, type ConfigSources } from './config/load.js'
