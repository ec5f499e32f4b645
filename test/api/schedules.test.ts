import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fireSchedule } from '../../src/services/schedules.ts';
import {
  CronPresetsDocument,
  DeleteScheduleDocument,
  EnvironmentWithScheduleDocument,
  PauseScheduleDocument,
  ResumeScheduleDocument,
  RunScheduleNowDocument,
  ScheduleDocument,
  UpsertScheduleDocument,
} from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { makeLiveEnvironment, type LiveEnvironment } from '../harness/live-environment.ts';
import { jobsWithKey, runJobNow, useManualClock, waitFor, type ManualClock } from '../harness/schedule-helpers.ts';
import { follow } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let adminKey: string;
let orgId: string;
let env: LiveEnvironment;
let clock: ManualClock;

beforeAll(async () => {
  app = await startTestApp();
  const org = await makeOrganization(app.runtime.db);
  orgId = org.id;
  key = (await makeApiKey(app.runtime.db, org.id, { scopes: ['backups:write'] })).secret;
  adminKey = (await makeApiKey(app.runtime.db, org.id, { scopes: ['admin'] })).secret;
  env = await makeLiveEnvironment(app, { organizationId: org.id, rows: 50 });
  clock = useManualClock(app, '2030-01-01T00:00:00Z');
});
afterAll(() => app?.stop());

const envGid = () => gid('Environment', env.id);
const scheduleRow = () => app.runtime.db.schedule.findUniqueOrThrow({ where: { environmentId: env.id } });
const iso = (d: Date | string | null | undefined) => (d ? new Date(d).toISOString() : null);

async function upsert(input: Record<string, unknown>, k = key) {
  return (await app.gql(UpsertScheduleDocument, { input: { environmentId: envGid(), ...input } as never }, { key: k })).data!.upsertSchedule;
}

async function removeSchedule() {
  await app.gql(DeleteScheduleDocument, { input: { environmentId: envGid() } }, { key });
}

