import { isIP } from 'node:net'
import t from 'tap'
import { ipFamily, isIPv6Text } from '../lib/ip.js'

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const FIXED = [
  '1:2:3:4:5:6:7::', '::1:2:3:4:5:6:7', '1::2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8', '::', '::1', '1::',
  '::ffff:1.2.3.4', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3.4', '1.2.3.4::', '1.2.3.4::1',
  'fe80::1%eth0', 'fe80::1%', '::01.2.3.4', '1:2:3:4:5::1.2.3.4', '00000::1', '0000::1', ':1::2', '1:::2',
  '1::2::3', '::1%a:b.c-d_e', '1.2.3.4%x', '1:2:3:4:5:6:7:8%x', '::%1', 'FFFF::1', 'g::1', ':', ':::', '',
  '127.0.0.1', '256.0.0.1', '1.2.3', '01.2.3.4', ' ::1', '::1 ', '[::1]', '::1:', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:',
]

t.test('agrees with net.isIP on chosen cases', async (t) => {
  for (const s of FIXED) t.equal(ipFamily(s), isIP(s), JSON.stringify(s))
})

t.test('agrees with net.isIP on generated strings', async (t) => {
  const next = random(20261202)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!
  const PIECES = ['', '0', '1', 'f', 'ff', 'abc', 'FFFF', '12345', 'g', '1.2.3.4', '255.255.255.255', '1.2.3', '%eth0', '%']
  let checked = 0
  let v6 = 0
  for (let i = 0; i < 20000; i++) {
    // Groups joined by ':' with a '::' here and there: mostly near-valid addresses.
    const n = 1 + Math.floor(next() * 9)
    let s = ''
    for (let k = 0; k < n; k++) s += (k === 0 ? '' : next() < 0.12 ? '::' : ':') + pick(PIECES)
    if (next() < 0.1) s = `::${s}`
    if (next() < 0.1) s += '::'
    const family = isIP(s)
    if (family === 6) v6++
    if (ipFamily(s) !== family) t.fail(`${JSON.stringify(s)}: ${ipFamily(s)}, net.isIP ${family}`)
    checked++
  }
  t.equal(checked, 20000)
  t.ok(v6 > 500, `enough of them are addresses (${v6})`)
})

t.test('isIPv6Text is net.isIPv6', async (t) => {
  t.equal(isIPv6Text('::1'), true)
  t.equal(isIPv6Text('1.2.3.4'), false)
  t.equal(isIPv6Text('fe80::1%eth0'), true)
})
