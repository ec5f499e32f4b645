/**
 * The restore job (runRestore) called directly, without a server or worker, on real environments:
 * PostgreSQL databases restored by the real pg_restore, files folders, LOCAL repositories. It must
 * put exactly the snapshot's data into exactly the target, take the SAFETY snapshot of the target,
 * and leave the target as it was whenever it does not succeed.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/services/schedules.ts';
import type { Runtime } from '../../src/app/runtime.ts';
import { Lock } from '../../src/engine/api.ts';
import type { Deps } from '../../src/services/deps.ts';
import { HANDED_BACK_MESSAGE } from '../../src/services/operations.ts';
import { openRepository } from '../../src/services/repositories.ts';
import { restoreSnapshot, runRestore } from '../../src/services/restores.ts';
import type { Viewer } from '../../src/services/viewer.ts';
import { adminUrl } from '../harness/database.ts';
import { makeOrganization } from '../harness/factories.ts';
import { makeLiveEnvironment, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { waitFor } from '../harness/schedule-helpers.ts';
import { envState, runRestoreJob, snapshotByJob, startServiceRuntime, viewerOf, type EnvState } from '../harness/service-runtime.ts';

let rt: Runtime;
let deps: Deps;
let viewer: Viewer;
let prod: LiveEnvironment;
let staging: LiveEnvironment;
let snapshotId: string;
let atSnapshot: State;
let prodNow: State;
const NOW = new Date();
const DAY = 86_400_000;

type State = EnvState;
const state = envState;
const snapshot = (env: LiveEnvironment, includes?: ('DB' | 'FILES')[]) => snapshotByJob(deps, viewer, env.id, includes);

/** Requests a restore and runs its job; returns the log, the operation and the target's alerts about it. */
async function restore(input: Parameters<typeof restoreSnapshot>[2], jobSignal?: AbortSignal) {
  const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, input);
  return runRestoreJob(deps, operationId, restoreLogId, jobSignal);
}

/** What a restore may leave beside a target: temp or previous databases, staging folders. */
async function leftovers(env: LiveEnvironment) {
  const name = new URL(env.databaseUrl).pathname.slice(1);
  const dbs = (await sql(adminUrl(), "SELECT datname FROM pg_database WHERE datname LIKE $1 || '\\_\\_bp\\_restore\\_%'", [name])).rows.map((r) => r.datname);
  const dirs = (await fs.readdir(path.dirname(env.filesPath))).filter((f) => f.includes('.bp_restore_'));
  return [...dbs, ...dirs];
}

beforeAll(async () => {
  rt = await startServiceRuntime('restore_job');
  deps = { ...rt.deps, clock: { now: () => NOW } };
  const org = await makeOrganization(rt.db);
  viewer = viewerOf(org.id);
  prod = await makeLiveEnvironment({ runtime: rt }, { organizationId: org.id, name: 'production', rows: 120 });
  staging = await makeLiveEnvironment({ runtime: rt }, { organizationId: org.id, name: 'staging', rows: 40 });
  await rt.db.environmentSettings.update({ where: { environmentId: staging.id }, data: { safetyRetentionDays: 3 } });
  snapshotId = await snapshot(prod);
  atSnapshot = await state(prod);
  // Production moves on after the snapshot: a restore from it must bring back the snapshot, not today's production.
  await sql(prod.databaseUrl, "INSERT INTO customers (name) VALUES ('after the snapshot')");
  await fs.writeFile(path.join(prod.filesPath, 'after.txt'), 'written after the snapshot');
  prodNow = await state(prod);
});
afterAll(() => rt?.close());

