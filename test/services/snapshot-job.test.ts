/**
 * The snapshot job (runSnapshot) called directly, without a server or worker, on a real
 * environment: its PostgreSQL database through the real pg_dump, its files folder, LOCAL
 * repositories read back by stock restic. It must write the environment's data, tagged as its
 * own, to every destination before the snapshot is READY, and leave nothing in any repository
 * when it does not succeed.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/services/schedules.ts';
import type { Runtime } from '../../src/app/runtime.ts';
import type { Deps } from '../../src/services/deps.ts';
import { HANDED_BACK_MESSAGE } from '../../src/services/operations.ts';
import { createSnapshot, runSnapshot } from '../../src/services/snapshots.ts';
import type { Viewer } from '../../src/services/viewer.ts';
import { makeOrganization } from '../harness/factories.ts';
import { makeLiveEnvironment, repositoryPassword, type LiveEnvironment } from '../harness/live-environment.ts';
import { addSecondDestination, startServiceRuntime, viewerOf } from '../harness/service-runtime.ts';
import { restic } from '../harness/snapshot-helpers.ts';

let rt: Runtime;
let deps: Deps;
let viewer: Viewer;
let env: LiveEnvironment;
let second: { id: string; path: string };
const NOW = new Date();

interface ResticSnapshot { id: string; tags?: string[]; paths: string[]; parent?: string }

/** What stock restic lists in a destination's repository (none when it was never written). */
async function resticSnapshots(destinationId: string): Promise<ResticSnapshot[]> {
  const d = await rt.db.destination.findUniqueOrThrow({ where: { id: destinationId } });
  const repo = String((d.config as { path: string }).path);
  if (!d.repositoryPasswordEncrypted) return [];
  return JSON.parse(await restic(repo, await repositoryPassword({ runtime: rt }, destinationId), 'snapshots', '--json')) as ResticSnapshot[];
}
const tagged = async (destinationId: string, snapshotId: string) => (await resticSnapshots(destinationId)).filter((s) => s.tags?.includes(`snapshot:${snapshotId}`));

async function lsPaths(destinationId: string, repoSnapshotId: string): Promise<string[]> {
  const d = await rt.db.destination.findUniqueOrThrow({ where: { id: destinationId } });
  const out = await restic(String((d.config as { path: string }).path), await repositoryPassword({ runtime: rt }, destinationId), 'ls', '--json', repoSnapshotId);
  return out.trim().split('\n').map((l) => JSON.parse(l) as { path?: string }).filter((n) => n.path).map((n) => n.path!);
}

/** Requests a snapshot and runs its job; returns the rows it left. */
async function takeSnapshot(includes: ('DB' | 'FILES')[] = ['DB', 'FILES'], jobSignal?: AbortSignal, before?: (operationId: string) => Promise<void>) {
  const { operationId, snapshotId } = await createSnapshot(deps, viewer, { environmentId: env.id, includes });
  await before?.(operationId);
  const thrown = await runSnapshot(deps, operationId, jobSignal).then(() => null, (err: unknown) => err);
  return {
    thrown,
    snapshotId,
    snapshot: await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshotId }, include: { copies: true } }),
    op: await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } }),
    alerts: await rt.db.alert.findMany({ where: { operationId } }),
  };
}
const copyOn = <C extends { destinationId: string }>(s: { copies: C[] }, destinationId: string): C => s.copies.find((c) => c.destinationId === destinationId)!;

beforeAll(async () => {
  rt = await startServiceRuntime('snapshot_job');
  deps = { ...rt.deps, clock: { now: () => NOW } };
  const org = await makeOrganization(rt.db);
  viewer = viewerOf(org.id);
  env = await makeLiveEnvironment({ runtime: rt }, { organizationId: org.id, name: 'production', rows: 80 });
  second = await addSecondDestination(rt, org.id, env);
});
afterAll(() => rt?.close());

/** Makes the environment's settings what a case needs, and puts them back after it. */
async function withSettings<T>(data: { failurePolicy?: 'ALERT_ONLY' | 'RETRY' | 'PAUSE_SCHEDULE' }, body: () => Promise<T>): Promise<T> {
  await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data });
  try {
    return await body();
  } finally {
    await rt.db.environmentSettings.update({ where: { environmentId: env.id }, data: { failurePolicy: 'ALERT_ONLY' } });
  }
}

/** Breaks the first destination (a regular file where its repository is) for the length of `body`. */
async function withFirstDestinationBroken<T>(body: () => Promise<T>): Promise<T> {
  const d = await rt.db.destination.findUniqueOrThrow({ where: { id: env.destinationId } });
  const blocker = path.join(path.dirname(env.filesPath), `blocker-${Date.now()}`);
  await fs.writeFile(blocker, '');
  await rt.db.destination.update({ where: { id: d.id }, data: { config: { path: path.join(blocker, 'repo') }, repositoryId: null } });
  try {
    return await body();
  } finally {
    await rt.db.destination.update({ where: { id: d.id }, data: { config: d.config!, repositoryId: d.repositoryId } });
  }
}

