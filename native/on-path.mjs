// Whether a command would run, without running it: an executable file in a
// PATH directory, or the file itself when the name has a slash (as a shell
// finds it). Shared by install.mjs and prebuild.mjs, which name what is
// missing instead of letting a spawn fail.
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

export function onPath(command, env = process.env) {
  const dirs = command.includes('/') ? [''] : (env.PATH ?? '').split(delimiter)
  return dirs.some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}
