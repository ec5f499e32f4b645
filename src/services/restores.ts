import { z } from 'zod';
import { ConflictError, ErrorCode, NotFoundError, ValidationError } from '../domain/errors.ts';
import { name, parseInput } from '../domain/validation.ts';
import { acquireLock, contentWriter, findSnapshot, resolvePath, restore as restoreFiles, type Repository } from '../engine/api.ts';
import { publishInTransaction } from '../events/bus.ts';
import { canCreateDatabase, prepareDatabase, type PreparedDatabase } from '../sources/postgres.ts';
import { prepareNewDatabase } from '../sources/new-database.ts';
import { prepareDirectory } from '../sources/files.ts';
import { raiseAlert } from './alerts.ts';
import { healInJob, isDamage, throwIfDamaged } from './damage.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl, ENVIRONMENT_TYPES, getEnvironment } from './environments.ts';
import { createProvisioningEnvironment, planNewEnvironment } from './new-environment.ts';
import { idempotencyKey, inputHash, remember, replayed } from './idempotency.ts';
import { enqueueJob, operationJobKey } from './jobs.ts';
import { beginOperation, CancelledError, finishOperation, HANDED_BACK_MESSAGE, progressReporter, requeueOperation, TimedOutError } from './operations.ts';
import { openReadableCopy } from './copies.ts';
import { refuseIfLocked } from './environment-lock.ts';
import { discardRestoreLeftovers, restoreIdOf } from './restore-leftovers.ts';
import { reportLockWaits, type OpenedRepository } from './repositories.ts';
import { getSnapshot, INCLUDES, messageOf, runSnapshot, underLimits } from './snapshots.ts';
import type { Viewer } from './viewer.ts';

/**
 * Restores: a snapshot of one environment back into it, or into another environment of the same
 * organization. The job first takes a SAFETY snapshot of the target (unless asked not to), then
 * prepares the database and the files beside the live ones, and swaps both in one short step. A
 * failure before the swap leaves the target untouched; a files swap that fails after the database
 * swap puts the database back.
 */

export const restoreSnapshotInput = z.object({
  snapshotId: z.string(),
  targetEnvironmentId: z.string().nullish(),
  /** Restore into a new environment of the snapshot's project, created by this restore (see new-environment.ts). */
  newEnvironment: z.object({ name, type: z.enum(ENVIRONMENT_TYPES).nullish() }).nullish(),
  includes: z.array(z.enum(INCLUDES)).min(1, 'must include DB, FILES or both').nullish(),
  createSafetySnapshot: z.boolean().default(true),
  strategy: z.enum(['SWAP', 'IN_PLACE']).default('SWAP'),
  idempotencyKey: idempotencyKey.nullish(),
});

