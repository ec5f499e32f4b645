import { discardRestoreDatabase, undoRestoreSwap } from '../sources/postgres.ts';
import { discardRestoreDirectory } from '../sources/files.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl } from './environments.ts';
import { discardNewEnvironment } from './new-environment.ts';

/**
 * What a restore leaves beside its target while it runs (the `<db>__bp_restore_<id>` database,
 * the `<files>.bp_restore_<id>` folder) and how to clear it when its worker was killed: used by
 * the recovery that fails the operation and by a run after a stop before it starts over. A
 * restore killed after its swap (database swapped, files not yet, or both swapped but the success
 * not recorded) is undone, never completed: a restore that did not succeed leaves the target as
 * it was, database and files alike.
 */

/** The id a restore's temp database and folder are named by (from its RestoreLog id). */
export function restoreIdOf(restoreLogId: string): string {
  return restoreLogId.replace(/-/g, '').slice(-12);
}

/** Drops the temp database and removes the staging folder of the restore `restoreLogId`. Returns what it found. */
export async function discardRestoreLeftovers(deps: Deps, restoreLogId: string): Promise<string[]> {
  const log = await deps.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId }, include: { targetEnvironment: true } });
  const restoreId = restoreIdOf(log.id);
  const found: string[] = [];
  if (log.includes.includes('DB')) {
    const url = await environmentDatabaseUrl(deps, log.targetEnvironmentId);
    if (await undoRestoreSwap(url, restoreId)) found.push('database swap undone');
    if (await discardRestoreDatabase(url, restoreId)) found.push('temp database');
  }
  if (log.includes.includes('FILES') && log.targetEnvironment.filesPath) {
    const dir = await discardRestoreDirectory(log.targetEnvironment.filesPath, restoreId);
    if (dir.putBack) found.push('files folder moved aside');
    if (dir.undone) found.push('files swap undone');
    if (dir.removedTemp) found.push('staging folder');
  }
  // A new environment's database and folder under its own names, once the commit began.
  found.push(...(await discardNewEnvironment(deps, restoreLogId, restoreId)));
  if (found.length) deps.logger.warn({ restoreLogId, found }, 'cleared what a stopped restore left');
  return found;
}
