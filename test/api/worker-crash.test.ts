/**
 * A worker that dies mid-job (SIGKILL: no chance to clean up) stops writing heartbeats; another
 * worker's sweeper takes the operation back (`recoverStaleOperations`). Rather than wait out
 * OPERATION_STALE_MS, a test ages the dead worker's last heartbeat itself, and the next worker's
 * start-up sweep finds it: the workers that live keep the default stale time, so a heartbeat
 * delayed on a busy machine never lets a live worker's job be taken from it.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { testEnv, type TestApp } from '../harness/app.ts';
import { LocalBackend } from '../../src/destinations/local.ts';
import { formatTime, Repository, type LockJson } from '../../src/engine/api.ts';
import { rawId } from '../harness/factories.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, repositoryPassword, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { childrenOf, killProcess, processGroup, until } from '../harness/process.ts';
import { ageHeartbeat, follow, restic, startRestore, startSnapshot, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;
const secretKey = randomBytes(32).toString('hex');
const workers = processGroup();

beforeAll(async () => {
  ({ app, key, env } = await startSnapshotSuite({ secretKey, worker: false }));
});
// Each test's jobs run only in the workers it starts.
afterEach(() => workers.stopAll());
afterAll(() => app?.stop());

function worker() {
  return workers.start(testEnv(app.databaseUrl, secretKey, { OPERATION_HEARTBEAT_MS: '500' }), 'worker');
}

/** Holds a table lock on `url` until released. */
async function lockTable(url: string, statement: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('BEGIN');
  await client.query(statement);
  const [{ pid }] = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows;
  return {
    /** Releases it; `orphans`: first ends whatever a killed worker left waiting on it (a live worker's waits go on). */
    async release(opts: { orphans: boolean }) {
      if (opts.orphans) await sql(url, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [pid]);
      await client.query('ROLLBACK');
      await client.end();
    },
  };
}