describe('upsertSchedule, schedule, pause, resume, delete (no worker running)', () => {
  it('plans both kinds in the timezone, with one pending job per kind at exactly the next run', async () => {
    clock.set('2030-01-01T00:00:00Z'); // a Tuesday
    const res = await upsert({
      dbCron: '0 2 * * *',
      fullCron: '0 3 * * 0',
      timezone: 'Europe/Berlin',
      dbRetention: { daily: 7, weekly: 4 },
      fullRetention: { monthly: 3, maxAgeDays: 100 },
    });
    if (res.__typename !== 'SchedulePayload') throw new Error(JSON.stringify(res));
    const s = res.schedule;
    expect(s).toMatchObject({ dbCron: '0 2 * * *', fullCron: '0 3 * * 0', timezone: 'Europe/Berlin', enabled: true, paused: false });
    expect(s.dbRetention).toEqual({ hourly: null, daily: 7, weekly: 4, monthly: null, maxAgeDays: null });
    expect(s.fullRetention).toEqual({ hourly: null, daily: null, weekly: null, monthly: 3, maxAgeDays: 100 });
    // 02:00 in Berlin (CET, UTC+1) today; Sunday 03:00 CET.
    expect(iso(s.nextDbRunAt)).toBe('2030-01-01T01:00:00.000Z');
    expect(iso(s.nextFullRunAt)).toBe('2030-01-06T02:00:00.000Z');

    const row = await scheduleRow();
    const [dbJob] = await jobsWithKey(app, `schedule:${row.id}:db`);
    const [fullJob] = await jobsWithKey(app, `schedule:${row.id}:full`);
    expect(dbJob).toMatchObject({ task: 'schedule_fire', payload: { scheduleId: row.id, kind: 'DB' } });
    expect(iso(dbJob.runAt)).toBe('2030-01-01T01:00:00.000Z');
    expect(iso(fullJob.runAt)).toBe('2030-01-06T02:00:00.000Z');

    const read = await app.gql(ScheduleDocument, { environmentId: envGid() }, { key });
    expect(read.data?.schedule).toMatchObject({ id: s.id, dbCron: '0 2 * * *' });
    const viaEnv = await app.gql(EnvironmentWithScheduleDocument, { id: envGid() }, { key });
    expect(viaEnv.data?.environment?.schedule).toMatchObject({ id: s.id });
  });

  it('a change replaces the pending job instead of adding one; turning a kind off removes its job', async () => {
    const row = await scheduleRow();
    const res = await upsert({ dbCron: '30 4 * * *', fullCron: null });
    if (res.__typename !== 'SchedulePayload') throw new Error(JSON.stringify(res));
    expect(res.schedule).toMatchObject({ fullCron: null, nextFullRunAt: null, timezone: 'Europe/Berlin' });
    // Retention left out of the input stays as it was.
    expect(res.schedule.dbRetention.daily).toBe(7);
    expect(iso(res.schedule.nextDbRunAt)).toBe('2030-01-01T03:30:00.000Z');
    const dbJobs = await jobsWithKey(app, `schedule:${row.id}:db`);
    expect(dbJobs).toHaveLength(1);
    expect(iso(dbJobs[0].runAt)).toBe('2030-01-01T03:30:00.000Z');
    expect(await jobsWithKey(app, `schedule:${row.id}:full`)).toHaveLength(0);
    const [{ n }] = await app.runtime.db.$queryRawUnsafe<{ n: number }[]>("SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE task_identifier = 'schedule_fire'");
    expect(n).toBe(1);
  });

  it('pause drops the pending runs; resume plans again from now', async () => {
    const row = await scheduleRow();
    const paused = await app.gql(PauseScheduleDocument, { input: { environmentId: envGid() } }, { key });
    expect(paused.data?.pauseSchedule).toMatchObject({ __typename: 'SchedulePayload', schedule: { paused: true, nextDbRunAt: null } });
    expect(await jobsWithKey(app, `schedule:${row.id}:db`)).toHaveLength(0);
    clock.set('2030-01-03T12:00:00Z');
    const resumed = await app.gql(ResumeScheduleDocument, { input: { environmentId: envGid() } }, { key });
    if (resumed.data?.resumeSchedule.__typename !== 'SchedulePayload') throw new Error(JSON.stringify(resumed));
    expect(resumed.data.resumeSchedule.schedule.paused).toBe(false);
    expect(iso(resumed.data.resumeSchedule.schedule.nextDbRunAt)).toBe('2030-01-04T03:30:00.000Z');
    expect(iso((await jobsWithKey(app, `schedule:${row.id}:db`))[0].runAt)).toBe('2030-01-04T03:30:00.000Z');
  });

  it('deleteSchedule removes it and its jobs', async () => {
    const row = await scheduleRow();
    const del = await app.gql(DeleteScheduleDocument, { input: { environmentId: envGid() } }, { key });
    expect(del.data?.deleteSchedule).toMatchObject({ __typename: 'DeletePayload', deletedId: gid('Schedule', row.id) });
    expect((await app.gql(ScheduleDocument, { environmentId: envGid() }, { key })).data?.schedule).toBeNull();
    expect(await jobsWithKey(app, `schedule:${row.id}:db`)).toHaveLength(0);
    const again = await app.gql(DeleteScheduleDocument, { input: { environmentId: envGid() } }, { key });
    expect(again.data?.deleteSchedule).toMatchObject({ __typename: 'NotFoundError', code: 'SCHEDULE_NOT_FOUND' });
  });

  it('cronPresets lists common schedules whose expressions are valid', async () => {
    const res = await app.gql(CronPresetsDocument, {}, { key });
    const presets = res.data!.cronPresets;
    expect(presets.map((p) => p.name)).toEqual(['hourly', 'every-6-hours', 'daily', 'weekly', 'monthly']);
    expect(presets.find((p) => p.name === 'daily')).toMatchObject({ cron: '0 2 * * *', description: expect.stringContaining('02:00') });
    for (const p of presets) {
      const r = await upsert({ dbCron: p.cron, timezone: 'UTC' });
      expect(r.__typename).toBe('SchedulePayload');
    }
    await removeSchedule();
  });
});

