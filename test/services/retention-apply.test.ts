/**
 * Retention on the catalog (the plan itself is retention-plan.test.ts): the policy in force is
 * read from the environment's own schedule and settings, the preview overrides only what it is
 * given, and applying deletes exactly what the plan says, of that environment only, through the
 * ordinary delete request. Called directly on a migrated catalog; each test makes its own rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/services/schedules.ts';
import type { Runtime } from '../../src/app/runtime.ts';
import type { Deps } from '../../src/services/deps.ts';
import { applyRetention, currentPolicy, enqueueRetention, previewRetention, sweepRetention } from '../../src/services/retention.ts';
import { createSecretBox, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { startServiceRuntime, viewerOf } from '../harness/service-runtime.ts';

let rt: Runtime;
let deps: Deps;
const NOW = new Date('2026-06-15T12:00:00Z');
const DAY = 86_400_000;
const secrets = createSecretBox(Buffer.alloc(32, 9));

beforeAll(async () => {
  rt = await startServiceRuntime('retention_apply');
  deps = { ...rt.deps, clock: { now: () => NOW } };
});
afterAll(() => rt?.close());

async function world() {
  const org = await makeOrganization(rt.db);
  const [p1, p2] = [await makeProject(rt.db, org.id), await makeProject(rt.db, org.id)];
  const [env, other] = [await makeEnvironment(rt.db, secrets, p1), await makeEnvironment(rt.db, secrets, p2)];
  return { org, p1, p2, env, other };
}

type Env = { id: string; organizationId: string; projectId: string };
async function snap(env: Env, daysAgo: number, extra: { kind?: 'MANUAL' | 'SCHEDULED' | 'SAFETY'; pinned?: boolean; status?: 'READY' | 'FAILED' | 'CREATING'; full?: boolean; expiresAt?: Date } = {}) {
  return rt.db.snapshot.create({
    data: {
      organizationId: env.organizationId,
      projectId: env.projectId,
      environmentId: env.id,
      kind: extra.kind ?? 'MANUAL',
      includes: extra.full ? ['DB', 'FILES'] : ['DB'],
      status: extra.status ?? 'READY',
      pinned: extra.pinned ?? false,
      expiresAt: extra.expiresAt ?? null,
      createdAt: new Date(NOW.getTime() - daysAgo * DAY),
    },
  });
}

const decisions = (plan: { snapshotId: string; action: string; rule: string }[]) => Object.fromEntries(plan.map((d) => [d.snapshotId, `${d.action} ${d.rule}`]));

describe('currentPolicy', () => {
  it("is the environment's schedule GFS, timezone and settings; without them, keep everything (safety: 7 days, UTC)", async () => {
    const { env, other } = await world();
    expect(await currentPolicy(deps, env.id)).toEqual({ db: {}, full: {}, files: {}, retentionDays: null, safetyRetentionDays: 7, timezone: 'UTC' });
    await rt.db.schedule.create({ data: { environmentId: env.id, dbCron: '0 * * * *', timezone: 'Europe/Paris', dbRetention: { hourly: 3 }, fullRetention: { daily: 2 } } });
    await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { retentionDays: 30, safetyRetentionDays: 2 } });
    expect(await currentPolicy(deps, env.id)).toEqual({ db: { hourly: 3 }, full: { daily: 2 }, files: {}, retentionDays: 30, safetyRetentionDays: 2, timezone: 'Europe/Paris' });
    // Another environment's schedule and settings are not this one's.
    expect(await currentPolicy(deps, other.id)).toEqual({ db: {}, full: {}, files: {}, retentionDays: null, safetyRetentionDays: 7, timezone: 'UTC' });
    await rt.db.environmentSettings.delete({ where: { environmentId: other.id } });
    expect((await currentPolicy(deps, other.id)).safetyRetentionDays).toBe(7);
  });
});

describe('previewRetention', () => {
  it("plans the environment's READY snapshots with its policy, and with the parts the caller overrides", async () => {
    const { org, p1, env, other } = await world();
    const [newest, old, failed, theirs] = [await snap(env, 1), await snap(env, 10), await snap(env, 20, { status: 'FAILED' }), await snap(other, 30)];
    await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { retentionDays: 5 } });
    const viewer = viewerOf(org.id, [p1.id]);
    expect(decisions(await previewRetention(deps, viewer, env.id))).toEqual({ [newest.id]: 'KEEP WITHIN_AGE_LIMIT', [old.id]: 'DELETE OLDER_THAN_AGE_LIMIT' });
    expect(decisions(await previewRetention(deps, viewer, env.id, { retentionDays: 30 }))).toEqual({ [newest.id]: 'KEEP WITHIN_AGE_LIMIT', [old.id]: 'KEEP WITHIN_AGE_LIMIT' });
    expect(decisions(await previewRetention(deps, viewer, env.id, { retentionDays: null }))).toEqual({ [newest.id]: 'KEEP NO_LIMIT', [old.id]: 'KEEP NO_LIMIT' });
    expect(decisions(await previewRetention(deps, viewer, env.id, { db: { maxAgeDays: 1 } }))).toMatchObject({ [old.id]: 'DELETE OLDER_THAN_AGE_LIMIT' });
    // Only this environment's READY snapshots are planned.
    expect(Object.keys(decisions(await previewRetention(deps, viewer, env.id)))).not.toContain(failed.id);
    expect(Object.keys(decisions(await previewRetention(deps, viewerOf(org.id), env.id)))).not.toContain(theirs.id);
  });

  it('db and full GFS overrides apply to scheduled snapshots of their kind', async () => {
    const { org, env } = await world();
    const [db1, db2, full1, full2] = [await snap(env, 1, { kind: 'SCHEDULED' }), await snap(env, 2, { kind: 'SCHEDULED' }), await snap(env, 3, { kind: 'SCHEDULED', full: true }), await snap(env, 4, { kind: 'SCHEDULED', full: true })];
    await rt.db.schedule.create({ data: { environmentId: env.id, dbCron: '0 0 * * *', dbRetention: { daily: 1 }, fullRetention: { daily: 1 } } });
    const viewer = viewerOf(org.id);
    expect(decisions(await previewRetention(deps, viewer, env.id))).toEqual({ [db1.id]: 'KEEP DAILY', [db2.id]: 'DELETE OUTSIDE_GFS', [full1.id]: 'KEEP DAILY', [full2.id]: 'DELETE OUTSIDE_GFS' });
    expect(decisions(await previewRetention(deps, viewer, env.id, { db: { daily: 5 } }))).toEqual({ [db1.id]: 'KEEP DAILY', [db2.id]: 'KEEP DAILY', [full1.id]: 'KEEP DAILY', [full2.id]: 'DELETE OUTSIDE_GFS' });
    expect(decisions(await previewRetention(deps, viewer, env.id, { full: { daily: 5 } }))).toEqual({ [db1.id]: 'KEEP DAILY', [db2.id]: 'DELETE OUTSIDE_GFS', [full1.id]: 'KEEP DAILY', [full2.id]: 'KEEP DAILY' });
  });

  it("another project's or organization's environment is not found; bad input is refused", async () => {
    const { org, p2, env } = await world();
    const stranger = await makeOrganization(rt.db);
    await expect(previewRetention(deps, viewerOf(org.id, [p2.id]), env.id)).rejects.toMatchObject({ code: 'ENVIRONMENT_NOT_FOUND' });
    await expect(previewRetention(deps, viewerOf(stranger.id), env.id)).rejects.toMatchObject({ code: 'ENVIRONMENT_NOT_FOUND' });
    await expect(previewRetention(deps, viewerOf(org.id), env.id, { retentionDays: 0 })).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
  });
});

describe('applyRetention', () => {
  it('deletes what the plan says through delete jobs, as one RETENTION operation, with an alert naming the rules; nothing of another environment', async () => {
    const { org, env, other } = await world();
    const newest = await snap(env, 1);
    const old = await snap(env, 10);
    const pinned = await snap(env, 40, { pinned: true });
    const expired = await snap(env, 2, { kind: 'SAFETY', expiresAt: new Date(NOW.getTime() - 1) });
    const theirs = await snap(other, 50);
    await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { retentionDays: 5 } });
    await rt.db.environmentSettings.update({ where: { environmentId: other.id }, data: { retentionDays: 5 } });

    const result = await applyRetention(deps, env.id);
    expect(result.deleted.sort()).toEqual([old.id, expired.id].sort());
    const status = async (id: string) => (await rt.db.snapshot.findUniqueOrThrow({ where: { id } })).status;
    expect([await status(old.id), await status(expired.id)]).toEqual(['DELETING', 'DELETING']);
    expect([await status(newest.id), await status(pinned.id), await status(theirs.id)]).toEqual(['READY', 'READY', 'READY']);
    expect(await rt.db.operation.count({ where: { type: 'DELETE_SNAPSHOT', snapshotId: { in: [old.id, expired.id] } } })).toBe(2);
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: result.operationId! } })).toMatchObject({
      organizationId: org.id,
      environmentId: env.id,
      type: 'RETENTION',
      status: 'SUCCEEDED',
      message: 'Deleting 2 snapshot(s)',
    });
    const [alert] = await rt.db.alert.findMany({ where: { operationId: result.operationId! } });
    expect(alert).toMatchObject({ type: 'RETENTION_DELETED', severity: 'INFO', environmentId: env.id, organizationId: org.id });
    expect(alert.message).toMatch(new RegExp(`^Retention deleted 2 snapshot\\(s\\) of ${env.name} \\((older than age limit, expired|expired, older than age limit)\\)$`));
  });

  it('nothing to delete: no operation, no alert; an environment gone: nothing', async () => {
    const { env } = await world();
    await snap(env, 1);
    await snap(env, 100);
    expect(await applyRetention(deps, env.id)).toEqual({ operationId: null, deleted: [] });
    expect(await rt.db.operation.count({ where: { environmentId: env.id } })).toBe(0);
    expect(await applyRetention(deps, '00000000-0000-7000-8000-000000000000')).toEqual({ operationId: null, deleted: [] });
  });

  it('only READY snapshots are candidates: one already being deleted is left to its job; the count says what went', async () => {
    const { env } = await world();
    await snap(env, 1);
    const old = await snap(env, 10);
    await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { retentionDays: 5 } });
    const older = await snap(env, 20);
    await rt.db.snapshot.update({ where: { id: older.id }, data: { status: 'DELETING' } });
    const result = await applyRetention(deps, env.id);
    expect(result.deleted).toEqual([old.id]);
    expect((await rt.db.operation.findUniqueOrThrow({ where: { id: result.operationId! } })).message).toBe('Deleting 1 snapshot(s)');
  });
});

describe('what the preview and the job are told', () => {
  it('a pinned snapshot past every limit is shown kept as PINNED; the retention job is told its environment', async () => {
    const { org, env } = await world();
    await snap(env, 1);
    const pinned = await snap(env, 400, { pinned: true });
    await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { retentionDays: 5 } });
    expect(decisions(await previewRetention(deps, viewerOf(org.id), env.id))[pinned.id]).toBe('KEEP PINNED');
    await enqueueRetention(rt.db, env.id);
    const [job] = await rt.db.$queryRawUnsafe<{ payload: unknown }[]>('SELECT payload FROM graphile_worker._private_jobs WHERE key = $1', `retention:${env.id}`);
    expect(job.payload).toEqual({ environmentId: env.id });
  });
});

describe('enqueueRetention and sweepRetention', () => {
  it('one pending retention job per environment; the sweep queues one for every environment', async () => {
    const { env } = await world();
    const jobs = async (id: string) =>
      rt.db.$queryRawUnsafe<{ task_identifier: string; max_attempts: number }[]>('SELECT task_identifier, max_attempts FROM graphile_worker.jobs WHERE key = $1', `retention:${id}`);
    await enqueueRetention(rt.db, env.id);
    await enqueueRetention(rt.db, env.id);
    expect(await jobs(env.id)).toEqual([{ task_identifier: 'retention_apply', max_attempts: 3 }]);
    const all = await rt.db.environment.count();
    expect(await sweepRetention(deps)).toBe(all);
    const { n } = (await rt.db.$queryRawUnsafe<{ n: number }[]>("SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE key LIKE 'retention:%'"))[0];
    expect(n).toBe(all);
  });
});