const orders = () => lockTable(env.databaseUrl, 'LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
/** The dead worker's pg_dump is an orphan waiting for the table; ending it is what a machine loss does too. */
const endOrphanDump = () => sql(env.databaseUrl, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'backplane-dump'");
const taggedSnapshots = async (snapshotId: string) =>
  JSON.parse(await restic(env.repositoryPath, await repositoryPassword(app, env.destinationId), '--no-lock', 'snapshots', '--json', '--tag', `snapshot:${snapshotId}`)) as { id: string }[];

describe('a worker killed mid-snapshot', () => {
  it('leaves no partial snapshot; another worker takes the job over and finishes it', { timeout: 180_000 }, async () => {
    const lock = await orders();
    const first = await worker();
    const s = await startSnapshot(app, key, env.id);
    await follow(app, key, s.operationId, (st) => st.status === 'RUNNING' && st.phase === 'dumping');
    await killProcess(first);
    await endOrphanDump();
    await lock.release({ orphans: true });

    const opId = rawId(s.operationId);
    await ageHeartbeat(app, opId);
    await worker();
    const end = (await follow(app, key, s.operationId)).at(-1);
    expect(end?.status).toBe('SUCCEEDED');
    const row = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: opId } });
    expect(row.attempts).toBe(2);
    // "… it will run again" was true while it waited, not once it succeeded.
    expect(row.message).toBeNull();

    expect(await taggedSnapshots(rawId(s.snapshotId))).toHaveLength(1);
    // The killed worker's lock file was cleared by the retry (its process is gone): stock restic,
    // which refuses a repository holding any other lock, checks it without --no-lock.
    const password = await repositoryPassword(app, env.destinationId);
    expect(await restic(env.repositoryPath, password, '--no-lock', 'list', 'locks')).toBe('');
    await restic(env.repositoryPath, password, 'check', '--read-data');
    await until(() => app.runtime.db.snapshot.findFirstOrThrow({ where: { id: rawId(s.snapshotId) } }), (sn) => sn.status === 'READY', 'the snapshot to be READY');
  });

  it('killed after writing the repository snapshot, before recording it: the retry leaves exactly one repository snapshot', { timeout: 180_000 }, async () => {
    const dump = await orders();
    const first = await worker();
    const s = await startSnapshot(app, key, env.id);
    const snapId = rawId(s.snapshotId);
    await follow(app, key, s.operationId, (st) => st.status === 'RUNNING' && st.phase === 'dumping');
    // The copy is UPLOADING now; holding its row keeps the job from recording the result.
    const copy = await app.runtime.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: snapId } });
    expect(copy.status).toBe('UPLOADING');
    const catalog = await lockTable(app.databaseUrl, `SELECT 1 FROM snapshot_copies WHERE id = '${copy.id}' FOR UPDATE`);
    await dump.release({ orphans: false });
    await until(() => taggedSnapshots(snapId), (l) => l.length === 1, 'the repository snapshot to be written', 60_000);
    await killProcess(first);
    await catalog.release({ orphans: true });
    expect((await app.runtime.db.snapshotCopy.findUniqueOrThrow({ where: { id: copy.id } })).status).toBe('UPLOADING');

    await ageHeartbeat(app, rawId(s.operationId));
    await worker();
    expect((await follow(app, key, s.operationId)).at(-1)?.status).toBe('SUCCEEDED');
    const tagged = await taggedSnapshots(snapId);
    expect(tagged).toHaveLength(1);
    expect((await app.runtime.db.snapshotCopy.findUniqueOrThrow({ where: { id: copy.id } })).repoSnapshotId).toBe(tagged[0].id);
  });

  it('a job with no attempts left ends FAILED with the reason, and its environment can snapshot again', { timeout: 180_000 }, async () => {
    const lock = await orders();
    const s = await startSnapshot(app, key, env.id);
    const opId = rawId(s.operationId);
    // Its last attempt: set while no worker has taken it (graphile-worker changes only unlocked jobs).
    await app.runtime.db.$queryRawUnsafe(
      'SELECT id FROM graphile_worker.reschedule_jobs(ARRAY(SELECT id FROM graphile_worker.jobs WHERE key = $1), max_attempts => 1)',
      `op:${opId}`,
    );
    const first = await worker();
    await follow(app, key, s.operationId, (st) => st.status === 'RUNNING' && st.phase === 'dumping');
    await killProcess(first);
    await endOrphanDump();
    await lock.release({ orphans: true });

    await ageHeartbeat(app, opId);
    await worker();
    const op = await until(() => app.runtime.db.operation.findUniqueOrThrow({ where: { id: opId } }), (o) => o.status !== 'RUNNING', 'the operation to be recovered');
    expect(op.status).toBe('FAILED');
    expect(op.error).toMatch(/worker/i);
    expect(op.finishedAt).not.toBeNull();
    expect((await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: rawId(s.snapshotId) } })).status).toBe('FAILED');
    expect(await taggedSnapshots(rawId(s.snapshotId))).toEqual([]);
    // The dead worker's lock on the job (and with it the environment's queue) is released too.
    const next = await startSnapshot(app, key, env.id);
    expect((await follow(app, key, next.operationId)).at(-1)?.status).toBe('SUCCEEDED');
  });
});

describe('a snapshot failed by the recovery', () => {
  it('killed after writing the repository snapshot, with no attempts left: FAILED, and the repository snapshot it wrote is forgotten', { timeout: 180_000 }, async () => {
    const dump = await orders();
    const s = await startSnapshot(app, key, env.id);
    const snapId = rawId(s.snapshotId);
    const opId = rawId(s.operationId);
    await app.runtime.db.$queryRawUnsafe(
      'SELECT id FROM graphile_worker.reschedule_jobs(ARRAY(SELECT id FROM graphile_worker.jobs WHERE key = $1), max_attempts => 1)',
      `op:${opId}`,
    );
    const first = await worker();
    await follow(app, key, s.operationId, (st) => st.status === 'RUNNING' && st.phase === 'dumping');
    const copy = await app.runtime.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: snapId } });
    const catalog = await lockTable(app.databaseUrl, `SELECT 1 FROM snapshot_copies WHERE id = '${copy.id}' FOR UPDATE`);
    await dump.release({ orphans: false });
    // Written into the repository, not yet recorded: what the recovery must not leave behind.
    await until(() => taggedSnapshots(snapId), (l) => l.length === 1, 'the repository snapshot to be written', 60_000);
    await killProcess(first);
    await catalog.release({ orphans: true });

    await ageHeartbeat(app, opId);
    await worker();
    const op = await until(() => app.runtime.db.operation.findUniqueOrThrow({ where: { id: opId } }), (o) => o.status !== 'RUNNING', 'the operation to be recovered');
    expect(op.status).toBe('FAILED');
    expect((await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: snapId } })).status).toBe('FAILED');
    expect(await taggedSnapshots(snapId)).toEqual([]);
    const password = await repositoryPassword(app, env.destinationId);
    await restic(env.repositoryPath, password, 'check');
    // The dead worker's lock on the job is released once it is stale; the environment snapshots again.
    const next = await startSnapshot(app, key, env.id);
    expect((await follow(app, key, next.operationId)).at(-1)?.status).toBe('SUCCEEDED');
  });
});

