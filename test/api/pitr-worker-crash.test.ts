/**
 * A base backup whose worker is killed (SIGKILL: no chance to clean up) with no attempts left: the
 * stale operation sweep of the next worker ends it. Like worker-crash.test.ts for snapshots, the
 * test ages the dead worker's heartbeat itself rather than wait out OPERATION_STALE_MS.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ScratchPostgres } from '../../src/db/pg-server.ts';
import { startPitrSupervisor } from '../../src/services/pitr-streamer.ts';
import { CreateBaseBackupDocument } from '../generated/graphql.ts';
import { testEnv, type TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { repositoryPassword, sql } from '../harness/live-environment.ts';
import { startWalArchivingSuite, type WalArchivingSuite } from '../harness/pitr-fixture.ts';
import { startServerProcess, until, type ServerProcess } from '../harness/process.ts';
import { waitFor } from '../harness/schedule-helpers.ts';
import { restic } from '../harness/snapshot-helpers.ts';

let suite: WalArchivingSuite;
let app: TestApp;
let key: string;
let source: ScratchPostgres;
let envId: string;
let destinationId: string;
let repoPath: string;
let home: string;
const secretKey = randomBytes(32).toString('hex');
const workers: ServerProcess[] = [];
const db = () => app.runtime.db;

beforeAll(async () => {
  suite = await startWalArchivingSuite({
    name: 'pitr-crash',
    home: true,
    secretKey,
    seed: (url) => sql(url, 'CREATE TABLE t (id serial PRIMARY KEY, pad text); INSERT INTO t (pad) SELECT md5(i::text) FROM generate_series(1, 10000) i'),
  });
  ({ app, key, source, envId, destinationId, repoPath, tmp: home } = suite);
}, 120_000);

afterEach(async () => {
  for (const w of workers.splice(0)) await w.stop();
});

afterAll(() => suite?.stop());

function worker() {
  return startServerProcess(testEnv(app.databaseUrl, secretKey, { OPERATION_HEARTBEAT_MS: '500', BACKPLANE_HOME: home }), 'worker').then((w) => (workers.push(w), w));
}

async function kill(w: ServerProcess) {
  w.child.kill('SIGKILL');
  if (w.child.exitCode === null && w.child.signalCode === null) await new Promise((r) => w.child.once('exit', r));
}

async function tagged(baseBackupId: string): Promise<{ id: string }[]> {
  // No repository before the job's first open of it.
  if (!(await fs.stat(path.join(repoPath, 'config')).catch(() => null))) return [];
  return JSON.parse(await restic(repoPath, await repositoryPassword(app, destinationId), '--no-lock', 'snapshots', '--json', '--tag', `base-backup:${baseBackupId}`)) as { id: string }[];
}

describe('a base backup whose worker dies with no attempts left', () => {
  it('ends FAILED with the reason, its repository snapshot forgotten, and BASE_BACKUP_FAILED raised', { timeout: 300_000 }, async () => {
    const started = await app.gql(CreateBaseBackupDocument, { input: { environmentId: gid('Environment', envId) } }, { key });
    const payload = started.data!.createBaseBackup;
    if (payload.__typename !== 'BaseBackupOperationPayload') throw new Error(JSON.stringify(payload));
    const bb = await db().baseBackup.findFirstOrThrow({ where: { operationId: { not: null } } });
    const opId = bb.operationId!;
    await db().$queryRawUnsafe('SELECT id FROM graphile_worker.reschedule_jobs(ARRAY(SELECT id FROM graphile_worker.jobs WHERE key = $1), max_attempts => 1)', `op:${opId}`);
    // Holding the row keeps the job from recording what it wrote: the moment a crash leaves a
    // repository snapshot no row names.
    const holder = new pg.Client({ connectionString: app.databaseUrl });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM base_backups WHERE id = $1 FOR UPDATE', [bb.id]);
    const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;

    try {
      const first = await worker();
      await until(() => tagged(bb.id), (l) => l.length === 1, 'the base backup written into the repository', 180_000);
      expect((await db().operation.findUniqueOrThrow({ where: { id: opId } })).status).toBe('RUNNING');
      await kill(first);
      // Its pg_receivewal runs in a process group of its own and outlives it: end it the way a
      // lost machine would, by its connection.
      await sql(source.adminUrl, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'backplane-receivewal'");
    } finally {
      // The dead worker's catalog connection still waits on the row.
      await sql(app.databaseUrl, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [holderPid]);
      await holder.query('ROLLBACK');
      await holder.end();
    }

    await db().operation.update({ where: { id: opId }, data: { heartbeatAt: new Date(Date.now() - 3_600_000) } });
    await worker();
    const op = await until(() => db().operation.findUniqueOrThrow({ where: { id: opId } }), (o) => o.status !== 'RUNNING', 'the operation to be recovered', 60_000);
    expect(op.status).toBe('FAILED');
    expect(op.error).toContain('stopped responding while uploading');
    const row = await until(() => db().baseBackup.findUniqueOrThrow({ where: { id: bb.id } }), (r) => r.status !== 'CREATING', 'the base backup row to end');
    expect(row.status).toBe('FAILED');
    expect(row.error).toContain('stopped responding while uploading');
    expect(row.error).toContain('forgot the repository snapshot');
    const alert = await until(() => db().alert.findFirst({ where: { environmentId: envId, type: 'BASE_BACKUP_FAILED', operationId: opId } }), (a) => a !== null, 'BASE_BACKUP_FAILED');
    expect(alert!.message).toContain('stopped responding');
    expect(await tagged(bb.id)).toEqual([]);
    await restic(repoPath, await repositoryPassword(app, destinationId), 'check');
  });
});

/** The pg_receivewal a worker process started, by its pid (its children). */
function receiverOf(parent: number): Promise<number | null> {
  return new Promise((resolve, reject) =>
    execFile('ps', ['-o', 'pid=,comm=', '--ppid', String(parent)], (err, out) => {
      // ps exits 1 when the process has no children.
      if (err && (err as { code?: number }).code !== 1) return reject(err);
      const line = out.split('\n').find((l) => l.trim().endsWith('pg_receivewal'));
      resolve(line ? Number(line.trim().split(/\s+/)[0]) : null);
    }),
  );
}

