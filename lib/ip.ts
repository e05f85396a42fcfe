/**
 * Whether a string is an IP address, and which: net.isIP's answers, without
 * its cost. net.isIPv6 is one very large regular expression, which V8
 * compiles when it is first used and again when it tiers up: 12-26 ms of CPU
 * in every process that checks one IPv6 address (a worker does at its boot,
 * for the default --forwarded-allow-ips, 127.0.0.1,::1), which is a third
 * of a worker's start. This reads the text once instead. test/ip.ts checks
 * it against net.isIP.
 */
import { isIPv4 } from 'node:net'

const HEX = /^[0-9A-Fa-f]{1,4}$/
/** A zone id as net.isIP accepts it: fe80::1%eth0. */
const ZONE = /^[0-9A-Za-z.:-]+$/

/** The number of 16-bit groups in `part` (`a:b:c`, maybe ending in an IPv4 address), or -1 when malformed. */
function groups(part: string, last: boolean): number {
  if (part === '') return 0
  const fields = part.split(':')
  let n = 0
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!
    if (HEX.test(f)) n++
    // Only the address's last field may be an IPv4 address: two groups.
    else if (last && i === fields.length - 1 && isIPv4(f)) n += 2
    else return -1
  }
  return n
}

/** Whether text is an IPv6 address (with an optional zone id), as net.isIPv6 says. */
export function isIPv6Text(text: string): boolean {
  let address = text
  const pct = text.indexOf('%')
  if (pct !== -1) {
    if (!ZONE.test(text.slice(pct + 1))) return false
    address = text.slice(0, pct)
  }
  const gap = address.indexOf('::')
  if (gap === -1) return groups(address, true) === 8
  // At most one "::", standing for at least one group of zeros.
  if (address.indexOf('::', gap + 1) !== -1) return false
  const head = groups(address.slice(0, gap), false)
  const tail = groups(address.slice(gap + 2), true)
  return head !== -1 && tail !== -1 && head + tail <= 7
}

/** 4, 6, or 0 when text is not an IP address: net.isIP. */
export function ipFamily(text: string): 0 | 4 | 6 {
  if (isIPv4(text)) return 4
  return text.includes(':') && isIPv6Text(text) ? 6 : 0
}
