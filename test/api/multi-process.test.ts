/**
 * Several processes on one catalog (issue 21.2), as a deployment that outgrows one process runs
 * it: two `backplane serve` (A, B) and two `backplane worker` processes, spawned from
 * bin/backplane.js, on the harness PostgreSQL. The in-process app only sets the catalog up and
 * reads it; it runs no worker, so every job here runs in a worker process. The processes are
 * shared by the tests, which run in order (the SIGKILL test replaces the worker it kills).
 */
import fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { print } from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateSnapshotDocument, RevokeApiKeyDocument, UpsertScheduleDocument, ViewerDocument, WatchOperationDocument } from '../generated/graphql.ts';
import { testEnv, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, rawId } from '../harness/factories.ts';
import { sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { startServerProcess, until, type ServerProcess } from '../harness/process.ts';
import { jobsWithKey, runJobNow } from '../harness/schedule-helpers.ts';
import { scheduleJobKey } from '../../src/services/schedules.ts';
import { startSnapshotSuite, type OpState } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let orgId: string;
let env: LiveEnvironment;
let apiA: ServerProcess;
let apiB: ServerProcess;
const workers: ServerProcess[] = [];
const secretKey = randomBytes(32).toString('hex');
/** Short, so a killed worker's job is taken over quickly; heartbeats well inside it. */
const STALE_MS = 6000;

const startWorkerProcess = () =>
  startServerProcess(testEnv(app.databaseUrl, secretKey, { OPERATION_STALE_MS: String(STALE_MS), OPERATION_HEARTBEAT_MS: '500' }), 'worker').then((w) => (workers.push(w), w));

beforeAll(async () => {
  let suite;
  ({ app, key, env, ...suite } = await startSnapshotSuite({ secretKey, worker: false }));
  orgId = suite.orgId;
  // Each API process trusts a key it checked for five minutes: only the revocation event can end that sooner.
  const apiEnv = testEnv(app.databaseUrl, secretKey, { API_KEY_CACHE_MS: '300000' });
  [apiA, apiB] = await Promise.all([startServerProcess(apiEnv), startServerProcess(apiEnv)]);
  await Promise.all([startWorkerProcess(), startWorkerProcess()]);
}, 120_000);
afterAll(async () => {
  await Promise.all([apiA?.stop(), apiB?.stop(), ...workers.map((w) => w.stop())]);
  await app?.stop();
});

async function gqlAt<R>(p: ServerProcess, doc: { kind: 'Document' } & object, variables: unknown, apiKey = key): Promise<{ status: number; body: { data?: R; errors?: Array<{ extensions?: { code?: string } }> } }> {
  const res = await fetch(p.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ query: print(doc as never), variables }),
  });
  return { status: res.status, body: (await res.json()) as never };
}

async function snapshotThrough(p: ServerProcess) {
  const { body } = await gqlAt<{ createSnapshot: { __typename: string; operation: { id: string }; snapshot: { id: string } } }>(p, CreateSnapshotDocument, { input: { environmentId: gid('Environment', env.id) } });
  if (body.data?.createSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(body));
  return { operationId: body.data.createSnapshot.operation.id, snapshotId: body.data.createSnapshot.snapshot.id };
}

