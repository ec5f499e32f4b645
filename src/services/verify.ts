import { z } from 'zod';
import { BackendAccessError } from '../destinations/backend.ts';
import { ConflictError, ErrorCode } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { loadSnapshot, withLock, type Id, type Repository } from '../engine/api.ts';
import { publishInTransaction } from '../events/bus.ts';
import { raiseAlert } from './alerts.ts';
import { healInJob, throwIfDamaged } from './damage.ts';
import type { Deps } from './deps.ts';
import { scheduleDestinationVerify } from './follow-ups.ts';
import { recordHealth } from './destinations.ts';
import { idempotencyKey, inputHash, remember, replayed } from './idempotency.ts';
import { enqueueJob, operationJobKey } from './jobs.ts';
import { beginOperation, CancelledError, finishOperation, HANDED_BACK_MESSAGE, progressReporter, requeueOperation, TimedOutError } from './operations.ts';
import { openRepository, type OpenedRepository } from './repositories.ts';
import { underLimits } from './job-limits.ts';
import { messageOf } from './messages.ts';
import { getSnapshot } from './snapshot-read.ts';
import type { Viewer } from './viewer.ts';

// Live with the other follow-up jobs (saving a destination plans its verification); still exported here.
export { scheduleDestinationVerify, verifyJobKey } from './follow-ups.ts';

/**
 * Verification of one snapshot on each destination that holds it. The engine's `check` looks at
 * whole repositories; a destination shared by many environments would make that slow and blame
 * this snapshot for others' problems, so this walks only the snapshot's own trees: every tree is
 * loaded and hash-checked, every data blob must be indexed and its pack present. With
 * `readData`, every data blob is also read, its MAC checked and its content hashed.
 *
 * Damaged packs found on the way are dropped from the index (services/damage.ts): the copy and
 * every other snapshot that used them become DAMAGED, so restores and downloads read another copy;
 * other damage marks the copy FAILED. Any problem raises a VERIFICATION_FAILED alert and fails
 * the operation.
 */

const verifyInput = z.object({ snapshotId: z.string(), readData: z.boolean().default(false), idempotencyKey: idempotencyKey.nullish() });

export async function verifySnapshot(deps: Deps, viewer: Viewer, raw: z.input<typeof verifyInput>): Promise<{ operationId: string }> {
  const input = parseInput(verifyInput, raw);
  const snapshot = await getSnapshot(deps, viewer, input.snapshotId);
  const key = input.idempotencyKey ?? null;
  const hash = key ? inputHash({ snapshotId: input.snapshotId, readData: input.readData }) : null;
  if (key) {
    const earlier = await replayed(deps, viewer.organizationId, 'verifySnapshot', key, hash!);
    if (earlier) return { operationId: earlier };
  }
  throwIfDamaged(snapshot);
  if (snapshot.status !== 'READY') throw new ConflictError(ErrorCode.SNAPSHOT_NOT_READY, `Snapshot is ${snapshot.status.toLowerCase()}, not ready`);
  try {
    return await deps.db.$transaction(async (tx) => {
      const op = await tx.operation.create({
        data: { organizationId: snapshot.organizationId, environmentId: snapshot.environmentId, type: 'VERIFY_SNAPSHOT', snapshotId: snapshot.id, phase: 'queued', input: { readData: input.readData } },
      });
      if (key) await remember(tx, deps, { organizationId: viewer.organizationId, mutation: 'verifySnapshot', key, hash: hash!, operationId: op.id });
      await enqueueJob(tx, 'snapshot_verify', { operationId: op.id }, { queueName: snapshot.environmentId, jobKey: operationJobKey(op.id), maxAttempts: 3 });
      await publishInTransaction(tx, 'environmentActivity', snapshot.environmentId, { kind: 'OPERATION', environmentId: snapshot.environmentId, subjectId: op.id });
      return { operationId: op.id };
    });
  } catch (err) {
    if (key && (err as { code?: string }).code === 'P2002') {
      const earlier = await replayed(deps, viewer.organizationId, 'verifySnapshot', key, hash!);
      if (earlier) return { operationId: earlier };
    }
    throw err;
  }
}

/** What verifying one copy found. */
export interface CopyVerification {
  trees: number;
  blobs: number;
  bytesRead: number;
  problems: string[];
}