describe('runRestore', () => {
  it("puts the snapshot's database and files into another environment, after a SAFETY snapshot of that target; the source is not touched", async () => {
    await fs.writeFile(path.join(staging.filesPath, 'staging-only.txt'), `staging ${Date.now()}`);
    const { log, op, alerts, thrown } = await restore({ snapshotId, targetEnvironmentId: staging.id });
    expect(thrown).toBeNull();
    expect(op).toMatchObject({ status: 'SUCCEEDED', phase: 'done', error: null, environmentId: staging.id });
    expect(log).toMatchObject({ status: 'SUCCEEDED', error: null, completedAt: NOW });
    expect(log.previousDatabaseName).toMatch(/__bp_pre_/);
    // Progress ends at the snapshot's size: every byte of the files and of the dump was counted once.
    const { sizeBytes } = await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId } });
    expect({ bytesDone: op.bytesDone, bytesTotal: op.bytesTotal }).toEqual({ bytesDone: sizeBytes, bytesTotal: sizeBytes });
    expect(alerts).toEqual([]);
    expect(await state(staging)).toEqual(atSnapshot);
    expect(await state(prod)).toEqual(prodNow);
    expect(await leftovers(staging)).toEqual([]);

    const safety = await rt.db.snapshot.findUniqueOrThrow({ where: { id: log.safetySnapshotId! }, include: { copies: true } });
    expect(safety).toMatchObject({ environmentId: staging.id, projectId: staging.projectId, kind: 'SAFETY', status: 'READY', includes: ['DB', 'FILES'], label: 'Before restore', expiresAt: new Date(NOW.getTime() + 3 * DAY) });
    expect(safety.copies).toMatchObject([{ destinationId: staging.destinationId, status: 'READY' }]);
    const safetyOp = await rt.db.operation.findFirstOrThrow({ where: { snapshotId: safety.id } });
    expect(safetyOp).toMatchObject({ environmentId: staging.id, type: 'SNAPSHOT', status: 'SUCCEEDED' });
  });

  it('the database alone: the target keeps its files; no safety snapshot when none is asked for', async () => {
    await fs.writeFile(path.join(staging.filesPath, 'kept.txt'), `kept ${Date.now()}`);
    const before = await state(staging);
    const safetyBefore = await rt.db.snapshot.count({ where: { environmentId: staging.id, kind: 'SAFETY' } });
    const { log, op } = await restore({ snapshotId, targetEnvironmentId: staging.id, includes: ['DB'], createSafetySnapshot: false });
    expect(op.status).toBe('SUCCEEDED');
    expect(log).toMatchObject({ status: 'SUCCEEDED', safetySnapshotId: null });
    expect(await state(staging)).toEqual({ db: atSnapshot.db, files: before.files });
    expect(await rt.db.snapshot.count({ where: { environmentId: staging.id, kind: 'SAFETY' } })).toBe(safetyBefore);
    expect(await state(prod)).toEqual(prodNow);
  });

  it('the files alone: the target keeps its database; the safety snapshot holds only what is restored', async () => {
    await sql(staging.databaseUrl, "INSERT INTO customers (name) VALUES ('kept row')");
    const before = await state(staging);
    const { log, op } = await restore({ snapshotId, targetEnvironmentId: staging.id, includes: ['FILES'] });
    expect(op.status).toBe('SUCCEEDED');
    expect(log.previousDatabaseName).toBeNull();
    expect(await state(staging)).toEqual({ db: before.db, files: atSnapshot.files });
    expect(await rt.db.snapshot.findUniqueOrThrow({ where: { id: log.safetySnapshotId! } })).toMatchObject({ environmentId: staging.id, includes: ['FILES'], status: 'READY' });
    expect(await leftovers(staging)).toEqual([]);
  });

  it('IN_PLACE restores into the live database itself: the same data, no previous database kept', async () => {
    await sql(staging.databaseUrl, "INSERT INTO customers (name) VALUES ('replaced row')");
    const { log, op } = await restore({ snapshotId, targetEnvironmentId: staging.id, includes: ['DB'], strategy: 'IN_PLACE', createSafetySnapshot: false });
    expect(op.status).toBe('SUCCEEDED');
    expect(log.previousDatabaseName).toBeNull();
    expect((await state(staging)).db).toEqual(atSnapshot.db);
  });

  it('a safety snapshot that fails stops the restore before anything changes, and says so', async () => {
    await fs.writeFile(path.join(staging.filesPath, 'before-failed.txt'), `x ${Date.now()}`);
    const before = await state(staging);
    const destination = await rt.db.destination.findUniqueOrThrow({ where: { id: staging.destinationId } });
    // The target's only destination cannot be written: a regular file stands where its repository would be.
    const blocker = path.join(path.dirname(staging.filesPath), `not-a-directory-${Date.now()}`);
    await fs.writeFile(blocker, '');
    await rt.db.destination.update({ where: { id: destination.id }, data: { config: { path: path.join(blocker, 'repo') }, repositoryId: null } });
    try {
      const { log, op, alerts } = await restore({ snapshotId, targetEnvironmentId: staging.id });
      expect(op).toMatchObject({ status: 'FAILED', error: expect.stringContaining('the safety snapshot failed, so the target was left untouched') });
      expect(log).toMatchObject({ status: 'FAILED', error: op.error, completedAt: NOW });
      expect(alerts).toMatchObject([{ type: 'RESTORE_FAILED', severity: 'CRITICAL', environmentId: staging.id, message: `Restore into staging failed: ${op.error}` }]);
      expect(await state(staging)).toEqual(before);
    } finally {
      await rt.db.destination.update({ where: { id: destination.id }, data: { config: destination.config!, repositoryId: destination.repositoryId } });
    }
  });

  it('a side that fails before the swap drops what the other prepared: the target stays as it was, nothing is left beside it', async () => {
    // A catalog snapshot that says it holds the database, over a repository snapshot without one.
    const filesOnly = await snapshot(prod, ['FILES']);
    const copy = await rt.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: filesOnly } });
    const src = await rt.db.snapshot.findUniqueOrThrow({ where: { id: filesOnly } });
    const liar = await rt.db.snapshot.create({
      data: { organizationId: src.organizationId, projectId: src.projectId, environmentId: prod.id, kind: 'MANUAL', includes: ['DB', 'FILES'], status: 'READY', sizeBytes: src.sizeBytes, copies: { create: [{ destinationId: copy.destinationId, status: 'READY', repoSnapshotId: copy.repoSnapshotId }] } },
    });
    await fs.writeFile(path.join(staging.filesPath, 'before-side.txt'), `x ${Date.now()}`);
    const before = await state(staging);
    const { log, op, alerts } = await restore({ snapshotId: liar.id, targetEnvironmentId: staging.id, createSafetySnapshot: false });
    expect(op).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/^\/db does not exist in snapshot /) });
    expect(log).toMatchObject({ status: 'FAILED', error: op.error });
    expect(alerts).toMatchObject([{ type: 'RESTORE_FAILED' }]);
    expect(await state(staging)).toEqual(before);
    expect(await leftovers(staging)).toEqual([]);
  });

  it('the files side failing while the database side got ready: the prepared database is dropped, nothing is swapped in', async () => {
    // The mirror of the case above: a catalog snapshot that says it holds files, over a repository snapshot of the database alone.
    const dbOnly = await snapshot(prod, ['DB']);
    const copy = await rt.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: dbOnly } });
    const src = await rt.db.snapshot.findUniqueOrThrow({ where: { id: dbOnly } });
    const liar = await rt.db.snapshot.create({
      data: { organizationId: src.organizationId, projectId: src.projectId, environmentId: prod.id, kind: 'MANUAL', includes: ['DB', 'FILES'], status: 'READY', sizeBytes: src.sizeBytes, copies: { create: [{ destinationId: copy.destinationId, status: 'READY', repoSnapshotId: copy.repoSnapshotId }] } },
    });
    await fs.writeFile(path.join(staging.filesPath, 'before-files-side.txt'), `x ${Date.now()}`);
    const before = await state(staging);
    const { log, op } = await restore({ snapshotId: liar.id, targetEnvironmentId: staging.id, createSafetySnapshot: false });
    expect(op).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/^\/files does not exist in snapshot /) });
    expect(log).toMatchObject({ status: 'FAILED', error: op.error });
    // The database, which could have been swapped in alone, is the target's own.
    expect(await state(staging)).toEqual(before);
    expect(await leftovers(staging)).toEqual([]);
  });

  it('a cancel requested before it runs ends it CANCELLED with no alert and the target as it was', async () => {
    const before = await state(staging);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId, targetEnvironmentId: staging.id, createSafetySnapshot: false });
    await rt.db.operation.update({ where: { id: operationId }, data: { cancelRequestedAt: NOW } });
    await runRestore(deps, operationId);
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } })).toMatchObject({ status: 'CANCELLED', error: 'Cancelled' });
    expect(await rt.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId } })).toMatchObject({ status: 'CANCELLED', error: 'Cancelled', completedAt: NOW });
    expect(await rt.db.alert.count({ where: { operationId } })).toBe(0);
    expect(await state(staging)).toEqual(before);
  });

  it('a stopping worker hands the restore back: queued again, its safety snapshot gone, the target as it was', async () => {
    const before = await state(staging);
    const safetyBefore = await rt.db.snapshot.count({ where: { environmentId: staging.id, kind: 'SAFETY' } });
    const stopping = new AbortController();
    stopping.abort(new Error('worker stopping'));
    const { log, op, alerts, thrown } = await restore({ snapshotId, targetEnvironmentId: staging.id }, stopping.signal);
    // Out of the way of the other cases: no worker will run it again here.
    await rt.db.operation.update({ where: { id: op.id }, data: { status: 'CANCELLED' } });
    expect(thrown).toBeInstanceOf(Error);
    expect(op).toMatchObject({ status: 'QUEUED', phase: 'queued', message: HANDED_BACK_MESSAGE, error: null });
    expect(log).toMatchObject({ status: 'QUEUED', error: null, safetySnapshotId: null, completedAt: null });
    expect(alerts).toEqual([]);
    expect(await rt.db.snapshot.count({ where: { environmentId: staging.id, kind: 'SAFETY' } })).toBe(safetyBefore);
    expect(await state(staging)).toEqual(before);
    expect(await leftovers(staging)).toEqual([]);
  });

  it('a worker stopping while the restore runs (waiting for a prune’s lock) hands it back: log and operation QUEUED, the target as it was', async () => {
    const before = await state(staging);
    const opened = await openRepository(deps, prod.destinationId);
    const prune = await Lock.acquire(opened.repo, true);
    const stopping = new AbortController();
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId, targetEnvironmentId: staging.id, createSafetySnapshot: false });
    const job = runRestoreJob(deps, operationId, restoreLogId, stopping.signal);
    try {
      await waitFor(() => rt.db.operation.findUniqueOrThrow({ where: { id: operationId } }), (o) => o.message !== null || ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(o.status), 'the restore to wait for the lock');
      expect(await rt.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId } })).toMatchObject({ status: 'RUNNING' });
      stopping.abort(new Error('worker stopping'));
      await job;
    } finally {
      await prune.release();
      await opened.close();
    }
    const { log, op, alerts, thrown } = await job;
    // Out of the way of the other cases: no worker will run it again here.
    await rt.db.operation.update({ where: { id: op.id }, data: { status: 'CANCELLED' } });
    expect(thrown).toBeInstanceOf(Error);
    expect(op).toMatchObject({ status: 'QUEUED', message: HANDED_BACK_MESSAGE, error: null });
    expect(log).toMatchObject({ status: 'QUEUED', error: null, completedAt: null });
    expect(alerts).toEqual([]);
    expect(await state(staging)).toEqual(before);
    expect(await leftovers(staging)).toEqual([]);
  });

  it('an operation already finished is not run again', async () => {
    const { operationId } = await restoreSnapshot(deps, viewer, { snapshotId, targetEnvironmentId: staging.id, createSafetySnapshot: false });
    await rt.db.operation.update({ where: { id: operationId }, data: { status: 'CANCELLED' } });
    const before = await state(staging);
    await runRestore(deps, operationId);
    expect((await rt.db.restoreLog.findFirstOrThrow({ where: { operationId } })).status).toBe('QUEUED');
    expect(await state(staging)).toEqual(before);
  });
});
