/**
 * CPU priority of background work. A server that also answers API requests runs its jobs'
 * byte work, the codec threads, at a higher niceness (lower priority): when the cores are busy
 * the request handlers go first; when they are idle the threads still have every core. The
 * threads lower their own priority as they start (blob-worker.mjs), and so does the thread
 * that derives a repository's key (kdf.ts). pg_dump and pg_restore
 * keep normal priority: they relay the PostgreSQL server's data, and behind its backend they
 * would only stall it. So does the thread that writes a restore's dump into pg_restore
 * (walker.ts contentWriter). 0 (the default) changes nothing, as for the command line.
 */
let nice = 0;

/** Sets the niceness (0–19) for background work started from now on. */
export function setBackgroundNice(value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 19) throw new RangeError(`niceness must be 0 to 19, got ${value}`);
  nice = value;
}

export function backgroundNice(): number {
  return nice;
}