describe('runSnapshot', () => {
  it("writes the database dump and the files, tagged as this environment's, to every destination, then marks it READY", async () => {
    const { snapshot, op, alerts, thrown } = await takeSnapshot();
    expect(thrown).toBeNull();
    expect(op).toMatchObject({ status: 'SUCCEEDED', phase: 'done', error: null });
    expect(snapshot).toMatchObject({ status: 'READY', completedAt: NOW, error: null });
    expect(snapshot.sizeBytes).toBeGreaterThan(300_000n);
    expect(snapshot.fileCount).toBeGreaterThanOrEqual(5);
    expect(snapshot.databaseSizeBytes).toBeGreaterThan(0n);
    expect(snapshot.dumpBytes).toBeGreaterThan(0n);
    expect(alerts).toEqual([]);
    for (const destinationId of [env.destinationId, second.id]) {
      const copy = copyOn(snapshot, destinationId);
      expect(copy).toMatchObject({ status: 'READY', sizeBytes: snapshot.sizeBytes, completedAt: NOW });
      const [written, ...more] = await tagged(destinationId, snapshot.id);
      expect(more).toEqual([]);
      expect(written.id).toBe(copy.repoSnapshotId);
      expect(written.tags?.sort()).toEqual(['backplane', `env:${env.id}`, 'kind:manual', `snapshot:${snapshot.id}`].sort());
      const paths = await lsPaths(destinationId, written.id);
      expect(paths).toContain(`/db/${new URL(env.databaseUrl).pathname.slice(1)}.dump`);
      expect(paths).toContain('/files/uploads/photo ü.jpg');
    }
    expect(copyOn(snapshot, env.destinationId).addedBytes).toBeGreaterThan(0n);
  });

  it('includes only what was asked for; the next snapshot of a destination builds on the last one there', async () => {
    const first = await takeSnapshot(['DB']);
    const [dbOnly] = await tagged(env.destinationId, first.snapshotId);
    expect((await lsPaths(env.destinationId, dbOnly.id)).some((p) => p.startsWith('/files'))).toBe(false);
    expect(first.snapshot.fileCount).toBe(1);
    const next = await takeSnapshot(['FILES']);
    expect(next.snapshot).toMatchObject({ status: 'READY', databaseSizeBytes: null, dumpBytes: null });
    const [filesOnly] = await tagged(env.destinationId, next.snapshotId);
    expect((await lsPaths(env.destinationId, filesOnly.id)).some((p) => p.startsWith('/db'))).toBe(false);
    expect(filesOnly.parent).toBe(dbOnly.id);
  });

  it('a destination that cannot be opened: the next one takes the snapshot, the failed copy is recorded and alerted', async () => {
    const { snapshot, op, alerts } = await withFirstDestinationBroken(() => takeSnapshot(['DB']));
    expect(op.status).toBe('SUCCEEDED');
    expect(snapshot.status).toBe('READY');
    expect(copyOn(snapshot, env.destinationId)).toMatchObject({ status: 'FAILED', repoSnapshotId: null, error: expect.any(String) });
    expect(copyOn(snapshot, second.id)).toMatchObject({ status: 'READY' });
    expect(await tagged(second.id, snapshot.id)).toHaveLength(1);
    expect(alerts).toMatchObject([{ type: 'COPY_FAILED', severity: 'WARNING', environmentId: env.id, message: expect.stringContaining('Snapshot copy to a destination failed: ') }]);
  });

  it('with some copies failed, PAUSE_SCHEDULE fails the snapshot and leaves nothing written; RETRY queues a copy for later', async () => {
    const paused = await withSettings({ failurePolicy: 'PAUSE_SCHEDULE' }, () => withFirstDestinationBroken(() => takeSnapshot(['DB'])));
    expect(paused.op).toMatchObject({ status: 'FAILED', error: expect.stringContaining('1 of 2 destinations failed and the failure policy (PAUSE_SCHEDULE)') });
    expect(paused.snapshot.status).toBe('FAILED');
    expect(await tagged(second.id, paused.snapshotId)).toEqual([]);
    expect(paused.alerts.map((a) => a.type).sort()).toEqual(['COPY_FAILED', 'SNAPSHOT_FAILED']);

    const retried = await withSettings({ failurePolicy: 'RETRY' }, () => withFirstDestinationBroken(() => takeSnapshot(['DB'])));
    expect(retried.snapshot.status).toBe('READY');
    const copyOps = await rt.db.operation.findMany({ where: { type: 'COPY_SNAPSHOT', snapshotId: retried.snapshotId } });
    expect(copyOps).toHaveLength(1);
    expect(copyOps[0].input).toMatchObject({ destinationId: env.destinationId });
  });

  it('a source that fails fails the snapshot: every copy FAILED, nothing left in any repository, an alert', async () => {
    const url = new URL(env.databaseUrl);
    const good = await rt.db.environment.findUniqueOrThrow({ where: { id: env.id } });
    url.pathname = '/no_such_database';
    await rt.db.environment.update({ where: { id: env.id }, data: { databaseUrlEncrypted: deps.secrets.seal(url.toString()) } });
    try {
      const { snapshot, op, alerts } = await takeSnapshot(['DB', 'FILES']);
      expect(op.status).toBe('FAILED');
      expect(snapshot).toMatchObject({ status: 'FAILED', error: op.error });
      expect(snapshot.copies.map((c) => [c.status, c.repoSnapshotId])).toEqual([['FAILED', null], ['FAILED', null]]);
      expect(await tagged(env.destinationId, snapshot.id)).toEqual([]);
      expect(await tagged(second.id, snapshot.id)).toEqual([]);
      expect(alerts).toMatchObject([{ type: 'SNAPSHOT_FAILED', severity: 'CRITICAL', message: `Snapshot of production failed: ${op.error}` }]);
    } finally {
      await rt.db.environment.update({ where: { id: env.id }, data: { databaseUrlEncrypted: good.databaseUrlEncrypted } });
    }
  });

  it('cancelled: CANCELLED, the snapshot FAILED, no alert, nothing written', async () => {
    const { snapshot, op, alerts } = await takeSnapshot(['DB'], undefined, async (operationId) => {
      await rt.db.operation.update({ where: { id: operationId }, data: { cancelRequestedAt: NOW } });
    });
    expect(op).toMatchObject({ status: 'CANCELLED', error: 'Cancelled' });
    expect(snapshot).toMatchObject({ status: 'FAILED', error: 'Cancelled' });
    expect(alerts).toEqual([]);
    expect(await tagged(env.destinationId, snapshot.id)).toEqual([]);
  });

  it('a stopping worker hands it back: QUEUED, copies PENDING, nothing written, the error thrown for the wrapper', async () => {
    const stopping = new AbortController();
    stopping.abort(new Error('worker stopping'));
    const { snapshot, op, thrown } = await takeSnapshot(['DB'], stopping.signal);
    expect(thrown).toBeInstanceOf(Error);
    expect(op).toMatchObject({ status: 'QUEUED', message: HANDED_BACK_MESSAGE });
    expect(snapshot.status).toBe('CREATING');
    expect(snapshot.copies.map((c) => [c.status, c.repoSnapshotId])).toEqual([['PENDING', null], ['PENDING', null]]);
    expect(await tagged(env.destinationId, snapshot.id)).toEqual([]);
    // It runs to the end when the job comes again.
    await runSnapshot(deps, op.id);
    expect((await rt.db.snapshot.findUniqueOrThrow({ where: { id: snapshot.id } })).status).toBe('READY');
  });

  it('a retry after a worker died having written the snapshot leaves one repository snapshot, not two', async () => {
    const done = await takeSnapshot(['DB']);
    // As a worker killed after its backup but before the catalog was told leaves it.
    await rt.db.operation.update({ where: { id: done.op.id }, data: { status: 'RUNNING' } });
    await rt.db.snapshot.update({ where: { id: done.snapshotId }, data: { status: 'CREATING' } });
    await rt.db.snapshotCopy.updateMany({ where: { snapshotId: done.snapshotId }, data: { status: 'PENDING', repoSnapshotId: null } });
    await runSnapshot(deps, done.op.id);
    const after = await rt.db.snapshot.findUniqueOrThrow({ where: { id: done.snapshotId }, include: { copies: true } });
    expect(after.status).toBe('READY');
    // The destination it was captured into, and the one it was copied to.
    const written = await tagged(env.destinationId, done.snapshotId);
    expect(written.map((s) => s.id)).toEqual([copyOn(after, env.destinationId).repoSnapshotId]);
    const copied = await tagged(second.id, done.snapshotId);
    expect(copied.map((s) => s.id)).toEqual([copyOn(after, second.id).repoSnapshotId]);
  });

  it('a scheduled snapshot queues retention for its environment when it succeeds; a manual one does not', async () => {
    const retentionJobs = () => rt.db.$queryRawUnsafe<{ task_identifier: string }[]>('SELECT task_identifier FROM graphile_worker.jobs WHERE key = $1', `retention:${env.id}`);
    await rt.db.$queryRawUnsafe('DELETE FROM graphile_worker._private_jobs WHERE key = $1', `retention:${env.id}`);
    const manual = await takeSnapshot(['DB']);
    expect(manual.snapshot.status).toBe('READY');
    expect(await retentionJobs()).toEqual([]);
    const { operationId } = await createSnapshot(deps, viewer, { environmentId: env.id, includes: ['DB'] }, { kind: 'SCHEDULED' });
    await runSnapshot(deps, operationId);
    expect(await retentionJobs()).toEqual([{ task_identifier: 'retention_apply' }]);
  });
});
