/**
 * The command lines of ExecStart= and co., as systemd.service(5) reads them:
 * words split at white space, "double" and 'single' quotes, C-style
 * backslash escapes, and % (specifiers) and $ (environment variables) that
 * must be doubled to stand for themselves.
 */

/** Words that need no quotes: nothing systemd would split at or unescape. */
const PLAIN = /^[A-Za-z0-9_@+=:,./-]+$/

/** One word of a command line, quoted so that systemd passes it on unchanged. */
export function quoteWord(word: string): string {
  const literal = word.replaceAll('%', '%%').replaceAll('$', '$$$$')
  if (PLAIN.test(word)) return literal
  const escaped = literal.replace(/[\\"\n\t]/g, (c) => ({ '\\': '\\\\', '"': '\\"', '\n': '\\n', '\t': '\\t' })[c] as string)
  return `"${escaped}"`
}

/** A command line of words, each quoted as needed. */
export function quoteCommand(words: readonly string[]): string {
  return words.map(quoteWord).join(' ')
}

const ESCAPES: Readonly<Record<string, string>> = { n: '\n', t: '\t', r: '\r', a: '\x07', b: '\b', f: '\f', v: '\v', s: ' ' }

/**
 * The words of a command line (its value after ExecStart=), unquoted and
 * unescaped, with its prefixes (@, -, :, +, !) taken off the first. Environment
 * variables stay as written ($VAR): only systemd knows their values.
 */
export function splitCommand(line: string): string[] {
  const words: string[] = []
  let word: string | undefined
  let quote: string | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string
    if (quote === undefined && /\s/.test(c)) {
      if (word !== undefined) words.push(word)
      word = undefined
      continue
    }
    word ??= ''
    if (c === '\\' && i + 1 < line.length) {
      const e = line[++i] as string
      word += ESCAPES[e] ?? e
    } else if (quote === undefined && (c === '"' || c === "'")) quote = c
    else if (c === quote) quote = undefined
    else word += c
  }
  if (word !== undefined) words.push(word)
  const unescaped = words.map((w) => w.replaceAll('%%', '%').replaceAll('$$', '$'))
  const first = unescaped[0]
  if (first === undefined) return unescaped
  const prefix = (/^[@\-:+!]*/.exec(first) as RegExpExecArray)[0]
  unescaped[0] = first.slice(prefix.length)
  // With @, the second word is argv[0] and not an argument.
  if (prefix.includes('@')) unescaped.splice(1, 1)
  return unescaped
}
