import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ConflictError, ErrorCode, ValidationError } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { CodecPool, contentWriter, defaultCodecThreads, findSnapshot, loadSnapshot, resolvePath, restore as restoreFiles, withLock } from '../engine/api.ts';
import { publishInTransaction } from '../events/bus.ts';
import { prepareDirectory, type PreparedDirectory } from '../sources/files.ts';
import { walPath } from '../sources/pitr-layout.ts';
import { extractTar, makePitrWorkDir, placeWal, recoverInstance, walFetchFailed, type pitrWorkDir, type RecoveredInstance } from '../sources/pitr-instance.ts';
import { canCreateDatabase, dumpWriter, MAX_IDENTIFIER_BYTES, prepareDatabase, type PreparedDatabase } from '../sources/postgres.ts';
import { pgTarget } from '../sources/connection.ts';
import { withAdmin, withClient } from '../sources/pg-admin.ts';
import { raiseAlert } from './alerts.ts';
import { openReadableCopy } from './copies.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl, getEnvironment } from './environments.ts';
import { idempotencyKey, inputHash, remember, replayed } from './idempotency.ts';
import { enqueueJob, operationJobKey } from './jobs.ts';
import { beginOperation, CancelledError, finishOperation, progressReporter, TimedOutError } from './operations.ts';
import { baseTarPath, checkRecoverable, readArchive, type RecoveryPlan } from './pitr-archive.ts';
import { walFilesToFetch } from './pitr-wal-fetch.ts';
import { catalogRecoveryWindow } from './pitr-window.ts';
import { openRepository, type OpenedRepository } from './repositories.ts';
import { discardRestoreLeftovers, restoreIdOf } from './restore-leftovers.ts';
import { commitOrRollback, handBackRestore, takeSafetySnapshot } from './restores.ts';
import { INCLUDES, messageOf, underLimits } from './snapshots.ts';
import type { Viewer } from './viewer.ts';

/**
 * Restores to a point in time (PITR): the environment's database as it was at a given moment,
 * recovered from its cluster's base backups and WAL in the repository (src/services/pitr-archive.ts)
 * in a temporary PostgreSQL instance under the home (src/sources/pitr-instance.ts), then brought
 * over by the same dump-and-swap path as a snapshot restore, so other databases of the cluster
 * are never touched. Files come from the newest files snapshot finished at or before that
 * moment. A clone restores into a new database on the target's server and leaves the
 * environment pointing where it was.
 */

export const restoreToPointInTimeInput = z.object({
  environmentId: z.string(),
  pointInTime: z.date(),
  targetEnvironmentId: z.string().nullish(),
  includes: z.array(z.enum(INCLUDES)).min(1, 'must include DB, FILES or both').nullish(),
  createSafetySnapshot: z.boolean().default(true),
  strategy: z.enum(['SWAP', 'IN_PLACE']).default('SWAP'),
  cloneDatabaseName: z.string().min(1).refine((n) => Buffer.byteLength(n) <= MAX_IDENTIFIER_BYTES, `at most ${MAX_IDENTIFIER_BYTES} bytes`).nullish(),
  idempotencyKey: idempotencyKey.nullish(),
});

/** The cluster a database URL's server is: its system identifier. */
async function systemIdentifier(url: string): Promise<string> {
  return withClient(url, async (c) => (await c.query<{ s: string }>('SELECT system_identifier::text AS s FROM pg_control_system()')).rows[0].s);
}

