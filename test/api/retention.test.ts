import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { PreviewRetentionDocument, RunScheduleNowDocument, UpdateEnvironmentSettingsDocument, UpsertScheduleDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid, makeEnvironment, makeProject } from '../harness/factories.ts';
import { makeLiveEnvironment, repositoryPassword, type LiveEnvironment } from '../harness/live-environment.ts';
import { runJobNow, useManualClock, waitFor } from '../harness/schedule-helpers.ts';
import { follow, restic, startWorkerSuite } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let orgId: string;
let envId: string;
let projectId: string;
let destinationId: string;

beforeAll(async () => {
  ({ app, key, orgId } = await startWorkerSuite());
  const project = await makeProject(app.runtime.db, orgId);
  projectId = project.id;
  envId = (await makeEnvironment(app.runtime.db, app.runtime.deps.secrets, project)).id;
  destinationId = (await app.runtime.db.destination.create({ data: { organizationId: orgId, name: 'catalog only', provider: 'LOCAL', config: { path: '/nonexistent/never-opened' } } })).id;
  await app.runtime.db.environmentDestination.create({ data: { environmentId: envId, destinationId } });
});
afterAll(() => app?.stop());

type Kind = 'MANUAL' | 'SCHEDULED' | 'PRE_DEPLOY' | 'SAFETY';

/**
 * A READY snapshot in the catalog only (its copy has no repository snapshot, so deleting it never
 * opens a repository): retention's decisions depend on kind, includes, time, pin and expiry only.
 */
async function snap(name: string, kind: Kind, createdAt: string, extra: { full?: boolean; pinned?: boolean; expiresAt?: string; status?: 'READY' | 'FAILED'; environmentId?: string } = {}) {
  const s = await app.runtime.db.snapshot.create({
    data: {
      organizationId: orgId,
      projectId,
      environmentId: extra.environmentId ?? envId,
      kind,
      includes: extra.full ? ['DB', 'FILES'] : ['DB'],
      label: name,
      status: extra.status ?? 'READY',
      pinned: extra.pinned ?? false,
      expiresAt: extra.expiresAt ? new Date(extra.expiresAt) : null,
      createdAt: new Date(createdAt),
      completedAt: new Date(createdAt),
      copies: { create: [{ destinationId, status: 'READY' }] },
    },
  });
  return s.id;
}

type Decision = { action: string; rule: string; snapshot: { id: string; label?: string | null } };

async function preview(policy?: Record<string, unknown>, environmentId = envId) {
  const res = await app.gql(PreviewRetentionDocument, { environmentId: gid('Environment', environmentId), policy: policy as never }, { key });
  if (res.data?.previewRetention.__typename !== 'RetentionPreview') throw new Error(JSON.stringify(res));
  const byLabel = (ds: Decision[]) => Object.fromEntries(ds.map((d) => [d.snapshot.label, d.rule]));
  return { keep: byLabel(res.data.previewRetention.keep), delete: byLabel(res.data.previewRetention.delete), raw: res.data.previewRetention };
}

