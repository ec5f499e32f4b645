/**
 * The snapshot job (runSnapshot) at its limits, on a real environment (PostgreSQL through the real
 * pg_dump, a files folder, two LOCAL repositories read back by stock restic): the timeout, an
 * environment without settings, a copy to the second destination that fails, every destination
 * failing, a failed scheduled snapshot handed to its schedule, and the figures a finished snapshot
 * records (progress, dump size, the RETRY policy's delay); a source that fails, which no
 * destination is blamed for, and a cancel that stops the capture or a copy under way.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/services/schedules.ts';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Runtime } from '../../src/app/runtime.ts';
import { Lock } from '../../src/engine/api.ts';
import { cancelOperation } from '../../src/services/operations.ts';
import { openRepository } from '../../src/services/repositories.ts';
import type { Deps } from '../../src/services/deps.ts';
import { createSnapshot, runSnapshot } from '../../src/services/snapshots.ts';
import type { Viewer } from '../../src/services/viewer.ts';
import { makeOrganization } from '../harness/factories.ts';
import { makeLiveEnvironment, repositoryPassword, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { waitFor } from '../harness/schedule-helpers.ts';
import { addSecondDestination, startServiceRuntime, viewerOf } from '../harness/service-runtime.ts';
import { restic } from '../harness/snapshot-helpers.ts';

let rt: Runtime;
let deps: Deps;
let viewer: Viewer;
let env: LiveEnvironment;
let second: { id: string; path: string };
const NOW = new Date();

async function resticSnapshots(destinationId: string): Promise<{ id: string; tags?: string[] }[]> {
  const d = await rt.db.destination.findUniqueOrThrow({ where: { id: destinationId } });
  if (!d.repositoryPasswordEncrypted) return [];
  return JSON.parse(await restic(String((d.config as { path: string }).path), await repositoryPassword({ runtime: rt }, destinationId), 'snapshots', '--json'));
}
const tagged = async (destinationId: string, snapshotId: string) => (await resticSnapshots(destinationId)).filter((s) => s.tags?.includes(`snapshot:${snapshotId}`));

/** The rows a snapshot's job left: the snapshot with its copies, its operation, its alerts. */
async function outcome(operationId: string, snapshotId: string) {
  return {
    snapshot: await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId }, include: { copies: true } }),
    op: await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } }),
    alerts: await rt.db.alert.findMany({ where: { operationId } }),
  };
}

async function takeSnapshot(includes: ('DB' | 'FILES')[] = ['DB', 'FILES'], kind?: 'SCHEDULED') {
  const { operationId, snapshotId } = await createSnapshot(deps, viewer, { environmentId: env.id, includes }, kind ? { kind } : undefined);
  await runSnapshot(deps, operationId);
  return outcome(operationId, snapshotId);
}
const copyOn = <C extends { destinationId: string }>(s: { copies: C[] }, destinationId: string): C => s.copies.find((c) => c.destinationId === destinationId)!;

/** Breaks a destination (a regular file where its repository is) for the length of `body`. */
async function withBroken<T>(destinationIds: string[], body: () => Promise<T>): Promise<T> {
  const saved = await rt.db.destination.findMany({ where: { id: { in: destinationIds } } });
  for (const d of saved) {
    const blocker = path.join(path.dirname(env.filesPath), `blocker-${d.id}`);
    await fs.writeFile(blocker, '');
    await rt.db.destination.update({ where: { id: d.id }, data: { config: { path: path.join(blocker, 'repo') }, repositoryId: null } });
  }
  try {
    return await body();
  } finally {
    for (const d of saved) await rt.db.destination.update({ where: { id: d.id }, data: { config: d.config!, repositoryId: d.repositoryId } });
  }
}

const jobsOf = (task: string) =>
  rt.db.$queryRawUnsafe<{ payload: Record<string, string>; run_at: Date }[]>(
    'SELECT p.payload, j.run_at FROM graphile_worker.jobs j JOIN graphile_worker._private_jobs p ON p.id = j.id WHERE j.task_identifier = $1',
    task,
  );