export async function restoreSnapshot(
  deps: Deps,
  viewer: Viewer,
  raw: z.input<typeof restoreSnapshotInput>,
): Promise<{ operationId: string; restoreLogId: string }> {
  const input = parseInput(restoreSnapshotInput, raw);
  const snapshot = await getSnapshot(deps, viewer, input.snapshotId);
  throwIfDamaged(snapshot);
  if (snapshot.status !== 'READY') throw new ConflictError(ErrorCode.SNAPSHOT_NOT_READY, `Snapshot is ${snapshot.status.toLowerCase()}, not ready`);
  if (input.newEnvironment && input.targetEnvironmentId) throw ValidationError.field(['input', 'newEnvironment'], 'give either targetEnvironmentId or newEnvironment, not both');
  const existingTarget = await getEnvironment(deps, viewer, input.targetEnvironmentId ?? snapshot.environmentId);
  const includes = [...new Set(input.includes ?? snapshot.includes)];
  const missing = includes.filter((i) => !snapshot.includes.includes(i));
  if (missing.length) throw ValidationError.field(['input', 'includes'], `the snapshot does not contain ${missing.join(' and ')}`);
  if (!input.newEnvironment && includes.includes('FILES') && !existingTarget.filesPath) throw ValidationError.field(['input', 'includes'], 'the target environment has no files path');
  if (!input.newEnvironment && existingTarget.status !== 'READY') throw new ConflictError(ErrorCode.ENVIRONMENT_NOT_READY, `The target environment is ${existingTarget.status.toLowerCase()}: its own restore has not succeeded`);
  // A new environment has nothing to protect: createSafetySnapshot is ignored for it.
  const createSafetySnapshot = input.newEnvironment ? false : input.createSafetySnapshot;
  const lockKey = input.newEnvironment ? `new:${existingTarget.projectId}:${input.newEnvironment.name}` : existingTarget.id;

  const hash = input.idempotencyKey
    ? // newEnvironment left out when absent: a key stored before it existed still matches its own input.
      inputHash({ ...input, idempotencyKey: undefined, newEnvironment: input.newEnvironment ?? undefined, targetEnvironmentId: input.newEnvironment ? null : existingTarget.id, includes: [...includes].sort() })
    : null;
  if (input.newEnvironment && input.idempotencyKey) {
    // A replay finds the environment its first request made: answered here, before that counts as a taken name.
    const earlier = await replayed(deps, viewer.organizationId, 'restoreSnapshot', input.idempotencyKey, hash!);
    if (earlier) return restoreOfOperation(deps, earlier);
  }
  // Checked before anything is recorded: a refusal (no CREATEDB, a name taken on the server) makes nothing.
  const plan = input.newEnvironment ? await planNewEnvironment(deps, existingTarget, input.newEnvironment.name, includes.includes('FILES')) : null;

  try {
    return await deps.db.$transaction(async (tx) => {
      // One request per target at a time from here to commit: checked outside, two requests at
      // the same moment would both find no restore running (or no key) and both start one.
      await tx.$queryRawUnsafe("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtext('backplane:restore'), hashtext($1))) AS l", lockKey);
      if (input.idempotencyKey) {
        const earlier = await replayed(deps, viewer.organizationId, 'restoreSnapshot', input.idempotencyKey, hash!);
        if (earlier) return restoreOfOperation(deps, earlier);
      }
      const target =
        input.newEnvironment && plan
          ? await createProvisioningEnvironment(tx, deps, existingTarget, { name: input.newEnvironment.name, type: input.newEnvironment.type ?? 'DEVELOPMENT' }, plan)
          : existingTarget;
      if (createSafetySnapshot && (await tx.environmentDestination.count({ where: { environmentId: target.id } })) === 0) {
        // Refused now, not failed later: the job's first step, the safety snapshot, would have nowhere to go.
        throw new ConflictError(ErrorCode.NO_DESTINATION, 'The target environment has no destination for its safety snapshot: set its destinations first, or restore with createSafetySnapshot: false');
      }
      await refuseIfLocked(tx, target.id);
      const running = await tx.operation.findFirst({ where: { environmentId: target.id, type: 'RESTORE', status: { in: ['QUEUED', 'RUNNING'] } } });
      if (running) throw new ConflictError(ErrorCode.RESTORE_RUNNING, 'A restore into this environment is already queued or running');
      const op = await tx.operation.create({
        data: { organizationId: target.organizationId, environmentId: target.id, type: 'RESTORE', snapshotId: snapshot.id, phase: 'queued', input: { includes, strategy: input.strategy, createSafetySnapshot, newEnvironment: !!input.newEnvironment } },
      });
      const log = await tx.restoreLog.create({
        data: {
          organizationId: target.organizationId,
          snapshotId: snapshot.id,
          sourceEnvironmentId: snapshot.environmentId,
          targetEnvironmentId: target.id,
          operationId: op.id,
          strategy: input.strategy,
          includes,
          newEnvironment: !!input.newEnvironment,
        },
      });
      if (input.idempotencyKey) {
        await remember(tx, deps, { organizationId: viewer.organizationId, mutation: 'restoreSnapshot', key: input.idempotencyKey, hash: hash!, operationId: op.id });
      }
      await enqueueJob(tx, 'snapshot_restore', { operationId: op.id }, { queueName: target.id, jobKey: operationJobKey(op.id), maxAttempts: 1 });
      await publishInTransaction(tx, 'environmentActivity', target.id, { kind: 'RESTORE', environmentId: target.id, subjectId: log.id });
      return { operationId: op.id, restoreLogId: log.id };
    });
  } catch (err) {
    // One key used at the same moment for restores into two targets (two locks): the loser
    // hits the key's unique index and answers as a replay would, with a refusal.
    if (input.idempotencyKey && (err as { code?: string }).code === 'P2002') {
      const earlier = await replayed(deps, viewer.organizationId, 'restoreSnapshot', input.idempotencyKey, hash!);
      if (earlier) return restoreOfOperation(deps, earlier);
    }
    throw err;
  }
}

