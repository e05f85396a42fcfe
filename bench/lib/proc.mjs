// Process bookkeeping for the benchmark: every process it starts is recorded
// here and killed (its whole process group) at the end, on Ctrl-C and on
// errors. Also /proc readers: process trees, VmRSS, CPU time.
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** Every process group leader we started that may still run. */
const live = new Set()

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal)
    return true
  } catch {
    return false
  }
}

/** Kill everything still registered (SIGKILL, whole groups). Synchronous: safe in 'exit' handlers. */
export function killAll() {
  for (const child of live) killGroup(child.pid, 'SIGKILL')
  live.clear()
}

let installed = false
/** Kill every registered process on exit, Ctrl-C, SIGTERM and uncaught errors. */
export function installCleanup(log = console.error) {
  if (installed) return
  installed = true
  process.on('exit', killAll)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      log(`\nbench: ${signal}: killing ${live.size} process group(s) and exiting`)
      killAll()
      process.exit(130)
    })
  }
  process.on('uncaughtException', (err) => {
    log(`bench: ${err.stack ?? err}`)
    killAll()
    process.exit(1)
  })
  process.on('unhandledRejection', (err) => {
    log(`bench: ${err?.stack ?? err}`)
    killAll()
    process.exit(1)
  })
}

/**
 * Start a process in its own process group (so that it and every child it
 * forks can be killed together), with stdout and stderr collected line by
 * line. Returns the ChildProcess with extra fields:
 *   lines: every output line so far ({ t: hrtime ns, stream, text })
 *   exited: promise of { code, signal }
 *   waitLines(re, count, timeoutMs): resolves with the matching lines
 * stdin: 'ignore' (default) or 'pipe' (kept open, never written: the child
 * sees EOF when we are gone).
 */
export function start(cmd, args, { env = process.env, cwd, onLine, stdin = 'ignore' } = {}) {
  const child = spawn(cmd, args, { detached: true, stdio: [stdin, 'pipe', 'pipe'], env, cwd })
  live.add(child)
  child.lines = []
  const waiters = new Set()
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      // The group may outlive its leader (orphaned workers): keep it registered until stop() reaps it.
      resolve({ code, signal })
      for (const w of waiters) w.check()
    })
  })
  child.once('error', (err) => {
    child.spawnError = err
    for (const w of waiters) w.check()
  })
  for (const stream of ['stdout', 'stderr']) {
    let buf = ''
    child[stream].setEncoding('utf8')
    child[stream].on('data', (chunk) => {
      const t = process.hrtime.bigint()
      buf += chunk
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        child.lines.push({ t, stream, text })
        if (child.lines.length > 5000) child.lines.splice(0, 1000)
        onLine?.(text, stream, t)
        for (const w of waiters) w.check()
      }
    })
  }
  child.output = (n = 30) =>
    child.lines
      .slice(-n)
      .map((l) => l.text)
      .join('\n')
  child.waitLines = (re, count = 1, timeoutMs = 20000) =>
    new Promise((resolve, reject) => {
      const w = {
        check() {
          const found = child.lines.filter((l) => re.test(l.text))
          if (found.length >= count) {
            done()
            resolve(found)
          } else if (child.spawnError !== undefined || child.exitCode !== null || child.signalCode !== null) {
            done()
            reject(new Error(`${cmd} exited (${child.exitCode ?? child.signalCode ?? child.spawnError?.message}) before printing ${re}:\n${child.output()}`))
          }
        },
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`${cmd}: no ${count} line(s) matching ${re} within ${timeoutMs} ms:\n${child.output()}`))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(w)
      }
      waiters.add(w)
      w.check()
    })
  return child
}

/**
 * Register a process we did not spawn ourselves (a daemon that a command we
 * ran left behind, PM2's God daemon) so that killAll() and stop() treat its
 * process group like one of ours. It must lead its own group.
 */
