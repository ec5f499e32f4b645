/**
 * A worker killed while it restores into a new environment, or while it runs a restore drill
 * (SIGKILL: no chance to clean up): the recovery (`recoverStaleOperations`, at the next worker's
 * start, the dead worker's heartbeat aged as in worker-crash.test.ts) removes the databases and
 * folders it made. A new environment's go whether still under their restore names or already
 * under the environment's own, and the environment ends FAILED, never usable; a drill's scratch
 * copies go and the drill counts as failed.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { testEnv, type TestApp } from '../harness/app.ts';
import { makeLiveEnvironment, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { childrenOf, killProcess, processGroup, until } from '../harness/process.ts';
import { RunRestoreDrillDocument } from '../generated/graphql.ts';
import { gid, rawId } from '../harness/factories.ts';
import { ageHeartbeat, follow, startRestore, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let source: LiveEnvironment;
let snapshotId: string;
const secretKey = randomBytes(32).toString('hex');
const workers = processGroup();

function worker() {
  return workers.start(testEnv(app.databaseUrl, secretKey, { OPERATION_HEARTBEAT_MS: '500' }), 'worker');
}

beforeAll(async () => {
  let env: LiveEnvironment;
  ({ app, key, env } = await startSnapshotSuite({ secretKey, worker: false }));
  // Enough rows that pg_restore is still at work when caught.
  source = await makeLiveEnvironment(app, { organizationId: env.organizationId, projectId: env.projectId, name: 'big-source', rows: 100_000 });
  await worker();
  ({ snapshotId } = await takeSnapshot(app, key, source.id));
  await workers.stopAll();
}, 180_000);
afterEach(() => workers.stopAll());
afterAll(() => app?.stop());

const databases = () => sql(app.databaseUrl, 'SELECT datname FROM pg_database').then((q) => q.rows.map((x) => String(x.datname)));
const sourceDb = () => decodeURIComponent(new URL(source.databaseUrl).pathname.slice(1));
const siblings = () => fs.readdir(path.dirname(source.filesPath));

/** Starts the restore into new environment `name` in a worker and waits until its pg_restore runs. */
async function restoreUntilPgRestore(name: string) {
  const doomed = await worker();
  const r = await startRestore(app, key, { snapshotId, newEnvironment: { name } });
  const opId = rawId(r.operationId);
  const log = await app.runtime.db.restoreLog.findFirstOrThrow({ where: { operationId: opId } });
  await follow(app, key, r.operationId, (st) => st.phase === 'restoring');
  const [pgRestore] = await until(() => childrenOf(doomed.child.pid!, 'pg_restore'), (pids) => pids.length > 0, 'pg_restore to start', 60_000);
  return { doomed, r, opId, log, pgRestore, suffix: log.id.replace(/-/g, '').slice(-12) };
}

/** Recovery at the next worker's start: the operation FAILED, the environment FAILED, nothing of it left. */
async function expectRecovered(opId: string, operationId: string, envId: string, name: string) {
  await ageHeartbeat(app, opId);
  await worker();
  const end = (await follow(app, key, operationId)).at(-1);
  expect(end?.status).toBe('FAILED');
  const env = await app.runtime.db.environment.findUniqueOrThrow({ where: { id: envId } });
  expect(env.status).toBe('FAILED');
  expect((await databases()).filter((n) => n.startsWith(`${sourceDb()}_${name}`))).toEqual([]);
  expect((await siblings()).filter((n) => n !== path.basename(source.filesPath) && n.startsWith(path.basename(source.filesPath)))).toEqual([]);
  const alert = await app.runtime.db.alert.findFirst({ where: { operationId: opId, type: 'RESTORE_FAILED' } });
  return alert?.message ?? '';
}