async function restoreOfOperation(deps: Deps, operationId: string) {
  const log = await deps.db.restoreLog.findFirstOrThrow({ where: { operationId } });
  return { operationId, restoreLogId: log.id };
}

/** The dump file inside a snapshot: the one file under /db. */
async function dumpNode(repo: Repository, repoSnapshotId: string, signal: AbortSignal) {
  const sn = await findSnapshot(repo, repoSnapshotId, undefined, signal);
  const db = await resolvePath(repo, sn, '/db', signal);
  const tree = await repo.loadTree(db.subtree!, signal);
  const file = tree.nodes.find((n) => n.type === 'file' && n.name.endsWith('.dump'));
  if (!file) throw new NotFoundError(ErrorCode.SNAPSHOT_NOT_FOUND, 'The snapshot holds no database dump');
  return { sn, file };
}

/** Commits `first`; when that fails, rolls back both, leaving the target as it was. */
export async function commitOrRollback(first: { commit(): Promise<unknown>; rollback(): Promise<void> } | null, other: { rollback(): Promise<void> } | null): Promise<void> {
  try {
    await first?.commit();
  } catch (err) {
    await first?.rollback().catch(() => undefined);
    await other?.rollback().catch(() => undefined);
    throw err;
  }
}

/** The job. A restore is never retried automatically: a person decides after a failure. */
export async function runRestore(deps: Deps, operationId: string, jobSignal?: AbortSignal): Promise<void> {
  const op = await beginOperation(deps, operationId);
  if (!op) return;
  const log = await deps.db.restoreLog.findFirstOrThrow({ where: { operationId }, include: { targetEnvironment: { include: { settings: true } } } });
  const target = log.targetEnvironment;
  const progress = progressReporter(deps, operationId);
  const restoreId = restoreIdOf(log.id);
  let opened: OpenedRepository | undefined;
  let readFrom: { destinationId: string; repoSnapshotId: string } | undefined;
  try {
    await underLimits(deps, operationId, target.settings?.timeoutSeconds ?? 3600, jobSignal, async (signal) => {
      // A run after one whose worker died (a retry, or the job handed back) first clears what that one left.
      if (op.attempts > 1) await discardRestoreLeftovers(deps, log.id);
      const opInput = op.input as { createSafetySnapshot?: boolean; strategy?: 'SWAP' | 'IN_PLACE' };
      if (opInput.createSafetySnapshot !== false) {
        progress.report({ phase: 'safety-snapshot' });
        const safetyId = await takeSafetySnapshot(deps, log.targetEnvironmentId, log.includes, signal);
        await deps.db.restoreLog.update({ where: { id: log.id }, data: { safetySnapshotId: safetyId } });
      }
      await deps.db.restoreLog.update({ where: { id: log.id }, data: { status: 'RUNNING' } });
      progress.report({ phase: 'restoring', bytesDone: 0 });
      // How long each side took, for the log: which one a slow restore waited for.
      const started = Date.now();
      const timings: Record<string, number> = {};
      const timed = <T>(name: string, p: Promise<T>): Promise<T> => p.finally(() => (timings[name] = Date.now() - started));
      const source = await openReadableCopy(deps, log.snapshotId!, signal);
      opened = source.opened;
      readFrom = { destinationId: source.destinationId, repoSnapshotId: source.repoSnapshotId };
      const repo = source.opened.repo;
      // A prune (a snapshot deleted, retention) holds the repository for a while: the restore
      // waits for it and says so.
      reportLockWaits(repo, (message) => progress.report({ message }));
      const snapshotRow = await deps.db.snapshot.findUniqueOrThrow({ where: { id: log.snapshotId! } });
      const total = Number(snapshotRow.sizeBytes);
      let filesDone = 0;
      let dbDone = 0;
      const report = () => progress.report({ bytesDone: filesDone + dbDone, bytesTotal: total || null });

      // The files and the database are prepared beside the live ones at the same time: they
      // are independent until the swap, and the database side mostly waits for PostgreSQL.
      // The first side to fail stops the other.
      const sides = new AbortController();
      const sideSignal = AbortSignal.any([signal, sides.signal]);
      const failures: unknown[] = [];
      const failFast = <T>(p: Promise<T>): Promise<T> =>
        p.catch((err: unknown) => {
          failures.push(err);
          sides.abort(err);
          throw err;
        });
      // One shared lock while either side reads, the database's too (its dump is read blob by
      // blob as pg_restore takes it): a forget or prune of this snapshot (deleted, or retention
      // on its environment's queue, which is not this target's) waits until the restore has
      // read all it needs, instead of taking its snapshot and packs away halfway.
      // Nothing between here and the sides' end throws: the lock is released there.
      const reading = await acquireLock(repo, false, repo.lockWait, signal);
      const preparingFiles = log.includes.includes('FILES')
        ? failFast(
            prepareDirectory(target.filesPath!, restoreId, async (dir: string) => {
              await restoreFiles(repo, source.repoSnapshotId, dir, { path: '/files', lock: false, signal: sideSignal, onProgress: (p) => ((filesDone = p.bytesDone), report()) });
            }, { signal: sideSignal }),
          )
        : Promise.resolve(null);
      const preparingDb = log.includes.includes('DB')
        ? failFast((async (): Promise<PreparedDatabase> => {
            const url = await environmentDatabaseUrl(deps, target.id);
            const { file } = await dumpNode(repo, source.repoSnapshotId, sideSignal);
            // A codec thread decodes the dump and writes it into pg_restore's stdin itself.
            const dump = contentWriter(repo, file, { signal: sideSignal, onBytes: (n) => ((dbDone += n), report()) });
            // pg_restore starts here: the time before it is ours (repository, temp database).
            const onPhase = (phase: string) => phase === 'restoring' && (timings.pgRestoreStartMs = Date.now() - started);
            if (log.newEnvironment) {
              return prepareNewDatabase(await environmentDatabaseUrl(deps, log.sourceEnvironmentId), url, dump, { restoreId, signal: sideSignal, onPhase });
            }
            const strategy = opInput.strategy === 'IN_PLACE' || !(await canCreateDatabase(url)) ? 'IN_PLACE' : 'SWAP';
            return prepareDatabase(url, dump, {
              strategy,
              restoreId,
              signal: sideSignal,
              onPhase,
            });
          })())
        : Promise.resolve(null);
      const [filesResult, dbResult] = await Promise.allSettled([timed('filesReadyMs', preparingFiles), timed('databaseReadyMs', preparingDb)]).finally(() =>
        reading.release().catch((e: unknown) => deps.logger.warn({ err: e }, 'could not release the repository lock')),
      );
      if (filesResult.status === 'rejected' || dbResult.status === 'rejected') {
        // Whichever side got ready is dropped again; the live target was never touched.
        if (filesResult.status === 'fulfilled') await filesResult.value?.rollback().catch((e: unknown) => deps.logger.error({ err: e }, 'files rollback failed'));
        if (dbResult.status === 'fulfilled') await dbResult.value?.rollback().catch((e: unknown) => deps.logger.error({ err: e }, 'database rollback failed'));
        // The first failure is the cause; the other side's is usually just our abort.
        throw failures[0];
      }
      const files = filesResult.value;
      const db = dbResult.value;
      if (signal.aborted) {
        // Stopped (or cancelled) after both sides got ready: nothing live was touched yet.
        await files?.rollback().catch((e: unknown) => deps.logger.error({ err: e }, 'files rollback failed'));
        await db?.rollback().catch((e: unknown) => deps.logger.error({ err: e }, 'database rollback failed'));
        throw signal.reason;
      }
      // Both sides are ready beside the live ones; now the short step, which a stop does not cut
      // (nothing in it listens to the signal): it is short, and a half-done swap is worse than a
      // finished one. What can be undone commits first.
      progress.report({ phase: 'swapping' });
      if (db?.canUndo) {
        await commitOrRollback(db, files);
        // Recorded between the two swaps: a worker killed here leaves the database swapped and
        // the files not, which the recovery undoes (see restore-leftovers.ts).
        if (db.previousName) await deps.db.restoreLog.update({ where: { id: log.id }, data: { previousDatabaseName: db.previousName } });
        try {
          await files?.commit();
        } catch (err) {
          // A failed commit leaves the files prepared: their staging folder goes with the swap undone.
          await files?.rollback().catch((e: unknown) => deps.logger.error({ err: e }, 'files rollback failed'));
          await db.undo();
          throw err;
        }
      } else {
        await commitOrRollback(files, db);
        try {
          await db?.commit();
        } catch (err) {
          await files?.undo();
          throw err;
        }
        if (db?.previousName) await deps.db.restoreLog.update({ where: { id: log.id }, data: { previousDatabaseName: db.previousName } });
      }
      timings.swappedMs = Date.now() - started;
      deps.logger.info({ operationId, ...timings }, 'restore swapped in');
    });
    await progress.flush();
    await deps.db.$transaction([
      deps.db.restoreLog.update({ where: { id: log.id }, data: { status: 'SUCCEEDED', completedAt: deps.clock.now() } }),
      // A new environment is usable from here on, not before.
      deps.db.environment.updateMany({ where: { id: target.id, status: 'PROVISIONING' }, data: { status: 'READY' } }),
    ]);
    await finishOperation(deps, operationId, 'SUCCEEDED');
  } catch (err) {
    await progress.flush();
    const shuttingDown = jobSignal?.aborted && !(err instanceof CancelledError) && !(err instanceof TimedOutError);
    if (shuttingDown) {
      // The worker is stopping, which is no failure: what this run prepared goes (the sides were
      // rolled back above; this also covers a stop in between), the target is as it was, and
      // the job is handed back (the worker's wrapper does that when this throws) to run again
      // from the start, safety snapshot included: the target may change until it runs again.
      await handBackRestore(deps, log.id, operationId);
      throw err;
    }
    const cancelled = err instanceof CancelledError;
    let message = messageOf(err);
    if (!cancelled && opened && readFrom && isDamage(err)) message += await healAfterDamage(deps, { logId: log.id, operationId, opened, snapshotId: log.snapshotId!, environmentId: target.id, ...readFrom }, jobSignal);
    await deps.db.$transaction([
      deps.db.restoreLog.update({ where: { id: log.id }, data: { status: cancelled ? 'CANCELLED' : 'FAILED', error: message, completedAt: deps.clock.now() } }),
      deps.db.environment.updateMany({ where: { id: target.id, status: 'PROVISIONING' }, data: { status: 'FAILED' } }),
    ]);
    await finishOperation(deps, operationId, cancelled ? 'CANCELLED' : 'FAILED', message);
    if (!cancelled) {
      await raiseAlert(deps, { organizationId: target.organizationId, environmentId: target.id, operationId, type: 'RESTORE_FAILED', severity: 'CRITICAL', message: `Restore into ${target.name} failed: ${message}` });
    }
  } finally {
    await opened?.close().catch(() => undefined);
    await deps.events.publish('environmentActivity', target.id, { kind: 'RESTORE', environmentId: target.id, subjectId: log.id });
  }
}