/** Follows an operation over graphql-ws on API process `p` until it ends (or `stop` says so). */
async function followAt(p: ServerProcess, operationId: string, stop?: (s: OpState) => boolean): Promise<OpState[]> {
  const client = createClient({ url: p.url.replace('http:', 'ws:'), webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${key}` }, retryAttempts: 0 });
  const states: OpState[] = [];
  try {
    for await (const r of client.iterate({ query: print(WatchOperationDocument), variables: { id: operationId } })) {
      if (r.errors) throw new Error(JSON.stringify(r.errors));
      const op = (r.data as { operation: OpState }).operation;
      states.push(op);
      if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status) || stop?.(op)) break;
    }
  } finally {
    await client.dispose();
  }
  return states;
}

/** The worker process whose pg_dump is running (processes started by its threads). */
async function dumpingWorker(): Promise<ServerProcess | undefined> {
  for (const w of workers.filter((x) => x.child.exitCode === null && x.child.signalCode === null)) {
    for (const tid of await fs.readdir(`/proc/${w.child.pid}/task`).catch(() => [] as string[])) {
      const children = (await fs.readFile(`/proc/${w.child.pid}/task/${tid}/children`, 'utf8').catch(() => '')).split(' ').filter(Boolean);
      for (const c of children) if ((await fs.readFile(`/proc/${c}/comm`, 'utf8').catch(() => '')).trim() === 'pg_dump') return w;
    }
  }
  return undefined;
}

/** `p`, or a rejection once `ms` have passed: a bound on an awaited event, not a sleep. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`gave up waiting for ${what}`)), ms)));
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

describe('two API and two worker processes on one catalog', () => {
  it("never overlaps one environment's jobs across worker processes", { timeout: 240_000 }, async () => {
    const started = await Promise.all([snapshotThrough(apiA), snapshotThrough(apiB), snapshotThrough(apiA), snapshotThrough(apiB)]);
    const ends = await Promise.all(started.map((s) => followAt(apiA, s.operationId)));
    expect(ends.map((states) => states.at(-1)?.status)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);
    const ops = await app.runtime.db.operation.findMany({ where: { id: { in: started.map((s) => rawId(s.operationId)) } }, orderBy: { startedAt: 'asc' } });
    expect(ops).toHaveLength(4);
    for (let i = 1; i < ops.length; i++) {
      // Each starts only after the one before it finished (intervals [startedAt, finishedAt] disjoint).
      expect(ops[i].startedAt!.getTime()).toBeGreaterThanOrEqual(ops[i - 1].finishedAt!.getTime());
    }
  });

  it('a worker killed with SIGKILL has its running job taken over by the other', { timeout: 240_000 }, async () => {
    // pg_dump waits on this lock, holding the snapshot in its dumping phase until the kill.
    const lock = new pg.Client({ connectionString: env.databaseUrl });
    await lock.connect();
    await lock.query('BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
    const s = await snapshotThrough(apiA);
    await followAt(apiB, s.operationId, (st) => st.status === 'RUNNING' && st.phase === 'dumping');
    const victim = await until(dumpingWorker, (w) => w !== undefined, 'the worker running pg_dump', 60_000);
    const survivor = workers.find((w) => w !== victim && w.child.exitCode === null && w.child.signalCode === null)!;

    // Watching from before the kill: the takeover is an event (QUEUED, then RUNNING again), awaited, not slept for.
    const watching = followAt(apiA, s.operationId, (st) => st.status === 'QUEUED');
    await until(() => apiA.metric('backplane_event_subscribers'), (n) => n >= 1, 'the subscription on A');
    victim!.child.kill('SIGKILL');
    await new Promise((r) => (victim!.child.exitCode !== null || victim!.child.signalCode !== null ? r(null) : victim!.child.once('exit', r)));
    // The dead worker's pg_dump is an orphan waiting for the table; a machine loss ends it too.
    await sql(env.databaseUrl, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'backplane-dump'");
    await lock.query('ROLLBACK');
    await lock.end();

    // Within the stale time plus one sweep (half of it), with room for a loaded machine; the default stale time (60 s) would not do.
    const taken = await within(watching, STALE_MS * 4, 'the other worker to take the job over');
    expect(taken.at(-1)).toMatchObject({ status: 'QUEUED' });
    const end = (await followAt(apiA, s.operationId)).at(-1);
    expect(end?.status).toBe('SUCCEEDED');
    const op = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: rawId(s.operationId) } });
    expect(op.attempts).toBe(2);
    expect((await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: rawId(s.snapshotId) } })).status).toBe('READY');
    // The survivor's sweeper released the dead worker's job, and the survivor ran it.
    expect(survivor.logs.some((l) => l.msg === 'recovered operations of a stopped worker' && (l.requeued as string[]).includes(op.id))).toBe(true);

    // Two workers again for the tests after this one.
    await startWorkerProcess();
  });

  it('a subscriber connected to API process A sees the progress of a job running on a worker process', { timeout: 240_000 }, async () => {
    const s = await snapshotThrough(apiB);
    const states = await within(followAt(apiA, s.operationId), 120_000, "the job's end on A");
    expect(states.at(-1)).toMatchObject({ status: 'SUCCEEDED', percent: 100 });
    // Progress on the way, not only the end: phases of the running job reached A.
    const running = states.filter((st) => st.status === 'RUNNING');
    expect(running.length).toBeGreaterThan(0);
    expect(running.every((st) => typeof st.phase === 'string' && st.phase.length > 0)).toBe(true);
    expect(Number(states.at(-1)!.bytesDone)).toBeGreaterThan(0);
    // Neither API process runs jobs: the job ran on a worker process.
    const completed = (p: ServerProcess) => p.logs.some((l) => String(l.msg).includes('snapshot_create') && String(l.msg).startsWith('Completed task'));
    expect(completed(apiA) || completed(apiB)).toBe(false);
    expect(workers.some(completed)).toBe(true);
  });

  it('each scheduled run fires exactly once with two workers', { timeout: 240_000 }, async () => {
    // Once a year, so the clock itself fires nothing during the test; the run is made due below.
    const res = await gqlAt<{ upsertSchedule: { __typename: string } }>(apiA, UpsertScheduleDocument, { input: { environmentId: gid('Environment', env.id), dbCron: '0 0 1 1 *', timezone: 'UTC' } });
    expect(res.body.data?.upsertSchedule.__typename).toBe('SchedulePayload');
    const schedule = await app.runtime.db.schedule.findUniqueOrThrow({ where: { environmentId: env.id } });
    const jobKey = scheduleJobKey(schedule.id, 'DB');
    expect(await jobsWithKey(app, jobKey)).toHaveLength(1);

    // Its planned time has come, ten minutes ago: late, so the run that takes it raises SCHEDULE_MISSED (once per run taken).
    const planned = new Date(Math.floor(Date.now() / 1000) * 1000 - 600_000);
    await app.runtime.db.schedule.update({ where: { id: schedule.id }, data: { nextDbRunAt: planned } });
    // The schedule's own job, and two more fire jobs for the same run (what a retry, a stale plan or
    // a second reconcile could leave), all due at once: four worker slots across two processes race for the run.
    await app.runtime.db.$transaction(async (tx) => {
      for (let i = 0; i < 2; i++) {
        await tx.$queryRawUnsafe(
          "SELECT id::text FROM graphile_worker.add_job(identifier => 'schedule_fire', payload => $1::json, run_at => now(), max_attempts => 5)",
          JSON.stringify({ scheduleId: schedule.id, kind: 'DB' }),
        );
      }
    });
    await runJobNow(app, jobKey);

    const fireJobsLeft = () =>
      app.runtime.db.$queryRawUnsafe<{ n: number }[]>(
        "SELECT count(*)::int AS n FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE t.identifier = 'schedule_fire' AND j.run_at <= now()",
      );
    await until(fireJobsLeft, ([r]) => r.n === 0, 'the fire jobs to run', 120_000);
    const snapshots = await until(
      () => app.runtime.db.snapshot.findMany({ where: { scheduleId: schedule.id } }),
      (l) => l.length > 0 && l.every((sn) => sn.status === 'READY'),
      'the scheduled snapshot',
      120_000,
    );
    expect(snapshots).toHaveLength(1);
    const runs = await app.runtime.db.idempotencyKey.findMany({ where: { key: { startsWith: `schedule:${schedule.id}:DB:` } } });
    expect(runs.map((k) => k.key)).toEqual([`schedule:${schedule.id}:DB:${planned.toISOString()}`]);
    const after = await app.runtime.db.schedule.findUniqueOrThrow({ where: { id: schedule.id } });
    expect(after.lastDbRunAt?.toISOString()).toBe(planned.toISOString());
    expect(after.nextDbRunAt?.getTime()).toBeGreaterThan(Date.now());
    // One plan for the next run, not one per fire job.
    const pending = await jobsWithKey(app, jobKey);
    expect(pending.map((j) => j.runAt.toISOString())).toEqual([after.nextDbRunAt!.toISOString()]);
    expect(await app.runtime.db.operation.count({ where: { snapshotId: snapshots[0].id, type: 'SNAPSHOT' } })).toBe(1);
    const missed = await until(() => app.runtime.db.alert.findMany({ where: { environmentId: env.id, type: 'SCHEDULE_MISSED' } }), (l) => l.length > 0, 'the late run alert');
    expect(missed).toHaveLength(1);
  });

  it('a key revoked through API process A is refused by the next request to B', { timeout: 120_000 }, async () => {
    const code = async (p: ServerProcess, secret: string) => (await gqlAt(p, ViewerDocument, {}, secret)).body.errors?.[0]?.extensions?.code ?? 'OK';
    const admin = (await makeApiKey(app.runtime.db, orgId, { scopes: ['admin'] })).secret;
    // Several keys, each revoked right after both processes checked (and so cached) it.
    for (let i = 0; i < 10; i++) {
      const made = await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:read'] });
      expect([await code(apiA, made.secret), await code(apiB, made.secret)]).toEqual(['OK', 'OK']);
      const res = await gqlAt<{ revokeApiKey: { __typename: string } }>(apiA, RevokeApiKeyDocument, { input: { id: gid('ApiKey', made.id) } }, admin);
      expect(res.body.data?.revokeApiKey.__typename).toBe('RevokeApiKeyPayload');
      // B trusts a checked key for five minutes: only the revocation event can end that, and it has
      // by the time A answers.
      expect([await code(apiB, made.secret), await code(apiA, made.secret)]).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED']);
    }
  });
});
