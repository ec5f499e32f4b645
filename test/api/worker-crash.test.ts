import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEnv, type TestApp } from '../harness/app.ts';
import { LocalBackend } from '../../src/destinations/local.ts';
import { formatTime, Repository, type LockJson } from '../../src/engine/api.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, repositoryPassword, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { startServerProcess, until, type ServerProcess } from '../harness/process.ts';
import { follow, restic, startRestore, startSnapshot, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;
const secretKey = randomBytes(32).toString('hex');
const workers: ServerProcess[] = [];

beforeAll(async () => {
  ({ app, key, env } = await startSnapshotSuite({ secretKey, worker: false }));
});
afterAll(async () => {
  for (const w of workers) await w.stop();
  await app?.stop();
});

/** Only the workers a test starts itself take its jobs. */
async function stopWorkers() {
  for (const w of workers) await w.stop();
}

function worker() {
  return startServerProcess(testEnv(app.databaseUrl, secretKey, { OPERATION_STALE_MS: '3000', OPERATION_HEARTBEAT_MS: '500' }), 'worker').then((w) => (workers.push(w), w));
}

describe('a worker killed mid-snapshot', () => {
  it('leaves no partial snapshot; another worker takes the job over and finishes it', async () => {
    const lock = new pg.Client({ connectionString: env.databaseUrl });
    await lock.connect();
    await lock.query('BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
    const first = await worker();
    const s = await startSnapshot(app, key, env.id);
    await follow(app, key, s.operationId, (st) => st.status === 'RUNNING' && st.phase === 'dumping');
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    // The dead worker's pg_dump is an orphan now; ending it is what a machine loss does too.
    await sql(env.databaseUrl, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'backplane-dump'");
    await lock.query('ROLLBACK');
    await lock.end();

    const opId = Buffer.from(s.operationId, 'base64').toString().split(':')[1];
    const stuck = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: opId } });
    expect(stuck.status).toBe('RUNNING');

    await worker();
    const end = (await follow(app, key, s.operationId)).at(-1);
    expect(end?.status).toBe('SUCCEEDED');
    const row = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: opId } });
    expect(row.attempts).toBe(2);
    // "… it will run again" was true while it waited, not once it succeeded.
    expect(row.message).toBeNull();

    const password = await repositoryPassword(app, env.destinationId);
    const listed = JSON.parse(await restic(env.repositoryPath, password, 'snapshots', '--json')) as unknown[];
    expect(listed).toHaveLength(1);
    // The killed worker's lock file was cleared by the retry (its process is gone): stock restic,
    // which refuses a repository holding any other lock, checks it without --no-lock.
    expect(await restic(env.repositoryPath, password, '--no-lock', 'list', 'locks')).toBe('');
    await restic(env.repositoryPath, password, 'check', '--read-data');
    await until(() => app.runtime.db.snapshot.findFirstOrThrow({ where: { environmentId: env.id } }), (sn) => sn.status === 'READY', 'the snapshot to be READY');
  });
});

describe('repository locks of other processes', () => {
  it('a live process\'s lock is never removed; once that process is gone, the next job removes it', async () => {
    await stopWorkers();
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

/** Processes started by `pid` (its threads' children), by command name. */
async function childrenOf(pid: number, comm: string): Promise<number[]> {
  const out: number[] = [];
  for (const tid of await fs.readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const text = await fs.readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
    for (const child of text.split(' ').filter(Boolean).map(Number)) {
      const name = (await fs.readFile(`/proc/${child}/comm`, 'utf8').catch(() => '')).trim();
      if (name === comm) out.push(child);
    }
  }
  return out;
}

describe('a worker killed while a restore runs pg_restore', () => {
  it('recovery drops the temp database and staging folder, raises RESTORE_FAILED, names the phase; the target is as before', async () => {
    await stopWorkers();
    const helper = await worker();
    // Enough rows that pg_restore is still at work when it is caught below.
    const target = await makeLiveEnvironment(app, { organizationId: env.organizationId, projectId: env.projectId, name: 'restore-killed', rows: 100_000 });
    const { snapshotId } = await takeSnapshot(app, key, target.id);
    await sql(target.databaseUrl, "UPDATE customers SET name = 'changed' WHERE id <= 10");
    await fs.writeFile(path.join(target.filesPath, 'README.md'), 'changed after the snapshot\n');
    const dbBefore = await databaseDigest(target.databaseUrl);
    const filesBefore = await filesDigest(target.filesPath);
    await helper.stop();

    const doomed = await worker();
    const r = await startRestore(app, key, { snapshotId, createSafetySnapshot: false });
    await follow(app, key, r.operationId, (st) => st.phase === 'restoring');
    const [pgRestore] = await until(() => childrenOf(doomed.child.pid!, 'pg_restore'), (pids) => pids.length > 0, 'pg_restore to start', 60_000);
    // Held still, so the kill lands while it runs; then it dies with its worker, as on a machine loss.
    process.kill(pgRestore, 'SIGSTOP');
    doomed.child.kill('SIGKILL');
    await new Promise((res) => doomed.child.once('exit', res));
    process.kill(pgRestore, 'SIGKILL');

    const opId = Buffer.from(r.operationId, 'base64').toString().split(':')[1];
    const log = await app.runtime.db.restoreLog.findFirstOrThrow({ where: { operationId: opId } });
    const suffix = log.id.replace(/-/g, '').slice(-12);
    const tempDbs = () => sql(target.databaseUrl, "SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_bp\\_restore\\_%'").then((q) => q.rows.map((row) => String(row.datname)));
    const staging = () => fs.readdir(path.dirname(target.filesPath)).then((names) => names.filter((n) => n.includes('.bp_restore_')));
    // What the killed worker left: the proof the recovery below has something to clear.
    expect((await tempDbs()).filter((n) => n.endsWith(suffix))).toHaveLength(1);
    expect(await staging()).toHaveLength(1);

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
