/**
 * createSnapshot and getSnapshot, the request side of snapshots (the job is snapshot-job.test.ts):
 * called directly on a migrated catalog, a snapshot is recorded for the environment named and no
 * other, into its destinations, with its job on that environment's queue; what it refuses records
 * nothing. Each test makes its own rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/services/schedules.ts';
import type { Runtime } from '../../src/app/runtime.ts';
import type { Deps } from '../../src/services/deps.ts';
import { operationJobKey } from '../../src/services/jobs.ts';
import { createSnapshot, getSnapshot, messageOf, snapshotTags } from '../../src/services/snapshots.ts';
import { createSecretBox, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { startServiceRuntime, viewerOf } from '../harness/service-runtime.ts';

let rt: Runtime;
let deps: Deps;
const secrets = createSecretBox(Buffer.alloc(32, 4));

beforeAll(async () => {
  rt = await startServiceRuntime('snapshot_request');
  deps = rt.deps;
});
afterAll(() => rt?.close());

/** Two projects with an environment each; the first has two destinations (the older one first), the second one. */
async function world() {
  const db = rt.db;
  const org = await makeOrganization(db);
  const [p1, p2] = [await makeProject(db, org.id), await makeProject(db, org.id)];
  const [env, other] = [await makeEnvironment(db, secrets, p1), await makeEnvironment(db, secrets, p2)];
  const dest = async (n: string) => db.destination.create({ data: { organizationId: org.id, name: `${n}-${env.id}`, provider: 'LOCAL', config: { path: '/nonexistent' } } });
  const [d1, d2, d3] = [await dest('a'), await dest('b'), await dest('c')];
  // Linked newest-first by id, oldest-first by time: the order is the link's creation time.
  await db.environmentDestination.create({ data: { environmentId: env.id, destinationId: d2.id, createdAt: new Date(Date.now() - 60_000) } });
  await db.environmentDestination.create({ data: { environmentId: env.id, destinationId: d1.id } });
  await db.environmentDestination.create({ data: { environmentId: other.id, destinationId: d3.id } });
  return { org, p1, p2, env, other, d1, d2, d3 };
}

const recorded = async (environmentId: string) => ({
  snapshots: await rt.db.snapshot.count({ where: { environmentId } }),
  operations: await rt.db.operation.count({ where: { environmentId } }),
});

const jobOf = async (opId: string) =>
  (await rt.db.$queryRawUnsafe<{ task_identifier: string; queue_name: string | null; max_attempts: number; payload: unknown }[]>(
    'SELECT j.task_identifier, j.queue_name, j.max_attempts, p.payload FROM graphile_worker.jobs j JOIN graphile_worker._private_jobs p ON p.id = j.id WHERE j.key = $1',
    operationJobKey(opId),
  ))[0];