/** Whether process `pid` runs (an orphan's zombie, which nobody may reap here, does not). */
async function running(pid: number): Promise<boolean> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  return stat !== null && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
}

describe('a worker killed while it streams', () => {
  it('its pg_receivewal, orphaned and still holding the slot, is ended by the streamer that takes the lease over, which then archives', { timeout: 300_000 }, async () => {
    const receivers = async () => Number((await sql(source.adminUrl, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE application_name = 'backplane-receivewal' AND state = 'streaming'")).rows[0].n);
    const w = await worker();
    const orphan = await until(() => receiverOf(w.child.pid!), (p) => p !== null, "the worker's pg_receivewal", 120_000);
    await until(receivers, (n) => n === 1, 'it streaming', 60_000);
    await kill(w);
    expect(await running(orphan!)).toBe(true);
    // The dead worker's lease, aged rather than waited out.
    await db().pitrCluster.updateMany({ data: { leaseExpiresAt: new Date(Date.now() - 1_000) } });
    const heir = startPitrSupervisor(app.runtime.deps, { home, workerId: 'heir', tickMs: 200, leaseMs: 3_000 });
    try {
      await waitFor(() => running(orphan!), (alive) => !alive, 'the orphaned pg_receivewal to end', 60_000);
      // The heir streams: a segment completed now reaches the catalog.
      await sql(source.url('app'), "INSERT INTO t (pad) SELECT md5(i::text) FROM generate_series(1, 1000) i");
      const name = (await sql(source.adminUrl, 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS n')).rows[0].n as string;
      await sql(source.adminUrl, 'SELECT pg_switch_wal()');
      await waitFor(async () => (await db().walUpload.findMany()).flatMap((u) => u.files), (f) => f.includes(name), `segment ${name} archived by the heir`, 120_000);
      expect(await receivers()).toBe(1);
    } finally {
      await heir.stop();
      if (await running(orphan!)) process.kill(orphan!, 'SIGKILL');
    }
  });
});
