import { forgetSnapshots, listSnapshots } from '../engine/api.ts';
import type { Deps } from './deps.ts';
import { openRepository, OWN_WRITES } from './repositories.ts';

/**
 * What a snapshot job whose worker was killed may have written before it could record it: a
 * repository snapshot tagged `snapshot:<id>` on any of its destinations. A retry forgets these
 * before it writes again (runSnapshot); a snapshot failed by the recovery instead (no attempts
 * left) has them forgotten here, so a FAILED snapshot never leaves a restic snapshot behind.
 */

/** How long forgetting may take per destination: the recovery sweep must not hang on one that does not answer. */
const FORGET_TIMEOUT_MS = 120_000;

/** Forgets the repository snapshots tagged with `snapshotId` on each destination. Returns what it forgot, and the destinations it could not reach. */
export function forgetWrittenSnapshots(deps: Deps, snapshotId: string, destinationIds: string[]): Promise<{ forgotten: string[]; unreachable: string[] }> {
  return forgetTagged(deps, `snapshot:${snapshotId}`, destinationIds);
}

/**
 * Forgets the repository snapshots carrying `tag` (a job's own, such as `snapshot:<id>` or
 * `base-backup:<id>`) on each destination. Returns what it forgot, and the destinations it could not reach.
 */
export async function forgetTagged(deps: Deps, tag: string, destinationIds: string[]): Promise<{ forgotten: string[]; unreachable: string[] }> {
  const forgotten: string[] = [];
  const unreachable: string[] = [];
  // A destination whose repository was never recorded holds nothing a job wrote (a job records it
  // before it writes), and opening it here would create one.
  const used = await deps.db.destination.findMany({ where: { id: { in: [...new Set(destinationIds)] }, repositoryId: { not: null } }, select: { id: true } });
  for (const { id: destinationId } of used) {
    const signal = AbortSignal.timeout(FORGET_TIMEOUT_MS);
    let opened: Awaited<ReturnType<typeof openRepository>> | undefined;
    try {
      opened = await openRepository(deps, destinationId, signal);
      const tagged = (await listSnapshots(opened.repo, signal)).filter((sn) => sn.tags?.includes(tag)).map((sn) => sn.id);
      await forgetSnapshots(opened.repo, tagged, signal, OWN_WRITES);
      forgotten.push(...tagged);
    } catch (err) {
      deps.logger.error({ err, tag, destinationId }, 'could not forget what a failed job wrote');
      unreachable.push(destinationId);
    } finally {
      await opened?.close().catch(() => undefined);
    }
  }
  if (forgotten.length) deps.logger.warn({ tag, forgotten }, 'forgot the repository snapshots a failed job had written');
  return { forgotten, unreachable };
}