describe('bad input: typed errors, nothing changed', () => {
  it('refuses a six-field or four-field cron, an unknown timezone, negative counts, a foreign environment', async () => {
    await upsert({ dbCron: '0 2 * * *', timezone: 'UTC', dbRetention: { daily: 3 } });
    const before = await scheduleRow();
    const jobsBefore = await jobsWithKey(app, `schedule:${before.id}:db`);

    const six = await upsert({ dbCron: '0 0 2 * * *' });
    expect(six).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED', fields: [{ path: ['input', 'dbCron'], message: expect.stringContaining('five fields') }] });
    const four = await upsert({ fullCron: '0 2 * *' });
    expect(four).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'fullCron'], message: expect.stringContaining('not 4') }] });
    const range = await upsert({ dbCron: '61 * * * *' });
    expect(range).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'dbCron'] }] });
    const tz = await upsert({ dbCron: '0 3 * * *', timezone: 'Mars/Olympus_Mons' });
    expect(tz).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'timezone'], message: expect.stringContaining('IANA') }] });
    const negative = await upsert({ dbRetention: { daily: -1, weekly: 2 } });
    expect(negative).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'dbRetention', 'daily'], message: 'must not be negative' }] });
    const age = await upsert({ fullRetention: { maxAgeDays: 0 } });
    expect(age).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'fullRetention', 'maxAgeDays'] }] });

    const other = await makeOrganization(app.runtime.db);
    const foreignProject = await makeProject(app.runtime.db, other.id);
    const foreign = await makeEnvironment(app.runtime.db, app.runtime.deps.secrets, foreignProject);
    const f = (await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', foreign.id), dbCron: '0 2 * * *' } }, { key })).data!.upsertSchedule;
    expect(f).toMatchObject({ __typename: 'NotFoundError', code: 'ENVIRONMENT_NOT_FOUND' });
    expect(await app.runtime.db.schedule.count({ where: { environmentId: foreign.id } })).toBe(0);
    const foreignDestination = await app.runtime.db.destination.create({ data: { organizationId: other.id, name: 'theirs', provider: 'LOCAL', config: { path: '/tmp/x' } } });
    const d = await upsert({ destinationIds: [gid('Destination', foreignDestination.id)] });
    expect(d).toMatchObject({ __typename: 'NotFoundError', code: 'DESTINATION_NOT_FOUND' });
    const wrongType = await upsert({ destinationIds: [envGid()] });
    expect(wrongType).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'destinationIds', '0'] }] });

    const noFiles = await makeEnvironment(app.runtime.db, app.runtime.deps.secrets, { id: env.projectId, organizationId: orgId }, { filesPath: null });
    const nf = (await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', noFiles.id), fullCron: '0 2 * * *' } }, { key })).data!.upsertSchedule;
    expect(nf).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'fullCron'] }] });

    const after = await scheduleRow();
    expect(after).toEqual(before);
    expect(await jobsWithKey(app, `schedule:${before.id}:db`)).toEqual(jobsBefore);
    await removeSchedule();
  });
});

/** The snapshots a schedule took, oldest first. */
const scheduledSnapshots = (scheduleId: string) => app.runtime.db.snapshot.findMany({ where: { scheduleId }, orderBy: { createdAt: 'asc' }, include: { operations: true } });

async function waitForSnapshotsToFinish(scheduleId: string) {
  for (const s of await scheduledSnapshots(scheduleId)) {
    const op = s.operations.find((o) => o.type === 'SNAPSHOT')!;
    const end = (await follow(app, key, gid('Operation', op.id))).at(-1);
    expect(end?.status).toBe('SUCCEEDED');
  }
}

