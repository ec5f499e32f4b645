/**
 * Point-in-time recovery end to end: the real archiving side (a worker's streamer supervisor,
 * pg_receivewal on a slot, pg_basebackup into the repository) and the real recovery side
 * (restoreToPointInTime through the API), on a PostgreSQL cluster of its own, while a workload
 * commits rows stamped with clock_timestamp(). Nothing here writes the archive by hand.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Worker } from '../../src/app/worker.ts';
import type { ScratchPostgres } from '../../src/db/pg-server.ts';
import { PointInTimeRecoveryDocument, RestoreToPointInTimeDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { repositoryPassword, sql } from '../harness/live-environment.ts';
import { startWalArchivingSuite, startWorkload, timeBetweenCommits, type WalArchivingSuite } from '../harness/pitr-fixture.ts';
import { waitFor } from '../harness/schedule-helpers.ts';
import { follow, restic } from '../harness/snapshot-helpers.ts';

let suite: WalArchivingSuite;
let app: TestApp;
let key: string;
let source: ScratchPostgres;
let sourceUrl: string;
let envId: string;
let destinationId: string;
let repoPath: string;
let worker: Worker;
let workload: ReturnType<typeof startWorkload>;

const db = () => app.runtime.db;
const pitrOptions = () => ({ home: suite.tmp, tickMs: 200, leaseMs: 3_000 });

beforeAll(async () => {
  suite = await startWalArchivingSuite({ name: 'pitr-e2e', scope: 'admin', walArchiveIntervalSeconds: 5, home: true });
  ({ app, key, source, sourceUrl, envId, destinationId, repoPath } = suite);
  workload = startWorkload(sourceUrl);
  worker = await app.startWorker({ pitr: pitrOptions() });
}, 120_000);

afterAll(async () => {
  await workload?.stop();
  await suite?.stop();
});

const pitrWindow = async () => {
  const r = await app.gql(PointInTimeRecoveryDocument, { id: gid('Environment', envId) }, { key });
  return r.data!.environment!.pointInTimeRecovery;
};
/** Waits until the API's recovery window reaches past `t`. */
const windowPast = (t: Date, timeoutMs = 120_000) =>
  waitFor(pitrWindow, (w) => !!w.earliestRecoveryTime && !!w.latestRecoveryTime && new Date(w.latestRecoveryTime as string) > t, `the recovery window past ${t.toISOString()}`, timeoutMs);

const restoreTo = (t: Date, extra: Record<string, unknown> = {}) =>
  app.gql(RestoreToPointInTimeDocument, { input: { environmentId: gid('Environment', envId), pointInTime: t.toISOString(), createSafetySnapshot: false, ...extra } as never }, { key });

/** Restores a clone to `t` through the API; the clone's rows: count, newest stamp, and whether ids run 1..n. */
async function cloneAt(t: Date, name: string) {
  const res = await restoreTo(t, { cloneDatabaseName: name });
  const r = res.data?.restoreToPointInTime;
  if (r?.__typename !== 'RestorePayload') throw new Error(JSON.stringify(res));
  const states = await follow(app, key, r.operation.id);
  expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
  return (await sql(source.url(name), 'SELECT count(*)::int AS n, max(stamped) AS newest, max(id)::int AS top FROM pitr_rows')).rows[0] as { n: number; newest: Date; top: number };
}

const expectedAt = async (t: Date) =>
  (await sql(sourceUrl, 'SELECT count(*)::int AS n, max(id)::int AS top FROM pitr_rows WHERE stamped <= $1', [t])).rows[0] as { n: number; top: number };

