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
import { gid, makeApiKey } from '../harness/factories.ts';
import { sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { startServerProcess, until, type ServerProcess } from '../harness/process.ts';
import { jobsWithKey, runJobNow } from '../harness/schedule-helpers.ts';
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
  [apiA, apiB] = await Promise.all([startServerProcess(testEnv(app.databaseUrl, secretKey)), startServerProcess(testEnv(app.databaseUrl, secretKey))]);
  await Promise.all([startWorkerProcess(), startWorkerProcess()]);
}, 120_000);
afterAll(async () => {
  await Promise.all([apiA?.stop(), apiB?.stop(), ...workers.map((w) => w.stop())]);
  await app?.stop();
});

const rawId = (globalId: string) => Buffer.from(globalId, 'base64').toString().split(':')[1];

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

    const taken = await watching;
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
});
