/**
 * The operations service called directly on a migrated catalog (no server, no worker): who may
 * see and cancel an operation, what claiming, finishing, re-queuing and cancelling write, and what
 * the stale-operation sweep does with a dead worker's operation. Each test makes its own rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/services/schedules.ts';
import type { Runtime } from '../../src/app/runtime.ts';
import type { Deps } from '../../src/services/deps.ts';
import { enqueueJob, operationJobKey } from '../../src/services/jobs.ts';
import {
  beginOperation,
  CancelledError,
  cancelOperation,
  finishOperation,
  getOperation,
  progressReporter,
  recoverStaleOperations,
  requeueOperation,
  watchCancellation,
} from '../../src/services/operations.ts';
import { createSecretBox, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { startServiceRuntime, viewerOf } from '../harness/service-runtime.ts';

let rt: Runtime;
const NOW = new Date('2026-06-15T12:00:00Z');
let deps: Deps;
const secrets = createSecretBox(Buffer.alloc(32, 3));

beforeAll(async () => {
  rt = await startServiceRuntime('operations');
  deps = { ...rt.deps, clock: { now: () => NOW } };
});
afterAll(() => rt?.close());

/** An organization with two projects, an environment in each, and a snapshot operation in the first. */
async function world(opStatus: 'QUEUED' | 'RUNNING' | 'SUCCEEDED' = 'QUEUED') {
  const db = rt.db;
  const org = await makeOrganization(db);
  const [p1, p2] = [await makeProject(db, org.id), await makeProject(db, org.id)];
  const [e1, e2] = [await makeEnvironment(db, secrets, p1), await makeEnvironment(db, secrets, p2)];
  const snapshot = await db.snapshot.create({ data: { organizationId: org.id, projectId: p1.id, environmentId: e1.id, kind: 'MANUAL', includes: ['DB'], status: 'CREATING' } });
  const destination = await db.destination.create({ data: { organizationId: org.id, name: `d-${snapshot.id}`, provider: 'LOCAL', config: { path: '/nonexistent' } } });
  await db.snapshotCopy.create({ data: { snapshotId: snapshot.id, destinationId: destination.id, status: 'UPLOADING', repoSnapshotId: 'abc' } });
  const op = await db.operation.create({ data: { organizationId: org.id, environmentId: e1.id, type: 'SNAPSHOT', snapshotId: snapshot.id, status: opStatus, phase: 'queued' } });
  await enqueueJob(db, 'snapshot_create', { operationId: op.id }, { queueName: e1.id, jobKey: operationJobKey(op.id), maxAttempts: 3 });
  return { org, p1, p2, e1, e2, snapshot, op };
}

const jobOf = async (opId: string) =>
  (await rt.db.$queryRawUnsafe<{ locked_by: string | null; attempts: number }[]>('SELECT locked_by, attempts FROM graphile_worker.jobs WHERE key = $1', operationJobKey(opId)))[0];

describe('who may see an operation', () => {
  it("a key of the operation's project or an unlimited key sees it; another project's key or organization's does not", async () => {
    const { org, p1, p2, op } = await world();
    const other = await makeOrganization(rt.db);
    expect((await getOperation(deps, viewerOf(org.id), op.id)).id).toBe(op.id);
    expect((await getOperation(deps, viewerOf(org.id, [p1.id]), op.id)).id).toBe(op.id);
    expect((await getOperation(deps, viewerOf(org.id, [p2.id, p1.id]), op.id)).id).toBe(op.id);
    for (const v of [viewerOf(org.id, [p2.id]), viewerOf(org.id, []), viewerOf(other.id)]) {
      await expect(getOperation(deps, v, op.id)).rejects.toMatchObject({ code: 'OPERATION_NOT_FOUND' });
    }
  });

  it('an operation of no environment (a destination check) is seen by unlimited keys only', async () => {
    const { org, p1 } = await world();
    const op = await rt.db.operation.create({ data: { organizationId: org.id, type: 'VERIFY_SNAPSHOT' } });
    expect((await getOperation(deps, viewerOf(org.id), op.id)).id).toBe(op.id);
    await expect(getOperation(deps, viewerOf(org.id, [p1.id]), op.id)).rejects.toMatchObject({ code: 'OPERATION_NOT_FOUND' });
  });
});

