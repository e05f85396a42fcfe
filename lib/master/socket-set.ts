/**
 * Every listening socket the master holds: the binds (systemd's, stored in
 * its fd store, handed over by an old master, or opened here) and, with
 * --balance reuse-port, one more SO_REUSEPORT socket per worker slot and TCP
 * listener.
 *
 * Invariants:
 * - a socket systemd gave us is never closed or unlinked;
 * - every socket is held for the master's whole life, so a worker exiting
 *   (crash, reload, recycle) never drops a connection the kernel queued;
 * - slot sockets are never closed while the master runs (closing a member
 *   of a reuse-port group resets the connections queued on it): slot 1
 *   serves the sockets of slots that have no worker any more (after TTOU);
 * - sockets are named for the fd store and a binary upgrade the same way,
 *   so either path gives a new master the same sockets back.
 */
import { closeSync } from 'node:fs'
import { inheritedSockets, type InheritedSocket } from '../activation.js'
import { fdStoreMax, isStoredName, storedName } from '../fd-store.js'
import { resolveOwner } from '../identity.js'
import { closeListeners, openListeners, openReusePortSocket, type Listener } from '../listeners.js'
import type { Logger } from '../logger.js'
import type { Config } from '../config.js'
import type { HandedSocket } from '../upgrade.js'

/** LISTEN_FDNAMES of the reuse-port slot sockets an old master hands over: sdserve-slot<slot>-<listener index>. */
const SLOT_NAME = /^sdserve-slot(\d+)-(\d+)$/

/** systemd's fd store, as the socket set uses it (FDSTORE=1, FDSTOREREMOVE=1). */
export interface FdStore {
  readonly enabled: boolean
  add(fd: number, name: string): void
  remove(name: string): void
}

/** A socket as a worker gets it: its fd in the master, its name and how logs write it. */
export interface WorkerSocket {
  fd: number
  name: string
  text: string
}

export class SocketSet {
  listeners: Listener[] = []
  /** reuse-port mode: per slot, one SO_REUSEPORT socket per TCP listener (by listener index). */
  private readonly slots = new Map<number, Map<number, number>>()

  constructor(
    private readonly log: Logger,
    private readonly store: FdStore,
  ) {}

  /** How the log lists them: `127.0.0.1:8000, unix:/run/app.sock`. */
  get text(): string {
    return this.listeners.map((l) => l.text).join(', ')
  }

  /** Per-slot sockets exist: a leaving slot's clients need a hand-over, not just a drain. */
  get hasSlots(): boolean {
    return this.slots.size > 0
  }

  /**
   * Open (or adopt) every bind; sort out the fd store and an old master's
   * slot sockets. owned: inherited fds an old master created (binary upgrade).
   */
  async open(config: Config, owned: Set<number> | undefined): Promise<void> {
    const inherited = inheritedSockets()
    const sockets = inherited.filter((s) => !SLOT_NAME.test(s.name))
    this.listeners = await openListeners(config.bind, sockets, {
      backlog: config.backlog,
      reusePort: config.balance === 'reuse-port',
      unixSocketMode: config.unixSocketMode,
      unixSocketOwner: config.unixSocketOwner === undefined ? undefined : resolveOwner(config.unixSocketOwner),
      warn: (m) => this.log.warn(m),
      owned,
      stored: (s) => isStoredName(s.name),
    })
    this.dropUnusedStored(sockets)
    this.storeOwn(sockets)
    this.adoptSlots(inherited.filter((s) => SLOT_NAME.test(s.name)))
    if (config.balance === 'reuse-port' && !this.listeners.some((l) => l.reusePort === true))
      this.log.warn('balance reuse-port applies to TCP binds sdserve creates; every socket here is shared')
  }

  /** Stored sockets (fd store or an old master's) that no bind uses any more: out of the store, closed. */
  private dropUnusedStored(inherited: InheritedSocket[]): void {
    for (const s of inherited) {
      if (!isStoredName(s.name) || this.listeners.some((l) => l.fd === s.fd)) continue
      this.log.info(`stored socket ${s.text} is not in --bind any more: closing it`)
      this.store.remove(s.name)
      closeSync(s.fd)
    }
  }