/**
 * A restore that failed on a damaged pack heals the source's repository before it ends. When its
 * SAFETY snapshot leaned on the lost blobs (it deduplicated against them), the target, still
 * untouched, is captured again: the index no longer lists those blobs, so this one writes them
 * anew (and runSnapshot turns snapshots it made whole READY again). Returns a note for the message.
 */
async function healAfterDamage(
  deps: Deps,
  input: { logId: string; operationId: string; opened: OpenedRepository; destinationId: string; repoSnapshotId: string; snapshotId: string; environmentId: string },
  jobSignal?: AbortSignal,
): Promise<string> {
  const signal = jobSignal ?? new AbortController().signal;
  try {
    const log = await deps.db.restoreLog.findUniqueOrThrow({ where: { id: input.logId } });
    // The safety snapshot's own packs are read too: it may lean on damaged packs the failed read never reached.
    const safetyCopy = log.safetySnapshotId
      ? await deps.db.snapshotCopy.findUnique({ where: { snapshotId_destinationId: { snapshotId: log.safetySnapshotId, destinationId: input.destinationId } } })
      : null;
    const alsoRead = safetyCopy?.repoSnapshotId ? [safetyCopy.repoSnapshotId] : [];
    const healed = await healInJob(deps, { ...input, repo: input.opened.repo, alsoRead }, signal);
    if (!healed) return '';
    if (healed === 'deferred') return ' (the damaged repository could not be healed now; a repository_heal job will)';
    let note = ` (${healed.packs.length} damaged pack(s) dropped from the index; ${healed.damagedSnapshotIds.length} snapshot(s) marked damaged`;
    if (log.safetySnapshotId && healed.damagedSnapshotIds.includes(log.safetySnapshotId)) {
      const safetyId = await takeSafetySnapshot(deps, log.targetEnvironmentId, log.includes, signal);
      await deps.db.restoreLog.update({ where: { id: log.id }, data: { safetySnapshotId: safetyId } });
      note += '; the safety snapshot used damaged data and was taken again';
    }
    return note + ')';
  } catch (err) {
    deps.logger.error({ err, operationId: input.operationId }, 'healing after a damaged read failed');
    return ` (healing the repository or taking the safety snapshot again failed: ${messageOf(err)})`;
  }
}

