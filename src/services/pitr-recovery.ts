import fs from 'node:fs/promises';
import path from 'node:path';
import { ConflictError, ErrorCode } from '../domain/errors.ts';
import { CodecPool, contentWriter, defaultCodecThreads, findSnapshot, loadSnapshot, resolvePath, restore as restoreFiles, withLock } from '../engine/api.ts';
import { walPath } from '../sources/pitr-layout.ts';
import { extractTar, placeWal, recoverInstance, walFetchFailed, type PitrWorkDir, type RecoveredInstance } from '../sources/pitr-instance.ts';
import { withClient } from '../sources/pg-admin.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl } from './environments.ts';
import { baseTarPath, checkRecoverable, readArchive, type RecoveryPlan } from './pitr-archive.ts';
import { walFilesToFetch } from './pitr-wal-fetch.ts';
import { catalogRecoveryWindow } from './pitr-window.ts';
import { openRepository, type OpenedRepository } from './repositories.ts';

/**
 * What every recovery to a point in time does first, whatever it then does with the recovered
 * instance (a restore moves one database out of it, pitr-restores.ts; a recovery instance is kept
 * and handed over, recovery-instances.ts): plan the recovery from the repository and the catalog
 * window, and fill a work folder with the base backup and the WAL the replay reads.
 */

/** The cluster a database URL's server is: its system identifier. */
async function systemIdentifier(url: string): Promise<string> {
  return withClient(url, async (c) => (await c.query<{ s: string }>('SELECT system_identifier::text AS s FROM pg_control_system()')).rows[0].s);
}

/** Opens the first of the environment's destinations that opens. */
export async function openEnvironmentRepository(deps: Deps, environmentId: string, signal?: AbortSignal): Promise<OpenedRepository & { destinationId: string }> {
  const links = await deps.db.environmentDestination.findMany({ where: { environmentId }, orderBy: { destinationId: 'asc' } });
  let lastError: unknown = new ConflictError(ErrorCode.NO_DESTINATION, 'The environment has no destination to recover from');
  for (const l of links) {
    try {
      return { ...(await openRepository(deps, l.destinationId, signal)), destinationId: l.destinationId };
    } catch (err) {
      if (signal?.aborted) throw err;
      lastError = err;
    }
  }
  throw lastError;
}

/** Plans a recovery of the environment's cluster to `time`, from its repository and the catalog window. */
export async function planRecovery(deps: Deps, environmentId: string, time: Date, signal?: AbortSignal): Promise<{ plan: RecoveryPlan; opened: OpenedRepository; sysid: string }> {
  const url = await environmentDatabaseUrl(deps, environmentId);
  const sysid = await systemIdentifier(url);
  const opened = await openEnvironmentRepository(deps, environmentId, signal);
  try {
    const archive = await readArchive(opened.repo, sysid, signal);
    const plan = checkRecoverable(archive, time, deps.clock.now(), await catalogRecoveryWindow(deps, environmentId));
    return { plan, opened, sysid };
  } catch (err) {
    await opened.close().catch(() => undefined);
    throw err;
  }
}

/** The work folder being filled from the repository (fetchArchive). */
interface ArchiveFetch {
  /** The WAL files the recovery reads (walFilesToFetch), in the plan's order. */
  wal: string[];
  /** Settles once the base backup is extracted into data/ (throws the fetch's first failure). */
  base: Promise<void>;
  /** Aborted when the job's signal is, or when either part of the fetch fails. */
  signal: AbortSignal;
  /** Why the fetch stopped, if it failed (not the abort it caused in the other part). */
  failure(): unknown;
  /** Stops what is still being fetched and waits until both parts have ended. */
  stop(): Promise<void>;
}

/** How many WAL snapshots fetchArchive restores at once. */
const WAL_FETCH_LANES = 3;

/**
 * Starts filling the work folder: the base backup extracted into data/, and beside it the WAL
 * files the recovery reads placed into wal/ a few snapshots at a time in the plan's order, so
 * the replay can start as soon as the base is there and finds each segment when it reaches it
 * (the restore_command waits for it; see recoverInstance), as pgBackRest's asynchronous
 * archive-get prefetches ahead of replay. Before, every WAL file was fetched before the replay
 * started: bench:pitr spent 17.6 s fetching and then 10.2 s replaying 691 MiB of WAL.
 */
