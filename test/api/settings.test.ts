import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EnvironmentSettingsDocument,
  PinSnapshotDocument,
  RunScheduleNowDocument,
  UpdateEnvironmentSettingsDocument,
  UpsertScheduleDocument,
} from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { makeLiveEnvironment, type LiveEnvironment } from '../harness/live-environment.ts';
import { jobsWithKey, runJobNow, useManualClock, waitFor, type ManualClock } from '../harness/schedule-helpers.ts';
import { follow, startSnapshot, startWorkerSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let writeKey: string;
let orgId: string;
let env: LiveEnvironment;
let clock: ManualClock;

beforeAll(async () => {
  ({ app, key, orgId } = await startWorkerSuite());
  writeKey = (await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:write'] })).secret;
  env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 50 });
  clock = useManualClock(app, '2032-06-01T00:00:00Z');
});
afterAll(() => app?.stop());

async function update(environmentId: string, input: Record<string, unknown>, k = key) {
  return app.gql(UpdateEnvironmentSettingsDocument, { input: { environmentId: gid('Environment', environmentId), ...input } as never }, { key: k });
}

describe('environmentSettings and updateEnvironmentSettings', () => {
  it('creates the defaults on first read', async () => {
    const project = await makeProject(app.runtime.db, orgId);
    const bare = await app.runtime.db.environment.create({
      data: { organizationId: orgId, projectId: project.id, name: 'bare', databaseUrlEncrypted: 'x', databaseUrlRedacted: 'x', databaseName: 'x' },
    });
    expect(await app.runtime.db.environmentSettings.count({ where: { environmentId: bare.id } })).toBe(0);
    const res = await app.gql(EnvironmentSettingsDocument, { environmentId: gid('Environment', bare.id) }, { key: writeKey });
    expect(res.data?.environmentSettings).toEqual({
      __typename: 'EnvironmentSettings',
      autoEnabled: true,
      failurePolicy: 'ALERT_ONLY',
      retryCount: 3,
      retryBackoffSeconds: 60,
      maxPinned: 10,
      retentionDays: null,
      safetyRetentionDays: 7,
      timeoutSeconds: 3600,
      staleAfterHours: null,
      defaultDestinations: [],
    });
    expect(await app.runtime.db.environmentSettings.count({ where: { environmentId: bare.id } })).toBe(1);
  });

  it('changes only what is given; null clears the optional ones; bad values and foreign ids are typed errors that change nothing', async () => {
    const res = await update(env.id, { failurePolicy: 'RETRY', retryCount: 2, retryBackoffSeconds: 5, retentionDays: 30, staleAfterHours: 12 });
    expect(res.data?.updateEnvironmentSettings).toMatchObject({
      __typename: 'EnvironmentSettingsPayload',
      settings: { failurePolicy: 'RETRY', retryCount: 2, retryBackoffSeconds: 5, retentionDays: 30, staleAfterHours: 12, maxPinned: 10, autoEnabled: true },
    });
    const cleared = await update(env.id, { retentionDays: null, failurePolicy: 'ALERT_ONLY' });
    expect(cleared.data?.updateEnvironmentSettings).toMatchObject({ settings: { retentionDays: null, staleAfterHours: 12, failurePolicy: 'ALERT_ONLY' } });

    const before = await app.runtime.db.environmentSettings.findUniqueOrThrow({ where: { environmentId: env.id } });
    const bad = await update(env.id, { maxPinned: -1, timeoutSeconds: 0, autoEnabled: false });
    expect(bad.data?.updateEnvironmentSettings).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED' });
    const paths = (bad.data?.updateEnvironmentSettings as { fields: { path: string[] }[] }).fields.map((f) => f.path.join('.'));
    expect(paths.sort()).toEqual(['input.maxPinned', 'input.timeoutSeconds']);
    const other = await makeOrganization(app.runtime.db);
    const theirs = await app.runtime.db.destination.create({ data: { organizationId: other.id, name: 'theirs', provider: 'LOCAL', config: { path: '/tmp/theirs' } } });
    const foreignDest = await update(env.id, { defaultDestinationIds: [gid('Destination', theirs.id)], autoEnabled: false });
    expect(foreignDest.data?.updateEnvironmentSettings).toMatchObject({ __typename: 'NotFoundError', code: 'DESTINATION_NOT_FOUND' });
    const foreignEnv = await makeEnvironment(app.runtime.db, app.runtime.deps.secrets, await makeProject(app.runtime.db, other.id));
    const fe = await update(foreignEnv.id, { autoEnabled: false });
    expect(fe.data?.updateEnvironmentSettings).toMatchObject({ __typename: 'NotFoundError', code: 'ENVIRONMENT_NOT_FOUND' });
    expect(await app.runtime.db.environmentSettings.findUniqueOrThrow({ where: { environmentId: foreignEnv.id } })).toMatchObject({ autoEnabled: true });
    expect(await app.runtime.db.environmentSettings.findUniqueOrThrow({ where: { environmentId: env.id } })).toEqual(before);
    expect(await app.runtime.db.environmentDestination.count({ where: { environmentId: env.id } })).toBe(1);
    // Settings are the environment's configuration: admin only.
    const forbidden = await update(env.id, { autoEnabled: false }, writeKey);
    expect(forbidden.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  });
});

describe('each setting has its effect', () => {
  it('maxPinned limits pinning', async () => {
    const ready = await Promise.all(
      [1, 2].map(() => app.runtime.db.snapshot.create({ data: { organizationId: orgId, projectId: env.projectId, environmentId: env.id, includes: ['DB'], status: 'READY' } })),
    );
    await update(env.id, { maxPinned: 1 });
    const first = await app.gql(PinSnapshotDocument, { input: { id: gid('Snapshot', ready[0].id) } }, { key });
    expect(first.data?.pinSnapshot.__typename).toBe('SnapshotPayload');
    const second = await app.gql(PinSnapshotDocument, { input: { id: gid('Snapshot', ready[1].id) } }, { key });
    expect(second.data?.pinSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'MAX_PINNED' });
    await app.runtime.db.snapshot.deleteMany({ where: { id: { in: ready.map((r) => r.id) } } });
    await update(env.id, { maxPinned: 10 });
  });

  it('timeoutSeconds fails a snapshot that runs too long', async () => {
    await update(env.id, { timeoutSeconds: 1 });
    const c = new pg.Client({ connectionString: env.databaseUrl });
    await c.connect();
    await c.query('BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
    try {
      const s = await startSnapshot(app, key, env.id, { includes: ['DB'] });
      expect((await follow(app, key, s.operationId)).at(-1)).toMatchObject({ status: 'FAILED', error: 'Timed out after 1 s' });
    } finally {
      await c.query('ROLLBACK');
      await c.end();
      await update(env.id, { timeoutSeconds: 3600 });
    }
  });

  it('default destinations decide where snapshots go', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-second-'));
    const second = await app.runtime.db.destination.create({ data: { organizationId: orgId, name: 'second', provider: 'LOCAL', config: { path: path.join(dir, 'repo') } } });
    const res = await update(env.id, { defaultDestinationIds: [gid('Destination', second.id)] });
    expect(res.data?.updateEnvironmentSettings).toMatchObject({ settings: { defaultDestinations: [{ name: 'second' }] } });
    const s = await takeSnapshot(app, key, env.id, { includes: ['DB'] });
    const copies = await app.runtime.db.snapshotCopy.findMany({ where: { snapshotId: decodeGlobalID(s.snapshotId).id } });
    expect(copies.map((c) => [c.destinationId, c.status])).toEqual([[second.id, 'READY']]);
    await update(env.id, { defaultDestinationIds: [gid('Destination', env.destinationId)] });
  });

  it('autoEnabled off: planned runs pass without a snapshot; on again: they take one', async () => {
    clock.set('2032-06-01T00:00:00Z');
    const up = await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', env.id), dbCron: '0 2 * * *', timezone: 'UTC' } }, { key });
    if (up.data?.upsertSchedule.__typename !== 'SchedulePayload') throw new Error(JSON.stringify(up));
    const schedule = await app.runtime.db.schedule.findUniqueOrThrow({ where: { environmentId: env.id } });
    await update(env.id, { autoEnabled: false });
    clock.set('2032-06-01T02:00:00Z');
    await runJobNow(app, `schedule:${schedule.id}:db`);
    await waitFor(() => app.runtime.db.schedule.findUniqueOrThrow({ where: { id: schedule.id } }), (s) => s.lastDbRunAt?.toISOString() === '2032-06-01T02:00:00.000Z', 'the skipped run');
    expect(await app.runtime.db.snapshot.count({ where: { scheduleId: schedule.id } })).toBe(0);

    await update(env.id, { autoEnabled: true });
    clock.set('2032-06-02T02:00:00Z');
    await runJobNow(app, `schedule:${schedule.id}:db`);
    await waitFor(() => app.runtime.db.schedule.findUniqueOrThrow({ where: { id: schedule.id } }), (s) => s.lastDbRunAt?.toISOString() === '2032-06-02T02:00:00.000Z', 'the taken run');
    const snap = await app.runtime.db.snapshot.findFirstOrThrow({ where: { scheduleId: schedule.id }, include: { operations: true } });
    expect((await follow(app, key, gid('Operation', snap.operations[0].id))).at(-1)?.status).toBe('SUCCEEDED');
  });
});

