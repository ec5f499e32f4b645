import { nextVerifyRun } from './destination-settings.ts';
import type { Deps } from './deps.ts';
import { enqueueJob, operationJobKey, removeJob, type SqlTx } from './jobs.ts';

/**
 * Work one service starts for another through the job queue: a copy after a snapshot, retention
 * after a scheduled one, the schedule's reaction to a failed one, a destination's next
 * verification when its settings change. Each adds a
 * graphile-worker job in the caller's transaction, so the starting service needs nothing of the
 * one that does the work, and the services stay a graph without cycles (docs/architecture.md):
 * this module imports no service but the job queue's.
 */

/** Records a copy operation and enqueues its job (inside the caller's transaction). */
export async function enqueueCopy(
  tx: SqlTx & Pick<Deps['db'], 'operation'>,
  snapshot: { id: string; organizationId: string; environmentId: string },
  destinationId: string,
  opts: { runAt?: Date } = {},
): Promise<string> {
  // The SnapshotCopy row is made (or, after a failure, reused) when the job starts: a copy
  // cancelled while queued leaves nothing behind, and a FAILED copy keeps its reason until then.
  const op = await tx.operation.create({
    data: { organizationId: snapshot.organizationId, environmentId: snapshot.environmentId, type: 'COPY_SNAPSHOT', snapshotId: snapshot.id, phase: 'queued', input: { destinationId } },
  });
  await enqueueJob(tx, 'snapshot_copy', { operationId: op.id }, { queueName: snapshot.environmentId, jobKey: operationJobKey(op.id), maxAttempts: 3, runAt: opts.runAt });
  return op.id;
}

/** Enqueues a retention run for an environment (one pending at a time). */
export async function enqueueRetention(tx: Parameters<typeof enqueueJob>[0], environmentId: string): Promise<void> {
  await enqueueJob(tx, 'retention_apply', { environmentId }, { jobKey: `retention:${environmentId}`, maxAttempts: 3 });
}

/**
 * Has the schedule react to its failed snapshot (retry, pause or nothing, by the environment's
 * failure policy: afterScheduledSnapshotFailed in schedules.ts), once per snapshot.
 */
export async function enqueueScheduleReaction(tx: SqlTx, snapshotId: string): Promise<void> {
  await enqueueJob(tx, 'schedule_react', { snapshotId }, { jobKey: `schedule-react:${snapshotId}`, maxAttempts: 3 });
}

/** The job key of a destination's next scheduled verification: one pending job per destination. */
export const verifyJobKey = (destinationId: string) => `destination-verify:${destinationId}`;

/** Plans (or, with no cron, cancels) a destination's next scheduled verification. */
export async function scheduleDestinationVerify(deps: Deps, tx: SqlTx, destinationId: string, verifyCron: string | null): Promise<void> {
  const runAt = verifyCron ? nextVerifyRun(verifyCron, deps.clock.now()) : null;
  if (!runAt) {
    await removeJob(tx, verifyJobKey(destinationId));
    return;
  }
  await enqueueJob(tx, 'destination_verify', { destinationId }, { jobKey: verifyJobKey(destinationId), runAt, maxAttempts: 3 });
}
