/**
 * Restore drills through the API: `runRestoreDrill` and a schedule's `drillCron` restore the
 * newest READY snapshot into scratch copies on the environment's own server, run its check query
 * there, time it, record a RestoreDrill and drop the copies; the environment itself is untouched.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvironmentRestoreDrillsDocument, RunRestoreDrillDocument, UpdateEnvironmentSettingsDocument, UpsertScheduleDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { adminUrl } from '../harness/database.ts';
import { gid, makeApiKey } from '../harness/factories.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { jobsWithKey, runJobNow, useManualClock, waitFor } from '../harness/schedule-helpers.ts';
import { follow, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let adminKey: string;
let env: LiveEnvironment;

beforeAll(async () => {
  let orgId: string;
  ({ app, key, orgId, env } = await startSnapshotSuite({ envName: 'drilled' }));
  adminKey = (await makeApiKey(app.runtime.db, orgId, { scopes: ['admin'] })).secret;
  await takeSnapshot(app, key, env.id);
  // The live database changes after the snapshot: a check that passes can only have read the restored copy.
  await sql(env.databaseUrl, 'DELETE FROM orders');
});
afterAll(() => app?.stop());

async function setCheckQuery(query: string | null) {
  const res = await app.gql(UpdateEnvironmentSettingsDocument, { input: { environmentId: gid('Environment', env.id), drillCheckQuery: query } }, { key: adminKey });
  expect(res.data?.updateEnvironmentSettings.__typename).toBe('EnvironmentSettingsPayload');
}

async function runDrill() {
  const res = await app.gql(RunRestoreDrillDocument, { input: { environmentId: gid('Environment', env.id) } }, { key });
  const payload = res.data?.runRestoreDrill;
  if (payload?.__typename !== 'RestoreDrillPayload') throw new Error(JSON.stringify(res));
  expect(payload.operation.type).toBe('RESTORE_DRILL');
  return { operationId: payload.operation.id, drillId: payload.restoreDrill.id, states: await follow(app, key, payload.operation.id) };
}

async function drills() {
  const res = await app.gql(EnvironmentRestoreDrillsDocument, { id: gid('Environment', env.id) }, { key });
  return res.data!.environment!;
}

/** No scratch database or folder of any drill is left. */
async function expectNoScratch() {
  expect((await sql(adminUrl(), "SELECT datname FROM pg_database WHERE datname LIKE 'bp\\_drill\\_%'")).rows).toEqual([]);
  expect((await fs.readdir(path.dirname(env.filesPath))).filter((n) => n.includes('.bp_drill_'))).toEqual([]);
}

