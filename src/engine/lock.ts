/**
 * Locks: restic-compatible repository locks. A *lock* is an unpacked JSON file in `locks/`
 * (`time`, `exclusive`, `hostname`, `username`, `pid`, `uid`, `gid`). Backups and restores
 * take shared (non-exclusive) locks; prune takes an exclusive one, which conflicts with every
 * other lock. A lock not refreshed for 30 minutes, or held by a dead process on this host, is
 * *stale* and ignored (and may be removed). Holders refresh their lock every 5 minutes by
 * writing a new file and deleting the old one, as restic does.
 */
import { hostname as osHostname } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { RepositoryLockedError } from './errors.ts';
import type { Id } from './ids.ts';
import { currentOwner, processAlive } from './owner.ts';
import type { Repository } from './repository.ts';
import { formatTime, parseTime } from './tree.ts';

/** A lock file's JSON. */
export interface LockJson {
  time: string;
  exclusive: boolean;
  hostname: string;
  username: string;
  pid: number;
  uid?: number;
  gid?: number;
}

/** Locks older than this without a refresh are stale. */
export const STALE_LOCK_MS = 30 * 60 * 1000;
/** How often a held lock is rewritten. */
export const REFRESH_LOCK_MS = 5 * 60 * 1000;

/** True when a lock no longer counts: too old, or its process on this host is gone. */
export function isStale(lock: LockJson, now = Date.now()): boolean {
  const t = Number(parseTime(lock.time) / 1_000_000n);
  if (now - t > STALE_LOCK_MS) return true;
  if (lock.hostname === osHostname() && !processAlive(lock.pid)) return true;
  return false;
}

/** A held lock. release() it when done. */
export class Lock {
  private timer: NodeJS.Timeout | null = null;
  private released = false;

  private constructor(private readonly repo: Repository, private id: Id, private readonly json: LockJson) {}

  /**
   * Takes a lock: writes our lock file, then looks for conflicting live locks and backs out
   * (throwing RepositoryLockedError) if there are any.
   */
  static async acquire(repo: Repository, exclusive: boolean, signal?: AbortSignal): Promise<Lock> {
    const { username, uid, gid } = currentOwner();
    const json: LockJson = { time: nowTime(), exclusive, hostname: osHostname(), username, pid: process.pid, uid, gid };
    const id = await repo.saveJson('locks', json, signal);
    const lock = new Lock(repo, id, json);
    try {
      for (const other of await repo.listIds('locks', signal)) {
        if (other === id) continue;
        let o: LockJson;
        try {
          o = await repo.loadJson<LockJson>('locks', other, signal);
        } catch {
          continue; // removed meanwhile, or unreadable: not a live lock
        }
        if (isStale(o)) continue;
        if (exclusive || o.exclusive) {
          throw new RepositoryLockedError(
            `repository is already locked ${o.exclusive ? 'exclusively' : ''} by PID ${o.pid} on ${o.hostname} by ${o.username} (since ${o.time})`.replace('  ', ' '),
          );
        }
      }
    } catch (err) {
      await repo.backend.remove({ type: 'locks', name: id }).catch(() => {});
      throw err;
    }
    lock.timer = setInterval(() => void lock.refresh().catch(() => {}), REFRESH_LOCK_MS);
    lock.timer.unref();
    return lock;
  }

  /** Rewrites the lock with the current time. */
  async refresh(): Promise<void> {
    if (this.released) return;
    const json = { ...this.json, time: nowTime() };
    const newId = await this.repo.saveJson('locks', json);
    const old = this.id;
    this.id = newId;
    // Named by its content: a refresh within the same millisecond wrote the very same file.
    if (newId !== old) await this.repo.backend.remove({ type: 'locks', name: old });
  }

  /** Removes the lock file. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    await this.repo.backend.remove({ type: 'locks', name: this.id });
  }
}

function nowTime(): string {
  return formatTime(BigInt(Date.now()) * 1_000_000n);
}

/**
 * How long taking a lock waits for a conflicting one to go (restic's `--retry-lock`), and what it
 * tells meanwhile. Zero, the default, fails at once as restic does.
 */
export interface LockWait {
  ms: number;
  /** Called before each pause, with what holds the repository. */
  onWait?: (holder: string) => void;
  /** Called once the lock is taken after a wait. */
  onTaken?: () => void;
}

/** Takes a lock, trying again with growing pauses while a conflicting lock lasts, up to `wait.ms`. */
export async function acquireLock(repo: Repository, exclusive: boolean, wait: LockWait, signal?: AbortSignal): Promise<Lock> {
  const until = Date.now() + wait.ms;
  for (let pause = 500; ; pause = Math.min(pause * 2, 10_000)) {
    try {
      const lock = await Lock.acquire(repo, exclusive, signal);
      if (pause > 500) wait.onTaken?.();
      return lock;
    } catch (err) {
      const left = until - Date.now();
      if (!(err instanceof RepositoryLockedError) || left <= 0) throw err;
      wait.onWait?.(err.message);
      await delay(Math.min(pause, left), undefined, { signal });
    }
  }
}

/** Runs fn while holding a lock, waiting for a conflicting one as long as the repository's lockWait says. */
export async function withLock<T>(repo: Repository, exclusive: boolean, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const lock = await acquireLock(repo, exclusive, repo.lockWait, signal);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/**
 * Removes stale lock files (restic's `unlock`); with `all`, removes every lock. Returns how many.
 * An unreadable lock counts as stale unless `keepUnreadable`: a job clearing locks beside other
 * live processes keeps them, since one may be a lock another process is still writing.
 */
export async function removeStaleLocks(repo: Repository, all = false, opts: { keepUnreadable?: boolean; signal?: AbortSignal } = {}): Promise<number> {
  let n = 0;
  for (const id of await repo.listIds('locks', opts.signal)) {
    let stale = all;
    if (!stale) {
      try {
        stale = isStale(await repo.loadJson<LockJson>('locks', id, opts.signal));
      } catch {
        stale = !opts.keepUnreadable;
      }
    }
    if (stale) {
      await repo.backend.remove({ type: 'locks', name: id }, { signal: opts.signal });
      n++;
    }
  }
  return n;
}
