/**
 * Stopping a worker is not a failure (issue 16.3, 22.4): on SIGTERM or Ctrl-C a process takes no
 * more jobs, lets running ones finish within JOB_SHUTDOWN_GRACE_MS, then stops them and hands them
 * back to the queue (operation QUEUED with a message, no FAILED snapshot, no alert, the attempt not
 * counted), and the next start runs them again. A lock on the table pg_dump reads holds a snapshot
 * mid-job for as long as a test needs.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HANDED_BACK_MESSAGE } from '../../src/services/operations.ts';
import { testEnv, type TestApp } from '../harness/app.ts';
import { rawId } from '../harness/factories.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, repositoryPassword, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { childrenOf, startServerProcess, until, type ServerProcess } from '../harness/process.ts';
import { follow, restic, startRestore, startSnapshot, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;
const secretKey = randomBytes(32).toString('hex');
const processes: ServerProcess[] = [];

beforeAll(async () => {
  // No worker in this process: every job here runs in the processes the tests start and stop.
  ({ app, key, env } = await startSnapshotSuite({ secretKey, worker: false }));
});
// Each test's jobs run only in the processes it starts.
afterEach(async () => {
  for (const p of processes.splice(0)) await p.stop();
});
afterAll(() => app?.stop());

async function launch(command: 'worker' | 'start', extra: Record<string, string> = {}, opts: { group?: boolean } = {}) {
  const p = await startServerProcess(testEnv(app.databaseUrl, secretKey, extra), command, opts);
  processes.push(p);
  return p;
}

/** Holds pg_dump at its start (it waits for the table) until `release`. */
async function lockOrders() {
  const lock = new pg.Client({ connectionString: env.databaseUrl });
  await lock.connect();
  await lock.query('BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
  return {
    async release() {
      await lock.query('ROLLBACK');
      await lock.end();
    },
  };
}

const exitOf = (p: ServerProcess) => new Promise<number | null>((resolve) => (p.child.exitCode !== null ? resolve(p.child.exitCode) : p.child.once('exit', (code) => resolve(code))));
const jobOf = async (operationId: string) =>
  (await app.runtime.db.$queryRawUnsafe<{ attempts: number; locked_at: Date | null }[]>('SELECT attempts, locked_at FROM graphile_worker.jobs WHERE key = $1', `op:${operationId}`))[0];

/** What a snapshot that was handed back leaves: nothing failed, nothing half-written, its job ready to run. */
async function expectHandedBack(p: ServerProcess, operationId: string, snapshotId: string) {
  const handedBack = p.logs.filter((l) => String(l.msg).startsWith('worker stopping: job handed back'));
  expect(handedBack).toHaveLength(1);
  expect(handedBack[0]).toMatchObject({ task: 'snapshot_create', payload: { operationId } });
  expect(p.logs.some((l) => l.msg === 'worker stopping: grace period over; stopping running jobs to hand them back')).toBe(true);

  const op = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: operationId } });
  expect(op).toMatchObject({ status: 'QUEUED', phase: 'queued', error: null, message: HANDED_BACK_MESSAGE, finishedAt: null });
  const snapshot = await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId }, include: { copies: true } });
  expect(snapshot.status).toBe('CREATING');
  expect(snapshot.copies.map((c) => c.status)).toEqual(['PENDING']);
  expect(await app.runtime.db.alert.count({ where: { environmentId: env.id } })).toBe(0);
  // Handed back as if the attempt had not happened, due now, for the next worker.
  expect(await jobOf(operationId)).toMatchObject({ attempts: 0, locked_at: null });

  const password = await repositoryPassword(app, env.destinationId);
  expect(JSON.parse(await restic(env.repositoryPath, password, 'snapshots', '--json', '--tag', `snapshot:${snapshotId}`))).toEqual([]);
  expect(await fs.readdir(path.join(env.repositoryPath, 'locks'))).toEqual([]);
}

/** A second run of the handed-back job completes the same snapshot, once. */
async function expectRunsAgain(globalOperationId: string, operationId: string, snapshotId: string) {
  const end = (await follow(app, key, globalOperationId)).at(-1);
  expect(end?.status).toBe('SUCCEEDED');
  const snapshot = await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId } });
  expect(snapshot.status).toBe('READY');
  const op = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: operationId } });
  expect(op).toMatchObject({ attempts: 2, message: null });
  const password = await repositoryPassword(app, env.destinationId);
  expect(JSON.parse(await restic(env.repositoryPath, password, 'snapshots', '--json', '--tag', `snapshot:${snapshotId}`))).toHaveLength(1);
  expect(await app.runtime.db.alert.count({ where: { environmentId: env.id } })).toBe(0);
}

