import { z } from 'zod';
import { ConflictError, ErrorCode } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { backup, copySnapshot, forgetSnapshots, listSnapshots } from '../engine/api.ts';
import { publishInTransaction } from '../events/bus.ts';
import { ensureSlot, parseLsn, startBaseBackup, walFileName } from '../sources/wal.ts';
import type { Deps } from './deps.ts';
import { getEnvironment } from './environments.ts';
import { idempotencyKey, inputHash, remember, replayed } from './idempotency.ts';
import { enqueueJob, operationJobKey } from './jobs.ts';
import { beginOperation, CancelledError, finishOperation, HANDED_BACK_MESSAGE, progressReporter, requeueOperation } from './operations.ts';
import { alertCluster, clusterContext, PITR_ZSTD_LEVEL } from './pitr-cluster.ts';
import { baseBackupTag } from './pitr-leftovers.ts';
import { openRepository, type OpenedRepository, OWN_WRITES } from './repositories.ts';
import { messageOf, underLimits } from './snapshots.ts';
import type { Viewer } from './viewer.ts';

/**
 * Base backups of a cluster (the layout's `pitr-base` snapshots): `pg_basebackup` as a tar
 * streamed into the first destination's repository with the engine's backup (content-defined
 * chunking: a second base backup stores only the chunks that changed), then copied to the
 * others. Each is a BaseBackup row and an Operation (type BASE_BACKUP); jobs of one cluster run
 * one at a time on the queue `pitr:<clusterId>`. Its repository snapshots carry the tag
 * `base-backup:<id>`, so a retry or a failure finds and forgets whatever a killed run wrote.
 */

const createBaseBackupInput = z.object({ environmentId: z.string(), idempotencyKey: idempotencyKey.nullish() });

export const baseBackupPath = (sysid: string) => `/pitr/${sysid}/base.tar`;
const queueOf = (clusterId: string) => `pitr:${clusterId}`;

/** Records a base backup of the environment's cluster and enqueues it. */
export async function createBaseBackup(deps: Deps, viewer: Viewer, raw: z.input<typeof createBaseBackupInput>): Promise<{ operationId: string; baseBackupId: string }> {
  const input = parseInput(createBaseBackupInput, raw);
  const env = await getEnvironment(deps, viewer, input.environmentId);
  if (!env.walEnabled || !env.pitrClusterId) throw new ConflictError(ErrorCode.PITR_NOT_ENABLED, 'Point-in-time recovery is not enabled for this environment (upsertSchedule with walEnabled: true)');
  const hash = input.idempotencyKey ? inputHash({ environmentId: env.id }) : null;
  if (input.idempotencyKey) {
    const earlier = await replayed(deps, viewer.organizationId, 'createBaseBackup', input.idempotencyKey, hash!);
    if (earlier) return ofOperation(deps, earlier);
  }
  try {
    return await enqueueBaseBackup(deps, env.pitrClusterId, { organizationId: env.organizationId, environmentId: env.id }, async (tx, operationId) => {
      if (input.idempotencyKey) await remember(tx, deps, { organizationId: viewer.organizationId, mutation: 'createBaseBackup', key: input.idempotencyKey, hash: hash!, operationId });
    });
  } catch (err) {
    if (input.idempotencyKey && (err as { code?: string }).code === 'P2002') {
      const earlier = await replayed(deps, viewer.organizationId, 'createBaseBackup', input.idempotencyKey, hash!);
      if (earlier) return ofOperation(deps, earlier);
    }
    throw err;
  }
}

async function ofOperation(deps: Deps, operationId: string) {
  const b = await deps.db.baseBackup.findUniqueOrThrow({ where: { operationId } });
  return { operationId, baseBackupId: b.id };
}

