/**
 * Splitting SDSERVE_CMD_ARGS into words, like gunicorn's GUNICORN_CMD_ARGS.
 *
 * The value is not evaluated by a shell, and this is not one: there is no
 * variable expansion ($HOME stays "$HOME"), no globbing, no command
 * substitution and no comments. Only the quoting rules of sh apply:
 *
 *   - spaces, tabs and newlines separate words;
 *   - inside single quotes every character is literal;
 *   - inside double quotes a backslash escapes `"` and `\` (and is literal
 *     before any other character);
 *   - outside quotes a backslash makes the next character literal, and a
 *     backslash before a newline is removed with the newline;
 *   - quotes can join parts of a word (`--pid="/run/a b.pid"`) and `''`
 *     is an empty word.
 */
import { ConfigError } from './errors.js'

const VARIABLE = 'SDSERVE_CMD_ARGS'
const WHITESPACE = new Set([' ', '\t', '\n', '\r', '\f', '\v'])

/** Split text into words by the rules above; an unterminated quote or a trailing backslash is a ConfigError. */
export function splitCommandLine(text: string): string[] {
  const words: string[] = []
  let word = ''
  let inWord = false
  let i = 0
  const fail = (problem: string): never => {
    throw new ConfigError(VARIABLE, text, `words with shell-style quoting (${problem})`)
  }
  while (i < text.length) {
    const c = text[i] as string
    i++
    if (WHITESPACE.has(c)) {
      if (inWord) words.push(word)
      word = ''
      inWord = false
      continue
    }
    const wasInWord: boolean = inWord
    inWord = true
    if (c === "'") {
      const end = text.indexOf("'", i)
      if (end < 0) fail("a ' quote is not closed")
      word += text.slice(i, end)
      i = end + 1
    } else if (c === '"') {
      for (;;) {
        if (i >= text.length) fail('a " quote is not closed')
        const d = text[i] as string
        i++
        if (d === '"') break
        if (d === '\\' && (text[i] === '"' || text[i] === '\\')) {
          word += text[i] as string
          i++
        } else {
          word += d
        }
      }
    } else if (c === '\\') {
      if (i >= text.length) fail('a backslash at the end escapes nothing')
      const next = text[i] as string
      i++
      if (next === '\n') {
        // A line continuation: the backslash and the newline disappear.
        inWord = wasInWord
      } else {
        word += next
      }
    } else {
      word += c
    }
  }
  if (inWord) words.push(word)
  return words
}
