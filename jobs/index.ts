/**
 * The explicit list of graphile-worker tasks. Each task lives in its own file, zod-parses its
 * payload (ids only) and calls one service; names are snake_case `<domain>_<verb>`.
 */
import type { TaskList } from 'graphile-worker';
import type { Deps } from '../src/services/deps.ts';
import type { TaskName } from '../src/services/jobs.ts';
import { destinationVerify } from './destination-verify.ts';
import { pitrRestore } from './pitr-restore.ts';
import { dumpImport } from './dump-import.ts';
import { pitrBaseBackup } from './pitr-base-backup.ts';
import { pitrInstanceOpen } from './pitr-instance-open.ts';
import { repositoryHeal } from './repository-heal.ts';
import { restoreDrill } from './restore-drill.ts';
import { retentionApply } from './retention-apply.ts';
import { retentionSweep } from './retention-sweep.ts';
import { scheduleFire } from './schedule-fire.ts';
import { scheduleReact } from './schedule-react.ts';
import { scheduleRetry } from './schedule-retry.ts';
import { scheduleWatch } from './schedule-watch.ts';
import { snapshotCopy } from './snapshot-copy.ts';
import { snapshotCreate } from './snapshot-create.ts';
import { snapshotDelete } from './snapshot-delete.ts';
import { snapshotRestore } from './snapshot-restore.ts';
import { snapshotVerify } from './snapshot-verify.ts';
import { webhookDeliver } from './webhook-deliver.ts';

export function taskList(deps: Deps): TaskList & Record<TaskName, unknown> {
  return {
    snapshot_create: snapshotCreate(deps),
    snapshot_restore: snapshotRestore(deps),
    pitr_restore: pitrRestore(deps),
    dump_import: dumpImport(deps),
    snapshot_delete: snapshotDelete(deps),
    snapshot_copy: snapshotCopy(deps),
    snapshot_verify: snapshotVerify(deps),
    destination_verify: destinationVerify(deps),
    schedule_fire: scheduleFire(deps),
    schedule_retry: scheduleRetry(deps),
    schedule_react: scheduleReact(deps),
    schedule_watch: scheduleWatch(deps),
    retention_apply: retentionApply(deps),
    retention_sweep: retentionSweep(deps),
    webhook_deliver: webhookDeliver(deps),
    repository_heal: repositoryHeal(deps),
    restore_drill: restoreDrill(deps),
    pitr_base_backup: pitrBaseBackup(deps),
    pitr_instance_open: pitrInstanceOpen(deps),
  };
}
