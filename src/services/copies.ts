import { ConflictError, ErrorCode } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { copySnapshot as copyInRepository, forgetSnapshots, listSnapshots } from '../engine/api.ts';
import { publishInTransaction } from '../events/bus.ts';
import { raiseAlert } from './alerts.ts';
import { healInJob, isDamage, throwIfDamaged } from './damage.ts';
import type { Deps } from './deps.ts';
import { getDestination, recordUse } from './destinations.ts';
import { idempotencyKey, inputHash, remember, replayed } from './idempotency.ts';
import { enqueueCopy } from './follow-ups.ts';
import { beginOperation, CancelledError, finishOperation, HANDED_BACK_MESSAGE, progressReporter, requeueOperation, TimedOutError } from './operations.ts';
import { openRepository, type OpenedRepository, OWN_WRITES } from './repositories.ts';
import { underLimits } from './job-limits.ts';
import { messageOf } from './messages.ts';
import { getSnapshot } from './snapshot-read.ts';
import type { Viewer } from './viewer.ts';

// Lives with the other follow-up jobs (the snapshot job starts copies); still exported here.
export { enqueueCopy };

/**
 * Copies: a snapshot added to another destination after it was taken. The job reads the first
 * healthy copy and sends only the blobs the target's repository lacks (engine copySnapshot), so
 * a second copy of a similar snapshot moves little. The copy's addedBytes says how much moved.
 */

/** Opens the first READY copy of a snapshot that can be opened, skipping `except`. */
export async function openReadableCopy(
  deps: Deps,
  snapshotId: string,
  signal: AbortSignal,
  except?: string,
): Promise<{ opened: OpenedRepository; repoSnapshotId: string; destinationId: string }> {
  const copies = await deps.db.snapshotCopy.findMany({
    where: { snapshotId, status: 'READY', repoSnapshotId: { not: null }, ...(except ? { destinationId: { not: except } } : {}) },
    orderBy: { createdAt: 'asc' },
  });
  let lastError: unknown = new Error('the snapshot has no readable copy');
  for (const copy of copies) {
    try {
      return { opened: await openRepository(deps, copy.destinationId, signal), repoSnapshotId: copy.repoSnapshotId!, destinationId: copy.destinationId };
    } catch (err) {
      if (signal.aborted) throw err;
      lastError = err;
      deps.logger.warn({ err, destinationId: copy.destinationId }, 'destination unreadable; trying the next copy');
    }
  }
  throw lastError;
}

/** Adds a copy of a READY snapshot to another destination of the organization. */
export async function copySnapshot(deps: Deps, viewer: Viewer, snapshotId: string, destinationId: string, opts: { idempotencyKey?: string | null } = {}): Promise<{ operationId: string }> {
  const key = opts.idempotencyKey ? parseInput(idempotencyKey, opts.idempotencyKey, ['input', 'idempotencyKey']) : null;
  const snapshot = await getSnapshot(deps, viewer, snapshotId);
  await getDestination(deps, viewer, destinationId);
  const hash = key ? inputHash({ snapshotId, destinationId }) : null;
  if (key) {
    const earlier = await replayed(deps, viewer.organizationId, 'copySnapshot', key, hash!);
    if (earlier) return { operationId: earlier };
  }
  throwIfDamaged(snapshot);
  if (snapshot.status !== 'READY') throw new ConflictError(ErrorCode.SNAPSHOT_NOT_READY, `Snapshot is ${snapshot.status.toLowerCase()}, not ready`);
  const existing = await deps.db.snapshotCopy.findUnique({ where: { snapshotId_destinationId: { snapshotId, destinationId } } });
  if (existing?.status === 'READY') throw new ConflictError(ErrorCode.COPY_EXISTS, 'The snapshot is already on this destination');
  const running = await deps.db.operation.findFirst({
    where: { snapshotId, type: 'COPY_SNAPSHOT', status: { in: ['QUEUED', 'RUNNING'] }, input: { path: ['destinationId'], equals: destinationId } },
  });
  if (running) throw new ConflictError(ErrorCode.COPY_EXISTS, 'A copy to this destination is already under way');
  try {
    return await deps.db.$transaction(async (tx) => {
      const operationId = await enqueueCopy(tx, snapshot, destinationId);
      if (key) await remember(tx, deps, { organizationId: viewer.organizationId, mutation: 'copySnapshot', key, hash: hash!, operationId });
      await publishInTransaction(tx, 'environmentActivity', snapshot.environmentId, { kind: 'SNAPSHOT', environmentId: snapshot.environmentId, subjectId: snapshot.id });
      return { operationId };
    });
  } catch (err) {
    // Two requests with one new key raced: the loser answers with the winner's operation.
    if (key && (err as { code?: string }).code === 'P2002') {
      const earlier = await replayed(deps, viewer.organizationId, 'copySnapshot', key, hash!);
      if (earlier) return { operationId: earlier };
    }
    throw err;
  }
}