describe('a worker killed while restoring into a new environment', () => {
  it('during pg_restore: recovery drops the temp database and staging folder; the environment is FAILED', { timeout: 300_000 }, async () => {
    const { doomed, r, opId, log, pgRestore, suffix } = await restoreUntilPgRestore('killed_early');
    process.kill(pgRestore, 'SIGSTOP');
    await killProcess(doomed);
    process.kill(pgRestore, 'SIGKILL');
    // What the killed worker left: the proof the recovery has something to clear.
    expect((await databases()).filter((n) => n.endsWith(suffix))).toHaveLength(1);
    expect((await siblings()).filter((n) => n.includes('.bp_restore_'))).toHaveLength(1);
    expect((await app.runtime.db.environment.findUniqueOrThrow({ where: { id: log.targetEnvironmentId } })).status).toBe('PROVISIONING');

    const message = await expectRecovered(opId, r.operationId, log.targetEnvironmentId, 'killed_early');
    expect(message).toMatch(/temp database, staging folder/);
  });

  it('after both were renamed in, before the success was recorded: recovery drops the new database and folder by their marker', { timeout: 300_000 }, async () => {
    const { doomed, r, opId, log, pgRestore } = await restoreUntilPgRestore('killed_late');
    const target = await app.runtime.db.environment.findUniqueOrThrow({ where: { id: log.targetEnvironmentId } });
    // The job records its success in the restore log's row: held, it waits there with everything renamed in.
    process.kill(pgRestore, 'SIGSTOP');
    const client = new pg.Client({ connectionString: app.databaseUrl });
    await client.connect();
    await client.query('BEGIN');
    await client.query(`SELECT 1 FROM restore_logs WHERE id = '${log.id}' FOR UPDATE`);
    const [{ pid }] = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows;
    process.kill(pgRestore, 'SIGCONT');
    try {
      await until(databases, (names) => names.includes(target.databaseName), 'the new database under its own name', 120_000);
      await until(() => fs.stat(target.filesPath!).then(() => true, () => false), (v) => v, 'the new folder under its own name', 60_000);
      await until(
        () => sql(app.databaseUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'UPDATE%restore_logs%' AND wait_event_type = 'Lock'").then((q) => Number(q.rows[0].n)),
        (n) => n > 0,
        'the job to wait on the restore log',
      );
      await killProcess(doomed);
    } finally {
      await sql(app.databaseUrl, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [pid]);
      await client.query('ROLLBACK');
      await client.end();
    }
    expect(target.status).toBe('PROVISIONING');

    const message = await expectRecovered(opId, r.operationId, log.targetEnvironmentId, 'killed_late');
    expect(message).toMatch(/new database, new files folder/);
  });
});

describe('a worker killed during a restore drill', () => {
  it('recovery drops the scratch database and folder, fails the drill and raises DRILL_FAILED; the environment is untouched', { timeout: 300_000 }, async () => {
    const doomed = await worker();
    const res = await app.gql(RunRestoreDrillDocument, { input: { environmentId: gid('Environment', source.id) } }, { key });
    if (res.data?.runRestoreDrill.__typename !== 'RestoreDrillPayload') throw new Error(JSON.stringify(res));
    const operationId = res.data.runRestoreDrill.operation.id;
    const opId = rawId(operationId);
    const drill = await app.runtime.db.restoreDrill.findUniqueOrThrow({ where: { operationId: opId } });
    const [pgRestore] = await until(() => childrenOf(doomed.child.pid!, 'pg_restore'), (pids) => pids.length > 0, 'pg_restore to start', 60_000);
    process.kill(pgRestore, 'SIGSTOP');
    const scratchDbs = async () => (await databases()).filter((n) => n.startsWith('bp_drill_'));
    const scratchDirs = async () => (await siblings()).filter((n) => n.includes('.bp_drill_'));
    // The files side runs beside pg_restore, held still: the kill lands with both scratch copies there.
    await until(scratchDirs, (dirs) => dirs.length === 1, 'the scratch folder', 60_000);
    await killProcess(doomed);
    process.kill(pgRestore, 'SIGKILL');
    // What the killed worker left: the proof the recovery has something to clear.
    expect(await scratchDbs()).toHaveLength(1);
    expect(await scratchDirs()).toHaveLength(1);

    await ageHeartbeat(app, opId);
    await worker();
    const end = (await follow(app, key, operationId)).at(-1);
    expect(end?.status).toBe('FAILED');
    expect(await app.runtime.db.restoreDrill.findUniqueOrThrow({ where: { id: drill.id } })).toMatchObject({ status: 'FAILED' });
    const alert = await app.runtime.db.alert.findFirst({ where: { operationId: opId, type: 'DRILL_FAILED' } });
    expect(alert?.message).toMatch(/scratch database, scratch folder/);
    expect(await scratchDbs()).toEqual([]);
    expect(await scratchDirs()).toEqual([]);
    expect((await sql(source.databaseUrl, 'SELECT count(*)::int AS n FROM orders')).rows[0].n).toBe(200_000);
  });
});
