/**
 * Deleting an environment while one of its jobs is queued or running would cascade the job's rows
 * away mid-way and leave what the job made (a restore's scratch database, a new environment's
 * database and folder) with nothing to clean it up: the deletion is refused with OPERATION_RUNNING
 * and changes nothing, including against a job queued at the same moment.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtime } from '../../src/app/runtime.ts';
import { AppError } from '../../src/domain/errors.ts';
import { deleteEnvironment } from '../../src/services/environments.ts';
import { createSecretBox, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { startServiceRuntime, viewerOf } from '../harness/service-runtime.ts';

let rt: Runtime & { databaseUrl: string };
const secrets = createSecretBox(Buffer.alloc(32, 9));

beforeAll(async () => {
  rt = await startServiceRuntime('env_delete');
});
afterAll(() => rt?.close());

async function world() {
  const org = await makeOrganization(rt.db);
  const project = await makeProject(rt.db, org.id);
  const env = await makeEnvironment(rt.db, secrets, project);
  const other = await makeEnvironment(rt.db, secrets, project);
  return { org, env, other, viewer: viewerOf(org.id) };
}

const codeOf = (p: Promise<unknown>) => p.then(() => 'deleted', (e: unknown) => (e instanceof AppError ? e.code : Promise.reject(e)));

describe('deleteEnvironment while a job is under way', () => {
  it.each(['QUEUED', 'RUNNING'] as const)('refuses while a snapshot of it is %s, and deletes once it has ended', async (status) => {
    const w = await world();
    const op = await rt.db.operation.create({ data: { organizationId: w.org.id, environmentId: w.env.id, type: 'SNAPSHOT', status } });
    expect(await codeOf(deleteEnvironment(rt.deps, w.viewer, w.env.id))).toBe('OPERATION_RUNNING');
    expect(await rt.db.environment.count({ where: { id: w.env.id } })).toBe(1);
    expect(await rt.db.operation.count({ where: { id: op.id } })).toBe(1);

    await rt.db.operation.update({ where: { id: op.id }, data: { status: 'SUCCEEDED' } });
    expect(await codeOf(deleteEnvironment(rt.deps, w.viewer, w.env.id))).toBe('deleted');
    expect(await rt.db.environment.count({ where: { id: w.env.id } })).toBe(0);
  });

  it('refuses while a restore reads one of its snapshots into another environment, and leaves the other alone', async () => {
    const w = await world();
    const snap = await rt.db.snapshot.create({ data: { organizationId: w.org.id, projectId: w.env.projectId, environmentId: w.env.id, includes: ['DB'], status: 'READY' } });
    const op = await rt.db.operation.create({ data: { organizationId: w.org.id, environmentId: w.other.id, type: 'RESTORE', status: 'RUNNING', snapshotId: snap.id } });
    await rt.db.restoreLog.create({ data: { organizationId: w.org.id, snapshotId: snap.id, sourceEnvironmentId: w.env.id, targetEnvironmentId: w.other.id, operationId: op.id, includes: ['DB'], status: 'RUNNING' } });
    expect(await codeOf(deleteEnvironment(rt.deps, w.viewer, w.env.id))).toBe('OPERATION_RUNNING');
    expect(await rt.db.snapshot.count({ where: { id: snap.id } })).toBe(1);
    // A finished restore from it does not hold the source back.
    await rt.db.operation.update({ where: { id: op.id }, data: { status: 'FAILED' } });
    expect(await codeOf(deleteEnvironment(rt.deps, w.viewer, w.env.id))).toBe('deleted');
    expect(await rt.db.environment.count({ where: { id: w.other.id } })).toBe(1);
  });

  it("another environment's job does not hold this one back", async () => {
    const w = await world();
    await rt.db.operation.create({ data: { organizationId: w.org.id, environmentId: w.other.id, type: 'SNAPSHOT', status: 'RUNNING' } });
    expect(await codeOf(deleteEnvironment(rt.deps, w.viewer, w.env.id))).toBe('deleted');
  });

  it('a job queued while the deletion runs is seen: the deletion waits for it and refuses', async () => {
    const w = await world();
    const queuing = new pg.Client({ connectionString: rt.databaseUrl });
    await queuing.connect();
    try {
      // A transaction queuing a job: its operation row exists, not yet committed.
      await queuing.query('BEGIN');
      await queuing.query(`INSERT INTO operations (id, "organizationId", "environmentId", type, status, "updatedAt") VALUES ($1, $2, $3, 'SNAPSHOT', 'QUEUED', now())`, [randomUUID(), w.org.id, w.env.id]);
      const deleting = codeOf(deleteEnvironment(rt.deps, w.viewer, w.env.id));
      // Wait until the deletion is blocked on the queuing transaction's lock, then let that commit.
      const pid = (await queuing.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      for (;;) {
        const [{ n }] = await rt.db.$queryRaw<{ n: bigint }[]>`SELECT count(*) AS n FROM pg_stat_activity WHERE ${pid}::int = ANY(pg_blocking_pids(pid))`;
        if (Number(n) > 0) break;
        await new Promise((r) => setImmediate(r));
      }
      await queuing.query('COMMIT');
      expect(await deleting).toBe('OPERATION_RUNNING');
      expect(await rt.db.environment.count({ where: { id: w.env.id } })).toBe(1);
      expect(await rt.db.operation.count({ where: { environmentId: w.env.id, status: 'QUEUED' } })).toBe(1);
    } finally {
      await queuing.end();
    }
  });
});