/** Takes a SAFETY snapshot of the target inside the restore job (the environment's queue is already ours). */
export async function takeSafetySnapshot(deps: Deps, environmentId: string, includes: ('DB' | 'FILES')[], signal: AbortSignal, label = 'Before restore'): Promise<string> {
  const env = await deps.db.environment.findUniqueOrThrow({ where: { id: environmentId }, include: { settings: true, destinations: true } });
  const days = env.settings?.safetyRetentionDays ?? 7;
  const { snapshotId, operationId } = await deps.db.$transaction(async (tx) => {
    const snapshot = await tx.snapshot.create({
      data: {
        organizationId: env.organizationId,
        projectId: env.projectId,
        environmentId: env.id,
        kind: 'SAFETY',
        includes,
        label,
        expiresAt: new Date(deps.clock.now().getTime() + days * 86_400_000),
        copies: { create: env.destinations.map((d) => ({ destinationId: d.destinationId })) },
      },
    });
    // RUNNING from the start: it has no job of its own, so a QUEUED row left by a worker killed
    // before it began would wait forever, where a RUNNING one is failed by the stale sweep.
    const op = await tx.operation.create({
      data: { organizationId: env.organizationId, environmentId: env.id, type: 'SNAPSHOT', snapshotId: snapshot.id, phase: 'queued', status: 'RUNNING', heartbeatAt: deps.clock.now() },
    });
    return { snapshotId: snapshot.id, operationId: op.id };
  });
  try {
    await runSnapshot(deps, operationId, signal);
  } catch (err) {
    // runSnapshot throws only when the worker stops (it then forgot what it wrote and put its
    // operation back to QUEUED for a job to run again). This one has no job: the restore's next
    // run takes a new one, so this one goes entirely rather than wait for a job that never comes.
    await deps.db.$transaction([deps.db.operation.delete({ where: { id: operationId } }), deps.db.snapshot.delete({ where: { id: snapshotId } })]);
    throw err;
  }
  const done = await deps.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId } });
  if (done.status !== 'READY') throw new Error(`the safety snapshot failed, so the target was left untouched: ${done.error ?? done.status}`);
  return snapshotId;
}

/**
 * A stopping worker hands a restore-like job (restore, import, restore to a point in time) back:
 * what this run prepared goes, its log waits QUEUED and its operation is requeued; the caller
 * rethrows, and the worker's wrapper re-adds the job.
 */
export async function handBackRestore(deps: Deps, logId: string, operationId: string): Promise<void> {
  try {
    await discardRestoreLeftovers(deps, logId);
  } catch (cleanupErr) {
    deps.logger.error({ err: cleanupErr, operationId }, 'could not clear what a stopped restore prepared; its next run does');
  }
  await deps.db.restoreLog.update({ where: { id: logId }, data: { status: 'QUEUED', error: null, previousDatabaseName: null } });
  await requeueOperation(deps, operationId, HANDED_BACK_MESSAGE);
}