function fetchArchive(opened: OpenedRepository, sysid: string, plan: RecoveryPlan, dirs: PitrWorkDir, signal: AbortSignal): ArchiveFetch {
  const repo = opened.repo;
  const toFetch = walFilesToFetch(plan);
  // The base's blobs are decoded and written into tar by a codec thread of its own, the WAL's in
  // the pool's threads. The first failure stops the other part and a replay waiting for WAL.
  const both = new AbortController();
  const stop = () => both.abort(signal.reason);
  signal.addEventListener('abort', stop, { once: true });
  let first: { err: unknown } | null = null;
  const failFast = (p: Promise<void>) => p.catch(async (err: unknown) => {
    if (!both.signal.aborted) first ??= { err };
    both.abort(err);
    await walFetchFailed(dirs);
    throw err;
  });
  // Each part under a shared lock of its own, so a prune cannot remove a pack it is reading.
  const base = failFast(withLock(repo, false, async () => {
    const sn = await findSnapshot(repo, plan.base.snapshotId, undefined, both.signal);
    const tar = await resolvePath(repo, sn, baseTarPath(sysid), both.signal);
    await extractTar(contentWriter(repo, tar, { signal: both.signal }), dirs.data, both.signal);
  }, both.signal));
  const wal = failFast(withLock(repo, false, async () => {
    // One pool for every WAL snapshot: starting threads per snapshot took most of the fetch. At
    // normal priority, as the thread that feeds pg_restore (walker.ts contentWriter): the replay
    // waits for each segment, and at the jobs' niceness on a busy machine (load 20) the fetch
    // placed one 16 MiB segment every 2 s while the replay needed 0.05 s for it.
    const pool = new CodecPool(repo.key, defaultCodecThreads(), true, undefined, 0);
    // A few snapshots at once, started in the plan's order (the next segment the replay needs is
    // always among them): one snapshot holds a segment or two, too little to keep the pool's
    // threads busy between its reads. All under this part's one lock, not one per snapshot.
    let next = 0;
    let failed = false;
    const lane = async () => {
      while (next < toFetch.length && !failed) {
        const i = next++;
        const w = toFetch[i];
        try {
          // Each into a folder of its own, then only its kept files placed (one restore per
          // snapshot costs less than one per file).
          const staging = path.join(dirs.root, `wal-${i}`);
          const sn = await loadSnapshot(repo, w.snapshotId, both.signal);
          await restoreFiles(repo, sn, staging, { path: walPath(sysid), signal: both.signal, pool, lock: false });
          for (const name of w.files) await placeWal(dirs, path.join(staging, name), name);
          await fs.rm(staging, { recursive: true, force: true });
        } catch (err) {
          failed = true;
          throw err;
        }
      }
    };
    try {
      // Every lane ended before the pool closes and the lock goes, a failed one's included.
      const lanes = await Promise.allSettled(Array.from({ length: Math.min(WAL_FETCH_LANES, toFetch.length) }, lane));
      const failure = lanes.find((l) => l.status === 'rejected');
      if (failure) throw failure.reason;
    } finally {
      await pool.close();
    }
  }, both.signal));
  const settled = Promise.allSettled([base, wal]).finally(() => signal.removeEventListener('abort', stop));
  return {
    wal: toFetch.flatMap((w) => w.files),
    base: base.catch((err: unknown) => {
      throw first ? first.err : err;
    }),
    signal: both.signal,
    failure: () => first?.err,
    async stop() {
      if (!both.signal.aborted) both.abort(new Error('the recovery needs no more WAL'));
      await settled;
    },
  };
}

/**
 * Fills `dirs` from the repository (fetchArchive) and recovers the instance there to the plan's
 * time (recoverInstance), calling `onReplaying` once the base is in place. A replay stopped by a
 * failed fetch fails with the fetch's failure; WAL still on its way once the replay reached the
 * time is past it, and its fetch is stopped.
 */
export async function recoverFromArchive(
  opened: OpenedRepository,
  planned: { plan: RecoveryPlan; sysid: string },
  dirs: PitrWorkDir,
  opts: { signal: AbortSignal; listen?: string; onReplaying?: () => void },
): Promise<RecoveredInstance> {
  const fetch = fetchArchive(opened, planned.sysid, planned.plan, dirs, opts.signal);
  let instance: RecoveredInstance;
  try {
    await fetch.base;
    opts.onReplaying?.();
    instance = await recoverInstance(dirs, planned.plan.time, { wal: fetch.wal, signal: fetch.signal, listen: opts.listen });
  } catch (err) {
    await fetch.stop();
    throw fetch.failure() ?? err;
  }
  await fetch.stop();
  return instance;
}