describe('stopping a worker mid-snapshot', () => {
  it('backplane worker on SIGTERM: hands the snapshot back after the grace period; the next worker completes it', { timeout: 180_000 }, async () => {
    const lock = await lockOrders();
    const first = await launch('worker', { JOB_SHUTDOWN_GRACE_MS: '300' });
    const s = await startSnapshot(app, key, env.id);
    const opId = rawId(s.operationId);
    const snapId = rawId(s.snapshotId);
    await follow(app, key, s.operationId, (st) => st.status === 'RUNNING' && st.phase === 'dumping');

    expect(await first.stop()).toBe(0);
    expect(first.logs.find((l) => l.msg === 'worker stopping: waiting for running jobs to finish')).toMatchObject({ graceMs: 300, running: [{ task: 'snapshot_create' }] });
    await lock.release();
    await expectHandedBack(first, opId, snapId);

    await launch('worker');
    await expectRunsAgain(s.operationId, opId, snapId);
  });

  it('backplane start on Ctrl-C (SIGINT to its whole process group, pg_dump included): the same', { timeout: 180_000 }, async () => {
    const lock = await lockOrders();
    // A grace period long enough that a pg_dump killed by the same Ctrl-C would fail the snapshot first.
    const first = await launch('start', { JOB_SHUTDOWN_GRACE_MS: '5000' }, { group: true });
    const s = await startSnapshot(app, key, env.id);
    const opId = rawId(s.operationId);
    const snapId = rawId(s.snapshotId);
    await follow(app, key, s.operationId, (st) => st.status === 'RUNNING' && st.phase === 'dumping');

    process.kill(-first.child.pid!, 'SIGINT');
    expect(await exitOf(first)).toBe(0);
    await lock.release();
    expect(first.logs.some((l) => l.msg === 'shutting down' && l.reason === 'SIGINT')).toBe(true);
    await expectHandedBack(first, opId, snapId);

    await launch('start');
    await expectRunsAgain(s.operationId, opId, snapId);
  });

  it('a job that finishes within the grace period just finishes', { timeout: 180_000 }, async () => {
    const lock = await lockOrders();
    const w = await launch('worker', { JOB_SHUTDOWN_GRACE_MS: '120000' });
    const s = await startSnapshot(app, key, env.id);
    await follow(app, key, s.operationId, (st) => st.status === 'RUNNING' && st.phase === 'dumping');

    w.child.kill('SIGTERM');
    await until(async () => w.logs, (logs) => logs.some((l) => l.msg === 'worker stopping: waiting for running jobs to finish'), 'the worker to start its stop');
    await lock.release();
    expect(await exitOf(w)).toBe(0);

    const op = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: rawId(s.operationId) } });
    expect(op).toMatchObject({ status: 'SUCCEEDED', attempts: 1 });
    expect((await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: rawId(s.snapshotId) } })).status).toBe('READY');
    expect(w.logs.some((l) => String(l.msg).startsWith('worker stopping: job handed back'))).toBe(false);
    expect(await jobOf(rawId(s.operationId))).toBeUndefined();
  });
});