describe('firing (workers running)', () => {
  it('runs missed while everything was down run once at start-up, with a SCHEDULE_MISSED alert; two workers do not double it', async () => {
    clock.set('2031-05-01T10:30:00Z');
    const res = await upsert({ dbCron: '0 * * * *', fullCron: null, timezone: 'UTC', dbRetention: {} });
    if (res.__typename !== 'SchedulePayload') throw new Error(JSON.stringify(res));
    expect(iso(res.schedule.nextDbRunAt)).toBe('2031-05-01T11:00:00.000Z');
    const row = await scheduleRow();

    // Down from 10:30 until 15:10: the runs of 11:00 … 15:00 were missed.
    clock.set('2031-05-01T15:10:00Z');
    await Promise.all([app.startWorker(), app.startWorker()]);
    const fired = await waitFor(scheduleRow, (s) => iso(s.nextDbRunAt) === '2031-05-01T16:00:00.000Z', 'the missed run to be taken');
    expect(iso(fired.lastDbRunAt)).toBe('2031-05-01T11:00:00.000Z');
    await waitForSnapshotsToFinish(row.id);
    const snaps = await scheduledSnapshots(row.id);
    expect(snaps).toHaveLength(1);
    expect(snaps[0]).toMatchObject({ kind: 'SCHEDULED', includes: ['DB'], status: 'READY' });
    const alerts = await waitFor(() => app.runtime.db.alert.findMany({ where: { environmentId: env.id, type: 'SCHEDULE_MISSED' } }), (a) => a.length > 0, 'the missed-run alert');
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ severity: 'WARNING', operationId: snaps[0].operations[0].id });
    expect(alerts[0].message).toContain('2031-05-01 11:00 (UTC) and 4 later runs did not run on time');
    const jobs = await jobsWithKey(app, `schedule:${row.id}:db`);
    expect(jobs).toHaveLength(1);
    expect(iso(jobs[0].runAt)).toBe('2031-05-01T16:00:00.000Z');
  });

  it('an exact run at its planned time takes one snapshot and plans the next; no alert', async () => {
    const row = await scheduleRow();
    clock.set('2031-05-01T16:00:00Z');
    await runJobNow(app, `schedule:${row.id}:db`);
    await waitFor(scheduleRow, (s) => iso(s.lastDbRunAt) === '2031-05-01T16:00:00.000Z', 'the 16:00 run');
    expect(iso((await scheduleRow()).nextDbRunAt)).toBe('2031-05-01T17:00:00.000Z');
    await waitForSnapshotsToFinish(row.id);
    expect(await scheduledSnapshots(row.id)).toHaveLength(2);
    expect(await app.runtime.db.alert.count({ where: { environmentId: env.id, type: 'SCHEDULE_MISSED' } })).toBe(1);
  });

  it('runScheduleNow takes one at once and leaves the plan as it was', async () => {
    const row = await scheduleRow();
    const res = await app.gql(RunScheduleNowDocument, { input: { environmentId: envGid(), kind: 'DB' } }, { key });
    if (res.data?.runScheduleNow.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(res));
    expect(res.data.runScheduleNow.snapshot).toMatchObject({ kind: 'SCHEDULED', includes: ['DB'] });
    expect((await follow(app, key, res.data.runScheduleNow.operation.id)).at(-1)?.status).toBe('SUCCEEDED');
    expect(iso((await scheduleRow()).nextDbRunAt)).toBe('2031-05-01T17:00:00.000Z');
    const full = await app.gql(RunScheduleNowDocument, { input: { environmentId: envGid(), kind: 'FULL' } }, { key });
    expect(full.data?.runScheduleNow).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'kind'] }] });
    await removeSchedule();
    expect(row.id).toBeTruthy();
  });

  async function walk(cron: string, start: string, runs: number): Promise<string[]> {
    clock.set(start);
    const res = await upsert({ dbCron: cron, fullCron: null, timezone: 'Europe/Berlin' });
    if (res.__typename !== 'SchedulePayload') throw new Error(JSON.stringify(res));
    const row = await scheduleRow();
    const seen: string[] = [];
    for (let i = 0; i < runs; i++) {
      const planned = (await scheduleRow()).nextDbRunAt!;
      clock.set(planned);
      await runJobNow(app, `schedule:${row.id}:db`);
      await waitFor(scheduleRow, (s) => iso(s.lastDbRunAt) === iso(planned), `the run of ${iso(planned)}`);
      seen.push(planned.toLocaleString('sv-SE', { timeZone: 'Europe/Berlin' }));
    }
    await waitForSnapshotsToFinish(row.id);
    expect(await scheduledSnapshots(row.id)).toHaveLength(runs);
    await removeSchedule();
    return seen;
  }

  it('a daily run in Europe/Berlin is neither skipped (spring forward) nor doubled (fall back)', { timeout: 120_000 }, async () => {
    // 30 March 2031 (last Sunday of March): 02:00 → 03:00; 02:30 does not exist, so that day runs at 03:00.
    expect(await walk('30 2 * * *', '2031-03-28T12:00:00Z', 4)).toEqual([
      '2031-03-29 02:30:00',
      '2031-03-30 03:00:00',
      '2031-03-31 02:30:00',
      '2031-04-01 02:30:00',
    ]);
    // 26 October 2031: 03:00 → 02:00; 02:30 happens twice, the schedule runs once.
    const october = await walk('30 2 * * *', '2031-10-24T12:00:00Z', 4);
    expect(october).toEqual(['2031-10-25 02:30:00', '2031-10-26 02:30:00', '2031-10-27 02:30:00', '2031-10-28 02:30:00']);
    expect(await app.runtime.db.alert.count({ where: { environmentId: env.id, type: 'SCHEDULE_MISSED' } })).toBe(1);
  });

  it('one planned run fired twice at once (a retried or duplicated job) takes one snapshot', async () => {
    clock.set('2032-02-01T00:00:00Z');
    await upsert({ dbCron: '0 4 * * *', fullCron: null, timezone: 'UTC' });
    const row = await scheduleRow();
    clock.set('2032-02-01T04:00:00Z');
    await Promise.all([fireSchedule(app.runtime.deps, row.id, 'DB'), fireSchedule(app.runtime.deps, row.id, 'DB'), fireSchedule(app.runtime.deps, row.id, 'DB')]);
    expect(await scheduledSnapshots(row.id)).toHaveLength(1);
    expect(iso((await scheduleRow()).nextDbRunAt)).toBe('2032-02-02T04:00:00.000Z');
    expect(await jobsWithKey(app, `schedule:${row.id}:db`)).toHaveLength(1);
    await waitForSnapshotsToFinish(row.id);
    await removeSchedule();
  });

  it("a schedule's own destinations receive its snapshots; without them, the environment's defaults do", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-sched-dest-'));
    const own = await app.runtime.db.destination.create({ data: { organizationId: orgId, name: 'schedule only', provider: 'LOCAL', config: { path: path.join(dir, 'repo') } } });
    // A destination no environment uses is not even visible to a non-admin key; choosing it is the admin's call.
    const refused = await upsert({ dbCron: '0 5 * * *', destinationIds: [gid('Destination', own.id)] });
    expect(refused).toMatchObject({ __typename: 'NotFoundError', code: 'DESTINATION_NOT_FOUND' });
    const res = await upsert({ dbCron: '0 5 * * *', destinationIds: [gid('Destination', own.id)] }, adminKey);
    if (res.__typename !== 'SchedulePayload') throw new Error(JSON.stringify(res));
    expect(res.schedule.destinations).toEqual([{ id: gid('Destination', own.id), name: 'schedule only' }]);
    const copiesOf = async () => {
      const r = await app.gql(RunScheduleNowDocument, { input: { environmentId: envGid(), kind: 'DB' } }, { key });
      if (r.data?.runScheduleNow.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(r));
      expect((await follow(app, key, r.data.runScheduleNow.operation.id)).at(-1)?.status).toBe('SUCCEEDED');
      const copies = await app.runtime.db.snapshotCopy.findMany({ where: { snapshotId: decodeGlobalID(r.data.runScheduleNow.snapshot.id).id } });
      return copies.map((c) => [c.destinationId, c.status]);
    };
    expect(await copiesOf()).toEqual([[own.id, 'READY']]);
    const cleared = await upsert({ destinationIds: [] });
    if (cleared.__typename !== 'SchedulePayload') throw new Error(JSON.stringify(cleared));
    expect(cleared.schedule.destinations).toEqual([]);
    expect(await copiesOf()).toEqual([[env.destinationId, 'READY']]);
    await removeSchedule();
  });
});
