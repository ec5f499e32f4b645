import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RestoreSnapshotDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid, makeEnvironment, makeProject } from '../harness/factories.ts';
import { startWorkerSuite } from '../harness/snapshot-helpers.ts';

// No worker: the restores these requests start stay QUEUED, so every request meets the ones
// before it as "already running", whatever the machine's speed.
let app: TestApp;
let key: string;
let orgId: string;

beforeAll(async () => {
  ({ app, key, orgId } = await startWorkerSuite({ worker: false }));
});
afterAll(() => app?.stop());

/** An environment with READY database snapshots in the catalog (restore requests read no repository). */
async function environmentWithSnapshots(n: number) {
  const db = app.runtime.db;
  const project = await makeProject(db, orgId);
  const env = await makeEnvironment(db, app.runtime.deps.secrets, project);
  const snapshotIds: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = await db.snapshot.create({ data: { organizationId: orgId, projectId: project.id, environmentId: env.id, kind: 'MANUAL', includes: ['DB'], status: 'READY', label: `s${i}` } });
    snapshotIds.push(gid('Snapshot', s.id));
  }
  return { env, snapshotIds };
}

/** Sends all requests at once: each is on the wire before any answer comes back. */
function atOnce(inputs: Record<string, unknown>[]) {
  return Promise.all(inputs.map((input) => app.gql(RestoreSnapshotDocument, { input: input as never }, { key }).then((r) => r.data?.restoreSnapshot ?? r)));
}

describe('restoreSnapshot at the same moment', () => {
  it('identical requests with one idempotency key: one operation, every answer names it', async () => {
    const { env, snapshotIds } = await environmentWithSnapshots(1);
    const input = { snapshotId: snapshotIds[0], createSafetySnapshot: false, idempotencyKey: 'restore-once' };
    const answers = await atOnce(Array.from({ length: 8 }, () => input));
    const ops = answers.map((a) => (a as { __typename: string; operation?: { id: string } }).__typename === 'RestorePayload' ? (a as { operation: { id: string } }).operation.id : JSON.stringify(a));
    expect(new Set(ops).size, ops.join('\n')).toBe(1);
    expect(await app.runtime.db.operation.count({ where: { environmentId: env.id, type: 'RESTORE' } })).toBe(1);
    expect(await app.runtime.db.restoreLog.count({ where: { targetEnvironmentId: env.id } })).toBe(1);

    // Later, the same key and input still answer with that operation; another input is refused.
    const again = await atOnce([input, { ...input, strategy: 'IN_PLACE' }]);
    expect(again[0]).toMatchObject({ __typename: 'RestorePayload', operation: { id: ops[0] } });
    expect(again[1]).toMatchObject({ __typename: 'ConflictError', code: 'IDEMPOTENCY_KEY_REUSED' });
  });

  it('two different restores of one environment: one operation and one RESTORE_RUNNING refusal', async () => {
    const { env, snapshotIds } = await environmentWithSnapshots(2);
    const answers = await atOnce(snapshotIds.map((snapshotId) => ({ snapshotId, createSafetySnapshot: false })));
    expect(answers.map((a) => (a as { __typename: string }).__typename).sort()).toEqual(['ConflictError', 'RestorePayload']);
    expect(answers.find((a) => (a as { __typename: string }).__typename === 'ConflictError')).toMatchObject({ code: 'RESTORE_RUNNING' });
    expect(await app.runtime.db.operation.count({ where: { environmentId: env.id, type: 'RESTORE' } })).toBe(1);
    expect(await app.runtime.db.restoreLog.count({ where: { targetEnvironmentId: env.id } })).toBe(1);
  });

  it('many different restores of one environment at once: exactly one starts, every other is refused with RESTORE_RUNNING', async () => {
    const { env, snapshotIds } = await environmentWithSnapshots(8);
    const answers = (await atOnce(snapshotIds.map((snapshotId) => ({ snapshotId, createSafetySnapshot: false })))) as { __typename: string; code?: string }[];
    expect(answers.filter((a) => a.__typename === 'RestorePayload')).toHaveLength(1);
    expect(answers.filter((a) => a.__typename === 'ConflictError' && a.code === 'RESTORE_RUNNING')).toHaveLength(7);
    expect(await app.runtime.db.operation.count({ where: { environmentId: env.id, type: 'RESTORE' } })).toBe(1);
  });

  it('one idempotency key for restores into two environments at once: one starts, the other is refused as a reused key', async () => {
    const a = await environmentWithSnapshots(1);
    const b = await environmentWithSnapshots(1);
    const answers = (await atOnce([
      { snapshotId: a.snapshotIds[0], createSafetySnapshot: false, idempotencyKey: 'shared-key' },
      { snapshotId: b.snapshotIds[0], createSafetySnapshot: false, idempotencyKey: 'shared-key' },
    ])) as { __typename: string; code?: string }[];
    expect(answers.map((x) => x.__typename).sort()).toEqual(['ConflictError', 'RestorePayload']);
    expect(answers.find((x) => x.__typename === 'ConflictError')).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    expect(await app.runtime.db.operation.count({ where: { environmentId: { in: [a.env.id, b.env.id] }, type: 'RESTORE' } })).toBe(1);
  });
});
