/**
 * The version of the systemd on this machine, as `systemctl --version` says
 * ("systemd 252 (252.38-1~deb12u1)"): `sdserve unit` picks Type=notify-reload
 * by it, `sdserve doctor` tells when that is available.
 */
import { execFileSync } from 'node:child_process'

/** The version number on the first line of `systemctl --version`, if it has one. */
export function parseSystemctlVersion(output: string): number | undefined {
  const m = /^systemd ([0-9]+)/.exec(output)
  return m === null ? undefined : Number(m[1])
}

/** The running systemd's version, or undefined without a systemctl that answers. */
export function runningSystemdVersion(systemctl = 'systemctl'): number | undefined {
  try {
    const out = execFileSync(systemctl, ['--version'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] })
    return parseSystemctlVersion(out)
  } catch {
    return undefined
  }
}
