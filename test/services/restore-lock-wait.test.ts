/**
 * A job that meets another's repository lock waits for it (restic's --retry-lock) instead of
 * failing: a restore started while a prune holds the repository exclusively (a snapshot deleted,
 * retention applied) says it is waiting and restores once the prune is done; a prune started
 * while a backup or restore holds the repository waits for it to end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtime } from '../../src/app/runtime.ts';
import { Lock } from '../../src/engine/api.ts';
import type { Deps } from '../../src/services/deps.ts';
import { openRepository } from '../../src/services/repositories.ts';
import { restoreSnapshot } from '../../src/services/restores.ts';
import { deleteSnapshot, runDeleteSnapshot } from '../../src/services/snapshot-lifecycle.ts';
import type { Viewer } from '../../src/services/viewer.ts';
import { makeOrganization } from '../harness/factories.ts';
import { makeLiveEnvironment, type LiveEnvironment } from '../harness/live-environment.ts';
import { waitFor } from '../harness/schedule-helpers.ts';
import { envState, runRestoreJob, snapshotByJob, startServiceRuntime, viewerOf } from '../harness/service-runtime.ts';

let rt: Runtime;
let deps: Deps;
let viewer: Viewer;
let prod: LiveEnvironment;
let staging: LiveEnvironment;

/** Holds a lock on the repository the snapshot's copy lives in, as another process would. */
async function holdLock(snapshotId: string, exclusive: boolean) {
  const copy = await rt.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId } });
  const opened = await openRepository(deps, copy.destinationId);
  const lock = await Lock.acquire(opened.repo, exclusive);
  return {
    locksHeld: async () => (await opened.repo.listIds('locks')).length,
    release: async () => {
      await lock.release();
      await opened.close();
    },
  };
}

beforeAll(async () => {
  rt = await startServiceRuntime('lock_wait');
  deps = rt.deps;
  const org = await makeOrganization(rt.db);
  viewer = viewerOf(org.id);
  prod = await makeLiveEnvironment({ runtime: rt }, { organizationId: org.id, name: 'production', rows: 30 });
  staging = await makeLiveEnvironment({ runtime: rt }, { organizationId: org.id, name: 'staging', rows: 10 });
});
afterAll(() => rt?.close());

describe('repository locks held by another job', () => {
  it('a restore waits for a prune’s exclusive lock, says so, and restores once it is released', async () => {
    const snapshotId = await snapshotByJob(deps, viewer, prod.id);
    const expected = await envState(prod);
    const prune = await holdLock(snapshotId, true);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId, targetEnvironmentId: staging.id, createSafetySnapshot: false });
    const job = runRestoreJob(deps, operationId, restoreLogId);
    try {
      const waiting = await waitFor(() => rt.db.operation.findUniqueOrThrow({ where: { id: operationId } }), (o) => o.message !== null || ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(o.status), 'the restore to say it waits');
      expect(waiting).toMatchObject({ status: 'RUNNING', message: expect.stringMatching(/^Waiting for the repository lock: repository is already locked exclusively by PID \d+/) });
    } finally {
      await prune.release();
    }
    const { thrown, op, log } = await job;
    expect(thrown).toBeNull();
    expect(op).toMatchObject({ status: 'SUCCEEDED', message: null });
    expect(log.status).toBe('SUCCEEDED');
    expect(await envState(staging)).toEqual(expected);
  });

  it('a delete waits for a running job’s lock (its forget takes the exclusive lock, as restic’s does), says so, and deletes once it ends', async () => {
    const snapshotId = await snapshotByJob(deps, viewer, prod.id, ['DB']);
    const backup = await holdLock(snapshotId, false);
    const { operationId } = await deleteSnapshot(deps, viewer, snapshotId);
    const job = runDeleteSnapshot(deps, operationId).then(() => null, (err: unknown) => err);
    try {
      const waiting = await waitFor(() => rt.db.operation.findUniqueOrThrow({ where: { id: operationId } }), (o) => o.message !== null || (o.status !== 'RUNNING' && o.status !== 'QUEUED'), 'the delete to say it waits');
      // Not ended by the held lock (a job that failed at once would have): still running beside it, forgetting nothing yet.
      expect(waiting).toMatchObject({ status: 'RUNNING', phase: 'forgetting', message: expect.stringMatching(/^Waiting for the repository lock: /) });
      expect(await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId } })).not.toMatchObject({ status: 'DELETED' });
    } finally {
      await backup.release();
    }
    expect(await job).toBeNull();
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } })).toMatchObject({ status: 'SUCCEEDED', message: null });
    expect(await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId } })).toMatchObject({ status: 'DELETED' });
  });
});