/** Opens the first of the environment's destinations that opens. */
async function openEnvironmentRepository(deps: Deps, environmentId: string, signal?: AbortSignal): Promise<OpenedRepository & { destinationId: string }> {
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
async function planRecovery(deps: Deps, environmentId: string, time: Date, signal?: AbortSignal): Promise<{ plan: RecoveryPlan; opened: OpenedRepository; sysid: string }> {
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

/** The newest READY files snapshot of the environment finished at or before `time`. */
async function filesSnapshotAt(deps: Deps, environmentId: string, time: Date) {
  return deps.db.snapshot.findFirst({
    where: { environmentId, status: 'READY', includes: { has: 'FILES' }, completedAt: { lte: time } },
    orderBy: { completedAt: 'desc' },
  });
}

export async function restoreToPointInTime(
  deps: Deps,
  viewer: Viewer,
  raw: z.input<typeof restoreToPointInTimeInput>,
): Promise<{ operationId: string; restoreLogId: string }> {
  const input = parseInput(restoreToPointInTimeInput, raw);
  const source = await getEnvironment(deps, viewer, input.environmentId);
  const target = input.targetEnvironmentId ? await getEnvironment(deps, viewer, input.targetEnvironmentId) : source;
  const clone = input.cloneDatabaseName ?? null;
  // The input as asked (includes not yet resolved from the catalog), so a replay matches however
  // the catalog changed since; and replayed before the checks below, which a first request that
  // succeeded would now fail (its clone exists).
  const hash = input.idempotencyKey
    ? inputHash({ ...input, idempotencyKey: undefined, pointInTime: input.pointInTime.toISOString(), targetEnvironmentId: target.id, includes: input.includes ? [...new Set(input.includes)].sort() : null })
    : null;
  if (input.idempotencyKey) {
    const earlier = await replayed(deps, viewer.organizationId, 'restoreToPointInTime', input.idempotencyKey, hash!);
    if (earlier) return { operationId: earlier, restoreLogId: (await deps.db.restoreLog.findFirstOrThrow({ where: { operationId: earlier } })).id };
  }
  if (input.pointInTime.getTime() > deps.clock.now().getTime()) throw ValidationError.field(['input', 'pointInTime'], `${input.pointInTime.toISOString()} is in the future`);
  // Files go along by default when there is a files snapshot to take them from.
  const files = target.filesPath && !clone ? await filesSnapshotAt(deps, source.id, input.pointInTime) : null;
  const includes = [...new Set(input.includes ?? (files ? ['DB', 'FILES'] : ['DB']))] as ('DB' | 'FILES')[];
  if (!includes.includes('DB')) throw ValidationError.field(['input', 'includes'], 'a restore to a point in time recovers the database: include DB');
  if (clone && includes.includes('FILES')) throw ValidationError.field(['input', 'includes'], 'a clone is a database only: leave FILES out');
  if (clone && input.strategy !== 'SWAP') throw ValidationError.field(['input', 'strategy'], 'a clone is restored beside the target: SWAP only');
  if (includes.includes('FILES') && !target.filesPath) throw ValidationError.field(['input', 'includes'], 'the target environment has no files path');
  if (includes.includes('FILES') && !files) {
    throw ValidationError.field(['input', 'includes'], `no files snapshot of the environment finished at or before ${input.pointInTime.toISOString()}: leave FILES out, or pick a later time`);
  }
  if (clone) {
    const exists = await withAdmin(await environmentDatabaseUrl(deps, target.id), [], async (c) => ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [clone])).rowCount ?? 0) > 0);
    if (exists) throw new ConflictError(ErrorCode.NAME_TAKEN, `A database named ${clone} already exists on the target's server`);
  }
  // Refused now rather than failed in the job: the archive must cover the time.
  const { opened } = await planRecovery(deps, source.id, input.pointInTime);
  await opened.close().catch(() => undefined);

  const createSafetySnapshot = input.createSafetySnapshot && !clone;
  return deps.db.$transaction(async (tx) => {
    // One request per target at a time, as restoreSnapshot (same lock, so the two exclude each other).
    await tx.$queryRawUnsafe("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtext('backplane:restore'), hashtext($1))) AS l", target.id);
    if (input.idempotencyKey) {
      const earlier = await replayed(deps, viewer.organizationId, 'restoreToPointInTime', input.idempotencyKey, hash!);
      if (earlier) return { operationId: earlier, restoreLogId: (await tx.restoreLog.findFirstOrThrow({ where: { operationId: earlier } })).id };
    }
    if (createSafetySnapshot && (await tx.environmentDestination.count({ where: { environmentId: target.id } })) === 0) {
      throw new ConflictError(ErrorCode.NO_DESTINATION, 'The target environment has no destination for its safety snapshot: set its destinations first, or restore with createSafetySnapshot: false');
    }
    const running = await tx.operation.findFirst({ where: { environmentId: target.id, type: 'RESTORE', status: { in: ['QUEUED', 'RUNNING'] } } });
    if (running) throw new ConflictError(ErrorCode.RESTORE_RUNNING, 'A restore into this environment is already queued or running');
    const op = await tx.operation.create({
      data: { organizationId: target.organizationId, environmentId: target.id, type: 'RESTORE', snapshotId: includes.includes('FILES') ? files!.id : null, phase: 'queued', input: { includes, strategy: input.strategy, createSafetySnapshot } },
    });
    const log = await tx.restoreLog.create({
      data: {
        organizationId: target.organizationId,
        snapshotId: includes.includes('FILES') ? files!.id : null,
        sourceEnvironmentId: source.id,
        targetEnvironmentId: target.id,
        operationId: op.id,
        strategy: input.strategy,
        includes,
        pointInTime: input.pointInTime,
        cloneDatabaseName: clone,
      },
    });
    if (input.idempotencyKey) {
      await remember(tx, deps, { organizationId: viewer.organizationId, mutation: 'restoreToPointInTime', key: input.idempotencyKey, hash: hash!, operationId: op.id });
    }
    await enqueueJob(tx, 'pitr_restore', { operationId: op.id }, { queueName: target.id, jobKey: operationJobKey(op.id), maxAttempts: 1 });
    await publishInTransaction(tx, 'environmentActivity', target.id, { kind: 'RESTORE', environmentId: target.id, subjectId: log.id });
    return { operationId: op.id, restoreLogId: log.id };
  });
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
function fetchArchive(opened: OpenedRepository, sysid: string, plan: RecoveryPlan, dirs: ReturnType<typeof pitrWorkDir>, signal: AbortSignal): ArchiveFetch {
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

/** The job. Like a snapshot restore, never retried automatically. */
export async function runPitrRestore(deps: Deps, operationId: string, jobSignal?: AbortSignal): Promise<void> {
  const op = await beginOperation(deps, operationId);
  if (!op) return;
  const log = await deps.db.restoreLog.findFirstOrThrow({ where: { operationId }, include: { targetEnvironment: { include: { settings: true } } } });
  const target = log.targetEnvironment;
  const progress = progressReporter(deps, operationId);
  const restoreId = restoreIdOf(log.id);
  const home = deps.home ?? path.resolve('.backplane');
  let opened: OpenedRepository | undefined;
  let instance: RecoveredInstance | undefined;
  try {
    await underLimits(deps, operationId, target.settings?.timeoutSeconds ?? 3600, jobSignal, async (signal) => {
      try {
        if (op.attempts > 1) await discardRestoreLeftovers(deps, log.id);
        const opInput = op.input as { createSafetySnapshot?: boolean; strategy?: 'SWAP' | 'IN_PLACE' };
        if (opInput.createSafetySnapshot !== false) {
          progress.report({ phase: 'safety-snapshot' });
          const safetyId = await takeSafetySnapshot(deps, log.targetEnvironmentId, log.includes, signal);
          await deps.db.restoreLog.update({ where: { id: log.id }, data: { safetySnapshotId: safetyId } });
        }
        await deps.db.restoreLog.update({ where: { id: log.id }, data: { status: 'RUNNING' } });

        progress.report({ phase: 'fetching-base' });
        const planned = await planRecovery(deps, log.sourceEnvironmentId, log.pointInTime!, signal);
        opened = planned.opened;
        const { plan, sysid } = planned;
        const files = log.snapshotId ? await deps.db.snapshot.findUnique({ where: { id: log.snapshotId } }) : null;
        const recoveredFrom = [
          `base backup ${plan.base.snapshotId.slice(0, 8)} (finished ${plan.base.time.toISOString()}, WAL from ${plan.base.startWal})`,
          `WAL ${plan.firstSegment} to ${plan.lastSegment} from ${plan.wal.length} WAL snapshot(s) of cluster ${sysid}`,
          files ? `files from snapshot ${files.id} (finished ${files.completedAt?.toISOString()})` : null,
        ].filter(Boolean).join('; ');
        await deps.db.restoreLog.update({ where: { id: log.id }, data: { recoveredFrom } });
        const dirs = await makePitrWorkDir(home, restoreId);
        const fetch = fetchArchive(opened, sysid, plan, dirs, signal);
        try {
          await fetch.base;
          progress.report({ phase: 'replaying-wal' });
          instance = await recoverInstance(dirs, log.pointInTime!, { wal: fetch.wal, signal: fetch.signal });
        } catch (err) {
          await fetch.stop();
          // A replay stopped by a failed fetch reports the fetch's failure.
          throw fetch.failure() ?? err;
        }
        // Replay ended at the time: WAL still on its way is past it.
        await fetch.stop();
        const replay = instance.toEndOfArchive
          ? `; replayed to the end of the archive (${instance.endedAt}): nothing was committed between its last transaction and the time`
          : `; replayed to the time (${instance.endedAt})`;
        await deps.db.restoreLog.update({ where: { id: log.id }, data: { recoveredFrom: recoveredFrom + replay } });

        progress.report({ phase: 'moving-database' });
        const sourceUrl = await environmentDatabaseUrl(deps, log.sourceEnvironmentId);
        const targetUrl = await environmentDatabaseUrl(deps, target.id);
        const recovered = pgTarget(sourceUrl);
        const dump = dumpWriter(instance.url(recovered.database, recovered.env.PGUSER ?? 'postgres'), { signal });
        // The instance is done with once pg_dump is: stopped while pg_restore still builds indexes.
        const running = instance;
        const stopped = dump.ended.then(() => running.stop());
        const clone = log.cloneDatabaseName;
        // As a snapshot restore: a role that may not create databases restores in place.
        const strategy = clone ? 'SWAP' : opInput.strategy === 'IN_PLACE' || !(await canCreateDatabase(targetUrl)) ? 'IN_PLACE' : 'SWAP';
        const preparingDb = prepareDatabase(targetUrl, dump, { strategy, restoreId, signal });
        const preparingFiles: Promise<PreparedDirectory | null> = files && log.includes.includes('FILES')
          ? (async () => {
              const copy = await openReadableCopy(deps, files.id, signal);
              try {
                return await prepareDirectory(target.filesPath!, restoreId, async (dir: string) => {
                  await restoreFiles(copy.opened.repo, copy.repoSnapshotId, dir, { path: '/files', signal });
                }, { signal });
              } finally {
                await copy.opened.close().catch(() => undefined);
              }
            })()
          : Promise.resolve(null);
        const [dbResult, filesResult] = await Promise.allSettled([preparingDb, preparingFiles]);
        if (dbResult.status === 'rejected' || filesResult.status === 'rejected') {
          if (dbResult.status === 'fulfilled') await dbResult.value.rollback().catch((e: unknown) => deps.logger.error({ err: e }, 'database rollback failed'));
          if (filesResult.status === 'fulfilled') await filesResult.value?.rollback().catch((e: unknown) => deps.logger.error({ err: e }, 'files rollback failed'));
          throw dbResult.status === 'rejected' ? dbResult.reason : (filesResult as PromiseRejectedResult).reason;
        }
        const db: PreparedDatabase = dbResult.value;
        const dir = filesResult.value;
        await stopped;
        instance = undefined;
        if (signal.aborted) {
          await dir?.rollback().catch(() => undefined);
          await db.rollback().catch(() => undefined);
          throw signal.reason;
        }
        if (clone) {
          try {
            await db.keepAs!(clone);
          } catch (err) {
            await db.rollback().catch(() => undefined);
            throw err;
          }
          return;
        }
        progress.report({ phase: 'swapping' });
        if (db.canUndo) {
          await commitOrRollback(db, dir);
          if (db.previousName) await deps.db.restoreLog.update({ where: { id: log.id }, data: { previousDatabaseName: db.previousName } });
          try {
            await dir?.commit();
          } catch (err) {
            await db.undo();
            throw err;
          }
        } else {
          await commitOrRollback(dir, db);
          try {
            await db.commit();
          } catch (err) {
            await dir?.undo();
            throw err;
          }
        }
      } finally {
        // Before the operation ends, so whoever sees it end finds the work folder (base backup,
        // WAL, the instance) gone.
        await instance?.stop().catch(() => undefined);
        instance = undefined;
        await discardRestoreLeftovers(deps, log.id, { workFolderOnly: true }).catch((err: unknown) => deps.logger.error({ err, operationId }, 'could not remove the recovery work folder'));
      }
    });
    await progress.flush();
    await deps.db.restoreLog.update({ where: { id: log.id }, data: { status: 'SUCCEEDED', completedAt: deps.clock.now() } });
    await finishOperation(deps, operationId, 'SUCCEEDED');
  } catch (err) {
    await progress.flush();
    const shuttingDown = jobSignal?.aborted && !(err instanceof CancelledError) && !(err instanceof TimedOutError);
    if (shuttingDown) {
      await handBackRestore(deps, log.id, operationId);
      throw err;
    }
    const cancelled = err instanceof CancelledError;
    const message = messageOf(err);
    await deps.db.restoreLog.update({ where: { id: log.id }, data: { status: cancelled ? 'CANCELLED' : 'FAILED', error: message, completedAt: deps.clock.now() } });
    await finishOperation(deps, operationId, cancelled ? 'CANCELLED' : 'FAILED', message);
    if (!cancelled) {
      await raiseAlert(deps, { organizationId: target.organizationId, environmentId: target.id, operationId, type: 'RESTORE_FAILED', severity: 'CRITICAL', message: `Restore of ${target.name} to ${log.pointInTime!.toISOString()} failed: ${message}` });
    }
  } finally {
    await opened?.close().catch(() => undefined);
    await deps.events.publish('environmentActivity', target.id, { kind: 'RESTORE', environmentId: target.id, subjectId: log.id });
  }
}

