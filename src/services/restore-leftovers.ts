import { discardRestoreDatabase } from '../sources/postgres.ts';
import { discardRestoreDirectory } from '../sources/files.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl } from './environments.ts';

/**
 * What a restore leaves beside its target while it runs (the `<db>__bp_restore_<id>` database,
 * the `<files>.bp_restore_<id>` folder) and how to clear it when its worker was killed: used by
 * the recovery that fails the operation and by a retry before it starts over.
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
    if (await discardRestoreDatabase(await environmentDatabaseUrl(deps, log.targetEnvironmentId), restoreId)) found.push('temp database');
  }
  if (log.includes.includes('FILES') && log.targetEnvironment.filesPath) {
    const dir = await discardRestoreDirectory(log.targetEnvironment.filesPath, restoreId);
    if (dir.putBack) found.push('files folder moved aside');
    if (dir.removedTemp) found.push('staging folder');
  }
  if (found.length) deps.logger.warn({ restoreLogId, found }, 'cleared what a stopped restore left');
  return found;
}
