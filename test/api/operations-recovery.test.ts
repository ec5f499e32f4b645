import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueJob, operationJobKey } from '../../src/services/jobs.ts';
import { recoverStaleOperations } from '../../src/services/operations.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { makeOrganization } from '../harness/factories.ts';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
});
afterAll(() => app?.stop());

async function lockedBy(key: string): Promise<string | null> {
  const [row] = await app.runtime.db.$queryRawUnsafe<{ locked_by: string | null }[]>('SELECT locked_by FROM graphile_worker.jobs WHERE key = $1', key);
  return row.locked_by;
}

describe('recoverStaleOperations', () => {
  it('releases a job lock left behind for an operation that already finished, and only that one', async () => {
    const { db } = app.runtime;
    const org = await makeOrganization(db);
    const done = await db.operation.create({ data: { organizationId: org.id, type: 'SNAPSHOT', status: 'SUCCEEDED', heartbeatAt: new Date() } });
    const busy = await db.operation.create({ data: { organizationId: org.id, type: 'SNAPSHOT', status: 'RUNNING', heartbeatAt: new Date() } });
    for (const op of [done, busy]) await enqueueJob(db, 'snapshot_create', { operationId: op.id }, { jobKey: operationJobKey(op.id) });
    // As graphile-worker leaves it when its process stops between finishing a task and recording it.
    await db.$queryRawUnsafe(
      "UPDATE graphile_worker._private_jobs SET locked_at = now() - interval '2 hours', locked_by = 'worker-' || $1 WHERE key IN ($2, $3)",
      done.id.slice(0, 8),
      operationJobKey(done.id),
      operationJobKey(busy.id),
    );
    // The running one has a fresh heartbeat but shares the dead worker id: a live job of another worker must not be touched.
    await db.$queryRawUnsafe("UPDATE graphile_worker._private_jobs SET locked_by = 'live-worker' WHERE key = $1", operationJobKey(busy.id));

    await recoverStaleOperations(app.runtime.deps, 60_000);
    expect(await lockedBy(operationJobKey(done.id))).toBeNull();
    expect(await lockedBy(operationJobKey(busy.id))).toBe('live-worker');
    expect((await db.operation.findUniqueOrThrow({ where: { id: busy.id } })).status).toBe('RUNNING');
  });
});