beforeAll(async () => {
  rt = await startServiceRuntime('snapshot_limits');
  deps = { ...rt.deps, clock: { now: () => NOW } };
  const org = await makeOrganization(rt.db);
  viewer = viewerOf(org.id);
  env = await makeLiveEnvironment({ runtime: rt }, { organizationId: org.id, name: 'production', rows: 40 });
  second = await addSecondDestination(rt, org.id, env);
});
afterAll(() => rt?.close());

describe('runSnapshot at its limits', () => {
  it('records progress that ends at the snapshot size, and the dump size that restic lists', async () => {
    const { snapshot, op } = await takeSnapshot();
    expect(op.status).toBe('SUCCEEDED');
    expect({ bytesDone: op.bytesDone, bytesTotal: op.bytesTotal }).toEqual({ bytesDone: snapshot.sizeBytes, bytesTotal: snapshot.sizeBytes });
    const repoId = copyOn(snapshot, env.destinationId).repoSnapshotId!;
    const d = await rt.db.destination.findUniqueOrThrow({ where: { id: env.destinationId } });
    const out = await restic(String((d.config as { path: string }).path), await repositoryPassword({ runtime: rt }, env.destinationId), 'ls', '--json', repoId, '/db');
    const dump = out.trim().split('\n').map((l) => JSON.parse(l) as { type?: string; path?: string; size?: number }).find((n) => n.type === 'file');
    expect(dump?.path).toBe(`/db/${new URL(env.databaseUrl).pathname.slice(1)}.dump`);
    expect(snapshot.dumpBytes).toBe(BigInt(dump!.size!));
  });

  it('an environment without settings: the default timeout and failure policy (a failed copy only alerts)', async () => {
    await rt.db.environmentSettings.delete({ where: { environmentId: env.id } });
    try {
      const { snapshot, op, alerts } = await withBroken([second.id], () => takeSnapshot(['DB']));
      expect(op).toMatchObject({ status: 'SUCCEEDED', error: null });
      expect(snapshot.status).toBe('READY');
      expect(copyOn(snapshot, env.destinationId)).toMatchObject({ status: 'READY' });
      expect(copyOn(snapshot, second.id)).toMatchObject({ status: 'FAILED', repoSnapshotId: null, error: expect.any(String) });
      expect(alerts).toMatchObject([{ type: 'COPY_FAILED', severity: 'WARNING', environmentId: env.id }]);
      expect(await rt.db.operation.count({ where: { type: 'COPY_SNAPSHOT', snapshotId: snapshot.id } })).toBe(0);
    } finally {
      await rt.db.environmentSettings.create({ data: { environmentId: env.id } });
    }
  });

  it('a timeout of 0 s fails the snapshot with an alert and nothing written', async () => {
    await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { timeoutSeconds: 0 } });
    try {
      const { snapshot, op, alerts } = await takeSnapshot(['DB']);
      expect(op).toMatchObject({ status: 'FAILED', error: 'Timed out after 0 s' });
      expect(snapshot).toMatchObject({ status: 'FAILED', error: 'Timed out after 0 s' });
      expect(alerts).toMatchObject([{ type: 'SNAPSHOT_FAILED', message: 'Snapshot of production failed: Timed out after 0 s' }]);
      expect(await tagged(env.destinationId, snapshot.id)).toEqual([]);
    } finally {
      await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { timeoutSeconds: 3600 } });
    }
  });

  it('every destination failing fails the snapshot; a scheduled one is handed to its schedule, a manual one is not', async () => {
    const scheduled = await withBroken([env.destinationId, second.id], () => takeSnapshot(['DB'], 'SCHEDULED'));
    expect(scheduled.op.status).toBe('FAILED');
    expect(scheduled.snapshot.status).toBe('FAILED');
    expect(scheduled.snapshot.copies.map((c) => c.status)).toEqual(['FAILED', 'FAILED']);
    expect(scheduled.alerts.map((a) => a.type).sort()).toEqual(['COPY_FAILED', 'SNAPSHOT_FAILED']);
    expect((await jobsOf('schedule_react')).map((j) => j.payload)).toEqual([{ snapshotId: scheduled.snapshot.id }]);
    const manual = await withBroken([env.destinationId, second.id], () => takeSnapshot(['DB']));
    expect(manual.snapshot.status).toBe('FAILED');
    expect((await jobsOf('schedule_react')).map((j) => j.payload)).toEqual([{ snapshotId: scheduled.snapshot.id }]);
  });

  it('PAUSE_SCHEDULE: a snapshot every destination holds is READY; one a destination failed is FAILED', async () => {
    await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { failurePolicy: 'PAUSE_SCHEDULE' } });
    try {
      const whole = await takeSnapshot(['DB']);
      expect(whole.snapshot.status).toBe('READY');
      expect(whole.snapshot.copies.map((c) => c.status)).toEqual(['READY', 'READY']);
      const partial = await withBroken([second.id], () => takeSnapshot(['DB']));
      expect(partial.snapshot).toMatchObject({ status: 'FAILED', error: expect.stringContaining('1 of 2 destinations failed') });
    } finally {
      await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { failurePolicy: 'ALERT_ONLY' } });
    }
  });

  it("RETRY queues the failed copy after the environment's retry backoff", async () => {
    await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { failurePolicy: 'RETRY', retryBackoffSeconds: 90 } });
    try {
      const { snapshot } = await withBroken([second.id], () => takeSnapshot(['DB']));
      expect(snapshot.status).toBe('READY');
      const copyOps = await rt.db.operation.findMany({ where: { type: 'COPY_SNAPSHOT', snapshotId: snapshot.id } });
      expect(copyOps.map((o) => o.input)).toEqual([{ destinationId: second.id }]);
      const job = (await jobsOf('snapshot_copy')).find((j) => j.payload.operationId === copyOps[0].id)!;
      expect(job.run_at).toEqual(new Date(NOW.getTime() + 90_000));
    } finally {
      await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { failurePolicy: 'ALERT_ONLY', retryBackoffSeconds: 60 } });
    }
  });
});

