import t from 'tap'
import { formatSeconds, parseTimeSpan } from '../../lib/doctor/time-span.js'

t.test('parseTimeSpan: systemd.time(7) spans in milliseconds', async (t) => {
  const cases: Array<[string, number | undefined]> = [
    ['90', 90_000],
    ['  90  ', 90_000],
    ['1.5', 1500],
    ['.5s', 500],
    ['500ms', 500],
    ['500 msec', 500],
    ['1min 30s', 90_000],
    ['1min30s', 90_000],
    ['1 min 30 s', 90_000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1hr 1sec', 3_601_000],
    ['1d', 86_400_000],
    ['1w', 604_800_000],
    ['1M', 2_629_800_000],
    ['1y', 31_557_600_000],
    ['2000us', 2],
    ['2000µs', 2],
    ['40 seconds', 40_000],
    ['3 minutes', 180_000],
    ['infinity', Infinity],
    ['0', 0],
    ['', undefined],
    ['abc', undefined],
    ['10 parsecs', undefined],
    ['-5s', undefined],
    ['5s-', undefined],
  ]
  for (const [text, ms] of cases) t.equal(parseTimeSpan(text), ms, JSON.stringify(text))
})

t.test('formatSeconds: a span systemd reads back', async (t) => {
  t.equal(formatSeconds(45_000), '45s')
  t.equal(formatSeconds(1500), '1.5s')
  t.equal(formatSeconds(Infinity), 'infinity')
  t.equal(parseTimeSpan(formatSeconds(12_345)), 12_345, 'round trip')
})
