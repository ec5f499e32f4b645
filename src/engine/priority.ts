/**
 * CPU priority of background work. A server that also answers API requests runs its jobs'
 * byte work, the codec threads, at a higher niceness (lower priority): when the cores are busy
 * the request handlers go first; when they are idle the threads still have every core. The
 * threads lower their own priority as they start (blob-worker.mjs), and so does the thread
 * that derives a repository's key (kdf.ts); a server lowers its helper threads at start
 * (reniceHelperThreads). pg_dump and pg_restore
 * keep normal priority: they relay the PostgreSQL server's data, and behind its backend they
 * would only stall it. 0 (the default) changes nothing, as for the command line.
 */
import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';

let nice = 0;

/** Sets the niceness (0–19) for background work started from now on. */
export function setBackgroundNice(value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 19) throw new RangeError(`niceness must be 0 to 19, got ${value}`);
  nice = value;
}

export function backgroundNice(): number {
  return nice;
}

/**
 * Lowers every thread of this process but the main one to `value` (Linux, where niceness is per
 * thread): V8's platform workers, whose concurrent compiling and marking bursts as a job's code
 * first runs, and libuv's pool, which writes the packs. Threads started later begin at the
 * main thread's priority (codec threads lower their own). The main thread, which answers
 * requests, and the children it spawns (pg_dump, pg_restore) keep theirs. Returns how many
 * threads were changed.
 */
export function reniceHelperThreads(value = nice): number {
  let changed = 0;
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return 0; // not Linux
  }
  for (const tid of tids) {
    if (Number(tid) === process.pid) continue;
    try {
      setPriority(Number(tid), value);
      changed++;
    } catch {
      // gone, or not permitted
    }
  }
  return changed;
}