/** Points the environment at another database URL for the length of `body`. */
async function withDatabaseUrl<T>(url: string, body: () => Promise<T>): Promise<T> {
  const good = await rt.db.environment.findUniqueOrThrow({ where: { id: env.id } });
  await rt.db.environment.update({ where: { id: env.id }, data: { databaseUrlEncrypted: deps.secrets.seal(url) } });
  try {
    return await body();
  } finally {
    await rt.db.environment.update({ where: { id: env.id }, data: { databaseUrlEncrypted: good.databaseUrlEncrypted } });
  }
}

/**
 * Starts a snapshot whose job meets something the test holds (`hold` returns its release), and
 * checks that the job ends, once `stop` has run, while that is still held: a stop that only took
 * effect once the capture or copy got through by itself would not.
 */
async function snapshotStoppedWhileHeld(hold: () => Promise<() => Promise<void>>, stop: (operationId: string, snapshotId: string) => Promise<void>) {
  const { operationId, snapshotId } = await createSnapshot(deps, viewer, { environmentId: env.id, includes: ['DB'] });
  const release = await hold();
  const job = runSnapshot(deps, operationId).then(() => 'ended', (err: unknown) => err);
  try {
    await stop(operationId, snapshotId);
    expect(await Promise.race([job, new Promise((r) => setTimeout(r, 20_000, 'still running'))])).toBe('ended');
  } finally {
    await release();
    await job;
  }
  return outcome(operationId, snapshotId);
}

/** What a failed or cancelled snapshot must leave: every copy FAILED with the snapshot's error, nothing in any repository. */
async function expectNothingKept(snapshot: { id: string; error: string | null; copies: { status: string; repoSnapshotId: string | null; error: string | null }[] }) {
  expect(snapshot.copies.map((c) => [c.status, c.repoSnapshotId, c.error])).toEqual([['FAILED', null, snapshot.error], ['FAILED', null, snapshot.error]]);
  expect(await tagged(env.destinationId, snapshot.id)).toEqual([]);
  expect(await tagged(second.id, snapshot.id)).toEqual([]);
}

