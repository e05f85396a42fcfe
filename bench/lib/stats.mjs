// Small statistics and formatting helpers.

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return undefined
  const mid = v.length >> 1
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** { median, min, max, n } of the finite numbers in xs (undefined fields when empty). */
export function summary(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x))
  if (v.length === 0) return { median: undefined, min: undefined, max: undefined, n: 0 }
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length }
}

/** 123456 -> "123.5k"; 950 -> "950" */
export function fmtRps(x) {
  if (x === undefined) return 'n/a'
  return x >= 1000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0)
}

export function fmtNum(x, digits = 2) {
  return x === undefined ? 'n/a' : x.toFixed(digits)
}

export function fmtPct(x, digits = 1) {
  return x === undefined ? 'n/a' : `${(x * 100).toFixed(digits)}%`
}

/** "median [min-max]" with a formatter; a single value when n = 1. */
export function fmtRange(s, f = fmtRps) {
  if (s === undefined || s.median === undefined) return 'n/a'
  return s.n > 1 ? `${f(s.median)} [${f(s.min)}-${f(s.max)}]` : f(s.median)
}
