import path from 'node:path';
import { discardPitrWorkDir } from '../sources/pitr-instance.ts';
import { lstat, rm } from 'node:fs/promises';
import { discardRestoreDatabase, undoRestoreSwap } from '../sources/postgres.ts';
import { discardRestoreDirectory, drillDirectoryPath } from '../sources/files.ts';
import { drillDatabaseName, dropMarkedDatabase } from '../sources/new-database.ts';
import type { Deps } from './deps.ts';
import { environmentDatabaseUrl } from './environments.ts';
import { discardNewEnvironment } from './new-environment.ts';

/**
 * What a restore leaves beside its target while it runs (the `<db>__bp_restore_<id>` database,
 * the `<files>.bp_restore_<id>` folder) and how to clear it when its worker was killed: used by
 * the recovery that fails the operation and by a run after a stop before it starts over. A
 * restore killed after its swap (database swapped, files not yet, or both swapped but the success
 * not recorded) is undone, never completed: a restore that did not succeed leaves the target as
 * it was, database and files alike. A restore to a point in time also leaves its work folder
 * `<home>/pitr-restore-<id>` (base backup, WAL, and maybe a temporary PostgreSQL still running).
 */

/** The id a restore's temp database and folder are named by (from its RestoreLog id). */
export function restoreIdOf(restoreLogId: string): string {
  return restoreLogId.replace(/-/g, '').slice(-12);
}

/** Drops the temp database and removes the staging folder of the restore `restoreLogId`. Returns what it found. */
export async function discardRestoreLeftovers(deps: Deps, restoreLogId: string, opts: { workFolderOnly?: boolean } = {}): Promise<string[]> {
  const log = await deps.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId }, include: { targetEnvironment: true } });
  const restoreId = restoreIdOf(log.id);
  const found: string[] = [];
  if (log.pointInTime && (await discardPitrWorkDir(deps.home ?? path.resolve('.backplane'), restoreId))) found.push('recovery work folder');
  if (opts.workFolderOnly) return found;
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

/** The comment a drill's scratch database carries: it is dropped only with it. */
export function drillMarker(drillId: string): string {
  return `backplane: scratch copy of restore drill ${drillId}`;
}

/**
 * Drops a restore drill's scratch database (`bp_drill_<id>`) and removes its scratch folder
 * (`<files>.bp_drill_<id>`): after every drill, and in the recovery of one whose worker died.
 * Returns what it found.
 */
export async function discardDrillLeftovers(deps: Deps, drillId: string): Promise<string[]> {
  const drill = await deps.db.restoreDrill.findUniqueOrThrow({ where: { id: drillId }, include: { environment: true } });
  const found: string[] = [];
  const url = await environmentDatabaseUrl(deps, drill.environmentId);
  if (await dropMarkedDatabase(url, drillDatabaseName(drill.id), drillMarker(drill.id))) found.push('scratch database');
  if (drill.environment.filesPath) {
    const dir = drillDirectoryPath(drill.environment.filesPath, drill.id);
    if (await lstat(dir).then(() => true, () => false)) {
      await rm(dir, { recursive: true, force: true });
      found.push('scratch folder');
    }
  }
  return found;
}