describe('runSnapshot: a failing source is no destination’s fault; a stop stops what runs', () => {
  it('pg_dump failing during the capture fails the snapshot without blaming the destination or trying the next', async () => {
    const role = `bp_limited_${randomBytes(4).toString('hex')}`;
    await sql(env.databaseUrl, `CREATE ROLE ${role} LOGIN PASSWORD 'limited'`);
    const url = new URL(env.databaseUrl);
    url.username = role;
    url.password = 'limited';
    // It may connect and size the database, but not read its tables: pg_dump exits 1 part way.
    const { snapshot, op, alerts } = await withDatabaseUrl(url.toString(), () => takeSnapshot(['DB']));
    expect(op).toMatchObject({ status: 'FAILED', error: expect.stringContaining('permission denied') });
    expect(snapshot).toMatchObject({ status: 'FAILED', error: op.error });
    expect(alerts.map((a) => a.type)).toEqual(['SNAPSHOT_FAILED']);
    await expectNothingKept(snapshot);
  });

  it('pg_dump that cannot even start fails the snapshot without blaming the destination', async () => {
    // node-pg ignores this libpq parameter, so the database is sized; pg_dump's environment
    // cannot hold its NUL byte, so pg_dump is never started.
    const url = new URL(env.databaseUrl);
    url.searchParams.set('krbsrvname', '\0');
    const { snapshot, op, alerts } = await withDatabaseUrl(url.toString(), () => takeSnapshot(['DB']));
    expect(op.status).toBe('FAILED');
    expect(snapshot).toMatchObject({ status: 'FAILED', error: op.error });
    expect(alerts.map((a) => a.type)).toEqual(['SNAPSHOT_FAILED']);
    await expectNothingKept(snapshot);
  });

  it('a cancel while pg_dump waits for a table lock stops pg_dump and the backup: CANCELLED, nothing kept', async () => {
    let locker: pg.Client;
    const { snapshot, op, alerts } = await snapshotStoppedWhileHeld(
      async () => {
        locker = new pg.Client({ connectionString: env.databaseUrl });
        await locker.connect();
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE customers IN ACCESS EXCLUSIVE MODE');
        return async () => {
          await locker.query('ROLLBACK');
          await locker.end();
        };
      },
      async (operationId) => {
        await waitFor(
          () => sql(env.databaseUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'backplane-dump' AND wait_event_type = 'Lock'"),
          (r) => r.rows[0].n === 1,
          'pg_dump to wait for the table lock',
        );
        await cancelOperation(deps, viewer, operationId);
      },
    );
    expect(op).toMatchObject({ status: 'CANCELLED', error: 'Cancelled' });
    expect(snapshot).toMatchObject({ status: 'FAILED', error: 'Cancelled' });
    expect(alerts).toEqual([]);
    await expectNothingKept(snapshot);
    // pg_dump was stopped, not left waiting.
    expect((await sql(env.databaseUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'backplane-dump'")).rows[0].n).toBe(0);
  });

  it('a cancel while the copy to the next destination waits for its lock: CANCELLED, no copy failure alerted, nothing kept', async () => {
    const { snapshot, op, alerts } = await snapshotStoppedWhileHeld(
      async () => {
        // A prune's exclusive lock on the second destination's repository.
        const opened = await openRepository(deps, second.id);
        const lock = await Lock.acquire(opened.repo, true);
        return async () => {
          await lock.release();
          await opened.close();
        };
      },
      async (operationId, snapshotId) => {
        await waitFor(() => rt.db.snapshotCopy.findMany({ where: { snapshotId } }), (cs) => copyOn({ copies: cs }, second.id).status === 'UPLOADING', 'the copy to the second destination to start');
        expect(copyOn({ copies: await rt.db.snapshotCopy.findMany({ where: { snapshotId } }) }, env.destinationId).status).toBe('READY');
        await cancelOperation(deps, viewer, operationId);
      },
    );
    expect(op).toMatchObject({ status: 'CANCELLED', error: 'Cancelled' });
    expect(snapshot).toMatchObject({ status: 'FAILED', error: 'Cancelled' });
    expect(alerts).toEqual([]);
    await expectNothingKept(snapshot);
  });
});