describe('createSnapshot records the snapshot', () => {
  it("of the environment named, into its destinations in their order, with an operation and its job on the environment's queue", async () => {
    const { org, p1, env, other, d1, d2 } = await world();
    const activity = rt.events.subscribe('environmentActivity', env.id);
    const { operationId, snapshotId } = await createSnapshot(deps, viewerOf(org.id, [p1.id]), { environmentId: env.id, label: 'before deploy', metadata: { commit: 'abc123' } });
    const snapshot = await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId }, include: { copies: { orderBy: { createdAt: 'asc' } } } });
    expect(snapshot).toMatchObject({
      organizationId: org.id,
      projectId: p1.id,
      environmentId: env.id,
      kind: 'MANUAL',
      includes: ['DB', 'FILES'],
      label: 'before deploy',
      metadata: { commit: 'abc123' },
      scheduleId: null,
      status: 'CREATING',
    });
    expect(snapshot.copies.map((c) => [c.destinationId, c.status])).toEqual([[d2.id, 'PENDING'], [d1.id, 'PENDING']]);
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } })).toMatchObject({
      organizationId: org.id,
      environmentId: env.id,
      type: 'SNAPSHOT',
      status: 'QUEUED',
      snapshotId,
      phase: 'queued',
      input: { includes: ['DB', 'FILES'] },
    });
    expect(await jobOf(operationId)).toEqual({ task_identifier: 'snapshot_create', queue_name: env.id, max_attempts: 3, payload: { operationId } });
    expect((await activity.next()).value).toEqual({ kind: 'SNAPSHOT', environmentId: env.id, subjectId: snapshotId });
    await activity.return?.();
    expect(await recorded(other.id)).toEqual({ snapshots: 0, operations: 0 });
  });

  it('includes given twice count once; a pre-deploy kind is kept; no label is null', async () => {
    const { org, env } = await world();
    const { snapshotId, operationId } = await createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: ['DB', 'DB'], kind: 'PRE_DEPLOY' });
    expect(await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId } })).toMatchObject({ includes: ['DB'], kind: 'PRE_DEPLOY', label: null, metadata: null });
    expect((await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } })).input).toEqual({ includes: ['DB'] });
  });

  it("a manual or pre-deploy snapshot expires after the environment's retentionDays; without them, never", async () => {
    const { org, env } = await world();
    const now = new Date('2026-03-01T12:00:00Z');
    const at = { ...deps, clock: { now: () => now } };
    const expiresAt = async (kind: 'MANUAL' | 'PRE_DEPLOY') =>
      (await rt.db.snapshot.findUniqueOrThrow({ where: { id: (await createSnapshot(at, viewerOf(org.id), { environmentId: env.id, kind })).snapshotId } })).expiresAt;
    expect(await expiresAt('MANUAL')).toBeNull();
    await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { retentionDays: 3 } });
    expect(await expiresAt('MANUAL')).toEqual(new Date('2026-03-04T12:00:00Z'));
    expect(await expiresAt('PRE_DEPLOY')).toEqual(new Date('2026-03-04T12:00:00Z'));
  });

  it("a schedule's snapshot: its kind, its schedule and its own destinations", async () => {
    const { org, env, d1 } = await world();
    const schedule = await rt.db.schedule.create({ data: { environmentId: env.id, dbCron: '0 * * * *', dbRetention: {}, fullRetention: {} } });
    const { snapshotId } = await createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: ['DB'] }, { kind: 'SCHEDULED', scheduleId: schedule.id, destinationIds: [d1.id] });
    const snapshot = await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId }, include: { copies: true } });
    expect(snapshot).toMatchObject({ kind: 'SCHEDULED', scheduleId: schedule.id });
    expect(snapshot.copies.map((c) => c.destinationId)).toEqual([d1.id]);
    // An empty list of its own is no list: the environment's destinations.
    const again = await createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: ['DB'] }, { destinationIds: [] });
    expect(await rt.db.snapshotCopy.count({ where: { snapshotId: again.snapshotId } })).toBe(2);
  });
});