describe('stopping a worker mid-restore (issue 17.6 follow-up)', () => {
  /** A target with a snapshot, changed since: its state now, and the snapshot's. */
  async function restoreTarget(name: string) {
    const helper = await launch('worker');
    // Enough rows that pg_restore is still at work when it is caught.
    const target = await makeLiveEnvironment(app, { organizationId: env.organizationId, projectId: env.projectId, name, rows: 100_000 });
    const atSnapshot = { db: await databaseDigest(target.databaseUrl), files: await filesDigest(target.filesPath) };
    const { snapshotId } = await takeSnapshot(app, key, target.id);
    await sql(target.databaseUrl, "UPDATE customers SET name = 'changed' WHERE id <= 10");
    await fs.writeFile(path.join(target.filesPath, 'README.md'), 'changed after the snapshot\n');
    const before = { db: await databaseDigest(target.databaseUrl), files: await filesDigest(target.filesPath) };
    expect(before).not.toEqual(atSnapshot);
    await helper.stop();
    processes.splice(processes.indexOf(helper), 1);
    return { target, snapshotId, atSnapshot, before };
  }

  const leftovers = async (target: LiveEnvironment) => ({
    databases: (await sql(target.databaseUrl, "SELECT datname FROM pg_database WHERE starts_with(datname, current_database() || '__bp_')")).rows.map((r) => String(r.datname)),
    folders: (await fs.readdir(path.dirname(target.filesPath))).filter((n) => n.includes('.bp_restore_')),
  });

  /** What a restore that was handed back leaves: the target as it was, nothing failed, its job ready to run. */
  async function expectRestoreHandedBack(p: ServerProcess, operationId: string, target: LiveEnvironment, before: { db: unknown; files: unknown }) {
    const handedBack = p.logs.filter((l) => String(l.msg).startsWith('worker stopping: job handed back'));
    expect(handedBack).toHaveLength(1);
    expect(handedBack[0]).toMatchObject({ task: 'snapshot_restore', payload: { operationId } });
    const op = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: operationId } });
    expect(op).toMatchObject({ status: 'QUEUED', phase: 'queued', error: null, message: HANDED_BACK_MESSAGE, finishedAt: null });
    const log = await app.runtime.db.restoreLog.findFirstOrThrow({ where: { operationId } });
    expect(log).toMatchObject({ status: 'QUEUED', error: null, completedAt: null });
    expect(await app.runtime.db.alert.count({ where: { environmentId: target.id } })).toBe(0);
    expect(await jobOf(operationId)).toMatchObject({ attempts: 0, locked_at: null });
    // No operation left waiting for a job that does not exist (the safety snapshot's has none).
    const waiting = await app.runtime.db.operation.findMany({ where: { environmentId: target.id, status: { in: ['QUEUED', 'RUNNING'] } } });
    expect(waiting.map((o) => o.id)).toEqual([operationId]);
    expect(await leftovers(target)).toEqual({ databases: [], folders: [] });
    expect(await databaseDigest(target.databaseUrl)).toEqual(before.db);
    expect(await filesDigest(target.filesPath)).toEqual(before.files);
  }

  it('SIGTERM while pg_restore runs: exit 0, handed back with nothing left beside the target; the next worker restores it', { timeout: 300_000 }, async () => {
    const { target, snapshotId, atSnapshot, before } = await restoreTarget('restore-stopped');
    const first = await launch('worker', { JOB_SHUTDOWN_GRACE_MS: '300' });
    const r = await startRestore(app, key, { snapshotId });
    const opId = rawId(r.operationId);
    await follow(app, key, r.operationId, (st) => st.phase === 'restoring');
    const [pgRestore] = await until(() => childrenOf(first.child.pid!, 'pg_restore'), (pids) => pids.length > 0, 'pg_restore to start', 60_000);
    // Held still, so the grace period surely ends while it runs (the stop then kills it).
    process.kill(pgRestore, 'SIGSTOP');
    const firstSafety = await app.runtime.db.restoreLog.findFirstOrThrow({ where: { operationId: opId } });
    expect(firstSafety.safetySnapshotId).not.toBeNull();

    expect(await first.stop()).toBe(0);
    await expectRestoreHandedBack(first, opId, target, before);

    await launch('worker');
    expect((await follow(app, key, r.operationId)).at(-1)?.status).toBe('SUCCEEDED');
    expect(await databaseDigest(target.databaseUrl)).toEqual(atSnapshot.db);
    expect(await filesDigest(target.filesPath)).toEqual(atSnapshot.files);
    const log = await app.runtime.db.restoreLog.findFirstOrThrow({ where: { operationId: opId } });
    expect(log.status).toBe('SUCCEEDED');
    // The safety snapshot is taken again (the target may have changed while no worker ran); the first one stays, READY.
    expect(log.safetySnapshotId).not.toBe(firstSafety.safetySnapshotId);
    const safety = await app.runtime.db.snapshot.findMany({ where: { environmentId: target.id, kind: 'SAFETY' } });
    expect(safety.map((sn) => sn.status)).toEqual(['READY', 'READY']);
    expect(await app.runtime.db.alert.count({ where: { environmentId: target.id } })).toBe(0);
  });

  it('SIGTERM during its safety snapshot: the safety snapshot goes entirely (no operation left QUEUED without a job); the next worker restores', { timeout: 300_000 }, async () => {
    const { target, snapshotId, atSnapshot, before } = await restoreTarget('restore-stopped-safety');
    const lock = new pg.Client({ connectionString: target.databaseUrl });
    await lock.connect();
    await lock.query('BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
    const first = await launch('worker', { JOB_SHUTDOWN_GRACE_MS: '300' });
    const r = await startRestore(app, key, { snapshotId });
    const opId = rawId(r.operationId);
    await follow(app, key, r.operationId, (st) => st.phase === 'safety-snapshot');
    const safetyOp = await until(
      () => app.runtime.db.operation.findFirst({ where: { environmentId: target.id, type: 'SNAPSHOT', status: 'RUNNING' } }),
      (o) => o?.phase === 'dumping',
      'the safety snapshot to dump',
    );

    expect(await first.stop()).toBe(0);
    await lock.query('ROLLBACK');
    await lock.end();
    await expectRestoreHandedBack(first, opId, target, before);
    expect(await app.runtime.db.operation.findUnique({ where: { id: safetyOp!.id } })).toBeNull();
    expect(await app.runtime.db.snapshot.count({ where: { environmentId: target.id, kind: 'SAFETY' } })).toBe(0);
    const password = await repositoryPassword(app, target.destinationId);
    const safetyInRepo = JSON.parse(await restic(target.repositoryPath, password, '--no-lock', 'snapshots', '--json', '--tag', 'kind:safety')) as unknown[];
    expect(safetyInRepo).toEqual([]);

    await launch('worker');
    expect((await follow(app, key, r.operationId)).at(-1)?.status).toBe('SUCCEEDED');
    expect(await databaseDigest(target.databaseUrl)).toEqual(atSnapshot.db);
    expect(await filesDigest(target.filesPath)).toEqual(atSnapshot.files);
    expect((await app.runtime.db.snapshot.findMany({ where: { environmentId: target.id, kind: 'SAFETY' } })).map((sn) => sn.status)).toEqual(['READY']);
  });
});
