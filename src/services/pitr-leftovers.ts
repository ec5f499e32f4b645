import type { Operation } from '../generated/prisma/client.ts';
import type { Deps } from './deps.ts';
import { alertCluster, clusterContext } from './pitr-cluster.ts';
import { forgetTagged } from './snapshot-leftovers.ts';

/**
 * What a base backup job leaves when its worker dies: a repository snapshot tagged
 * `base-backup:<id>` in any destination of the cluster, written before the BaseBackup row could
 * say so. A retry forgets it before it writes again (runBaseBackup); a base backup the stale
 * operation sweep fails (no attempts left) has it forgotten here, so a FAILED base backup never
 * leaves a restic snapshot behind that a recovery could mistake for a complete one.
 */

/** The tag every repository snapshot of base backup `id` carries. */
export const baseBackupTag = (id: string) => `base-backup:${id}`;

/**
 * Ends the base backup of a stale operation (already marked FAILED with `reason`): its repository
 * snapshots forgotten, its row FAILED with the reason, BASE_BACKUP_FAILED raised.
 */
export async function baseBackupStopped(deps: Deps, op: Operation, reason: string): Promise<void> {
  const bb = await deps.db.baseBackup.findUnique({ where: { operationId: op.id } });
  if (!bb) return;
  const ctx = await clusterContext(deps, bb.clusterId);
  const recorded = (bb.copies as { destinationId: string }[]).map((c) => c.destinationId);
  const { forgotten, unreachable } = await forgetTagged(deps, baseBackupTag(bb.id), [...(ctx?.destinationIds ?? []), ...recorded]);
  const cleanup = [
    forgotten.length ? `; forgot the repository snapshot(s) it had written: ${forgotten.join(', ')}` : '',
    unreachable.length ? `; destination(s) ${unreachable.join(', ')} could not be reached to forget what it wrote` : '',
  ].join('');
  const error = `${reason}${cleanup}`;
  // The streamer's tick may have marked it FAILED already (its operation had ended): the reason still goes in.
  await deps.db.baseBackup.updateMany({ where: { id: bb.id, status: { in: ['CREATING', 'FAILED'] } }, data: { status: 'FAILED', error, finishedAt: bb.finishedAt ?? deps.clock.now() } });
  if (ctx) await alertCluster(deps, ctx, 'BASE_BACKUP_FAILED', 'CRITICAL', `Base backup failed: ${error}`, op.id);
}