export function adopt(pid) {
  const handle = { pid, lines: [], exitCode: null, signalCode: null }
  live.add(handle)
  return handle
}

/** Does the process group still have a member (zombies count until reaped)? */
function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0)
  } catch {
    return false
  }
  // kill(0) succeeds on zombies; look for a member that is not one.
  return pidsOfGroup(pgid).some((pid) => stat(pid)?.state !== 'Z')
}

/**
 * Stop a process started with start(): `signal` to its group, then SIGKILL
 * to the group after graceMs; waits until no member is left (bounded).
 */
export async function stop(child, { signal = 'SIGTERM', graceMs = 5000 } = {}) {
  if (child === undefined) return
  killGroup(child.pid, signal)
  const deadline = Date.now() + graceMs
  while (groupAlive(child.pid) && Date.now() < deadline) await sleep(20)
  if (groupAlive(child.pid)) killGroup(child.pid, 'SIGKILL')
  const hard = Date.now() + 3000
  while (groupAlive(child.pid) && Date.now() < hard) await sleep(20)
  live.delete(child)
}

/** Parse /proc/PID/stat: { pid, state, ppid, pgrp, ticks (utime + stime) }. */
export function stat(pid) {
  let text
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // comm may hold spaces and parentheses: the fields start after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return { pid, state: rest[0], ppid: Number(rest[1]), pgrp: Number(rest[2]), ticks: Number(rest[11]) + Number(rest[12]) }
}

function allStats() {
  const out = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const s = stat(Number(name))
    if (s !== undefined) out.push(s)
  }
  return out
}

function pidsOfGroup(pgid) {
  return allStats()
    .filter((s) => s.pgrp === pgid)
    .map((s) => s.pid)
}

/** The process and its live descendants: [{ pid, ppid, depth }], the root first. */
export function tree(rootPid) {
  const stats = allStats().filter((s) => s.state !== 'Z')
  const out = []
  const walk = (pid, depth) => {
    out.push({ pid, depth })
    for (const s of stats) if (s.ppid === pid) walk(s.pid, depth + 1)
  }
  if (stats.some((s) => s.pid === rootPid)) walk(rootPid, 0)
  return out
}

/** VmRSS of a process in MiB (undefined when it is gone). */
export function rssMiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? undefined : Number(m[1]) / 1024
  } catch {
    return undefined
  }
}

/** RSS of a server: { master: MiB, workers: [MiB...] } (the root is the master/parent; its children the workers). */
export function rssOfServer(rootPid) {
  const t = tree(rootPid)
  const master = rssMiB(rootPid)
  const workers = t.filter((p) => p.depth === 1).map((p) => rssMiB(p.pid)).filter((x) => x !== undefined)
  return { master, workers }
}

export const CLK_TCK = 100

/**
 * CPU time the whole machine spent busy so far, in seconds, from /proc/stat:
 * everything but idle and iowait (steal included: another tenant of the
 * host ran). Without IRQ time accounting, the irq and softirq time spent on
 * loopback traffic is also charged to the processes that were running, so
 * it counts here as in their /proc/PID/stat.
 */
export function machineBusy() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const [user, nice, system, , , irq, softirq, steal] = f
  return (user + nice + system + irq + softirq + (steal ?? 0)) / CLK_TCK
}

/** CPU seconds used so far by each process of a tree: Map pid -> seconds. */
export function cpuOfTree(rootPid) {
  const out = new Map()
  for (const { pid } of tree(rootPid)) {
    const s = stat(pid)
    if (s !== undefined) out.set(pid, s.ticks / CLK_TCK)
  }
  return out
}

/** A TCP port on 127.0.0.1 that nobody listens on, below the ephemeral range wrk's connections use. */
export async function freePort() {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000)
    const ok = await new Promise((resolve) => {
      const s = createServer()
      s.once('error', () => resolve(false))
      s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)))
    })
    if (ok) return port
  }
  throw new Error('no free port on 127.0.0.1 in 20000-31999')
}
