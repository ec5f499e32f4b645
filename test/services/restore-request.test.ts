/**
 * restoreSnapshot, the request (the job is restore-job.test.ts): called directly on a migrated
 * catalog, it must refuse what it cannot do before it records anything, name the right target and
 * source, and start at most one restore per target. Each test makes its own rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/services/schedules.ts';
import type { Runtime } from '../../src/app/runtime.ts';
import type { Deps } from '../../src/services/deps.ts';
import { operationJobKey } from '../../src/services/jobs.ts';
import { restoreSnapshot } from '../../src/services/restores.ts';
import { createSecretBox, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { startServiceRuntime, viewerOf } from '../harness/service-runtime.ts';

let rt: Runtime;
let deps: Deps;
const secrets = createSecretBox(Buffer.alloc(32, 5));

beforeAll(async () => {
  rt = await startServiceRuntime('restore_request');
  deps = rt.deps;
});
afterAll(() => rt?.close());

/** Two projects, a source environment in the first and a target in the second, each with a destination; a READY snapshot of the source. */
async function world(opts: { includes?: ('DB' | 'FILES')[]; status?: 'READY' | 'CREATING' | 'FAILED' | 'DAMAGED' } = {}) {
  const db = rt.db;
  const org = await makeOrganization(db);
  const [p1, p2] = [await makeProject(db, org.id), await makeProject(db, org.id)];
  const [source, target] = [await makeEnvironment(db, secrets, p1), await makeEnvironment(db, secrets, p2)];
  const destination = await db.destination.create({ data: { organizationId: org.id, name: `d-${source.id}`, provider: 'LOCAL', config: { path: '/nonexistent' } } });
  for (const e of [source, target]) await db.environmentDestination.create({ data: { environmentId: e.id, destinationId: destination.id } });
  const snapshot = await db.snapshot.create({
    data: { organizationId: org.id, projectId: p1.id, environmentId: source.id, kind: 'MANUAL', includes: opts.includes ?? ['DB', 'FILES'], status: opts.status ?? 'READY' },
  });
  return { org, p1, p2, source, target, snapshot };
}

const count = async (environmentId: string) => ({
  operations: await rt.db.operation.count({ where: { environmentId } }),
  logs: await rt.db.restoreLog.count({ where: { targetEnvironmentId: environmentId } }),
});

const jobOf = async (opId: string) =>
  (await rt.db.$queryRawUnsafe<{ task_identifier: string; queue_name: string | null; max_attempts: number; payload: unknown }[]>(
    'SELECT j.task_identifier, j.queue_name, j.max_attempts, p.payload FROM graphile_worker.jobs j JOIN graphile_worker._private_jobs p ON p.id = j.id WHERE j.key = $1',
    operationJobKey(opId),
  ))[0];

describe('restoreSnapshot records the restore', () => {
  it('into another environment: the operation and log name the target, the log the source; the job runs on the target queue, once', async () => {
    const { org, p1, p2, source, target, snapshot } = await world();
    const activity = rt.events.subscribe('environmentActivity', target.id);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewerOf(org.id, [p1.id, p2.id]), { snapshotId: snapshot.id, targetEnvironmentId: target.id });
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } })).toMatchObject({
      organizationId: org.id,
      environmentId: target.id,
      type: 'RESTORE',
      status: 'QUEUED',
      snapshotId: snapshot.id,
      phase: 'queued',
      input: { includes: ['DB', 'FILES'], strategy: 'SWAP', createSafetySnapshot: true },
    });
    expect(await rt.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId } })).toMatchObject({
      organizationId: org.id,
      snapshotId: snapshot.id,
      sourceEnvironmentId: source.id,
      targetEnvironmentId: target.id,
      operationId,
      strategy: 'SWAP',
      includes: ['DB', 'FILES'],
      status: 'QUEUED',
    });
    expect(await jobOf(operationId)).toEqual({ task_identifier: 'snapshot_restore', queue_name: target.id, max_attempts: 1, payload: { operationId } });
    expect((await activity.next()).value).toEqual({ kind: 'RESTORE', environmentId: target.id, subjectId: restoreLogId });
    await activity.return?.();
    expect(await count(source.id)).toEqual({ operations: 0, logs: 0 });
  });

  it('without a target: into the environment the snapshot was taken of; includes default to the snapshot\'s; options are kept', async () => {
    const { org, source, snapshot } = await world({ includes: ['DB'] });
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, strategy: 'IN_PLACE', createSafetySnapshot: false });
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } })).toMatchObject({ environmentId: source.id, input: { includes: ['DB'], strategy: 'IN_PLACE', createSafetySnapshot: false } });
    expect(await rt.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId } })).toMatchObject({ sourceEnvironmentId: source.id, targetEnvironmentId: source.id, strategy: 'IN_PLACE', includes: ['DB'] });
    expect((await jobOf(operationId)).queue_name).toBe(source.id);
  });

  it('includes given twice count once; a part of the snapshot may be restored alone', async () => {
    const { org, target, snapshot } = await world();
    const { restoreLogId } = await restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id, includes: ['FILES', 'FILES'] });
    expect((await rt.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId } })).includes).toEqual(['FILES']);
  });
});