describe('GFS per kind, pins, the newest, age limits and expiry', () => {
  it('previewRetention names the rule for each snapshot, bucketing in the schedule timezone', async () => {
    useManualClock(app, '2034-03-15T12:00:00Z'); // Wednesday; Berlin is UTC+1 until 26 March
    const up = await app.gql(
      UpsertScheduleDocument,
      {
        input: {
          environmentId: gid('Environment', envId),
          dbCron: '0 * * * *',
          fullCron: '0 6 * * *',
          timezone: 'Europe/Berlin',
          dbRetention: { hourly: 2, daily: 2, weekly: 2, monthly: 3 },
          fullRetention: { daily: 1, maxAgeDays: 10 },
        },
      },
      { key },
    );
    expect(up.data?.upsertSchedule.__typename).toBe('SchedulePayload');
    await app.gql(UpdateEnvironmentSettingsDocument, { input: { environmentId: gid('Environment', envId), retentionDays: 30 } }, { key });

    // Database-only scheduled snapshots (local Berlin times in comments).
    await snap('d1', 'SCHEDULED', '2034-03-15T11:00:00Z'); // 15th 12:00
    await snap('d2', 'SCHEDULED', '2034-03-15T10:00:00Z'); // 15th 11:00
    await snap('d3', 'SCHEDULED', '2034-03-15T09:30:00Z'); // 15th 10:30
    await snap('d4', 'SCHEDULED', '2034-03-15T09:10:00Z'); // 15th 10:10, the same hour as d3
    await snap('d6', 'SCHEDULED', '2034-03-14T23:30:00Z'); // 15th 00:30: the 14th in UTC, the 15th in Berlin
    await snap('d5', 'SCHEDULED', '2034-03-14T22:30:00Z'); // 14th 23:30
    await snap('d7', 'SCHEDULED', '2034-03-13T12:00:00Z'); // Monday of this ISO week
    await snap('d8', 'SCHEDULED', '2034-03-12T12:00:00Z'); // Sunday: the week before
    await snap('d9', 'SCHEDULED', '2034-03-06T12:00:00Z');
    await snap('d10', 'SCHEDULED', '2034-02-20T12:00:00Z');
    await snap('d11', 'SCHEDULED', '2034-01-20T12:00:00Z');
    await snap('d12', 'SCHEDULED', '2033-12-20T12:00:00Z');
    await snap('p1', 'SCHEDULED', '2033-06-01T12:00:00Z', { pinned: true });
    // Database and files: their own policy.
    await snap('f1', 'SCHEDULED', '2034-03-15T05:00:00Z', { full: true });
    await snap('f2', 'SCHEDULED', '2034-03-14T05:00:00Z', { full: true });
    await snap('f3', 'SCHEDULED', '2034-02-01T05:00:00Z', { full: true });
    // Manual and pre-deploy: the age limit only (retentionDays 30).
    await snap('n1', 'MANUAL', '2034-03-15T11:30:00Z');
    await snap('m1', 'MANUAL', '2034-03-10T12:00:00Z');
    await snap('m2', 'MANUAL', '2034-01-24T12:00:00Z');
    await snap('pd1', 'PRE_DEPLOY', '2034-02-03T12:00:00Z');
    // Safety snapshots: their own expiry.
    await snap('s1', 'SAFETY', '2034-03-01T12:00:00Z', { expiresAt: '2034-03-08T12:00:00Z' });
    await snap('s2', 'SAFETY', '2034-03-13T12:00:00Z', { expiresAt: '2034-03-20T12:00:00Z' });
    await snap('x1', 'SCHEDULED', '2034-03-15T08:00:00Z', { status: 'FAILED' });

    const p = await preview();
    expect(p.keep).toEqual({
      n1: 'WITHIN_AGE_LIMIT',
      d1: 'HOURLY',
      d2: 'HOURLY',
      f1: 'DAILY',
      d5: 'DAILY',
      m1: 'WITHIN_AGE_LIMIT',
      s2: 'SAFETY_PERIOD',
      d8: 'WEEKLY',
      d10: 'MONTHLY',
      d11: 'MONTHLY',
      p1: 'PINNED',
    });
    expect(p.delete).toEqual({
      d3: 'OUTSIDE_GFS',
      d4: 'OUTSIDE_GFS',
      d6: 'OUTSIDE_GFS',
      f2: 'OUTSIDE_GFS',
      d7: 'OUTSIDE_GFS',
      d9: 'OUTSIDE_GFS',
      s1: 'EXPIRED',
      pd1: 'OLDER_THAN_AGE_LIMIT',
      f3: 'OLDER_THAN_AGE_LIMIT',
      m2: 'OLDER_THAN_AGE_LIMIT',
      d12: 'OUTSIDE_GFS',
    });
    // Newest first.
    expect(p.raw.keep.map((d) => d.snapshot.label).slice(0, 2)).toEqual(['n1', 'd1']);

    // Another policy, tried without saving it.
    const tried = await preview({ db: { hourly: 24 }, retentionDays: null });
    expect(tried.keep).toMatchObject({ d3: 'HOURLY', d6: 'HOURLY', m2: 'NO_LIMIT', pd1: 'NO_LIMIT' });
    expect(tried.delete).toMatchObject({ d4: 'OUTSIDE_GFS', f3: 'OLDER_THAN_AGE_LIMIT' });
    const bad = await app.gql(PreviewRetentionDocument, { environmentId: gid('Environment', envId), policy: { db: { weekly: -2 } } }, { key });
    expect(bad.data?.previewRetention).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['policy', 'db', 'weekly'], message: 'must not be negative' }] });
  });

  it('applying the policy deletes exactly what the preview said, through the delete job, with an alert linking the RETENTION operation', async () => {
    const p = await preview();
    const expected = p.raw.delete.map((d) => decodeGlobalID(d.snapshot.id).id).sort();
    // The daily sweep: a retention run for every environment.
    await runJobNow(app, 'retention:sweep');
    const deleted = await waitFor(
      () => app.runtime.db.snapshot.findMany({ where: { environmentId: envId, status: 'DELETED' }, select: { id: true } }),
      (rows) => rows.length >= expected.length,
      'retention deletions',
    );
    expect(deleted.map((r) => r.id).sort()).toEqual(expected);
    expect(await app.runtime.db.snapshot.count({ where: { environmentId: envId, status: 'READY' } })).toBe(p.raw.keep.length);
    const ops = await app.runtime.db.operation.findMany({ where: { environmentId: envId, type: 'DELETE_SNAPSHOT' } });
    expect(ops).toHaveLength(expected.length);
    expect(ops.every((o) => o.status === 'SUCCEEDED')).toBe(true);
    const alert = (await waitFor(
      () => app.runtime.db.alert.findFirst({ where: { environmentId: envId, type: 'RETENTION_DELETED' }, include: { operation: true } }),
      (a) => a?.operation?.status === 'SUCCEEDED',
      'the retention alert',
    ))!;
    expect(alert).toMatchObject({ severity: 'INFO', operation: { type: 'RETENTION', status: 'SUCCEEDED' } });
    expect(alert.message).toContain(`deleted ${expected.length} snapshot(s)`);
    // Nothing left to delete: the next run changes nothing and raises nothing.
    const again = await preview();
    expect(again.raw.delete).toEqual([]);
  });

  it('the newest READY snapshot is kept even when the policy would delete it', async () => {
    const other = (await makeEnvironment(app.runtime.db, app.runtime.deps.secrets, { id: projectId, organizationId: orgId })).id;
    await snap('old', 'MANUAL', '2034-02-01T00:00:00Z', { environmentId: other });
    await snap('older', 'MANUAL', '2034-01-01T00:00:00Z', { environmentId: other });
    await snap('scheduled-old', 'SCHEDULED', '2033-12-01T00:00:00Z', { environmentId: other });
    const p = await preview({ retentionDays: 1, db: { maxAgeDays: 1 } }, other);
    expect(p.keep).toEqual({ old: 'NEWEST' });
    expect(p.delete).toEqual({ older: 'OLDER_THAN_AGE_LIMIT', 'scheduled-old': 'OLDER_THAN_AGE_LIMIT' });
  });
});

