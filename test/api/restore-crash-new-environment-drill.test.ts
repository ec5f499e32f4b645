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
import { startServerProcess, until, type ServerProcess } from '../harness/process.ts';
import { RunRestoreDrillDocument } from '../generated/graphql.ts';
import { gid } from '../harness/factories.ts';
import { follow, startRestore, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let source: LiveEnvironment;
let snapshotId: string;
const secretKey = randomBytes(32).toString('hex');
const workers: ServerProcess[] = [];

function worker() {
  return startServerProcess(testEnv(app.databaseUrl, secretKey, { OPERATION_HEARTBEAT_MS: '500' }), 'worker').then((w) => (workers.push(w), w));
}

beforeAll(async () => {
  let env: LiveEnvironment;
  ({ app, key, env } = await startSnapshotSuite({ secretKey, worker: false }));
  // Enough rows that pg_restore is still at work when caught.
  source = await makeLiveEnvironment(app, { organizationId: env.organizationId, projectId: env.projectId, name: 'big-source', rows: 100_000 });
  const helper = await worker();
  ({ snapshotId } = await takeSnapshot(app, key, source.id));
  await helper.stop();
  workers.splice(0);
}, 180_000);
afterEach(async () => {
  for (const w of workers.splice(0)) await w.stop();
});
afterAll(() => app?.stop());

const rawId = (globalId: string) => Buffer.from(globalId, 'base64').toString().split(':')[1];

async function kill(w: ServerProcess) {
  w.child.kill('SIGKILL');
  if (w.child.exitCode === null && w.child.signalCode === null) await new Promise((r) => w.child.once('exit', r));
}

async function ageHeartbeat(operationId: string) {
  const op = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: operationId } });
  expect(op.status).toBe('RUNNING');
  await app.runtime.db.operation.update({ where: { id: operationId }, data: { heartbeatAt: new Date(Date.now() - 3_600_000) } });
}

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
  await ageHeartbeat(opId);
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
    await kill(doomed);
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
      await kill(doomed);
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
    await kill(doomed);
    process.kill(pgRestore, 'SIGKILL');
    // What the killed worker left: the proof the recovery has something to clear.
    expect(await scratchDbs()).toHaveLength(1);
    expect(await scratchDirs()).toHaveLength(1);

    await ageHeartbeat(opId);
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