describe('restoreSnapshot refuses, and records nothing', () => {
  it("a snapshot or target the key may not see is not found", async () => {
    const { org, p1, p2, source, target, snapshot } = await world();
    const other = await makeOrganization(rt.db);
    await expect(restoreSnapshot(deps, viewerOf(org.id, [p2.id]), { snapshotId: snapshot.id, targetEnvironmentId: target.id })).rejects.toMatchObject({ code: 'SNAPSHOT_NOT_FOUND' });
    await expect(restoreSnapshot(deps, viewerOf(org.id, [p1.id]), { snapshotId: snapshot.id, targetEnvironmentId: target.id })).rejects.toMatchObject({ code: 'ENVIRONMENT_NOT_FOUND' });
    await expect(restoreSnapshot(deps, viewerOf(other.id), { snapshotId: snapshot.id })).rejects.toMatchObject({ code: 'SNAPSHOT_NOT_FOUND' });
    // Another organization's environment as the target, with a key that sees the snapshot.
    const foreign = await world();
    await expect(restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: foreign.target.id })).rejects.toMatchObject({ code: 'ENVIRONMENT_NOT_FOUND' });
    for (const e of [source, target, foreign.target]) expect(await count(e.id)).toEqual({ operations: 0, logs: 0 });
  });

  it('a snapshot that is not READY, or DAMAGED', async () => {
    for (const [status, code] of [['CREATING', 'SNAPSHOT_NOT_READY'], ['FAILED', 'SNAPSHOT_NOT_READY'], ['DAMAGED', 'SNAPSHOT_DAMAGED']] as const) {
      const { org, target, snapshot } = await world({ status });
      await expect(restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id })).rejects.toMatchObject({ code });
      expect(await count(target.id)).toEqual({ operations: 0, logs: 0 });
    }
    const { org, snapshot } = await world({ status: 'CREATING' });
    await expect(restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id })).rejects.toMatchObject({ message: 'Snapshot is creating, not ready' });
  });

  it('a part the snapshot does not hold, files into a target without a files path, or no part at all', async () => {
    const { org, target, snapshot } = await world({ includes: ['DB'] });
    await expect(restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id, includes: ['DB', 'FILES'] })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      message: expect.stringContaining('the snapshot does not contain FILES'),
    });
    const full = await world();
    await rt.db.environment.update({ where: { id: full.target.id }, data: { filesPath: null } });
    await expect(restoreSnapshot(deps, viewerOf(full.org.id), { snapshotId: full.snapshot.id, targetEnvironmentId: full.target.id })).rejects.toMatchObject({ message: expect.stringContaining('the target environment has no files path') });
    await expect(restoreSnapshot(deps, viewerOf(full.org.id), { snapshotId: full.snapshot.id, targetEnvironmentId: full.target.id, includes: ['FILES'] })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(restoreSnapshot(deps, viewerOf(full.org.id), { snapshotId: full.snapshot.id, targetEnvironmentId: full.target.id, includes: [] })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    // Database only into a target without files is fine.
    await restoreSnapshot(deps, viewerOf(full.org.id), { snapshotId: full.snapshot.id, targetEnvironmentId: full.target.id, includes: ['DB'] });
    expect(await count(target.id)).toEqual({ operations: 0, logs: 0 });
    expect(await count(full.target.id)).toEqual({ operations: 1, logs: 1 });
  });

  it('a target with no destination for its safety snapshot, unless no safety snapshot is asked for', async () => {
    const { org, target, snapshot } = await world();
    await rt.db.environmentDestination.deleteMany({ where: { environmentId: target.id } });
    await expect(restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id })).rejects.toMatchObject({ code: 'NO_DESTINATION' });
    expect(await count(target.id)).toEqual({ operations: 0, logs: 0 });
    await restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id, createSafetySnapshot: false });
    expect(await count(target.id)).toEqual({ operations: 1, logs: 1 });
  });

  it('a second restore into a target while one is queued or running; another target, or after the first ended, is free', async () => {
    const { org, source, target, snapshot } = await world();
    const first = await restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id });
    await expect(restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id })).rejects.toMatchObject({ code: 'RESTORE_RUNNING' });
    await rt.db.operation.update({ where: { id: first.operationId }, data: { status: 'RUNNING' } });
    await expect(restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id })).rejects.toMatchObject({ code: 'RESTORE_RUNNING' });
    expect(await count(target.id)).toEqual({ operations: 1, logs: 1 });
    // A snapshot running on the target is no restore.
    await rt.db.operation.create({ data: { organizationId: org.id, environmentId: source.id, type: 'SNAPSHOT', status: 'RUNNING' } });
    await restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id });
    await rt.db.operation.update({ where: { id: first.operationId }, data: { status: 'FAILED' } });
    await restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id });
    expect(await count(target.id)).toEqual({ operations: 2, logs: 2 });
  });
});