describe('point-in-time recovery end to end', () => {
  let firstBaseAt: Date;

  it('archived by the real streamer and base backup, restored to a time between two commits: exactly the rows committed by then', async () => {
    const base = await waitFor(() => db().baseBackup.findFirst({ where: { status: { not: 'CREATING' } } }), (b) => b !== null, 'the first base backup', 180_000);
    expect(base!.status, base!.error ?? '').toBe('READY');
    firstBaseAt = base!.finishedAt!;
    // Commits after the base backup, then the window must pass them.
    const after = new Date(firstBaseAt.getTime() + 300);
    await waitFor(async () => (await sql(sourceUrl, 'SELECT count(*)::int AS n FROM pitr_rows WHERE stamped > $1', [after])).rows[0].n as number, (n) => n >= 40, 'commits after the base backup', 60_000);
    const w = await windowPast(new Date(Date.now() - 500));
    const latest = new Date(w.latestRecoveryTime as string);
    const target = await timeBetweenCommits(sourceUrl, after, latest);

    const got = await cloneAt(target.t, 'app_at_t');
    expect(got.n).toBe(target.expected);
    // None missing (ids run without a hole up to the newest), none after.
    expect(got.top).toBe((await expectedAt(target.t)).top);
    expect(got.n).toBe(got.top);
    expect(got.newest.getTime()).toBeLessThanOrEqual(target.t.getTime());
    // The source kept committing: the clone is not simply everything there is.
    expect((await sql(sourceUrl, 'SELECT count(*)::int AS n FROM pitr_rows')).rows[0].n).toBeGreaterThan(got.n);
  }, 600_000);

  it('the repository snapshots carry the times the recovery side reads: base at its finish, WAL at how far it reaches', async () => {
    const password = await repositoryPassword(app, destinationId);
    const snaps = JSON.parse(await restic(repoPath, password, 'snapshots', '--json')) as { id: string; time: string; tags: string[] }[];
    const bases = await db().baseBackup.findMany({ where: { status: 'READY' } });
    for (const b of bases) {
      const sn = snaps.find((s) => s.tags.includes(`base-backup:${b.id}`))!;
      expect(new Date(sn.time).getTime()).toBe(b.finishedAt!.getTime());
    }
    const uploads = await db().walUpload.findMany({ where: { destinationId } });
    expect(uploads.length).toBeGreaterThan(0);
    for (const u of uploads) {
      const sn = snaps.find((s) => s.id === u.repoSnapshotId)!;
      expect(sn.tags).toContain('pitr-wal');
      expect(new Date(sn.time).getTime(), `WAL snapshot ${sn.id}`).toBe(u.coversUntil!.getTime());
    }
  }, 120_000);

  it('refuses a time in a gap only the catalog knows (the slot dropped, the repository still looks continuous)', async () => {
    const cluster = await db().pitrCluster.findFirstOrThrow({ where: { environments: { some: { id: envId } } } });
    const from = new Date(firstBaseAt.getTime() + 1_000);
    const gap = await db().pitrGap.create({ data: { clusterId: cluster.id, reason: 'SLOT_DROPPED', fromTime: from, toTime: new Date(from.getTime() + 2_000), detail: 'test: over the cap' } });
    try {
      const inGap = await restoreTo(new Date(from.getTime() + 1_000), { cloneDatabaseName: 'app_gap' });
      expect(inGap.data?.restoreToPointInTime).toMatchObject({ __typename: 'ConflictError', code: 'PITR_IN_GAP' });
    } finally {
      await db().pitrGap.delete({ where: { id: gap.id } });
    }
    expect(await db().restoreLog.count({ where: { cloneDatabaseName: 'app_gap' } })).toBe(0);
  }, 120_000);

  it('the worker stopped gracefully for two minutes under load and started again: no gap, and a time during the stop restores exactly', async () => {
    const receivers = async () => Number((await sql(source.adminUrl, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE application_name = 'backplane-receivewal'")).rows[0].n);
    await worker.stop();
    await waitFor(receivers, (n) => n === 0, 'no pg_receivewal', 60_000);
    const stoppedAt = new Date();
    const frozen = await pitrWindow();
    const latestAtStop = new Date(frozen.latestRecoveryTime as string);
    // The workload goes on while nothing archives, for the two minutes issue 19 item 9 names: the
    // stop's length is what is under test (past two archive intervals, the lag alert's threshold),
    // so this one wait is on the clock rather than on an event.
    await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt.getTime() + 120_000 - Date.now())));
    expect((await sql(sourceUrl, 'SELECT count(*)::int AS n FROM pitr_rows WHERE stamped > $1', [stoppedAt])).rows[0].n).toBeGreaterThanOrEqual(100);
    // Segments completed while nobody streams: only the slot keeps them on the server.
    for (let i = 0; i < 3; i++) await sql(source.adminUrl, 'SELECT pg_switch_wal()');
    const resumedAt = new Date();
    // A time archived nowhere yet: refused from the catalog window, not recovered to the end of what there is.
    const unarchived = new Date(latestAtStop.getTime() + Math.min(2_000, (resumedAt.getTime() - latestAtStop.getTime()) / 2));
    const refused = await restoreTo(unarchived, { cloneDatabaseName: 'app_unarchived' });
    expect(refused.data?.restoreToPointInTime).toMatchObject({ __typename: 'ConflictError', code: 'PITR_TIME_NOT_RECOVERABLE' });

    worker = await app.startWorker({ pitr: pitrOptions() });
    await windowPast(new Date(resumedAt.getTime() + 1_000), 300_000);
    expect(await db().pitrGap.count()).toBe(0);
    expect((await pitrWindow()).gaps).toEqual([]);
    // Every segment from the first base backup's start on is archived.
    const names = [...new Set((await db().walUpload.findMany({ where: { destinationId } })).flatMap((u) => u.files))].filter((n) => /^[0-9A-F]{24}$/.test(n));
    const seg = (n: string) => parseInt(n.slice(8, 16), 16) * 256 + parseInt(n.slice(16), 16);
    const firstBase = await db().baseBackup.findFirstOrThrow({ where: { status: 'READY' }, orderBy: { startedAt: 'asc' } });
    const numbers = new Set(names.map(seg));
    const newest = Math.max(...numbers);
    expect(newest).toBeGreaterThan(seg(firstBase.startWal!));
    for (let s = seg(firstBase.startWal!); s <= newest; s++) expect(numbers.has(s), `segment ${s}`).toBe(true);

    const target = await timeBetweenCommits(sourceUrl, new Date(stoppedAt.getTime() + 500), resumedAt);
    const got = await cloneAt(target.t, 'app_during_stop');
    expect(got.n).toBe(target.expected);
    expect(got.top).toBe((await expectedAt(target.t)).top);
    expect(got.newest.getTime()).toBeLessThanOrEqual(target.t.getTime());
  }, 900_000);

  // Backplane's restore recovers in a temporary instance and brings one database over (here
  // IN_PLACE, pg_restore into the live database): the source cluster is never recovered itself,
  // so it stays on its timeline, and the archive simply goes on through the restore.
  it('a time after a previous restore to a point in time: the restored rows and what was committed since, exactly', async () => {
    await workload.stop();
    const timeline = async () => Number((await sql(source.adminUrl, 'SELECT timeline_id AS t FROM pg_control_checkpoint()')).rows[0].t);
    expect(await timeline()).toBe(1);
    const w = await pitrWindow();
    const first = await timeBetweenCommits(sourceUrl, new Date(new Date(w.earliestRecoveryTime as string).getTime() + 300), new Date(w.latestRecoveryTime as string));
    const res = await restoreTo(first.t, { strategy: 'IN_PLACE' });
    const r = res.data?.restoreToPointInTime;
    if (r?.__typename !== 'RestorePayload') throw new Error(JSON.stringify(res));
    const states = await follow(app, key, r.operation.id);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect((await sql(sourceUrl, 'SELECT count(*)::int AS n FROM pitr_rows')).rows[0].n).toBe(first.expected);
    const restoredAt = new Date();

    workload = startWorkload(sourceUrl);
    await waitFor(async () => (await sql(sourceUrl, 'SELECT count(*)::int AS n FROM pitr_rows WHERE stamped > $1', [restoredAt])).rows[0].n as number, (n) => n >= 60, 'commits after the restore', 120_000);
    const latest = new Date((await windowPast(new Date())).latestRecoveryTime as string);
    const target = await timeBetweenCommits(sourceUrl, new Date(restoredAt.getTime() + 300), latest);
    // The database as restored (rows up to the first time) plus the commits since, up to the target.
    expect(target.expected).toBeGreaterThan(first.expected);
    const got = await cloneAt(target.t, 'app_after_restore');
    expect(got.n).toBe(target.expected);
    expect(got.top).toBe((await expectedAt(target.t)).top);
    expect(got.newest.getTime()).toBeLessThanOrEqual(target.t.getTime());
    expect(await db().pitrGap.count()).toBe(0);
    await sql(source.adminUrl, 'CHECKPOINT');
    expect(await timeline()).toBe(1);
    expect((await db().pitrCluster.findFirstOrThrow({ where: { environments: { some: { id: envId } } } })).timeline).toBe(1);
  }, 900_000);
});
