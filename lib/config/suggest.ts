/**
 * Suggestions for mistyped option names ("did you mean --workers?"): the
 * known name at most two edits away, or a flag's camelCase form. Plain
 * string work with no knowledge of the options, so that the command line
 * (flags) and config files (keys) share it.
 */

/** The candidate a mistyped word probably meant: at most two edits away, ignoring case. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = 3
  for (const candidate of candidates) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/** The known key a mistyped one probably meant: its camelCase form (graceful-timeout), or the closest. */
export function suggest(key: string, known: readonly string[]): string | undefined {
  const camel = key.replace(/[-_]+([a-z])/gi, (_, c: string) => c.toUpperCase())
  return known.includes(camel) ? camel : closest(key, known)
}

/** Levenshtein distance: the fewest insertions, deletions and substitutions turning a into b. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row.push(Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost))
    }
    prev = row
  }
  return prev[b.length] as number
}