/** The copy job. Throws (so graphile-worker retries) only when the worker is shutting down. */
export async function runCopySnapshot(deps: Deps, operationId: string, jobSignal?: AbortSignal): Promise<void> {
  const op = await beginOperation(deps, operationId);
  if (!op?.snapshotId) return;
  const destinationId = String((op.input as { destinationId?: string } | null)?.destinationId ?? '');
  const snapshot = await deps.db.snapshot.findUniqueOrThrow({ where: { id: op.snapshotId }, include: { environment: { include: { settings: true } } } });
  if (!(await deps.db.destination.findUnique({ where: { id: destinationId } }))) {
    await finishOperation(deps, operationId, 'FAILED', 'The destination was deleted');
    return;
  }
  const copy = await deps.db.snapshotCopy.upsert({
    where: { snapshotId_destinationId: { snapshotId: snapshot.id, destinationId } },
    create: { snapshotId: snapshot.id, destinationId },
    update: {},
  });
  const progress = progressReporter(deps, operationId);
  const opened: OpenedRepository[] = [];
  let written: { target: OpenedRepository; id: string } | null = null;
  let source: Awaited<ReturnType<typeof openReadableCopy>> | null = null;
  try {
    await underLimits(deps, operationId, snapshot.environment.settings?.timeoutSeconds ?? 3600, jobSignal, async (signal) => {
      progress.report({ phase: 'preparing', bytesDone: 0, bytesTotal: snapshot.sizeBytes });
      if (snapshot.status !== 'READY') throw new Error(`the snapshot is ${snapshot.status.toLowerCase()}`);
      source = await openReadableCopy(deps, snapshot.id, signal, destinationId);
      opened.push(source.opened);
      const target = await openRepository(deps, destinationId, signal);
      opened.push(target);
      // A retry after a crash may find the snapshot file the first run wrote: no second one.
      const orphans = (await listSnapshots(target.repo, signal)).filter((sn) => sn.tags?.includes(`snapshot:${snapshot.id}`));
      await forgetSnapshots(target.repo, orphans.map((sn) => sn.id), signal, OWN_WRITES);
      await deps.db.snapshotCopy.update({ where: { id: copy.id }, data: { status: 'UPLOADING' } });
      progress.report({ phase: 'copying' });
      const result = await copyInRepository(source!.opened.repo, target.repo, source!.repoSnapshotId, {
        signal,
        onProgress: (p) => progress.report({ bytesDone: p.bytesCopied }),
      });
      written = { target, id: result.snapshotId };
      await progress.flush();
      await deps.db.snapshotCopy.update({
        where: { id: copy.id },
        data: { status: 'READY', repoSnapshotId: result.snapshotId, sizeBytes: snapshot.sizeBytes, addedBytes: BigInt(result.bytesCopied), error: null, completedAt: deps.clock.now() },
      });
      await deps.db.operation.update({ where: { id: operationId }, data: { bytesDone: BigInt(result.bytesCopied), message: `${result.blobsCopied} blobs, ${result.bytesCopied} bytes sent` } });
      await recordUse(deps, destinationId);
    });
    await finishOperation(deps, operationId, 'SUCCEEDED');
  } catch (err) {
    await progress.flush();
    if (written) {
      const w = written as { target: OpenedRepository; id: string };
      await forgetSnapshots(w.target.repo, [w.id], undefined, OWN_WRITES).catch(() => undefined);
    }
    const shuttingDown = jobSignal?.aborted && !(err instanceof CancelledError) && !(err instanceof TimedOutError);
    if (shuttingDown) {
      await requeueOperation(deps, operationId, HANDED_BACK_MESSAGE);
      await deps.db.snapshotCopy.update({ where: { id: copy.id }, data: { status: 'PENDING' } });
      throw err;
    }
    const cancelled = err instanceof CancelledError;
    const message = messageOf(err);
    // Damage in the source is the source's, not the target's: heal it (it fails this copy all the same).
    const from = source as Awaited<ReturnType<typeof openReadableCopy>> | null;
    if (!cancelled && from && isDamage(err)) {
      await healInJob(deps, { destinationId: from.destinationId, repo: from.opened.repo, repoSnapshotId: from.repoSnapshotId, snapshotId: snapshot.id, environmentId: snapshot.environmentId, operationId }, jobSignal)
        .catch((e: unknown) => deps.logger.error({ err: e, operationId }, 'healing the source repository failed'));
    }
    await recordUse(deps, destinationId, err);
    await deps.db.snapshotCopy.update({ where: { id: copy.id }, data: { status: 'FAILED', repoSnapshotId: null, error: message } });
    if (!cancelled) {
      await raiseAlert(deps, { organizationId: snapshot.organizationId, environmentId: snapshot.environmentId, operationId, type: 'COPY_FAILED', severity: 'WARNING', message: `Copy of a snapshot of ${snapshot.environment.name} failed: ${message}` });
    }
    await finishOperation(deps, operationId, cancelled ? 'CANCELLED' : 'FAILED', message);
  } finally {
    for (const o of opened) await o.close().catch(() => undefined);
    await deps.events.publish('environmentActivity', snapshot.environmentId, { kind: 'SNAPSHOT', environmentId: snapshot.environmentId, subjectId: snapshot.id });
  }
}
