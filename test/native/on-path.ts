/**
 * native/on-path.mjs: how the install and prebuild scripts tell whether a
 * command is there before they need it.
 */
import t from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { root, shortTmp } from '../helpers/proc.js'

// A plain .mjs beside the C sources (it runs at `npm install`, before any TypeScript is built).
const { onPath } = (await import(pathToFileURL(join(root, 'native/on-path.mjs')).href)) as {
  onPath: (command: string, env?: NodeJS.ProcessEnv) => boolean
}

t.test('an executable file in a PATH directory, or at the path itself', async (t) => {
  const dir = shortTmp(t)
  const empty = shortTmp(t)
  writeFileSync(join(dir, 'tool'), '#!/bin/sh\n')
  chmodSync(join(dir, 'tool'), 0o755)
  writeFileSync(join(dir, 'plain'), 'not executable\n')
  chmodSync(join(dir, 'plain'), 0o644)

  t.equal(onPath('tool', { PATH: `${empty}:${dir}` }), true, 'found in a later PATH directory')
  t.equal(onPath('tool', { PATH: empty }), false, 'not in the directories PATH names')
  t.equal(onPath('missing', { PATH: `${empty}:${dir}` }), false, 'no such file')
  t.equal(onPath('tool', {}), false, 'no PATH: nothing found')
  t.equal(onPath(join(dir, 'tool'), { PATH: empty }), true, 'a name with a slash is the file itself, PATH aside')
  t.equal(onPath(join(dir, 'missing'), { PATH: dir }), false, 'and is not looked for on PATH')
  t.equal(onPath(process.execPath), true, "process.env by default: this node's own path")
  // Root may read any file but executes only files with an x bit: no case depends on who runs the test.
  t.equal(onPath('plain', { PATH: dir }), false, 'a file without an x bit is not a command')
})
