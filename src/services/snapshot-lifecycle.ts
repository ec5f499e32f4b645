import { z } from 'zod';
import { ConflictError, ErrorCode } from '../domain/errors.ts';
import { label, parseInput } from '../domain/validation.ts';
import { forgetSnapshots, prune } from '../engine/api.ts';
import { publishInTransaction } from '../events/bus.ts';
import { databaseSize } from '../sources/postgres.ts';
import { scanFiles } from '../sources/files.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl, getEnvironment } from './environments.ts';
import { enqueueJob, operationJobKey } from './jobs.ts';
import { beginOperation, finishOperation, progressReporter } from './operations.ts';
import { openRepository, reportLockWaits } from './repositories.ts';
import { messageOf } from './messages.ts';
import { getSnapshot } from './snapshot-read.ts';
import type { Viewer } from './viewer.ts';

/**
 * Deleting, pinning and sizing snapshots. Delete is a job: it forgets the snapshot on every
 * destination and prunes what no other snapshot uses, under the repository's exclusive lock.
 */

export async function deleteSnapshot(deps: Deps, viewer: Viewer, id: string): Promise<{ operationId: string }> {
  await getSnapshot(deps, viewer, id);
  return requestSnapshotDeletion(deps, id);
}

/** Marks a snapshot DELETING and enqueues its delete job; for callers that already authorized (the API above, retention). */
export async function requestSnapshotDeletion(deps: Deps, id: string): Promise<{ operationId: string }> {
  const snapshot = await deps.db.snapshot.findUniqueOrThrow({ where: { id } });
  if (snapshot.pinned) throw new ConflictError(ErrorCode.SNAPSHOT_PINNED, 'Snapshot is pinned; unpin it before deleting');
  if (snapshot.status === 'CREATING') throw new ConflictError(ErrorCode.SNAPSHOT_NOT_READY, 'Snapshot is still being created; cancel its operation instead');
  if (snapshot.status === 'DELETING' || snapshot.status === 'DELETED') throw new ConflictError(ErrorCode.SNAPSHOT_NOT_READY, `Snapshot is already ${snapshot.status.toLowerCase()}`);
  return deps.db.$transaction(async (tx) => {
    // Conditional update: two deletes racing cannot both enqueue a job.
    const claimed = await tx.snapshot.updateMany({ where: { id, status: snapshot.status, pinned: false }, data: { status: 'DELETING' } });
    if (claimed.count !== 1) throw new ConflictError(ErrorCode.SNAPSHOT_NOT_READY, 'Snapshot changed meanwhile; try again');
    const op = await tx.operation.create({
      data: { organizationId: snapshot.organizationId, environmentId: snapshot.environmentId, type: 'DELETE_SNAPSHOT', snapshotId: id, phase: 'queued' },
    });
    await enqueueJob(tx, 'snapshot_delete', { operationId: op.id }, { queueName: snapshot.environmentId, jobKey: operationJobKey(op.id), maxAttempts: 5 });
    await publishInTransaction(tx, 'environmentActivity', snapshot.environmentId, { kind: 'SNAPSHOT', environmentId: snapshot.environmentId, subjectId: id });
    return { operationId: op.id };
  });
}

/** The delete job. Throws (so graphile-worker retries with backoff) while a destination cannot be reached. */
export async function runDeleteSnapshot(deps: Deps, operationId: string, jobSignal?: AbortSignal): Promise<void> {
  const op = await beginOperation(deps, operationId);
  if (!op?.snapshotId) return;
  const progress = progressReporter(deps, operationId);
  const copies = await deps.db.snapshotCopy.findMany({ where: { snapshotId: op.snapshotId, status: { not: 'DELETED' } } });
  try {
    for (const copy of copies) {
      progress.report({ phase: 'forgetting' });
      if (copy.repoSnapshotId) {
        const opened = await openRepository(deps, copy.destinationId, jobSignal);
        // A restore reading this snapshot (into another environment: another queue) or a backup
        // holds the repository: forgetting waits for it, and says so. The phase makes it written at once.
        reportLockWaits(opened.repo, (message) => progress.report({ phase: 'forgetting', message }));
        try {
          await forgetSnapshots(opened.repo, [copy.repoSnapshotId], jobSignal);
          progress.report({ phase: 'pruning' });
          await prune(opened.repo, { signal: jobSignal });
        } finally {
          await opened.close();
        }
      }
      await deps.db.snapshotCopy.update({ where: { id: copy.id }, data: { status: 'DELETED' } });
    }
    await progress.flush();
    const s = await deps.db.snapshot.update({ where: { id: op.snapshotId }, data: { status: 'DELETED' } });
    await finishOperation(deps, operationId, 'SUCCEEDED');
    await deps.events.publish('environmentActivity', s.environmentId, { kind: 'SNAPSHOT', environmentId: s.environmentId, subjectId: s.id });
  } catch (err) {
    await progress.flush();
    await deps.db.operation.update({ where: { id: operationId }, data: { error: messageOf(err) } });
    throw err;
  }
}

const pinInput = z.object({ label: label.nullish() });

/** Pins a snapshot so no retention or delete removes it, within the environment's maxPinned. */
export async function pinSnapshot(deps: Deps, viewer: Viewer, id: string, raw: z.input<typeof pinInput>): Promise<string> {
  const input = parseInput(pinInput, raw);
  const snapshot = await getSnapshot(deps, viewer, id);
  if (snapshot.status !== 'READY') throw new ConflictError(ErrorCode.SNAPSHOT_NOT_READY, 'Only a ready snapshot can be pinned');
  await deps.db.$transaction(async (tx) => {
    // Lock the environment's settings row so two pins cannot both pass the count.
    const settings = await tx.$queryRawUnsafe<{ maxPinned: number }[]>('SELECT "maxPinned" FROM environment_settings WHERE "environmentId" = $1 FOR UPDATE', snapshot.environmentId);
    const max = settings[0]?.maxPinned ?? 10;
    const pinned = await tx.snapshot.count({ where: { environmentId: snapshot.environmentId, pinned: true, id: { not: id } } });
    if (!snapshot.pinned && pinned >= max) throw new ConflictError(ErrorCode.MAX_PINNED, `This environment already has ${pinned} pinned snapshots (the maximum is ${max})`);
    await tx.snapshot.update({ where: { id }, data: { pinned: true, pinLabel: input.label ?? null, pinnedAt: snapshot.pinnedAt ?? deps.clock.now() } });
  });
  return id;
}

export async function unpinSnapshot(deps: Deps, viewer: Viewer, id: string): Promise<string> {
  await getSnapshot(deps, viewer, id);
  await deps.db.snapshot.update({ where: { id }, data: { pinned: false, pinLabel: null, pinnedAt: null } });
  return id;
}

/** How big a snapshot would be, without taking one. */
export async function estimateSnapshotSize(deps: Deps, viewer: Viewer, environmentId: string): Promise<{ databaseBytes: bigint; filesBytes: bigint; fileCount: number }> {
  const env = await getEnvironment(deps, viewer, environmentId);
  const [databaseBytes, files] = await Promise.all([
    databaseSize(await environmentDatabaseUrl(deps, env.id)).catch((err: unknown) => {
      // The same cause a snapshot's job would fail with, as an answer rather than an internal error.
      throw new ConflictError(ErrorCode.DATABASE_UNREACHABLE, `The environment's database cannot be reached: ${messageOf(err)}`);
    }),
    env.filesPath ? scanFiles(env.filesPath) : Promise.resolve({ bytes: 0n, fileCount: 0 }),
  ]);
  return { databaseBytes, filesBytes: files.bytes, fileCount: files.fileCount };
}