describe('restoreSnapshot with an idempotency key', () => {
  it('the same key and input gives the first restore, even once it ended; the same key with other input is refused', async () => {
    const { org, source, target, snapshot } = await world();
    const viewer = viewerOf(org.id);
    const first = await restoreSnapshot(deps, viewer, { snapshotId: snapshot.id, targetEnvironmentId: target.id, idempotencyKey: 'k1' });
    // Includes in another order, or spelled out as the default, are the same input.
    expect(await restoreSnapshot(deps, viewer, { snapshotId: snapshot.id, targetEnvironmentId: target.id, idempotencyKey: 'k1', includes: ['FILES', 'DB'] })).toEqual(first);
    await rt.db.operation.update({ where: { id: first.operationId }, data: { status: 'SUCCEEDED' } });
    expect(await restoreSnapshot(deps, viewer, { snapshotId: snapshot.id, targetEnvironmentId: target.id, idempotencyKey: 'k1' })).toEqual(first);
    await expect(restoreSnapshot(deps, viewer, { snapshotId: snapshot.id, targetEnvironmentId: target.id, idempotencyKey: 'k1', includes: ['DB'] })).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    await expect(restoreSnapshot(deps, viewer, { snapshotId: snapshot.id, targetEnvironmentId: source.id, idempotencyKey: 'k1' })).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    await expect(restoreSnapshot(deps, viewer, { snapshotId: snapshot.id, targetEnvironmentId: target.id, idempotencyKey: 'k1', strategy: 'IN_PLACE' })).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    expect(await count(target.id)).toEqual({ operations: 1, logs: 1 });
    // Without a key, or with another one, it is a new restore.
    const second = await restoreSnapshot(deps, viewer, { snapshotId: snapshot.id, targetEnvironmentId: target.id, idempotencyKey: 'k2' });
    expect(second.operationId).not.toBe(first.operationId);
    expect(await count(target.id)).toEqual({ operations: 2, logs: 2 });
  });

  it('a replay is answered before the running check: the same request again while it runs gives the same restore', async () => {
    const { org, target, snapshot } = await world();
    const first = await restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id, idempotencyKey: 'again' });
    expect(await restoreSnapshot(deps, viewerOf(org.id), { snapshotId: snapshot.id, targetEnvironmentId: target.id, idempotencyKey: 'again' })).toEqual(first);
    // Keys are per organization.
    const other = await world();
    const theirs = await restoreSnapshot(deps, viewerOf(other.org.id), { snapshotId: other.snapshot.id, targetEnvironmentId: other.target.id, idempotencyKey: 'again' });
    expect(theirs.operationId).not.toBe(first.operationId);
  });

  it('two identical requests at the same moment give one restore; two different restores of one target give one and a refusal', async () => {
    const { org, source, target, snapshot } = await world();
    const viewer = viewerOf(org.id);
    const input = { snapshotId: snapshot.id, targetEnvironmentId: target.id, idempotencyKey: 'race' };
    const [a, b] = await Promise.all([restoreSnapshot(deps, viewer, input), restoreSnapshot(deps, viewer, input)]);
    expect(a).toEqual(b);
    const results = await Promise.allSettled([
      restoreSnapshot(deps, viewer, { snapshotId: snapshot.id }),
      restoreSnapshot(deps, viewer, { snapshotId: snapshot.id, includes: ['DB'] }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'RESTORE_RUNNING' } });
    expect(await count(target.id)).toEqual({ operations: 1, logs: 1 });
    expect(await count(source.id)).toEqual({ operations: 1, logs: 1 });
  });

  it('one key used at the same moment for restores into two targets starts one and answers the other as a reused key', async () => {
    const { org, source, target, snapshot } = await world();
    const viewer = viewerOf(org.id);
    const results = await Promise.allSettled([
      restoreSnapshot(deps, viewer, { snapshotId: snapshot.id, targetEnvironmentId: target.id, idempotencyKey: 'two-targets' }),
      restoreSnapshot(deps, viewer, { snapshotId: snapshot.id, targetEnvironmentId: source.id, idempotencyKey: 'two-targets' }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'IDEMPOTENCY_KEY_REUSED' } });
    const made = (await count(target.id)).operations + (await count(source.id)).operations;
    expect(made).toBe(1);
  });
});