/** Walks one snapshot in an open repository; never throws for damage it finds, only for failing to look. */
export async function verifyRepositorySnapshot(
  repo: Repository,
  repoSnapshotId: Id,
  opts: { readData: boolean; signal?: AbortSignal; onTotal?: (bytes: number) => void; onRead?: (bytes: number) => void },
): Promise<CopyVerification> {
  const { signal } = opts;
  const problems: string[] = [];
  const result = { trees: 0, blobs: 0, bytesRead: 0, problems };
  let sn;
  try {
    sn = await loadSnapshot(repo, repoSnapshotId, signal);
  } catch (err) {
    if (err instanceof BackendAccessError && err.kind !== 'IO') throw err;
    problems.push(`snapshot file ${repoSnapshotId.slice(0, 12)}: ${messageOf(err)}`);
    return result;
  }
  const seenTrees = new Set<Id>();
  const dataBlobs = new Set<Id>();
  const packs = new Set<Id>();
  const stack: Id[] = [sn.tree];
  while (stack.length) {
    signal?.throwIfAborted();
    const treeId = stack.pop()!;
    if (seenTrees.has(treeId)) continue;
    seenTrees.add(treeId);
    const entry = repo.lookupBlob('tree', treeId);
    if (!entry) {
      problems.push(`tree ${treeId.slice(0, 12)} is not in the index`);
      continue;
    }
    packs.add(entry.packId);
    try {
      const tree = await repo.loadTree(treeId, signal);
      for (const node of tree.nodes) {
        if (node.type === 'dir' && node.subtree) stack.push(node.subtree);
        if (node.type === 'file') for (const id of node.content ?? []) dataBlobs.add(id);
      }
    } catch (err) {
      if (signal?.aborted || (err instanceof BackendAccessError && err.kind !== 'IO')) throw err;
      problems.push(`tree ${treeId.slice(0, 12)} in pack ${entry.packId.slice(0, 12)}: ${messageOf(err)}`);
    }
  }
  result.trees = seenTrees.size;
  const entries: { id: Id; packId: Id; length: number }[] = [];
  for (const id of dataBlobs) {
    const e = repo.lookupBlob('data', id);
    if (!e) problems.push(`data blob ${id.slice(0, 12)} is not in the index`);
    else {
      entries.push({ id, packId: e.packId, length: e.length });
      packs.add(e.packId);
    }
  }
  result.blobs = entries.length;
  for (const packId of packs) {
    const st = await repo.backend.stat({ type: 'data', name: packId }, { signal });
    if (!st) problems.push(`pack ${packId.slice(0, 12)} is missing`);
  }
  if (opts.readData) {
    opts.onTotal?.(entries.reduce((n, e) => n + e.length, 0));
    let next = 0;
    const worker = async () => {
      while (next < entries.length) {
        signal?.throwIfAborted();
        const e = entries[next++];
        try {
          await repo.loadBlob('data', e.id, signal);
        } catch (err) {
          if (signal?.aborted || (err instanceof BackendAccessError && err.kind !== 'IO')) throw err;
          problems.push(`data blob ${e.id.slice(0, 12)} in pack ${e.packId.slice(0, 12)}: ${messageOf(err)}`);
        }
        result.bytesRead += e.length;
        opts.onRead?.(e.length);
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
  }
  return result;
}

/** The verify job. */
export async function runVerifySnapshot(deps: Deps, operationId: string, jobSignal?: AbortSignal): Promise<void> {
  const op = await beginOperation(deps, operationId);
  if (!op?.snapshotId) return;
  const input = (op.input ?? {}) as { readData?: boolean; destinationId?: string };
  const readData = Boolean(input.readData);
  const snapshot = await deps.db.snapshot.findUniqueOrThrow({ where: { id: op.snapshotId }, include: { environment: { include: { settings: true } } } });
  const copies = await deps.db.snapshotCopy.findMany({
    where: { snapshotId: snapshot.id, status: 'READY', repoSnapshotId: { not: null }, ...(input.destinationId ? { destinationId: input.destinationId } : {}) },
    include: { destination: true },
    orderBy: { createdAt: 'asc' },
  });
  const progress = progressReporter(deps, operationId);
  const lines: string[] = [];
  const failures: string[] = [];
  try {
    await underLimits(deps, operationId, snapshot.environment.settings?.timeoutSeconds ?? 3600, jobSignal, async (signal) => {
      if (copies.length === 0) throw new Error('the snapshot has no ready copy to verify');
      let total = 0;
      let done = 0;
      progress.report({ phase: 'verifying', bytesDone: 0 });
      for (const copy of copies) {
        const where = copy.destination.name;
        let opened: OpenedRepository | null = null;
        try {
          opened = await openRepository(deps, copy.destinationId, signal);
          const repo = opened.repo;
          const found = await withLock(repo, false, () =>
            verifyRepositorySnapshot(repo, copy.repoSnapshotId!, {
              readData,
              signal,
              onTotal: (n) => progress.report({ bytesTotal: (total += n) }),
              onRead: (n) => progress.report({ bytesDone: (done += n) }),
            }), signal);
          const summary = `${found.trees} trees, ${found.blobs} data blobs${readData ? `, ${found.bytesRead} bytes read` : ''}`;
          if (found.problems.length === 0) {
            lines.push(`${where}: ok (${summary})`);
          } else {
            const detail = `${found.problems.length} problem(s): ${found.problems.slice(0, 3).join('; ')}`;
            lines.push(`${where}: ${detail}`);
            failures.push(`${where}: ${detail}`);
            // Damaged packs leave the index and every snapshot that used them is marked DAMAGED;
            // damage that is no pack's (a blob no index lists) still fails this copy, so readers
            // go to another copy from now on.
            const healed = await healInJob(deps, { destinationId: copy.destinationId, repo, repoSnapshotId: copy.repoSnapshotId!, snapshotId: snapshot.id, environmentId: snapshot.environmentId, operationId }, signal);
            if (!healed || healed === 'deferred') await deps.db.snapshotCopy.update({ where: { id: copy.id }, data: { status: 'FAILED', error: `Verification failed: ${detail}`.slice(0, 1000) } });
          }
        } catch (err) {
          if (signal.aborted) throw err;
          const message = messageOf(err);
          lines.push(`${where}: could not be verified: ${message}`);
          failures.push(`${where}: could not be verified: ${message}`);
          if (err instanceof BackendAccessError && err.kind !== 'IO') await recordHealth(deps, copy.destination, message);
        } finally {
          await opened?.close().catch(() => undefined);
        }
      }
    });
    await progress.flush();
    await deps.db.operation.update({ where: { id: operationId }, data: { message: lines.join('\n').slice(0, 4000) } });
    if (failures.length) {
      const message = failures.join('\n').slice(0, 1000);
      // The alert first: whoever watches the operation end finds it already raised.
      await raiseAlert(deps, { organizationId: snapshot.organizationId, environmentId: snapshot.environmentId, operationId, type: 'VERIFICATION_FAILED', severity: 'CRITICAL', message: `Verification of a snapshot of ${snapshot.environment.name} failed: ${message}` });
      await finishOperation(deps, operationId, 'FAILED', message);
    } else {
      await finishOperation(deps, operationId, 'SUCCEEDED');
    }
  } catch (err) {
    await progress.flush();
    const shuttingDown = jobSignal?.aborted && !(err instanceof CancelledError) && !(err instanceof TimedOutError);
    if (shuttingDown) {
      await requeueOperation(deps, operationId, HANDED_BACK_MESSAGE);
      throw err;
    }
    const cancelled = err instanceof CancelledError;
    if (!cancelled) {
      await raiseAlert(deps, { organizationId: snapshot.organizationId, environmentId: snapshot.environmentId, operationId, type: 'VERIFICATION_FAILED', severity: 'CRITICAL', message: `Verification of a snapshot of ${snapshot.environment.name} failed: ${messageOf(err)}` });
    }
    await finishOperation(deps, operationId, cancelled ? 'CANCELLED' : 'FAILED', messageOf(err));
  }
}

// ---------------------------------------------------------------- scheduled verification

/**
 * The scheduled job: verifies, reading the data, the newest ready snapshot of each environment
 * on the destination (one VERIFY_SNAPSHOT operation each, on the environment's queue), then
 * plans the next run.
 */
export async function runDestinationVerify(deps: Deps, destinationId: string): Promise<string[]> {
  const d = await deps.db.destination.findUnique({ where: { id: destinationId } });
  if (!d?.verifyCron) return [];
  const copies = await deps.db.snapshotCopy.findMany({
    where: { destinationId, status: 'READY', repoSnapshotId: { not: null }, snapshot: { status: 'READY' } },
    include: { snapshot: true },
    orderBy: { createdAt: 'desc' },
  });
  const newest = new Map<string, (typeof copies)[number]['snapshot']>();
  for (const c of copies) if (!newest.has(c.snapshot.environmentId)) newest.set(c.snapshot.environmentId, c.snapshot);
  return deps.db.$transaction(async (tx) => {
    const ops: string[] = [];
    for (const snapshot of newest.values()) {
      const op = await tx.operation.create({
        data: { organizationId: snapshot.organizationId, environmentId: snapshot.environmentId, type: 'VERIFY_SNAPSHOT', snapshotId: snapshot.id, phase: 'queued', message: `Scheduled verification of ${d.name}`, input: { readData: true, destinationId } },
      });
      await enqueueJob(tx, 'snapshot_verify', { operationId: op.id }, { queueName: snapshot.environmentId, jobKey: operationJobKey(op.id), maxAttempts: 3 });
      ops.push(op.id);
    }
    await scheduleDestinationVerify(deps, tx, destinationId, d.verifyCron);
    return ops;
  });
}
