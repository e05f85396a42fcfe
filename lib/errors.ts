import { getSystemErrorMap } from 'node:util'

/** Stable error codes; the README's "Errors" table documents each one. */
export const ErrorCode = {
  /** A configuration value (CLI flag, config file, SDSERVE_CMD_ARGS, API option) is invalid. */
  CONFIG: 'SDSERVE_ERR_CONFIG',
  /** An argument to a library function is invalid. */
  INVALID_ARG: 'SDSERVE_ERR_INVALID_ARG',
  /** The socket-activation environment (LISTEN_*) is malformed or names unusable fds. */
  LISTEN_FDS: 'SDSERVE_ERR_LISTEN_FDS',
  /** An sd_notify message or the NOTIFY_SOCKET address is invalid. */
  NOTIFY: 'SDSERVE_ERR_NOTIFY',
  /** The native addon could not be loaded. */
  NATIVE: 'SDSERVE_ERR_NATIVE',
  /** The application module failed to load (exit code 4). */
  APP_LOAD: 'SDSERVE_ERR_APP_LOAD',
  /** A worker failed to boot (exit code 3). */
  WORKER_BOOT: 'SDSERVE_ERR_WORKER_BOOT',
  /** `sdserve ctl` could not get an answer from the control socket, or the master refused the command. */
  CTL: 'SDSERVE_ERR_CTL',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/** The base class of every error sdserve raises on purpose. */
export class SdserveError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** Show a received value in a message: strings quoted, everything else inspected briefly. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'bigint') return `${value}n`
  if (value === undefined || value === null || typeof value !== 'object') return String(value)
  try {
    return JSON.stringify(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

/** A bad option value: names the option and echoes what was received. */
export class ConfigError extends SdserveError {
  readonly option: string
  readonly value: unknown
  constructor(option: string, value: unknown, expected: string) {
    super(ErrorCode.CONFIG, `${option} must be ${expected}, got ${show(value)}`)
    this.option = option
    this.value = value
  }
}

/** `sdserve ctl`: the control socket could not be reached or did not answer. */
export class CtlError extends SdserveError {
  constructor(message: string) {
    super(ErrorCode.CTL, message)
  }
}

/** A bad argument to a library function. */
export class InvalidArgumentError extends SdserveError {
  readonly argument: string
  constructor(argument: string, value: unknown, expected: string) {
    super(ErrorCode.INVALID_ARG, `${argument} must be ${expected}, got ${show(value)}`)
    this.argument = argument
  }
}

/** A malformed LISTEN_* environment: names the variable and its value. */
export class ActivationError extends SdserveError {
  readonly variable: string
  readonly value: string | undefined
  constructor(variable: string, value: string | undefined, problem: string) {
    super(ErrorCode.LISTEN_FDS, `${variable}=${value ?? ''}: ${problem}`)
    this.variable = variable
    this.value = value
  }
}

export class NotifyError extends SdserveError {
  constructor(message: string) {
    super(ErrorCode.NOTIFY, message)
  }
}

export class NativeLoadError extends SdserveError {
  constructor(message: string, cause: unknown) {
    super(ErrorCode.NATIVE, message, { cause })
  }
}

/** The application module could not be loaded or is not something sdserve can serve (exit code 4). */
export class AppLoadError extends SdserveError {
  readonly app: string
  constructor(app: string, message: string, cause?: unknown) {
    super(ErrorCode.APP_LOAD, message, { cause })
    this.app = app
  }
}

/** A worker could not boot: it exited or timed out before listening (exit code 3). */
export class WorkerBootError extends SdserveError {
  constructor(message: string) {
    super(ErrorCode.WORKER_BOOT, message)
  }
}

/** Process exit codes of the sdserve command. */
export const ExitCode = {
  OK: 0,
  /** An unexpected error in the master. */
  FAILURE: 1,
  /** Bad configuration or usage; nothing was started. */
  CONFIG: 2,
  /** A worker failed to boot (gunicorn's WORKER_BOOT_ERROR). */
  WORKER_BOOT: 3,
  /** The app failed to load (gunicorn's APP_LOAD_ERROR). */
  APP_LOAD: 4,
} as const

/** A node-style system error, as `fs` and `net` raise them. */
export interface SystemError extends Error {
  errno: number
  code: string
  syscall: string
  address?: string
  port?: number
  path?: string
}

/**
 * Build an error that reads like node's own from a negative errno:
 * `bind EADDRINUSE: address already in use 127.0.0.1:8080`.
 */
export function systemError(
  syscall: string,
  negErrno: number,
  where: { address?: string; port?: number; path?: string } = {},
): SystemError {
  const entry = getSystemErrorMap().get(negErrno)
  /* c8 ignore next -- every errno the kernel returns is in libuv's map; the fallback is for safety */
  const [code, description] = entry ?? [`E${-negErrno}`, 'unknown error']
  let detail = ''
  if (where.path !== undefined) detail = ` ${where.path}`
  else if (where.address !== undefined)
    detail = ` ${where.address}${where.port === undefined ? '' : `:${where.port}`}`
  const err = new Error(`${syscall} ${code}: ${description}${detail}`) as SystemError
  err.errno = negErrno
  err.code = code
  err.syscall = syscall
  if (where.address !== undefined) err.address = where.address
  if (where.port !== undefined) err.port = where.port
  if (where.path !== undefined) err.path = where.path
  return err
}