describe('repository locks of other processes', () => {
  it('a live process\'s lock is never removed; once that process is gone, the next job removes it', async () => {
    await workers.stopAll();
    await worker();
    await takeSnapshot(app, key, env.id);
    const password = await repositoryPassword(app, env.destinationId);
    // A lock as a restic of this host would hold it: another live process, its lock fresh.
    const holder = spawn('sleep', ['600'], { stdio: 'ignore' });
    try {
      const repo = await Repository.open(new LocalBackend(env.repositoryPath), password);
      const lock: LockJson = { time: formatTime(BigInt(Date.now()) * 1_000_000n), exclusive: false, hostname: hostname(), username: 'someone', pid: holder.pid! };
      const lockId = await repo.saveJson('locks', lock);
      await repo.close();
      await takeSnapshot(app, key, env.id);
      expect(await restic(env.repositoryPath, password, '--no-lock', 'list', 'locks')).toBe(`${lockId}\n`);
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => (holder.exitCode !== null || holder.signalCode !== null ? r(null) : holder.once('exit', r)));
    }
    await takeSnapshot(app, key, env.id);
    expect(await restic(env.repositoryPath, password, '--no-lock', 'list', 'locks')).toBe('');
    await restic(env.repositoryPath, password, 'check');
  });
});

/**
 * A new environment with a snapshot, changed since, and the digests of how it is now: what a
 * failed restore into it must leave. Enough rows that pg_restore is still at work when caught.
 */
async function changedSinceSnapshot(name: string) {
  await workers.stopAll();
  const helper = await worker();
  const target = await makeLiveEnvironment(app, { organizationId: env.organizationId, projectId: env.projectId, name, rows: 100_000 });
  const { snapshotId } = await takeSnapshot(app, key, target.id);
  await sql(target.databaseUrl, "UPDATE customers SET name = 'changed' WHERE id <= 10");
  await fs.writeFile(path.join(target.filesPath, 'README.md'), 'changed after the snapshot\n');
  const dbBefore = await databaseDigest(target.databaseUrl);
  const filesBefore = await filesDigest(target.filesPath);
  await helper.stop();
  return { target, snapshotId, dbBefore, filesBefore };
}

describe('a worker killed while a restore runs pg_restore', () => {
  it('recovery drops the temp database and staging folder, raises RESTORE_FAILED, names the phase; the target is as before', async () => {
    const { target, snapshotId, dbBefore, filesBefore } = await changedSinceSnapshot('restore-killed');

    const doomed = await worker();
    const r = await startRestore(app, key, { snapshotId, createSafetySnapshot: false });
    await follow(app, key, r.operationId, (st) => st.phase === 'restoring');
    const [pgRestore] = await until(() => childrenOf(doomed.child.pid!, 'pg_restore'), (pids) => pids.length > 0, 'pg_restore to start', 60_000);
    // Held still, so the kill lands while it runs; then it dies with its worker, as on a machine loss.
    process.kill(pgRestore, 'SIGSTOP');
    doomed.child.kill('SIGKILL');
    await new Promise((res) => doomed.child.once('exit', res));
    process.kill(pgRestore, 'SIGKILL');

    const opId = rawId(r.operationId);
    const log = await app.runtime.db.restoreLog.findFirstOrThrow({ where: { operationId: opId } });
    const suffix = log.id.replace(/-/g, '').slice(-12);
    const tempDbs = () => sql(target.databaseUrl, "SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_bp\\_restore\\_%'").then((q) => q.rows.map((row) => String(row.datname)));
    const staging = () => fs.readdir(path.dirname(target.filesPath)).then((names) => names.filter((n) => n.includes('.bp_restore_')));
    // What the killed worker left: the proof the recovery below has something to clear.
    expect((await tempDbs()).filter((n) => n.endsWith(suffix))).toHaveLength(1);
    expect(await staging()).toHaveLength(1);

    await ageHeartbeat(app, opId);
    await worker();
    const end = (await follow(app, key, r.operationId)).at(-1);
    expect(end?.status).toBe('FAILED');
    expect(end?.error).toMatch(/pg_restore.*phase restoring/);
    const after = await app.runtime.db.restoreLog.findUniqueOrThrow({ where: { id: log.id } });
    expect(after).toMatchObject({ status: 'FAILED', error: end?.error });
    const alert = await app.runtime.db.alert.findFirst({ where: { operationId: opId, type: 'RESTORE_FAILED' } });
    expect(alert?.message).toMatch(/phase restoring.*temp database, staging folder/);
    expect((await tempDbs()).filter((n) => n.endsWith(suffix))).toEqual([]);
    expect(await staging()).toEqual([]);
    expect(await databaseDigest(target.databaseUrl)).toEqual(dbBefore);
    expect(await filesDigest(target.filesPath)).toEqual(filesBefore);
  });
});