describe('createSnapshot refuses, and records nothing', () => {
  it("an environment the key may not see", async () => {
    const { org, p2, env } = await world();
    const stranger = await makeOrganization(rt.db);
    await expect(createSnapshot(deps, viewerOf(org.id, [p2.id]), { environmentId: env.id })).rejects.toMatchObject({ code: 'ENVIRONMENT_NOT_FOUND' });
    await expect(createSnapshot(deps, viewerOf(stranger.id), { environmentId: env.id })).rejects.toMatchObject({ code: 'ENVIRONMENT_NOT_FOUND' });
    expect(await recorded(env.id)).toEqual({ snapshots: 0, operations: 0 });
  });

  it('files of an environment without a files path; no destination; bad input', async () => {
    const { org, env, other } = await world();
    await rt.db.environment.update({ where: { id: env.id }, data: { filesPath: null } });
    await expect(createSnapshot(deps, viewerOf(org.id), { environmentId: env.id })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('this environment has no files path') });
    await expect(createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: ['FILES'] })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: [] })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: ['DB'], metadata: { '1bad': 'x' } })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: ['DB'], metadata: { ok: 'x'.repeat(501) } })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    const many = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v']));
    await expect(createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: ['DB'], metadata: many })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    // At the limits it is fine.
    const fine = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}_${'x'.repeat(30)}`.slice(0, 40), 'v'.repeat(500)]));
    await createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: ['DB'], metadata: fine });
    expect(await recorded(env.id)).toEqual({ snapshots: 1, operations: 1 });
    await rt.db.environmentDestination.deleteMany({ where: { environmentId: other.id } });
    await expect(createSnapshot(deps, viewerOf(org.id), { environmentId: other.id })).rejects.toMatchObject({ code: 'NO_DESTINATION' });
    expect(await recorded(other.id)).toEqual({ snapshots: 0, operations: 0 });
  });
});

describe('createSnapshot with an idempotency key', () => {
  it('the same key and input gives the first snapshot; other input is refused; keys are per organization', async () => {
    const { org, env } = await world();
    const viewer = viewerOf(org.id);
    const first = await createSnapshot(deps, viewer, { environmentId: env.id, includes: ['DB', 'FILES'], idempotencyKey: 'k' });
    expect(await createSnapshot(deps, viewer, { environmentId: env.id, includes: ['FILES', 'DB'], idempotencyKey: 'k' })).toEqual(first);
    expect(await createSnapshot(deps, viewer, { environmentId: env.id, idempotencyKey: 'k' })).toEqual(first);
    await expect(createSnapshot(deps, viewer, { environmentId: env.id, includes: ['DB'], idempotencyKey: 'k' })).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    await expect(createSnapshot(deps, viewer, { environmentId: env.id, label: 'other', idempotencyKey: 'k' })).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    expect(await recorded(env.id)).toEqual({ snapshots: 1, operations: 1 });
    const second = await createSnapshot(deps, viewer, { environmentId: env.id });
    expect(second.snapshotId).not.toBe(first.snapshotId);
    const theirs = await world();
    const other = await createSnapshot(deps, viewerOf(theirs.org.id), { environmentId: theirs.env.id, idempotencyKey: 'k' });
    expect(other.snapshotId).not.toBe(first.snapshotId);
  });

  it('two identical requests at the same moment give one snapshot', async () => {
    const { org, env } = await world();
    const input = { environmentId: env.id, includes: ['DB' as const], idempotencyKey: 'race' };
    const [a, b] = await Promise.all([createSnapshot(deps, viewerOf(org.id), input), createSnapshot(deps, viewerOf(org.id), input)]);
    expect(a).toEqual(b);
    expect(await recorded(env.id)).toEqual({ snapshots: 1, operations: 1 });
  });
});

describe('getSnapshot', () => {
  it("a key of the snapshot's project or an unlimited one sees it; others get SNAPSHOT_NOT_FOUND", async () => {
    const { org, p1, p2, env } = await world();
    const { snapshotId } = await createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: ['DB'] });
    expect((await getSnapshot(deps, viewerOf(org.id, [p1.id]), snapshotId)).id).toBe(snapshotId);
    expect((await getSnapshot(deps, viewerOf(org.id), snapshotId)).id).toBe(snapshotId);
    const stranger = await makeOrganization(rt.db);
    for (const v of [viewerOf(org.id, [p2.id]), viewerOf(stranger.id)]) {
      await expect(getSnapshot(deps, v, snapshotId)).rejects.toMatchObject({ code: 'SNAPSHOT_NOT_FOUND', message: 'Snapshot not found' });
    }
  });
});

describe('getSnapshot finds the snapshot asked for', () => {
  it('among several the key may see, the one named', async () => {
    const { org, env, other } = await world();
    const a = await createSnapshot(deps, viewerOf(org.id), { environmentId: env.id, includes: ['DB'] });
    const b = await createSnapshot(deps, viewerOf(org.id), { environmentId: other.id, includes: ['DB'] });
    expect((await getSnapshot(deps, viewerOf(org.id), b.snapshotId)).environmentId).toBe(other.id);
    expect((await getSnapshot(deps, viewerOf(org.id), a.snapshotId)).environmentId).toBe(env.id);
  });
});

describe('helpers', () => {
  it("snapshotTags name the environment, the kind and the snapshot, so the repository alone tells what it holds", () => {
    expect(snapshotTags({ environmentId: 'e1', kind: 'PRE_DEPLOY', id: 's1' })).toEqual(['backplane', 'env:e1', 'kind:pre_deploy', 'snapshot:s1']);
  });

  it('messageOf keeps the first three lines on one line, at most 1000 characters', () => {
    expect(messageOf(new Error('a\nb\nc\nd'))).toBe('a b c');
    expect(messageOf('plain')).toBe('plain');
    expect(messageOf(new Error('x'.repeat(1500)))).toHaveLength(1000);
  });
});
