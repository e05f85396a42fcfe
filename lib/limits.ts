/**
 * Limits of the kernel and of systemd's protocol that sdserve checks input
 * against: stated once, here.
 */

/** sun_path holds 108 bytes, the last a NUL: a UNIX socket path (or an abstract @name) has at most 107. */
export const SUN_PATH_MAX = 107

/** sd-daemon's fdname_is_valid(): 1 to 255 printable ASCII characters, no ':' (LISTEN_FDNAMES' separator). */
export function isValidFdName(name: unknown): boolean {
  return typeof name === 'string' && /^[\x20-\x39\x3b-\x7e]{1,255}$/.test(name)
}
