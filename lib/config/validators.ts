/**
 * Validators of option values, one per kind of value (integer, seconds,
 * octal mode, bind specs, ...). Each takes the value as a source gives it (a
 * config file's number or the command line's string) and the option's name
 * for error messages, and returns the value converted or throws a
 * ConfigError. They know nothing of particular options: lib/config/options.ts
 * gives each option its validator.
 */

import { parseBind } from '../binds.js'
import { ConfigError } from '../errors.js'
import { AllowList } from '../http/proxy.js'

/** Converts and checks one option's value; name is the option as the user wrote it, for errors. */
export type Validator<T> = (value: unknown, name: string) => T

const INTEGER = /^[0-9]+$/
const DECIMAL = /^[0-9]+(?:\.[0-9]+)?$/
const OCTAL = /^(?:0o)?([0-7]{1,4})$/i
const SIZE = /^([0-9]+(?:\.[0-9]+)?)([KMGT]?)$/i
const SIZE_UNITS: Record<string, number> = { '': 2 ** 20, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }

/** An integer from min to max; strings of digits only ("08" is 8; "", " 4", "1e3" are errors). */
export function integer(min: number, max: number, expected: string): Validator<number> {
  return (value, name) => {
    const n = typeof value === 'string' && INTEGER.test(value) ? Number(value) : value
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) throw new ConfigError(name, value, expected)
    return n
  }
}

/**
 * A size in bytes, at most max: a number with a suffix K, M, G or T, each
 * 1024 times the one before (as systemd's MemoryMax=): "512M", "1.5G". A
 * bare number is megabytes (a limit of 512 bytes is never what was meant).
 */
export function size(max: number, expected: string): Validator<number> {
  return (value, name) => {
    const m = SIZE.exec(String(value))
    const n = (typeof value === 'string' || typeof value === 'number') && m !== null
      ? Math.round(Number(m[1]) * (SIZE_UNITS[(m[2] as string).toUpperCase()] as number))
      : NaN
    if (!Number.isSafeInteger(n) || n > max) throw new ConfigError(name, value, expected)
    return n
  }
}

/** Bytes as --print-config and the log show them: the largest unit that divides them, "512M". */
export function formatSize(bytes: number): string {
  for (const unit of ['T', 'G', 'M', 'K'] as const) {
    const per = SIZE_UNITS[unit] as number
    if (bytes >= per && bytes % per === 0) return `${bytes / per}${unit}`
  }
  return String(bytes)
}

/** A number of seconds from 0 to max; strings like "30" or "2.5" (not ".5", "5." or "1e3"). */
export function seconds(max: number, expected: string, positive = false): Validator<number> {
  return (value, name) => {
    const n = typeof value === 'string' && DECIMAL.test(value) ? Number(value) : value
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || (positive && n === 0) || n > max) throw new ConfigError(name, value, expected)
    return n
  }
}

/** A string with something other than white space in it. */
export function nonEmptyString(expected: string): Validator<string> {
  return (value, name) => {
    if (typeof value !== 'string' || value.trim() === '') throw new ConfigError(name, value, expected)
    return value
  }
}

/** One of choices; the message lists them: `"a", "b" or "c"`. */
export function oneOf<T extends string>(choices: readonly T[]): Validator<T> {
  return (value, name) => {
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value))
      throw new ConfigError(name, value, choices.map((c) => `"${c}"`).join(', ').replace(/, ([^,]*)$/, ' or $1'))
    return value as T
  }
}

/** A file mode from 0 to 0o777: a number, or an octal string ("022", "0660", "0o660"). */
export const mode: Validator<number> = (value, name) => {
  let n: unknown = value
  if (typeof value === 'string') {
    const m = OCTAL.exec(value)
    n = m === null ? NaN : parseInt(m[1] as string, 8)
  }
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0o777)
    throw new ConfigError(name, value, 'an octal mode from 0 to 777: a string like "022", "0660" or "0o660", or a number like 0o660')
  return n
}

/** A bind spec or an array of them, each checked by parseBind; one spec becomes a list of one. */
export const binds: Validator<string[]> = (value, name) => {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list)) throw new ConfigError(name, value, 'a bind spec or an array of bind specs')
  return list.map((spec: unknown) => {
    parseBind(spec, name)
    return spec as string
  })
}

/** One address sdserve binds itself: HOST:PORT or unix:/PATH (not an inherited fd or systemd socket). */
export const ownBind: Validator<string> = (value, name) => {
  const spec = parseBind(value, name)
  if (spec.kind !== 'tcp' && spec.kind !== 'unix') throw new ConfigError(name, value, 'HOST:PORT, [IPV6]:PORT or unix:/PATH')
  return spec.text
}

/** An allow list of peers, checked by AllowList; kept as the text the user wrote. */
export const allowList: Validator<string> = (value, name) => {
  if (typeof value !== 'string') throw new ConfigError(name, value, "a comma-separated list of addresses, CIDR ranges, unix, or '*'")
  AllowList.parse(value, name)
  return value
}

/** true or false, or the strings "true" and "false". */
export const bool: Validator<boolean> = (value, name) => {
  if (value === true || value === 'true') return true
  if (value === false || value === 'false') return false
  throw new ConfigError(name, value, 'true or false')
}
