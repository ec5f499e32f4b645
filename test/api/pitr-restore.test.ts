/**
 * Restore and clone to a point in time, through the API and a worker, from a repository the
 * PITR fixture archived (base backups + WAL as the layout says) while a workload committed
 * rows stamped with clock_timestamp(): exactly the rows committed at or before the time come
 * back, nothing after; other databases of the cluster stay as they are; a clone leaves the
 * environment's database untouched; refusals are typed and change nothing.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelOperationDocument, PitrRestoreLogDocument, RestoreToPointInTimeDocument, SwitchDatabaseDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { sql } from '../harness/live-environment.ts';
import { startPitrRestoreSuite, startWorkload, timeBetweenCommits, type PitrCluster, type PitrRestoreSuite } from '../harness/pitr-fixture.ts';
import { follow, takeSnapshot } from '../harness/snapshot-helpers.ts';
import { spawn } from 'node:child_process';
import { processAlive } from '../../src/db/pg-server.ts';
import { recoverStaleOperations } from '../../src/services/operations.ts';
import { openRepository } from '../../src/services/repositories.ts';
import { restoreIdOf } from '../../src/services/restore-leftovers.ts';
import { makePitrWorkDir } from '../../src/sources/pitr-instance.ts';
import { until } from '../harness/process.ts';
import { listSnapshots, packsOfSnapshots, resolvePath, walk } from '../../src/engine/api.ts';
import { PITR_WAL_TAG, walPath } from '../../src/sources/pitr-layout.ts';

let suite: PitrRestoreSuite;
let app: TestApp;
let key: string;
let cluster: PitrCluster;
let home: string;
let envId: string;
let filesPath: string;
/** When the archive starts to cover (the first base backup finished) and up to when it reaches. */
let firstBase: Date;
let archivedUntil: Date;
/** A time between two commits, after the first base backup, and how many rows were committed by then. */
let target: { t: Date; expected: number };
let totalRows: number;
/** The files snapshot finished before the point in time, and the files as it holds them. */
let filesSnapshotId: string;

const shop = () => cluster.url('shop');

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-home-'));
  filesPath = path.join(home, 'files');
  await fs.mkdir(filesPath);
  await fs.writeFile(path.join(filesPath, 'a.txt'), 'as snapshotted\n');
  suite = await startPitrRestoreSuite({ home, repository: path.join(home, 'repository'), filesPath });
  ({ app, key, cluster, envId } = suite);
  await sql(cluster.url(), 'CREATE DATABASE other');
  await sql(cluster.url('other'), "CREATE TABLE t (v text); INSERT INTO t VALUES ('before')");

  const opened = await openRepository(app.runtime.deps, suite.destinationId);
  try {
    const workload = startWorkload(shop());
    await cluster.archiveWal(opened.repo);
    firstBase = (await cluster.baseBackup(opened.repo)).time;
    await cluster.archiveWal(opened.repo, { switchSegment: true });
    // A files snapshot finished before the point in time (files come from the newest such one).
    filesSnapshotId = (await takeSnapshot(app, key, envId, { includes: ['FILES'] })).snapshotId;
    await fs.writeFile(path.join(filesPath, 'a.txt'), 'changed after the snapshot\n');
    const afterBase = new Date();
    while (workload.committed() < 40) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 1000));
    archivedUntil = (await cluster.archiveWal(opened.repo)).time;
    await workload.stop();
    target = await timeBetweenCommits(shop(), new Date(afterBase.getTime() + 300), archivedUntil);
    totalRows = (await sql(shop(), 'SELECT count(*)::int AS n FROM pitr_rows')).rows[0].n;
    expect(totalRows).toBeGreaterThan(target.expected);
    // After the point in time, in another database of the cluster: a restore must not undo it.
    await sql(cluster.url('other'), "UPDATE t SET v = 'after'");
  } finally {
    await opened.close();
  }
}, 300_000);

afterAll(async () => {
  await suite?.stop();
  if (home) await fs.rm(home, { recursive: true, force: true });
});

async function restoreToTime(input: Record<string, unknown>) {
  return app.gql(RestoreToPointInTimeDocument, { input: { environmentId: gid('Environment', envId), ...input } as never }, { key });
}

async function started(input: Record<string, unknown>) {
  const res = await restoreToTime(input);
  const r = res.data?.restoreToPointInTime;
  if (r?.__typename !== 'RestorePayload') throw new Error(JSON.stringify(res));
  return { operationId: r.operation.id, restoreLogId: r.restoreLog.id };
}