describe('cancelOperation', () => {
  it('a queued snapshot is cancelled at once: its job goes, the snapshot and its copies fail, watchers hear CANCELLED', async () => {
    const { org, p1, op, snapshot } = await world('QUEUED');
    const events = rt.events.subscribe('operation', op.id);
    expect(await cancelOperation(deps, viewerOf(org.id, [p1.id]), op.id)).toBe(op.id);
    expect((await events.next()).value).toEqual({ operationId: op.id, status: 'CANCELLED' });
    await events.return?.();
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } })).toMatchObject({ status: 'CANCELLED', cancelRequestedAt: NOW, finishedAt: NOW, error: 'Cancelled before it started' });
    expect(await jobOf(op.id)).toBeUndefined();
    expect(await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshot.id } })).toMatchObject({ status: 'FAILED', error: 'Cancelled before it started' });
    expect(await rt.db.snapshotCopy.findMany({ where: { snapshotId: snapshot.id } })).toMatchObject([{ status: 'FAILED', repoSnapshotId: null, error: 'Cancelled' }]);
  });

  it('a running operation is asked to stop: it stays RUNNING with the request recorded, and watchers hear CANCELLING', async () => {
    const { org, op, snapshot } = await world('RUNNING');
    const events = rt.events.subscribe('operation', op.id);
    await cancelOperation(deps, viewerOf(org.id), op.id);
    expect((await events.next()).value).toEqual({ operationId: op.id, status: 'CANCELLING' });
    await events.return?.();
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } })).toMatchObject({ status: 'RUNNING', cancelRequestedAt: NOW, finishedAt: null, error: null });
    expect(await jobOf(op.id)).toBeDefined();
    expect((await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshot.id } })).status).toBe('CREATING');
  });

  it('a queued restore is cancelled with its restore log failed', async () => {
    const { org, e1, e2, snapshot } = await world('SUCCEEDED');
    const op = await rt.db.operation.create({ data: { organizationId: org.id, environmentId: e2.id, type: 'RESTORE', snapshotId: snapshot.id } });
    const log = await rt.db.restoreLog.create({ data: { organizationId: org.id, snapshotId: snapshot.id, sourceEnvironmentId: e1.id, targetEnvironmentId: e2.id, operationId: op.id, includes: ['DB'] } });
    await cancelOperation(deps, viewerOf(org.id), op.id);
    expect(await rt.db.restoreLog.findUniqueOrThrow({ where: { id: log.id } })).toMatchObject({ status: 'FAILED', error: 'It never completed', completedAt: null });
    // A snapshot operation's snapshot is the only one a cancel fails: this restore's source stays as it was.
    expect((await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshot.id } })).status).toBe('CREATING');
  });

  it('a finished operation is refused, and one the key may not see is not found; neither changes anything', async () => {
    const done = await world('SUCCEEDED');
    await expect(cancelOperation(deps, viewerOf(done.org.id), done.op.id)).rejects.toMatchObject({ code: 'OPERATION_FINISHED', message: 'Operation already succeeded' });
    const { org, p2, op, snapshot } = await world('QUEUED');
    await expect(cancelOperation(deps, viewerOf(org.id, [p2.id]), op.id)).rejects.toMatchObject({ code: 'OPERATION_NOT_FOUND' });
    await expect(cancelOperation(deps, viewerOf(done.org.id), op.id)).rejects.toMatchObject({ code: 'OPERATION_NOT_FOUND' });
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } })).toMatchObject({ status: 'QUEUED', cancelRequestedAt: null });
    expect(await jobOf(op.id)).toBeDefined();
    expect((await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshot.id } })).status).toBe('CREATING');
  });
});