/** The operation, the BaseBackup row and the job, in one transaction. `jobKey` makes a scheduled run unique. */
export async function enqueueBaseBackup(
  deps: Deps,
  clusterId: string,
  owner: { organizationId: string; environmentId: string },
  extra?: (tx: Parameters<Parameters<Deps['db']['$transaction']>[0]>[0], operationId: string) => Promise<void>,
): Promise<{ operationId: string; baseBackupId: string }> {
  return deps.db.$transaction(async (tx) => {
    const op = await tx.operation.create({ data: { organizationId: owner.organizationId, environmentId: owner.environmentId, type: 'BASE_BACKUP', phase: 'queued', input: { clusterId } } });
    const b = await tx.baseBackup.create({ data: { clusterId, operationId: op.id, startedAt: deps.clock.now() } });
    await extra?.(tx, op.id);
    await enqueueJob(tx, 'pitr_base_backup', { operationId: op.id }, { queueName: queueOf(clusterId), jobKey: operationJobKey(op.id), maxAttempts: 3 });
    await publishInTransaction(tx, 'environmentActivity', owner.environmentId, { kind: 'SNAPSHOT', environmentId: owner.environmentId, subjectId: op.id });
    return { operationId: op.id, baseBackupId: b.id };
  });
}

/** The job: pg_basebackup into every destination of the cluster's environments. */
export async function runBaseBackup(deps: Deps, operationId: string, jobSignal?: AbortSignal): Promise<void> {
  const op = await beginOperation(deps, operationId);
  if (!op) return;
  const bb = await deps.db.baseBackup.findUniqueOrThrow({ where: { operationId } });
  const ctx = await clusterContext(deps, bb.clusterId);
  const progress = progressReporter(deps, operationId);
  const opened: OpenedRepository[] = [];
  const written: { repo: OpenedRepository; id: string }[] = [];
  const tag = baseBackupTag(bb.id);
  try {
    if (!ctx?.databaseUrl) throw new Error('no environment has point-in-time recovery enabled on this cluster any more');
    if (!ctx.destinationIds.length) throw new Error("the cluster's environments have no destination to store the base backup in");
    const { cluster, databaseUrl } = ctx;
    await underLimits(deps, operationId, 6 * 3600, jobSignal, async (signal) => {
      progress.report({ phase: 'preparing', bytesDone: 0 });
      // WAL from the backup's start must reach the archive: the slot keeps it until streamed.
      await ensureSlot(databaseUrl, cluster.slotName);
      const copies: { destinationId: string; repoSnapshotId: string; addedBytes: number }[] = [];
      let first: { repo: OpenedRepository; snapshotId: string } | null = null;
      let range: { timeline: number; startLsn: string; endLsn: string } | null = null;
      let sizeBytes = 0;
      let finishedAt = deps.clock.now();
      for (const destinationId of ctx.destinationIds) {
        const repo = await openRepository(deps, destinationId, signal);
        opened.push(repo);
        if (op.attempts > 1) {
          const orphans = (await listSnapshots(repo.repo, signal)).filter((s) => s.tags?.includes(tag));
          await forgetSnapshots(repo.repo, orphans.map((s) => s.id), signal, OWN_WRITES);
        }
        if (!first) {
          progress.report({ phase: 'uploading' });
          const run = startBaseBackup(databaseUrl, { signal });
          const parent = await parentBaseBackup(deps, cluster.id, destinationId);
          const result = await backup(repo.repo, { [baseBackupPath(cluster.systemIdentifier)]: { stream: run.stream, tar: true } }, {
            tags: ['backplane', 'pitr-base', `cluster:${cluster.systemIdentifier}`, tag],
            parent: parent ?? undefined,
            signal,
            compressionLevel: PITR_ZSTD_LEVEL,
            onProgress: (p) => progress.report({ bytesDone: p.bytesDone }),
            finish: async () => {
              range = await run.done;
              finishedAt = deps.clock.now();
              const seg = cluster.walSegmentSize;
              return {
                time: finishedAt,
                tags: [`timeline:${range.timeline}`, `start-wal:${walFileName(range.timeline, parseLsn(range.startLsn), seg)}`, `end-wal:${walFileName(range.timeline, parseLsn(range.endLsn), seg)}`],
              };
            },
          });
          await run.done;
          written.push({ repo, id: result.snapshotId });
          first = { repo, snapshotId: result.snapshotId };
          sizeBytes = result.bytesProcessed;
          // Everything the repository grew by (packs whole, index, snapshot), not the blobs alone.
          copies.push({ destinationId, repoSnapshotId: result.snapshotId, addedBytes: result.bytesStored });
        } else {
          progress.report({ phase: 'copying' });
          const stored = repo.repo.writeStats().bytesStored;
          const copied = await copySnapshot(first.repo.repo, repo.repo, first.snapshotId, { signal });
          written.push({ repo, id: copied.snapshotId });
          copies.push({ destinationId, repoSnapshotId: copied.snapshotId, addedBytes: repo.repo.writeStats().bytesStored - stored });
        }
      }
      const r = range as { timeline: number; startLsn: string; endLsn: string } | null;
      if (!r) throw new Error('the base backup reported no WAL range');
      const seg = cluster.walSegmentSize;
      await deps.db.$transaction([
        deps.db.baseBackup.update({
          where: { id: bb.id },
          data: {
            status: 'READY',
            timeline: r.timeline,
            startLsn: r.startLsn,
            endLsn: r.endLsn,
            startWal: walFileName(r.timeline, parseLsn(r.startLsn), seg),
            endWal: walFileName(r.timeline, parseLsn(r.endLsn), seg),
            sizeBytes: BigInt(sizeBytes),
            addedBytes: BigInt(copies.reduce((n, c) => n + c.addedBytes, 0)),
            copies,
            finishedAt,
          },
        }),
        deps.db.pitrCluster.update({ where: { id: cluster.id }, data: { lastBaseBackupAt: finishedAt } }),
        // A gap ends where a base backup after it becomes consistent.
        deps.db.pitrGap.updateMany({ where: { clusterId: cluster.id, toTime: null, fromTime: { lte: bb.startedAt } }, data: { toTime: finishedAt } }),
      ]);
      progress.report({ phase: 'done', bytesDone: sizeBytes, bytesTotal: sizeBytes });
    });
    await progress.flush();
    await finishOperation(deps, operationId, 'SUCCEEDED');
  } catch (err) {
    await progress.flush();
    // Nothing half-visible: a base backup is in every repository or in none.
    for (const w of written) await forgetSnapshots(w.repo.repo, [w.id], undefined, OWN_WRITES).catch((e) => deps.logger.error({ err: e }, 'could not forget a partial base backup'));
    if (jobSignal?.aborted && !(err instanceof CancelledError)) {
      await requeueOperation(deps, operationId, HANDED_BACK_MESSAGE);
      throw err;
    }
    const message = messageOf(err);
    await deps.db.baseBackup.update({ where: { id: bb.id }, data: { status: 'FAILED', error: message, finishedAt: deps.clock.now() } });
    await finishOperation(deps, operationId, err instanceof CancelledError ? 'CANCELLED' : 'FAILED', message);
    if (ctx && !(err instanceof CancelledError)) await alertCluster(deps, ctx, 'BASE_BACKUP_FAILED', 'CRITICAL', `Base backup failed: ${message}`, operationId);
  } finally {
    for (const o of opened) await o.close().catch(() => undefined);
  }
}

/** The newest base backup in this destination: the parent restic shows diffs against. */
async function parentBaseBackup(deps: Deps, clusterId: string, destinationId: string): Promise<string | null> {
  const rows = await deps.db.baseBackup.findMany({ where: { clusterId, status: 'READY' }, orderBy: { finishedAt: 'desc' }, take: 5 });
  for (const r of rows) {
    const c = (r.copies as { destinationId: string; repoSnapshotId: string }[]).find((x) => x.destinationId === destinationId);
    if (c) return c.repoSnapshotId;
  }
  return null;
}
