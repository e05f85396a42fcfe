/**
 * Unit files as systemd reads them (systemd.syntax(7)): [Section] headers,
 * Key=value assignments, comments (# and ;), lines continued with a
 * trailing backslash, repeated keys, and an empty assignment that resets what
 * came before (ExecStart= in a drop-in). Several files make one unit: the
 * unit file, then its drop-ins, as `systemctl cat` prints them.
 */

/** One Key=value, and where it was written. */
export interface Assignment {
  section: string
  key: string
  value: string
  /** The file it came from (a path, or what the caller named the text). */
  file: string
  /** Its first line in that file, from 1. */
  line: number
}

/** A unit: its assignments in the order systemd reads them, and the files they came from. */
export interface Unit {
  files: string[]
  assignments: Assignment[]
}

/** The assignments of one file. A drop-in starts outside any section, as systemd reads each file anew. */
export function parseUnitFile(text: string, file: string): Assignment[] {
  const lines = text.split(/\r?\n/)
  const out: Assignment[] = []
  let section = ''
  for (let i = 0; i < lines.length; i++) {
    const first = i + 1
    let line = (lines[i] as string).trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    // A trailing backslash continues the line; comment lines between the parts are skipped.
    while (line.endsWith('\\') && i + 1 < lines.length) {
      const next = (lines[++i] as string).trim()
      if (next.startsWith('#') || next.startsWith(';')) continue
      line = `${line.slice(0, -1)} ${next}`
    }
    if (line.endsWith('\\')) line = line.slice(0, -1).trimEnd()
    if (line.startsWith('[') && line.endsWith(']')) {
      section = line.slice(1, -1)
      continue
    }
    const eq = line.indexOf('=')
    // systemd ignores such lines with a warning, and so does the doctor.
    if (eq < 0 || section === '') continue
    out.push({ section, key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim(), file, line: first })
  }
  return out
}

/** `systemctl cat` prints each file after a "# /path/to/file" line. */
const FILE_HEADER = /^# (\/\S.*)$/

/**
 * A unit from `systemctl cat NAME`'s output: the unit file and its drop-ins,
 * each after its "# /path" line, with line numbers within each file.
 */
export function parseSystemctlCat(text: string): Unit {
  const lines = text.split(/\r?\n/)
  const unit: Unit = { files: [], assignments: [] }
  let file: string | undefined
  let body: string[] = []
  const flush = (): void => {
    if (file === undefined) return
    // systemctl cat separates the files with an empty line that is not theirs.
    if (body.at(-1) === '') body.pop()
    unit.files.push(file)
    unit.assignments.push(...parseUnitFile(body.join('\n'), file))
  }
  for (const line of lines) {
    const header = FILE_HEADER.exec(line)
    // A comment that looks like a path is a file header only at the start or after a blank line, where systemctl puts them.
    if (header !== null && (file === undefined || body.length === 0 || body.at(-1) === '')) {
      flush()
      file = header[1]
      body = []
    } else body.push(line)
  }
  flush()
  return unit
}

/**
 * The assignments of Section.Key that are in effect: those after the last
 * empty one (which resets a list, or a single value to its default).
 */
export function effective(unit: Unit, section: string, key: string): Assignment[] {
  const all = unit.assignments.filter((a) => a.section === section && a.key === key)
  let reset = -1
  all.forEach((a, i) => {
    if (a.value === '') reset = i
  })
  return all.slice(reset + 1)
}

/** The value of a single-valued setting: the last assignment in effect, or undefined when unset. */
export function setting(unit: Unit, section: string, key: string): Assignment | undefined {
  return effective(unit, section, key).at(-1)
}