describe('an operation through its run', () => {
  it('beginOperation claims a queued operation (attempt counted, retry message cleared) and announces it; a finished one is not run again', async () => {
    const { op, e1 } = await world('QUEUED');
    await rt.db.operation.update({ where: { id: op.id }, data: { message: 'it will run again', error: 'old' } });
    const events = rt.events.subscribe('operation', op.id);
    const activity = rt.events.subscribe('environmentActivity', e1.id);
    const claimed = await beginOperation(deps, op.id);
    expect(claimed).toMatchObject({ id: op.id, status: 'RUNNING', startedAt: NOW, heartbeatAt: NOW, attempts: 1, message: null, error: null });
    expect((await events.next()).value).toEqual({ operationId: op.id, status: 'RUNNING' });
    expect((await activity.next()).value).toEqual({ kind: 'OPERATION', environmentId: e1.id, subjectId: op.id });

    // A retry after a crash takes the RUNNING operation again and keeps its first start.
    const later = new Date(NOW.getTime() + 60_000);
    expect(await beginOperation({ ...deps, clock: { now: () => later } }, op.id)).toMatchObject({ status: 'RUNNING', startedAt: NOW, heartbeatAt: later, attempts: 2 });

    const finished = await finishOperation(deps, op.id, 'FAILED', 'boom');
    expect(finished).toMatchObject({ status: 'FAILED', error: 'boom', finishedAt: NOW, phase: 'queued' });
    expect((await events.next()).value).toEqual({ operationId: op.id, status: 'RUNNING' });
    expect((await events.next()).value).toEqual({ operationId: op.id, status: 'FAILED' });
    await events.return?.();
    await activity.return?.();
    for (const status of ['FAILED', 'SUCCEEDED', 'CANCELLED'] as const) {
      await rt.db.operation.update({ where: { id: op.id }, data: { status } });
      expect(await beginOperation(deps, op.id)).toBeNull();
    }
    expect((await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } })).attempts).toBe(2);
    expect(await beginOperation(deps, '00000000-0000-7000-8000-000000000000')).toBeNull();
  });

  it('finishOperation SUCCEEDED clears the error and ends in phase done; requeueOperation puts it back from the start', async () => {
    const { op } = await world('RUNNING');
    await rt.db.operation.update({ where: { id: op.id }, data: { phase: 'uploading', bytesDone: 500n, error: 'x' } });
    const requeued = await requeueOperation(deps, op.id, 'handed back');
    expect(requeued).toMatchObject({ status: 'QUEUED', phase: 'queued', bytesDone: 0n, message: 'handed back' });
    expect(await finishOperation(deps, op.id, 'SUCCEEDED')).toMatchObject({ status: 'SUCCEEDED', phase: 'done', error: null, finishedAt: NOW });
  });

  it('progressReporter writes a phase change at once, throttles bytes, and flushes the last report', async () => {
    const { op } = await world('RUNNING');
    const events = rt.events.subscribe('operation', op.id);
    const progress = progressReporter(deps, op.id, 60_000);
    progress.report({ phase: 'dumping', bytesDone: 10, bytesTotal: 100, message: 'm' });
    progress.report({ bytesDone: 20 });
    progress.report({ bytesDone: 30, bytesTotal: null });
    // Written only on flush: the interval has not passed since the phase change.
    await expect.poll(async () => (await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } })).phase).toBe('dumping');
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } })).toMatchObject({ bytesDone: 10n, bytesTotal: 100n, message: 'm', heartbeatAt: NOW });
    await progress.flush();
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } })).toMatchObject({ phase: 'dumping', bytesDone: 30n, bytesTotal: null, message: 'm' });
    expect((await events.next()).value).toEqual({ operationId: op.id, status: 'RUNNING' });
    expect((await events.next()).value).toEqual({ operationId: op.id, status: 'RUNNING' });
    await events.return?.();
    // With nothing pending, a flush writes nothing more.
    await rt.db.operation.update({ where: { id: op.id }, data: { bytesDone: 7n } });
    await progress.flush();
    expect((await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } })).bytesDone).toBe(7n);
  });

  it("progressReporter writes the row and publishes its event in one statement: the event's time is the row's updatedAt", async () => {
    const { op } = await world('RUNNING');
    const events = rt.events.subscribePublished('operation', op.id);
    const progress = progressReporter(deps, op.id, 60_000);
    progress.report({ phase: 'uploading', bytesDone: 5 });
    await progress.flush();
    const heard = (await events.next()).value;
    await events.return?.();
    const row = await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } });
    expect(row).toMatchObject({ phase: 'uploading', bytesDone: 5n, heartbeatAt: NOW });
    expect(heard).toEqual({ payload: { operationId: op.id, status: 'RUNNING' }, at: row.updatedAt });
  });

  it('watchCancellation aborts with CancelledError on a cancel recorded before it started, or heard while it runs; never for other news', async () => {
    const before = await world('RUNNING');
    await rt.db.operation.update({ where: { id: before.op.id }, data: { cancelRequestedAt: NOW } });
    const w1 = watchCancellation(deps, before.op.id);
    await new Promise((resolve) => w1.signal.addEventListener('abort', resolve, { once: true }));
    expect(w1.signal.reason).toBeInstanceOf(CancelledError);
    w1.stop();

    const { org, op } = await world('RUNNING');
    const w2 = watchCancellation(deps, op.id);
    // The watcher's first read is done once it has seen the row: then an event for the operation that is not a cancel must not abort it.
    await rt.events.publish('operation', op.id, { operationId: op.id, status: 'RUNNING' });
    const heard = rt.events.subscribe('operation', op.id);
    await rt.events.publish('operation', op.id, { operationId: op.id, status: 'QUEUED' });
    await heard.next();
    expect(w2.signal.aborted).toBe(false);
    await cancelOperation(deps, viewerOf(org.id), op.id);
    await heard.next();
    await new Promise((resolve) => (w2.signal.aborted ? resolve(null) : w2.signal.addEventListener('abort', resolve, { once: true })));
    expect(w2.signal.reason).toBeInstanceOf(CancelledError);
    await heard.return?.();
    w2.stop();
  });
});

