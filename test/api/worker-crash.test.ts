/**
 * A worker that dies mid-job (SIGKILL: no chance to clean up) stops writing heartbeats; another
 * worker's sweeper takes the operation back (`recoverStaleOperations`). Rather than wait out
 * OPERATION_STALE_MS, a test ages the dead worker's last heartbeat itself, and the next worker's
 * start-up sweep finds it: the workers that live keep the default stale time, so a heartbeat
 * delayed on a busy machine never lets a live worker's job be taken from it.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { testEnv, type TestApp } from '../harness/app.ts';
import { repositoryPassword, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { startServerProcess, until, type ServerProcess } from '../harness/process.ts';
import { follow, restic, startSnapshot, startSnapshotSuite } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;
const secretKey = randomBytes(32).toString('hex');
const workers: ServerProcess[] = [];

beforeAll(async () => {
  ({ app, key, env } = await startSnapshotSuite({ secretKey, worker: false }));
});
// Each test's jobs run only in the workers it starts.
afterEach(async () => {
  for (const w of workers.splice(0)) await w.stop();
});
afterAll(() => app?.stop());

function worker() {
  return startServerProcess(testEnv(app.databaseUrl, secretKey, { OPERATION_HEARTBEAT_MS: '500' }), 'worker').then((w) => (workers.push(w), w));
}

const rawId = (globalId: string) => Buffer.from(globalId, 'base64').toString().split(':')[1];

async function kill(w: ServerProcess) {
  w.child.kill('SIGKILL');
  if (w.child.exitCode === null && w.child.signalCode === null) await new Promise((r) => w.child.once('exit', r));
}

/** The dead worker's last heartbeat, an hour ago: what waiting out OPERATION_STALE_MS would give. */
async function ageHeartbeat(operationId: string) {
  const op = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: operationId } });
  expect(op.status).toBe('RUNNING');
  await app.runtime.db.operation.update({ where: { id: operationId }, data: { heartbeatAt: new Date(Date.now() - 3_600_000) } });
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
    await kill(first);
    await endOrphanDump();
    await lock.release({ orphans: true });

    const opId = rawId(s.operationId);
    await ageHeartbeat(opId);
    await worker();
    const end = (await follow(app, key, s.operationId)).at(-1);
    expect(end?.status).toBe('SUCCEEDED');
    const row = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: opId } });
    expect(row.attempts).toBe(2);

    expect(await taggedSnapshots(rawId(s.snapshotId))).toHaveLength(1);
    // The killed worker's lock file stays, as a killed restic's does; restic treats it as stale only while
    // its PID is unused, which a busy machine does not promise. Integrity is what this checks.
    await restic(env.repositoryPath, await repositoryPassword(app, env.destinationId), '--no-lock', 'check', '--read-data');
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
    await kill(first);
    await catalog.release({ orphans: true });
    expect((await app.runtime.db.snapshotCopy.findUniqueOrThrow({ where: { id: copy.id } })).status).toBe('UPLOADING');

    await ageHeartbeat(rawId(s.operationId));
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
    await kill(first);
    await endOrphanDump();
    await lock.release({ orphans: true });

    await ageHeartbeat(opId);
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