describe('failurePolicy', () => {
  /** An environment on the same server whose database does not exist: every snapshot fails at once. */
  async function brokenEnvironment(settings: Record<string, unknown>) {
    const url = new URL(env.databaseUrl);
    url.pathname = '/no_such_database';
    const broken = await makeEnvironment(app.runtime.db, app.runtime.deps.secrets, { id: env.projectId, organizationId: orgId }, { databaseUrl: url.toString(), filesPath: null });
    await app.runtime.db.environmentDestination.create({ data: { environmentId: broken.id, destinationId: env.destinationId } });
    const up = await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', broken.id), dbCron: '0 2 * * *' } }, { key });
    if (up.data?.upsertSchedule.__typename !== 'SchedulePayload') throw new Error(JSON.stringify(up));
    const res = await update(broken.id, settings);
    expect(res.data?.updateEnvironmentSettings.__typename).toBe('EnvironmentSettingsPayload');
    const scheduleId = (await app.runtime.db.schedule.findUniqueOrThrow({ where: { environmentId: broken.id } })).id;
    const failOnce = async (): Promise<string> => {
      const run = await app.gql(RunScheduleNowDocument, { input: { environmentId: gid('Environment', broken.id), kind: 'DB' } }, { key });
      if (run.data?.runScheduleNow.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(run));
      expect((await follow(app, key, run.data.runScheduleNow.operation.id)).at(-1)?.status).toBe('FAILED');
      return run.data.runScheduleNow.snapshot.id;
    };
    const failedSnapshots = () => app.runtime.db.snapshot.findMany({ where: { environmentId: broken.id, status: 'FAILED' }, orderBy: { createdAt: 'asc' } });
    return { broken, scheduleId, failOnce, failedSnapshots };
  }

  it('ALERT_ONLY: an alert, nothing else', async () => {
    const { broken, scheduleId, failOnce, failedSnapshots } = await brokenEnvironment({ failurePolicy: 'ALERT_ONLY' });
    await failOnce();
    // The alert follows the operation's end.
    await waitFor(() => app.runtime.db.alert.count({ where: { environmentId: broken.id, type: 'SNAPSHOT_FAILED' } }), (n) => n === 1, 'the failure alert');
    const [snap] = await failedSnapshots();
    expect(await jobsWithKey(app, `schedule-retry:${snap.id}`)).toHaveLength(0);
    expect((await app.runtime.db.schedule.findUniqueOrThrow({ where: { id: scheduleId } })).paused).toBe(false);
  });

  it('RETRY: retryCount more attempts with doubling backoff, then it stops', async () => {
    const { broken, failOnce, failedSnapshots } = await brokenEnvironment({ failurePolicy: 'RETRY', retryCount: 2, retryBackoffSeconds: 1 });
    await failOnce();
    const all = await waitFor(failedSnapshots, (s) => s.length === 3, 'two retries', 60_000);
    expect(all.map((s) => (s.metadata as Record<string, string>).attempt)).toEqual(['1', '2', '3']);
    // The second retry waited twice as long as the first.
    const created = all.map((s) => s.createdAt.getTime());
    expect(created[2] - created[1]).toBeGreaterThanOrEqual(2000);
    expect(created[1] - created[0]).toBeGreaterThanOrEqual(1000);
    await waitFor(() => app.runtime.db.alert.count({ where: { environmentId: broken.id, type: 'SNAPSHOT_FAILED' } }), (n) => n === 3, 'the third failure alert');
    await waitFor(() => app.runtime.db.operation.count({ where: { environmentId: broken.id, status: { in: ['QUEUED', 'RUNNING'] } } }), (n) => n === 0, 'the last attempt to end');
    expect(await jobsWithKey(app, `schedule-retry:${all.at(-1)!.id}`)).toHaveLength(0);
    expect(await app.runtime.db.snapshot.count({ where: { environmentId: broken.id } })).toBe(3);
  });

  it('PAUSE_SCHEDULE: the schedule is paused, with an alert saying so', async () => {
    const { broken, scheduleId, failOnce } = await brokenEnvironment({ failurePolicy: 'PAUSE_SCHEDULE' });
    await failOnce();
    const s = await waitFor(() => app.runtime.db.schedule.findUniqueOrThrow({ where: { id: scheduleId } }), (x) => x.paused, 'the schedule to pause');
    expect(s.nextDbRunAt).toBeNull();
    expect(await jobsWithKey(app, `schedule:${scheduleId}:db`)).toHaveLength(0);
    const alert = await waitFor(() => app.runtime.db.alert.findFirst({ where: { environmentId: broken.id, message: { contains: 'paused' } } }), (a) => !!a, 'the pause alert');
    expect(alert).toMatchObject({ type: 'SNAPSHOT_FAILED', severity: 'CRITICAL' });
  });
});
