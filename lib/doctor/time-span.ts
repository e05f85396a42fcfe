/**
 * systemd's time spans, as systemd.time(7) defines them: "90" (seconds when
 * no unit is given, as TimeoutStopSec= and WatchdogSec= read it), "500ms",
 * "1min 30s", "1h30m", "1.5s", "infinity". The doctor compares them with
 * sdserve's timers, so they are parsed to milliseconds.
 */

const MS_PER: ReadonlyMap<string, number> = new Map([
  ...['usec', 'us', 'µs', 'μs'].map((u) => [u, 0.001] as const),
  ...['msec', 'ms'].map((u) => [u, 1] as const),
  ...['seconds', 'second', 'sec', 's'].map((u) => [u, 1000] as const),
  ...['minutes', 'minute', 'min', 'm'].map((u) => [u, 60_000] as const),
  ...['hours', 'hour', 'hr', 'h'].map((u) => [u, 3_600_000] as const),
  ...['days', 'day', 'd'].map((u) => [u, 86_400_000] as const),
  ...['weeks', 'week', 'w'].map((u) => [u, 604_800_000] as const),
  // systemd's month and year are averages: 30.44 and 365.25 days.
  ...['months', 'month', 'M'].map((u) => [u, 2_629_800_000] as const),
  ...['years', 'year', 'y'].map((u) => [u, 31_557_600_000] as const),
])

/** One number and its unit (none: seconds); white space may separate them and the parts. */
const PART = /\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-zµμ]*)/y

/**
 * A time span in milliseconds, Infinity for "infinity", or undefined when the
 * text is not a time span systemd would accept.
 */
export function parseTimeSpan(text: string): number | undefined {
  const span = text.trim()
  if (span === 'infinity') return Infinity
  if (span === '') return undefined
  let total = 0
  PART.lastIndex = 0
  while (PART.lastIndex < span.length) {
    const m = PART.exec(span)
    if (m === null) return undefined
    const unit = m[2] as string
    const perUnit = unit === '' ? 1000 : MS_PER.get(unit)
    if (perUnit === undefined) return undefined
    total += Number(m[1]) * perUnit
  }
  return total
}

/** Milliseconds as a time span systemd reads back: "45s", "1.5s", "infinity". */
export function formatSeconds(ms: number): string {
  if (ms === Infinity) return 'infinity'
  return `${Math.round(ms) / 1000}s`
}