  /**
   * With systemd's fd store ($FDSTORE, systemd >= 254), give it the sockets we
   * created, so the next start gets them back with their queued connections.
   * Sockets that came back from the store, or from an old master (which gave
   * them the same names, and stored them if it could), are there already.
   */
  private storeOwn(inherited: InheritedSocket[]): void {
    if (fdStoreMax() === 0 || !this.store.enabled) return
    for (const l of this.listeners) {
      const from = inherited.find((s) => s.fd === l.fd)
      if (from !== undefined && isStoredName(from.name)) {
        l.stored = true
        continue
      }
      if (!l.owned) continue
      const name = storedName(l.name)
      if (name === undefined) {
        this.log.warn(`${l.text}: its name cannot be an FDNAME (255 printable ASCII characters at most); not kept in systemd's fd store`)
        continue
      }
      this.store.add(l.fd, name)
      l.stored = true
    }
    const stored = this.listeners.filter((l) => l.stored === true).length
    if (stored > 0) this.log.info(`${stored} socket(s) kept in systemd's fd store across restarts`)
  }

  /** reuse-port slot sockets handed over by an old master: the same slots serve them here. */
  private adoptSlots(slots: InheritedSocket[]): void {
    for (const s of slots) {
      const [, slot, index] = SLOT_NAME.exec(s.name)!.map(Number) as [number, number, number]
      const l = this.listeners[index]
      if (l?.reusePort === true && l.tcp !== undefined && s.text === l.text) this.slotMap(slot).set(index, s.fd)
      else {
        this.log.warn(`the old master's reuse-port socket ${s.text} (slot ${slot}) has no listener here: closing it`)
        closeSync(s.fd)
      }
    }
  }

  private slotMap(slot: number): Map<number, number> {
    let map = this.slots.get(slot)
    if (map === undefined) this.slots.set(slot, (map = new Map<number, number>()))
    return map
  }

  /** The socket of slot id for a listener: slot 1 uses the listener itself, others get their own. */
  private slotSocket(id: number, index: number, l: Listener, backlog: number): number {
    if (l.reusePort !== true || id === 1) return l.fd
    const map = this.slotMap(id)
    let fd = map.get(index)
    if (fd === undefined) map.set(index, (fd = openReusePortSocket(l, backlog)))
    return fd
  }

  /** What the worker in slot id serves, with `workers` slots in use: see the invariants. */
  forSlot(id: number, workers: number, backlog: number): WorkerSocket[] {
    const out = this.listeners.map((l, index) => ({ fd: this.slotSocket(id, index, l, backlog), name: l.name, text: l.text }))
    if (id === 1)
      for (const [slot, fds] of this.slots)
        if (slot > workers)
          for (const [index, fd] of fds) {
            const l = this.listeners[index]!
            out.push({ fd, name: l.name, text: `${l.text} (slot ${slot})` })
          }
    return out
  }

  /** Every listening socket the workers accept on, slot sockets included: for the accept-queue metric. */
  all(): { text: string; fd: number }[] {
    const out = this.listeners.map((l) => ({ text: l.text, fd: l.fd }))
    for (const [slot, fds] of this.slots)
      for (const [index, fd] of fds) out.push({ text: `${this.listeners[index]!.text} (slot ${slot})`, fd })
    return out
  }

  /** The sockets a new master gets in a binary upgrade: every listener, then the reuse-port slot sockets. */
  handed(): HandedSocket[] {
    const out: HandedSocket[] = this.listeners.map((l, i) => ({
      fd: l.fd,
      name: l.owned ? (storedName(l.name) ?? `sdserve-listener-${i}`) : l.name,
      owned: l.owned,
    }))
    for (const [slot, fds] of this.slots) for (const [index, fd] of fds) out.push({ fd, name: `sdserve-slot${slot}-${index}`, owned: true })
    return out
  }

  /** Close what we created; unlink: remove our UNIX paths too (not when a new master serves them). */
  close(unlink: boolean): void {
    closeListeners(this.listeners, { unlink })
    for (const slot of this.slots.values()) for (const fd of slot.values()) closeSync(fd)
    this.slots.clear()
  }
}
