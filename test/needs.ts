// The helper that installs or skips the tests' real peers: its decisions, without apt-get.
import t from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { needs, onPath } from './helpers/needs.js'
import { shortTmp } from './helpers/proc.js'

t.test('onPath: an executable file in one of the directories', async (t) => {
  const dir = shortTmp(t)
  writeFileSync(join(dir, 'plain'), '')
  writeFileSync(join(dir, 'tool'), '#!/bin/sh\n')
  chmodSync(join(dir, 'tool'), 0o755)
  t.equal(onPath('tool', `/nonexistent::${dir}`), true)
  t.equal(onPath('plain', dir), false, 'not executable')
  t.equal(onPath('tool', '/nonexistent'), false)
})

t.test('not root: a missing command skips, naming its Debian package', async (t) => {
  const path = shortTmp(t)
  const installed: string[] = []
  const install = (pkg: string): void => void installed.push(pkg)
  t.same(needs(['nginx'], { path, root: false, install }), { skip: 'needs nginx (Debian package nginx)' })
  t.same(needs(['ss', 'systemd-socket-activate'], { path, root: false, install }), {
    skip: 'needs ss (Debian package iproute2), systemd-socket-activate (Debian package systemd)',
  })
  t.same(installed, [], 'nothing installed')
})

t.test('root: a missing command is installed, and then runs', async (t) => {
  const path = shortTmp(t)
  const installed: string[] = []
  const install = (pkg: string): void => {
    installed.push(pkg)
    writeFileSync(join(path, 'ss'), '#!/bin/sh\n', { mode: 0o755 })
  }
  t.same(needs(['ss'], { path, root: true, install }), {})
  t.same(installed, ['iproute2'])
  t.same(needs(['ss'], { path, root: true, install }), {}, 'there now')
  t.same(installed, ['iproute2'], 'not installed twice')
})

t.test('root: an install that fails, or leaves the command missing, throws', async (t) => {
  const path = shortTmp(t)
  t.throws(
    () => needs(['curl'], { path, root: true, install: () => { throw new Error('apt-get install curl failed') } }),
    { message: 'apt-get install curl failed' },
  )
  t.throws(() => needs(['curl'], { path, root: true, install: () => undefined }), {
    message: `installed the Debian package curl, but curl is still not in PATH=${path}`,
  })
})
