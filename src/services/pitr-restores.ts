import path from 'node:path';
import { z } from 'zod';
import { ConflictError, ErrorCode, ValidationError } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { restore as restoreFiles } from '../engine/api.ts';
import { publishInTransaction } from '../events/bus.ts';
import { prepareDirectory, type PreparedDirectory } from '../sources/files.ts';
import { makePitrWorkDir, type RecoveredInstance } from '../sources/pitr-instance.ts';
import { planRecovery, recoverFromArchive } from './pitr-recovery.ts';
import { canCreateDatabase, dumpWriter, MAX_IDENTIFIER_BYTES, prepareDatabase, type PreparedDatabase } from '../sources/postgres.ts';
import { pgTarget } from '../sources/connection.ts';
import { withAdmin } from '../sources/pg-admin.ts';
import { raiseAlert } from './alerts.ts';
import { openReadableCopy } from './copies.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl, getEnvironment } from './environments.ts';
import { idempotencyKey, inputHash, remember, replayed } from './idempotency.ts';
import { enqueueJob, operationJobKey } from './jobs.ts';
import { beginOperation, CancelledError, finishOperation, progressReporter, TimedOutError } from './operations.ts';
import { type OpenedRepository } from './repositories.ts';
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
        instance = await recoverFromArchive(opened, planned, dirs, { signal, onReplaying: () => progress.report({ phase: 'replaying-wal' }) });
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

