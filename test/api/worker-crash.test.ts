import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
afterAll(async () => {
  for (const w of workers) await w.stop();
  await app?.stop();
});

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

    const password = await repositoryPassword(app, env.destinationId);
    const listed = JSON.parse(await restic(env.repositoryPath, password, 'snapshots', '--json')) as unknown[];
    expect(listed).toHaveLength(1);
    // The killed worker's lock file stays, as a killed restic's does; restic treats it as stale only while
    // its PID is unused, which a busy machine does not promise. Integrity is what this checks.
    await restic(env.repositoryPath, password, '--no-lock', 'check', '--read-data');
    await until(() => app.runtime.db.snapshot.findFirstOrThrow({ where: { environmentId: env.id } }), (sn) => sn.status === 'READY', 'the snapshot to be READY');
  });
});
