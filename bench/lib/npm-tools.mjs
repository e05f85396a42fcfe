// npm packages the bench needs but package.json does not list, installed
// with `npm install --no-save` when missing:
// - node-unix-socket, for the SO_REUSEPORT baseline: not a devDependency, since
//   it lists platform packages the registry does not have, which makes
//   `npm ci` refuse the lock file;
// - pm2, for the PM2 cluster-mode configuration: a large tree no test needs.
// All of them in one `npm install`: npm prunes extraneous packages, so
// installing one alone would remove another installed earlier.
import { spawnSync } from 'node:child_process'
import { ROOT } from './servers.mjs'
import { PM2_VERSION } from './pm2.mjs'

const TOOLS = [
  { name: 'node-unix-socket', version: '0.2.7', why: 'the SO_REUSEPORT baseline', required: true },
  { name: 'pm2', version: PM2_VERSION, why: 'the PM2 cluster-mode configuration', required: false },
]

// In a child: this process's module resolution remembers a package it did not find.
const resolves = (name) => spawnSync(process.execPath, ['-e', `require.resolve(${JSON.stringify(name)})`], { cwd: ROOT, stdio: 'ignore' }).status === 0

/** Install the missing ones; exit when a required one cannot be installed. `wanted`: names to check (default all). */
export function ensureNpmTools(log, wanted = TOOLS.map((t) => t.name)) {
  const tools = TOOLS.filter((t) => wanted.includes(t.name))
  const missing = tools.filter((t) => !resolves(t.name))
  if (missing.length === 0) return
  log(`bench: installing ${missing.map((t) => `${t.name}@${t.version} (${t.why})`).join(', ')} with npm install --no-save`)
  // Every tool, present or not: see above.
  const specs = TOOLS.map((t) => `${t.name}@${t.version}`)
  spawnSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', ...specs], { cwd: ROOT, stdio: 'inherit' })
  for (const t of missing) {
    if (resolves(t.name)) continue
    log(`bench: ${t.name} could not be installed: run \`npm install --no-save ${specs.join(' ')}\``)
    if (t.required) process.exit(1)
  }
}