describe('recoverStaleOperations', () => {
  const STALE = 60_000;
  const old = new Date(NOW.getTime() - STALE - 1);

  it('a stale operation with attempts left goes back to the queue, its job unlocked, saying where it stopped; a fresh one is left alone', async () => {
    const stale = await world('RUNNING');
    const fresh = await world('RUNNING');
    await rt.db.operation.update({ where: { id: stale.op.id }, data: { heartbeatAt: old, phase: 'dumping' } });
    await rt.db.operation.update({ where: { id: fresh.op.id }, data: { heartbeatAt: new Date(NOW.getTime() - STALE + 1000), phase: 'dumping' } });
    await rt.db.$queryRawUnsafe("UPDATE graphile_worker._private_jobs SET locked_at = now(), locked_by = 'dead-worker', attempts = 1 WHERE key = $1", operationJobKey(stale.op.id));
    await rt.db.$queryRawUnsafe("UPDATE graphile_worker._private_jobs SET locked_at = now(), locked_by = 'live-worker', attempts = 1 WHERE key = $1", operationJobKey(fresh.op.id));
    const events = rt.events.subscribe('operation', stale.op.id);

    const result = await recoverStaleOperations(deps, STALE);
    expect(result.requeued).toContain(stale.op.id);
    expect(result.requeued).not.toContain(fresh.op.id);
    expect(result.failed).not.toContain(stale.op.id);
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: stale.op.id } })).toMatchObject({
      status: 'QUEUED',
      phase: 'queued',
      message: 'The worker running this stopped while dumping the database (phase dumping); it will run again',
    });
    expect((await events.next()).value).toEqual({ operationId: stale.op.id, status: 'QUEUED' });
    await events.return?.();
    expect((await jobOf(stale.op.id)).locked_by).toBeNull();
    expect((await jobOf(fresh.op.id)).locked_by).toBe('live-worker');
    expect((await rt.db.operation.findUniqueOrThrow({ where: { id: fresh.op.id } })).status).toBe('RUNNING');
    expect((await rt.db.snapshot.findUniqueOrThrow({ where: { id: stale.snapshot.id } })).status).toBe('CREATING');
  });

  it('a running operation that never sent a heartbeat counts as stale; a queued one does not', async () => {
    const never = await world('RUNNING');
    const queued = await world('QUEUED');
    await rt.db.operation.update({ where: { id: queued.op.id }, data: { heartbeatAt: old } });
    const result = await recoverStaleOperations(deps, STALE);
    expect(result.requeued).toContain(never.op.id);
    expect(result.requeued).not.toContain(queued.op.id);
    expect((await rt.db.operation.findUniqueOrThrow({ where: { id: never.op.id } })).message).toBe('The worker running this stopped while before it started (phase queued); it will run again');
  });

  it('a stale snapshot with no attempts left fails with the phase, and its snapshot and copies fail with it', async () => {
    const { op, snapshot, e1 } = await world('RUNNING');
    await rt.db.operation.update({ where: { id: op.id }, data: { heartbeatAt: old, phase: 'uploading' } });
    await rt.db.$queryRawUnsafe('UPDATE graphile_worker._private_jobs SET attempts = max_attempts WHERE key = $1', operationJobKey(op.id));
    const activity = rt.events.subscribe('environmentActivity', e1.id);
    const result = await recoverStaleOperations(deps, STALE);
    expect(result.failed).toContain(op.id);
    expect(result.requeued).not.toContain(op.id);
    const reason = 'The worker running this stopped responding while uploading (phase uploading)';
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } })).toMatchObject({ status: 'FAILED', error: reason, finishedAt: NOW });
    expect(await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshot.id } })).toMatchObject({ status: 'FAILED', error: reason });
    expect(await rt.db.snapshotCopy.findMany({ where: { snapshotId: snapshot.id } })).toMatchObject([{ status: 'FAILED', repoSnapshotId: null, error: reason }]);
    expect((await activity.next()).value).toEqual({ kind: 'OPERATION', environmentId: e1.id, subjectId: op.id });
    await activity.return?.();
    // Failed once: a second sweep finds nothing to do.
    expect((await recoverStaleOperations(deps, STALE)).failed).not.toContain(op.id);
  });

  it('a stale operation whose job is gone fails; an unknown phase is named as it is', async () => {
    const { op } = await world('RUNNING');
    await rt.db.operation.update({ where: { id: op.id }, data: { heartbeatAt: old, phase: 'weird' } });
    await rt.db.$queryRawUnsafe('DELETE FROM graphile_worker._private_jobs WHERE key = $1', operationJobKey(op.id));
    expect((await recoverStaleOperations(deps, STALE)).failed).toContain(op.id);
    expect((await rt.db.operation.findUniqueOrThrow({ where: { id: op.id } })).error).toBe('The worker running this stopped responding while weird (phase weird)');
    const unknown = await world('RUNNING');
    await rt.db.operation.update({ where: { id: unknown.op.id }, data: { heartbeatAt: old, phase: null } });
    await rt.db.$queryRawUnsafe('UPDATE graphile_worker._private_jobs SET attempts = max_attempts WHERE key = $1', operationJobKey(unknown.op.id));
    await recoverStaleOperations(deps, STALE);
    expect((await rt.db.operation.findUniqueOrThrow({ where: { id: unknown.op.id } })).error).toBe('The worker running this stopped responding while in an unknown phase');
  });

  it("a stale restore fails with its log, and raises RESTORE_FAILED on the target naming why", async () => {
    const { org, e1, e2, snapshot } = await world('SUCCEEDED');
    const op = await rt.db.operation.create({ data: { organizationId: org.id, environmentId: e2.id, type: 'RESTORE', snapshotId: snapshot.id, status: 'RUNNING', heartbeatAt: old, phase: 'swapping' } });
    await enqueueJob(rt.db, 'snapshot_restore', { operationId: op.id }, { queueName: e2.id, jobKey: operationJobKey(op.id), maxAttempts: 1 });
    await rt.db.$queryRawUnsafe('UPDATE graphile_worker._private_jobs SET attempts = 1 WHERE key = $1', operationJobKey(op.id));
    // Files only, in a folder that does not exist: nothing to clear, and no database to reach.
    const log = await rt.db.restoreLog.create({ data: { organizationId: org.id, snapshotId: snapshot.id, sourceEnvironmentId: e1.id, targetEnvironmentId: e2.id, operationId: op.id, includes: ['FILES'], status: 'RUNNING' } });
    await rt.db.environment.update({ where: { id: e2.id }, data: { filesPath: `/tmp/bp-none-${op.id}/files` } });
    expect((await recoverStaleOperations(deps, STALE)).failed).toContain(op.id);
    const reason = 'The worker running this stopped responding while swapping the restored database and files in (phase swapping)';
    expect(await rt.db.restoreLog.findUniqueOrThrow({ where: { id: log.id } })).toMatchObject({ status: 'FAILED', error: reason, completedAt: NOW });
    const alerts = await rt.db.alert.findMany({ where: { operationId: op.id } });
    expect(alerts).toMatchObject([{ type: 'RESTORE_FAILED', severity: 'CRITICAL', environmentId: e2.id, organizationId: org.id, message: `Restore into ${e2.name} failed: ${reason}` }]);
    // The snapshot restored from is not the operation's to fail.
    expect((await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshot.id } })).status).toBe('CREATING');
  });

  it("releases the lock a stopped worker left on a finished operation's job, not a running one's", async () => {
    const done = await world('SUCCEEDED');
    const busy = await world('RUNNING');
    await rt.db.operation.update({ where: { id: busy.op.id }, data: { heartbeatAt: NOW } });
    await rt.db.$queryRawUnsafe("UPDATE graphile_worker._private_jobs SET locked_at = $2, locked_by = 'gone-worker' WHERE key = $1", operationJobKey(done.op.id), old);
    await rt.db.$queryRawUnsafe("UPDATE graphile_worker._private_jobs SET locked_at = $2, locked_by = 'busy-worker' WHERE key = $1", operationJobKey(busy.op.id), old);
    await recoverStaleOperations(deps, STALE);
    expect((await jobOf(done.op.id)).locked_by).toBeNull();
    expect((await jobOf(busy.op.id)).locked_by).toBe('busy-worker');
  });
});
