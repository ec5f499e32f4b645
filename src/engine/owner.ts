/**
 * Owner: who writes a lock or snapshot file — the user name and ids restic records beside the
 * host name. A process without a passwd entry (some containers) records an empty name.
 */
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