const rowsIn = async (url: string) => (await sql(url, 'SELECT count(*)::int AS n, max(stamped) AS newest FROM pitr_rows')).rows[0] as { n: number; newest: Date };

describe('restoreToPointInTime', () => {
  it('to a time after the last commit the archive holds: everything archived comes back, and the log says it replayed to the end', async () => {
    const d = await app.runtime.db.environmentDestination.findFirstOrThrow({ where: { environmentId: envId } });
    const opened = await openRepository(app.runtime.deps, d.destinationId);
    let idleUntil: Date;
    try {
      idleUntil = (await cluster.archiveWal(opened.repo)).time;
      // The archive now reaches here: the refusal of a later time below must start from it
      // (on a busy machine this upload came more than the second after archivedUntil it tries).
      archivedUntil = idleUntil;
    } finally {
      await opened.close();
    }
    const { operationId, restoreLogId } = await started({ pointInTime: new Date(idleUntil.getTime() - 1).toISOString(), cloneDatabaseName: 'shop_idle' });
    const states = await follow(app, key, operationId);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    const log = (await app.gql(PitrRestoreLogDocument, { id: restoreLogId }, { key })).data?.node as { recoveredFrom: string };
    expect((await rowsIn(cluster.url('shop_idle'))).n, log.recoveredFrom).toBe(totalRows);
    expect(log.recoveredFrom).toContain('replayed to the end of the archive');
  });

  it('clone: a new database holds exactly the rows committed at or before the time; the environment and its database stay as they were; switchDatabase goes there and back', async () => {
    const asked = { pointInTime: target.t.toISOString(), cloneDatabaseName: 'shop_clone', idempotencyKey: 'clone-1' };
    const { operationId, restoreLogId } = await started(asked);
    expect((await started(asked)).operationId).toBe(operationId);
    const states = await follow(app, key, operationId);
    // Replayed after it ended too (its clone exists now), and refused with another input.
    expect((await started(asked)).operationId).toBe(operationId);
    const reused = await restoreToTime({ ...asked, pointInTime: new Date(target.t.getTime() - 1).toISOString() });
    expect(reused.data?.restoreToPointInTime).toMatchObject({ __typename: 'ConflictError', code: 'IDEMPOTENCY_KEY_REUSED' });
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });

    const clone = cluster.url('shop_clone');
    const rows = await rowsIn(clone);
    expect(rows.n).toBe(target.expected);
    expect(rows.newest.getTime()).toBeLessThanOrEqual(target.t.getTime());
    expect((await rowsIn(shop())).n).toBe(totalRows);
    const env = await app.runtime.db.environment.findUniqueOrThrow({ where: { id: envId } });
    expect(env.databaseName).toBe('shop');

    const log = (await app.gql(PitrRestoreLogDocument, { id: restoreLogId }, { key })).data?.node as Record<string, unknown>;
    expect(log).toMatchObject({ status: 'SUCCEEDED', cloneDatabaseName: 'shop_clone', includes: ['DB'], safetySnapshot: null, pointInTime: target.t.toISOString() });
    expect(log.recoveredFrom).toMatch(/base backup .* WAL 0000000100000000000000/);
    // The work folder (base backup, WAL, the temporary instance) is gone.
    expect((await fs.readdir(home)).filter((n) => n.startsWith('pitr-restore-'))).toEqual([]);

    const there = await app.gql(SwitchDatabaseDocument, { input: { environmentId: gid('Environment', envId), databaseName: 'shop_clone' } }, { key });
    expect(there.data?.switchDatabase).toMatchObject({ environment: { databaseName: 'shop_clone', previousDatabaseName: 'shop' } });
    const back = await app.gql(SwitchDatabaseDocument, { input: { environmentId: gid('Environment', envId), databaseName: 'shop' } }, { key });
    expect(back.data?.switchDatabase).toMatchObject({ environment: { databaseName: 'shop', previousDatabaseName: 'shop_clone' } });
    const missing = await app.gql(SwitchDatabaseDocument, { input: { environmentId: gid('Environment', envId), databaseName: 'no_such_db' } }, { key });
    expect(missing.data?.switchDatabase).toMatchObject({ __typename: 'ValidationError' });
  });

  it('into the environment (SWAP): the database holds exactly the rows committed at or before the time, files come from the newest files snapshot before it, other databases of the cluster are untouched, phases are named', async () => {
    const { operationId, restoreLogId } = await started({ pointInTime: target.t.toISOString() });
    const states = await follow(app, key, operationId);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    // Recovery takes seconds (a PostgreSQL start and the replay): long enough to be seen.
    expect(states.map((s) => s.phase)).toContain('replaying-wal');
    const rows = await rowsIn(shop());
    expect(rows.n).toBe(target.expected);
    expect(rows.newest.getTime()).toBeLessThanOrEqual(target.t.getTime());
    expect((await sql(cluster.url('other'), 'SELECT v FROM t')).rows).toEqual([{ v: 'after' }]);
    expect(await fs.readFile(path.join(filesPath, 'a.txt'), 'utf8')).toBe('as snapshotted\n');
    const log = (await app.gql(PitrRestoreLogDocument, { id: restoreLogId }, { key })).data?.node as Record<string, unknown> & { previousDatabaseName: string; recoveredFrom: string };
    expect(log).toMatchObject({ status: 'SUCCEEDED', includes: ['DB', 'FILES'], snapshot: { id: filesSnapshotId }, safetySnapshot: { kind: 'SAFETY', status: 'READY' } });
    const filesRow = await app.runtime.db.snapshot.findFirstOrThrow({ where: { environmentId: envId, kind: 'MANUAL' } });
    expect(gid('Snapshot', filesRow.id)).toBe(filesSnapshotId);
    expect(log.recoveredFrom).toContain(`files from snapshot ${filesRow.id}`);
    // The database it replaced, with every row, is kept aside.
    expect((await rowsIn(cluster.url(log.previousDatabaseName))).n).toBe(totalRows);
  });

  it('IN_PLACE: the recovered database is restored into the existing one, in one transaction', async () => {
    await sql(shop(), "INSERT INTO pitr_rows (stamped, payload) VALUES (now(), 'after everything')");
    const { operationId } = await started({ pointInTime: target.t.toISOString(), includes: ['DB'], strategy: 'IN_PLACE', createSafetySnapshot: false });
    const states = await follow(app, key, operationId);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect((await rowsIn(shop())).n).toBe(target.expected);
    expect((await sql(cluster.url(), "SELECT datname FROM pg_database WHERE datname LIKE '%bp_%'")).rows.filter((r) => String(r.datname).includes('bp_restore'))).toEqual([]);
  });

  it('refuses, typed and changing nothing: a time in the future, before the first base backup, after the newest archived WAL; a clone name taken', async () => {
    const before = await app.runtime.db.operation.count();
    const future = await restoreToTime({ pointInTime: new Date(Date.now() + 3_600_000).toISOString() });
    expect(future.data?.restoreToPointInTime).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'pointInTime'] }] });
    const early = await restoreToTime({ pointInTime: new Date(firstBase.getTime() - 1000).toISOString() });
    expect(early.data?.restoreToPointInTime).toMatchObject({ __typename: 'ConflictError', code: 'PITR_BEFORE_FIRST_BASE_BACKUP' });
    const late = await restoreToTime({ pointInTime: new Date(archivedUntil.getTime() + 1000).toISOString() });
    expect(late.data?.restoreToPointInTime).toMatchObject({ __typename: 'ConflictError', code: 'PITR_AFTER_ARCHIVED_WAL' });
    const taken = await restoreToTime({ pointInTime: target.t.toISOString(), cloneDatabaseName: 'other' });
    expect(taken.data?.restoreToPointInTime).toMatchObject({ __typename: 'ConflictError', code: 'NAME_TAKEN' });
    const noFiles = await restoreToTime({ pointInTime: new Date(firstBase.getTime() + 1).toISOString(), includes: ['DB', 'FILES'] });
    expect(noFiles.data?.restoreToPointInTime).toMatchObject({ __typename: 'ValidationError' });
    expect(await app.runtime.db.operation.count()).toBe(before);
  });

  it('cancelled while replaying WAL: the target is as it was, and the instance and its work folder are gone', async () => {
    const before = await rowsIn(shop());
    const { operationId } = await started({ pointInTime: target.t.toISOString(), includes: ['DB'], createSafetySnapshot: false });
    await follow(app, key, operationId, (s) => s.phase === 'replaying-wal');
    const cancel = await app.gql(CancelOperationDocument, { input: { id: operationId } }, { key });
    expect(JSON.stringify(cancel)).not.toContain('"errors"');
    const states = await follow(app, key, operationId);
    expect(states.at(-1)?.status).toBe('CANCELLED');
    expect(await rowsIn(shop())).toEqual(before);
    expect((await fs.readdir(home)).filter((n) => n.startsWith('pitr-restore-'))).toEqual([]);
    expect((await sql(cluster.url(), "SELECT datname FROM pg_database WHERE datname LIKE '%bp_restore%'")).rows).toEqual([]);
  });

  it('WAL that cannot be read (its packs gone from the repository): the restore fails with the fetch\'s error, the target is as it was, and no instance or work folder is left', async () => {
    const link = await app.runtime.db.environmentDestination.findFirstOrThrow({ where: { environmentId: envId } });
    const moved: string[] = [];
    try {
      const opened = await openRepository(app.runtime.deps, link.destinationId);
      try {
        const all = await listSnapshots(opened.repo);
        const isWal = (s: (typeof all)[number]) => s.tags?.includes(PITR_WAL_TAG) ?? false;
        const elsewhere = await packsOfSnapshots(opened.repo, all.filter((s) => !isWal(s)).map((s) => s.id));
        // Packs of the WAL's content only: the planner reads the WAL snapshots' trees.
        const walData = new Set<string>();
        for (const sn of all.filter(isWal)) {
          const dir = await resolvePath(opened.repo, sn, walPath(cluster.sysid));
          for await (const e of walk(opened.repo, dir.subtree!, '')) {
            for (const id of e.node.content ?? []) walData.add(opened.repo.lookupBlob('data', id)!.packId);
          }
        }
        const walOnly = [...walData].filter((p) => !elsewhere.has(p));
        expect(walOnly.length).toBeGreaterThan(0);
        for (const p of walOnly) {
          const f = path.join(home, 'repository', 'data', p.slice(0, 2), p);
          await fs.rename(f, `${f}.away`);
          moved.push(f);
        }
      } finally {
        await opened.close();
      }
      const before = await rowsIn(shop());
      const { operationId } = await started({ pointInTime: target.t.toISOString(), includes: ['DB'], createSafetySnapshot: false });
      const states = await follow(app, key, operationId);
      expect(states.at(-1)?.status).toBe('FAILED');
      expect(states.at(-1)?.error).toMatch(new RegExp(moved.map((f) => path.basename(f)).join('|')));
      expect(await rowsIn(shop())).toEqual(before);
      expect((await fs.readdir(home)).filter((n) => n.startsWith('pitr-restore-'))).toEqual([]);
      expect((await sql(cluster.url(), "SELECT datname FROM pg_database WHERE datname LIKE '%bp_restore%'")).rows).toEqual([]);
    } finally {
      for (const f of moved) await fs.rename(`${f}.away`, f);
    }
  });

  it('a worker that died mid-recovery: the stale-operation sweep stops the instance it left and removes its work folder', async () => {
    const { db } = app.runtime;
    const env = await db.environment.findUniqueOrThrow({ where: { id: envId } });
    const op = await db.operation.create({
      data: { organizationId: env.organizationId, environmentId: envId, type: 'RESTORE', status: 'RUNNING', phase: 'replaying-wal', heartbeatAt: new Date(Date.now() - 600_000) },
    });
    const log = await db.restoreLog.create({
      data: { organizationId: env.organizationId, sourceEnvironmentId: envId, targetEnvironmentId: envId, operationId: op.id, includes: ['DB'], status: 'RUNNING', pointInTime: target.t },
    });
    const dirs = await makePitrWorkDir(home, restoreIdOf(log.id));
    // Stands in for the postmaster the dead worker started (it ignores nothing PostgreSQL would not).
    const postmaster = spawn('sleep', ['600'], { stdio: 'ignore' });
    await fs.writeFile(path.join(dirs.data, 'postmaster.pid'), `${postmaster.pid}\n${dirs.data}\n`);
    await recoverStaleOperations(app.runtime.deps, 60_000);
    await until(async () => (await fs.readdir(home)).filter((n) => n.startsWith('pitr-restore-')), (l) => l.length === 0, 'the work folder to go', 60_000);
    expect(processAlive(postmaster.pid!)).toBe(false);
    expect((await db.operation.findUniqueOrThrow({ where: { id: op.id } })).status).toBe('FAILED');
  });
});