describe('after each scheduled snapshot', () => {
  let live: LiveEnvironment;

  it('retention runs and deletes from the repository what the policy no longer keeps', async () => {
    app.runtime.deps.clock = { now: () => new Date() };
    live = await makeLiveEnvironment(app, { organizationId: orgId, rows: 20 });
    const up = await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', live.id), dbCron: '0 3 * * *', timezone: 'UTC', dbRetention: { daily: 1 } } }, { key });
    expect(up.data?.upsertSchedule.__typename).toBe('SchedulePayload');
    const run = async () => {
      const res = await app.gql(RunScheduleNowDocument, { input: { environmentId: gid('Environment', live.id), kind: 'DB' } }, { key });
      if (res.data?.runScheduleNow.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(res));
      expect((await follow(app, key, res.data.runScheduleNow.operation.id)).at(-1)?.status).toBe('SUCCEEDED');
      return decodeGlobalID(res.data.runScheduleNow.snapshot.id).id;
    };
    const first = await run();
    const second = await run();
    await waitFor(() => app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: first } }), (s) => s.status === 'DELETED', 'the first snapshot to be deleted');
    expect((await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: second } })).status).toBe('READY');
    const password = await repositoryPassword(app, live.destinationId);
    const inRepo = JSON.parse(await restic(live.repositoryPath, password, 'snapshots', '--json')) as { tags: string[] }[];
    expect(inRepo.map((s) => s.tags.find((t) => t.startsWith('snapshot:')))).toEqual([`snapshot:${second}`]);
    await restic(live.repositoryPath, password, 'check');
  });
});
