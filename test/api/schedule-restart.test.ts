/**
 * A restart just before a planned time (issue 16.4): an every-minute schedule ran its 22:15 run at
 * 22:14:47 and nothing at 22:15. At start-up graphile-worker took the late 22:14 job while
 * `reconcileSchedules` was between reading the schedule (next run 22:14) and queueing its job: the
 * fire claimed 22:14 and queued 22:15, then reconcile replaced that job with one due now, which fired
 * the 22:15 run 13 s early. Here the same interleaving is forced with a pause in reconcile's read, and
 * time is a manual clock; no worker runs, so each fire happens when the test says.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Deps } from '../../src/services/deps.ts';
import { fireSchedule, reconcileSchedules, scheduleJobKey } from '../../src/services/schedules.ts';
import { UpsertScheduleDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeOrganization } from '../harness/factories.ts';
import { makeLiveEnvironment, type LiveEnvironment } from '../harness/live-environment.ts';
import { jobsWithKey, useManualClock, type ManualClock } from '../harness/schedule-helpers.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;
let clock: ManualClock;

beforeAll(async () => {
  app = await startTestApp();
  const org = await makeOrganization(app.runtime.db);
  key = (await makeApiKey(app.runtime.db, org.id, { scopes: ['backups:write'] })).secret;
  env = await makeLiveEnvironment(app, { organizationId: org.id, rows: 10 });
  clock = useManualClock(app, '2030-06-01T22:13:30Z');
});
afterAll(() => app?.stop());

const iso = (d: Date | string | null | undefined) => (d ? new Date(d).toISOString() : null);
const scheduleRow = () => app.runtime.db.schedule.findUniqueOrThrow({ where: { environmentId: env.id } });
/** The planned time each scheduled snapshot was taken for, from its idempotency key. */
async function runsTaken(scheduleId: string): Promise<string[]> {
  const keys = await app.runtime.db.idempotencyKey.findMany({ where: { key: { startsWith: `schedule:${scheduleId}:DB:` } }, orderBy: { createdAt: 'asc' } });
  return keys.map((k) => k.key.split(':DB:')[1]);
}

/**
 * Deps whose first `schedule.findMany` (reconcile's list of schedules) answers only after `meanwhile`
 * has run: what a job that graphile-worker started at the same moment does in between.
 */
function pausedAfterList(deps: Deps, meanwhile: () => Promise<void>): Deps {
  let paused = false;
  const schedule = new Proxy(deps.db.schedule, {
    get(target, prop, receiver) {
      if (prop !== 'findMany' || paused) return Reflect.get(target, prop, receiver);
      paused = true;
      return async (...args: Parameters<typeof target.findMany>) => {
        const listed = await target.findMany(...args);
        await meanwhile();
        return listed;
      };
    },
  });
  const db = new Proxy(deps.db, { get: (target, prop, receiver) => (prop === 'schedule' ? schedule : Reflect.get(target, prop, receiver)) });
  return { ...deps, db };
}

describe('a restart just before a planned time', () => {
  it('never runs a planned time early, and runs each planned time once', async () => {
    const res = await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', env.id), dbCron: '* * * * *', timezone: 'UTC' } as never }, { key });
    expect(res.data?.upsertSchedule.__typename).toBe('SchedulePayload');
    const row = await scheduleRow();
    expect(iso(row.nextDbRunAt)).toBe('2030-06-01T22:14:00.000Z');
    const jobKey = scheduleJobKey(row.id, 'DB');

    // Down from 22:13:30, up again at 22:14:47: the late 22:14 job fires while reconcile is under way.
    clock.set('2030-06-01T22:14:47Z');
    await reconcileSchedules(pausedAfterList(app.runtime.deps, () => fireSchedule(app.runtime.deps, row.id, 'DB')));
    expect(await runsTaken(row.id)).toEqual(['2030-06-01T22:14:00.000Z']);
    const after = await scheduleRow();
    expect(iso(after.lastDbRunAt)).toBe('2030-06-01T22:14:00.000Z');
    expect(iso(after.nextDbRunAt)).toBe('2030-06-01T22:15:00.000Z');
    // The one pending job is the 22:15 run, not one due now.
    const pending = await jobsWithKey(app, jobKey);
    expect(pending.map((j) => iso(j.runAt))).toEqual(['2030-06-01T22:15:00.000Z']);

    // Whatever still wakes a fire job before its time (a job queued from an older plan, clocks that
    // disagree) takes nothing and leaves the run where it is.
    await fireSchedule(app.runtime.deps, row.id, 'DB');
    expect(await runsTaken(row.id)).toEqual(['2030-06-01T22:14:00.000Z']);
    expect(iso((await scheduleRow()).nextDbRunAt)).toBe('2030-06-01T22:15:00.000Z');
    expect(await jobsWithKey(app, jobKey)).toHaveLength(1);

    clock.set('2030-06-01T22:15:00Z');
    await fireSchedule(app.runtime.deps, row.id, 'DB');
    await fireSchedule(app.runtime.deps, row.id, 'DB');
    expect(await runsTaken(row.id)).toEqual(['2030-06-01T22:14:00.000Z', '2030-06-01T22:15:00.000Z']);
    const end = await scheduleRow();
    expect(iso(end.lastDbRunAt)).toBe('2030-06-01T22:15:00.000Z');
    expect(iso(end.nextDbRunAt)).toBe('2030-06-01T22:16:00.000Z');
    expect(await app.runtime.db.snapshot.count({ where: { scheduleId: row.id } })).toBe(2);
  });
});