describe('a worker killed in the restore\'s swap, after the database swap and before the files swap', () => {
  it('recovery undoes the database swap too: the target is all as before, database and files', { timeout: 300_000 }, async () => {
    const { target, snapshotId, dbBefore, filesBefore } = await changedSinceSnapshot('restore-swap-killed');

    const doomed = await worker();
    const r = await startRestore(app, key, { snapshotId, createSafetySnapshot: false });
    const opId = rawId(r.operationId);
    const log = await app.runtime.db.restoreLog.findFirstOrThrow({ where: { operationId: opId } });
    const suffix = log.id.replace(/-/g, '').slice(-12);
    // pg_restore held still while the test takes the restore log's row: the job records the
    // database swap in that row before it swaps the files, so it waits there, database swapped.
    await follow(app, key, r.operationId, (st) => st.phase === 'restoring');
    const [pgRestore] = await until(() => childrenOf(doomed.child.pid!, 'pg_restore'), (pids) => pids.length > 0, 'pg_restore to start', 60_000);
    process.kill(pgRestore, 'SIGSTOP');
    const row = await lockTable(app.databaseUrl, `SELECT 1 FROM restore_logs WHERE id = '${log.id}' FOR UPDATE`);
    process.kill(pgRestore, 'SIGCONT');
    // Read through the catalog's database: a connection to the target races its rename.
    const databases = () => sql(app.databaseUrl, 'SELECT datname FROM pg_database').then((q) => q.rows.map((x) => String(x.datname)));
    try {
      await until(databases, (names) => names.some((n) => n.includes('__bp_pre_') && n.endsWith(suffix)), 'the database swap', 120_000);
      await until(
        () => sql(app.databaseUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'UPDATE%restore_logs%' AND wait_event_type = 'Lock'").then((q) => Number(q.rows[0].n)),
        (n) => n > 0,
        'the job to wait on the restore log',
      );
      await killProcess(doomed);
    } finally {
      await row.release({ orphans: true });
    }
    // The state the kill left: the restored database live, the old files still in place.
    expect(await databaseDigest(target.databaseUrl)).not.toEqual(dbBefore);
    expect(await filesDigest(target.filesPath)).toEqual(filesBefore);

    await ageHeartbeat(app, opId);
    await worker();
    const end = (await follow(app, key, r.operationId)).at(-1);
    expect(end?.status).toBe('FAILED');
    expect(end?.error).toMatch(/phase swapping/);
    expect(await databaseDigest(target.databaseUrl)).toEqual(dbBefore);
    expect(await filesDigest(target.filesPath)).toEqual(filesBefore);
    const alert = await app.runtime.db.alert.findFirst({ where: { operationId: opId, type: 'RESTORE_FAILED' } });
    expect(alert?.message).toMatch(/database swap undone/);
    expect((await databases()).filter((n) => n.endsWith(suffix))).toEqual([]);
    expect((await fs.readdir(path.dirname(target.filesPath))).filter((n) => n.endsWith(suffix))).toEqual([]);
  });
});
