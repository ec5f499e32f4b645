/**
 * Owner: who writes a lock or snapshot file — the user name and ids restic records beside the
 * host name. A process without a passwd entry (some containers) records an empty name. Whether
 * the process a lock names still lives decides whether the lock is stale.
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';

export interface Owner {
  username: string;
  uid?: number;
  gid?: number;
}

/** The current process's user, as restic stores it in lock and snapshot files. */
export function currentOwner(): Owner {
  try {
    const u = userInfo();
    return { username: u.username, uid: u.uid, gid: u.gid };
  } catch {
    return { username: '' };
  }
}

/**
 * Whether a process with this pid lives (EPERM: it exists but belongs to another user). A zombie
 * (exited, not yet reaped: a container's PID 1 may never reap what is orphaned to it) answers
 * `kill 0` all the same, so where /proc is, its State decides: Z is dead.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return true; // no /proc here, or it went meanwhile: kill 0 answered
  }
  return !/^State:\s*Z/m.test(status);
}