describe('runRestoreDrill', () => {
  it('a passing drill: restored, checked in the scratch copy, files compared, RTO recorded, scratch copies dropped, the environment untouched', async () => {
    await setCheckQuery('select count(*) > 0 from orders');
    const dbBefore = await databaseDigest(env.databaseUrl);
    const filesBefore = await filesDigest(env.filesPath);
    const { drillId, states } = await runDrill();
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });

    const e = await drills();
    const drill = e.restoreDrills.edges.find((x) => x.node.id === drillId)!.node;
    expect(drill).toMatchObject({ status: 'SUCCEEDED', scheduled: false, checkQuery: 'select count(*) > 0 from orders', checkPassed: true, error: null, filesFound: 4, filesExpected: 4 });
    expect(drill.bytesFound).toBe(drill.bytesExpected);
    expect(Number(drill.bytesFound)).toBeGreaterThan(300_000);
    expect(drill.rtoSeconds).toBeGreaterThan(0);
    expect(e.restoreDrillStats).toEqual({ count: 1, failures: 0, medianRtoSeconds: drill.rtoSeconds, lastRtoSeconds: drill.rtoSeconds });

    await expectNoScratch();
    expect(await databaseDigest(env.databaseUrl)).toEqual(dbBefore);
    expect(await filesDigest(env.filesPath)).toEqual(filesBefore);
  });

  it('a check query that is not true: the drill FAILED, checkPassed false, DRILL_FAILED raised, scratch copies dropped', async () => {
    await setCheckQuery('select count(*) > 1000000 from orders');
    const { operationId, drillId, states } = await runDrill();
    expect(states.at(-1)).toMatchObject({ status: 'FAILED' });
    expect(states.at(-1)?.error).toMatch(/check query returned false/);

    const e = await drills();
    const drill = e.restoreDrills.edges.find((x) => x.node.id === drillId)!.node;
    expect(drill).toMatchObject({ status: 'FAILED', checkPassed: false, rtoSeconds: null });
    expect(e.restoreDrillStats).toMatchObject({ count: 2, failures: 1 });
    const opId = Buffer.from(operationId, 'base64').toString().split(':')[1];
    const alerts = await app.runtime.db.alert.findMany({ where: { operationId: opId, type: 'DRILL_FAILED' } });
    expect(alerts).toHaveLength(1);
    expect(alerts[0].message).toMatch(/Restore drill of drilled failed: .*check query/);
    await expectNoScratch();
  });

  it('a check query that writes is refused by the read-only transaction', async () => {
    await setCheckQuery('delete from orders returning true');
    const { states } = await runDrill();
    expect(states.at(-1)).toMatchObject({ status: 'FAILED' });
    expect(states.at(-1)?.error).toMatch(/read-only transaction/);
    await expectNoScratch();
  });

  it('an environment without a READY snapshot is SNAPSHOT_NOT_FOUND, and no drill is recorded', async () => {
    const bare = await makeLiveEnvironment(app, { organizationId: env.organizationId, projectId: env.projectId, name: 'never-snapshotted', rows: 10 });
    const res = await app.gql(RunRestoreDrillDocument, { input: { environmentId: gid('Environment', bare.id) } }, { key });
    expect(res.data?.runRestoreDrill).toMatchObject({ __typename: 'NotFoundError', code: 'SNAPSHOT_NOT_FOUND' });
    expect(await app.runtime.db.restoreDrill.count({ where: { environmentId: bare.id } })).toBe(0);
  });
});

describe('drillCron', () => {
  it('the schedule’s planned drill runs when its job comes due, and the next one is planned', async () => {
    await setCheckQuery('select count(*) > 0 from customers');
    const clock = useManualClock(app, '2030-01-01T00:00:00Z');
    const res = await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', env.id), drillCron: '30 4 * * *' } as never }, { key });
    expect(res.data?.upsertSchedule.__typename).toBe('SchedulePayload');
    const schedule = await app.runtime.db.schedule.findUniqueOrThrow({ where: { environmentId: env.id } });
    expect(schedule.nextDrillRunAt?.toISOString()).toBe('2030-01-01T04:30:00.000Z');
    const jobKey = `schedule:${schedule.id}:drill`;
    expect(await jobsWithKey(app, jobKey)).toHaveLength(1);

    // Time passes to the planned run; graphile-worker is told the job is due now.
    clock.set('2030-01-01T04:30:05Z');
    await runJobNow(app, jobKey);
    const drill = await waitFor(
      () => app.runtime.db.restoreDrill.findFirst({ where: { environmentId: env.id, scheduled: true } }),
      (d) => d !== null && ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(d.status),
      'the scheduled drill to end',
      120_000,
    );
    expect(drill).toMatchObject({ status: 'SUCCEEDED', checkPassed: true, checkQuery: 'select count(*) > 0 from customers' });
    expect(drill!.rtoMs).toBeGreaterThan(0);
    const after = await app.runtime.db.schedule.findUniqueOrThrow({ where: { id: schedule.id } });
    expect(after.lastDrillRunAt?.toISOString()).toBe('2030-01-01T04:30:00.000Z');
    expect(after.nextDrillRunAt?.toISOString()).toBe('2030-01-02T04:30:00.000Z');
    await expectNoScratch();

    // The next one runs half an hour late: it still runs, and SCHEDULE_MISSED says it was a drill.
    clock.set('2030-01-02T05:00:00Z');
    await runJobNow(app, jobKey);
    await waitFor(
      () => app.runtime.db.restoreDrill.count({ where: { environmentId: env.id, scheduled: true, status: 'SUCCEEDED' } }),
      (n) => n === 2,
      'the late drill to succeed',
      120_000,
    );
    const missed = await app.runtime.db.alert.findFirstOrThrow({ where: { environmentId: env.id, type: 'SCHEDULE_MISSED' } });
    expect(missed.message).toMatch(/^The restore drill of drilled planned for 2030-01-02 04:30 \(UTC\) did not run on time; one was started at 2030-01-02 05:00/);
  });
});
