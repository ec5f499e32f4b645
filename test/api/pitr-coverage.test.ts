/**
 * What the recovery window's end promises: every commit acknowledged before it is in the archive.
 * The source commits asynchronously (synchronous_commit off, as the scratch servers run and as
 * many production servers do): a commit is acknowledged once its record is in the WAL buffers,
 * and written out only by the WAL writer, here every 10 s, so the record of a commit made just
 * before the streamer's upload is still unwritten when the upload is marked.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startScratchPostgres, type ScratchPostgres } from '../../src/db/pg-server.ts';
import { startPitrSupervisor, type PitrSupervisor } from '../../src/services/pitr-streamer.ts';
import { PointInTimeRecoveryDocument, RestoreToPointInTimeDocument, UpsertScheduleDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { sql } from '../harness/live-environment.ts';
import { makePitrEnvironment } from '../harness/pitr-fixture.ts';
import { waitFor } from '../harness/schedule-helpers.ts';
import { follow } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let source: ScratchPostgres;
let envId: string;
let home: string;
let supervisor: PitrSupervisor | null = null;

const db = () => app.runtime.db;

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-coverage-'));
  source = await startScratchPostgres({ settings: { wal_writer_delay: '10s' } });
  await sql(source.adminUrl, 'CREATE DATABASE app');
  await sql(source.url('app'), 'CREATE TABLE pitr_rows (id bigserial PRIMARY KEY, stamped timestamptz NOT NULL)');
  app = await startTestApp({ env: { BACKPLANE_HOME: home } });
  ({ key, envId } = await makePitrEnvironment(app, { sourceUrl: source.url('app'), databaseName: 'app', repoPath: path.join(home, 'repo'), name: 'pitr-coverage', scope: 'admin' }));
  // Uploads only when the test asks (and when a segment completes).
  const res = await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', envId), walEnabled: true, walArchiveIntervalSeconds: 3600 } as never }, { key });
  expect(res.data?.upsertSchedule.__typename).toBe('SchedulePayload');
  await app.startWorker();
  supervisor = startPitrSupervisor(app.runtime.deps, { home, workerId: 'coverage', tickMs: 200, leaseMs: 3_000 });
}, 120_000);

afterAll(async () => {
  await supervisor?.stop();
  await app?.stop();
  await source?.stop();
  if (home) await fs.rm(home, { recursive: true, force: true });
});

describe('the end of the recovery window', () => {
  it('holds a commit acknowledged just before the upload whose WAL the server had not written yet: a restore to the window’s end has it', async () => {
    const base = await waitFor(() => db().baseBackup.findFirst({ where: { status: { not: 'CREATING' } } }), (b) => b !== null, 'the first base backup', 180_000);
    expect(base!.status, base!.error ?? '').toBe('READY');
    await waitFor(async () => supervisor!.streaming()[0]?.receiverPid ?? null, (p) => p !== null, 'pg_receivewal', 60_000);
    const cluster = await db().pitrCluster.findFirstOrThrow({ where: { environments: { some: { id: envId } } } });
    // The streamer's own first upload, if one is under way, ends first: else it can take the
    // commit below and leave the upload under test nothing new (CI saw that once).
    await supervisor!.archiveNow(cluster.id);

    const row = (await sql(source.url('app'), 'INSERT INTO pitr_rows (stamped) VALUES (clock_timestamp()) RETURNING id, stamped')).rows[0] as { id: string; stamped: Date };
    // The setting this test is about: the commit is acknowledged, its record not yet written.
    const unwritten = (await sql(source.adminUrl, 'SELECT pg_current_wal_lsn() < pg_current_wal_insert_lsn() AS u')).rows[0].u as boolean;
    expect(unwritten).toBe(true);
    await supervisor!.archiveNow(cluster.id);
    const covered = (await db().pitrCluster.findUniqueOrThrow({ where: { id: cluster.id } })).coveredUntil!;
    expect(covered.getTime()).toBeGreaterThan(row.stamped.getTime());
    const w = (await app.gql(PointInTimeRecoveryDocument, { id: gid('Environment', envId) }, { key })).data!.environment!.pointInTimeRecovery;
    expect(new Date(w.latestRecoveryTime as string).getTime()).toBe(covered.getTime());

    const res = await app.gql(RestoreToPointInTimeDocument, { input: { environmentId: gid('Environment', envId), pointInTime: covered.toISOString(), createSafetySnapshot: false, cloneDatabaseName: 'app_at_end' } as never }, { key });
    const r = res.data?.restoreToPointInTime;
    if (r?.__typename !== 'RestorePayload') throw new Error(JSON.stringify(res));
    const states = await follow(app, key, r.operation.id);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    const got = (await sql(source.url('app_at_end'), 'SELECT count(*)::int AS n, max(id)::text AS top FROM pitr_rows')).rows[0] as { n: number; top: string };
    expect(got).toEqual({ n: 1, top: row.id });
    // The archive reaches a commit past the time, so the recovery stopped at the time itself.
    const log = await db().restoreLog.findFirstOrThrow({ where: { cloneDatabaseName: 'app_at_end' } });
    expect(log.recoveredFrom).toContain('replayed to the time');
  }, 600_000);

  it('an idle server: an upload with nothing new stores no snapshot but moves the window’s end, and a restore to that end is not refused', async () => {
    const cluster = await db().pitrCluster.findFirstOrThrow({ where: { environments: { some: { id: envId } } } });
    // Everything written is flushed, and stays so: nothing commits on the source from here on.
    await sql(source.adminUrl, 'CHECKPOINT');
    await supervisor!.archiveNow(cluster.id);
    // An upload with nothing new; the server may still log a record of its own in between (a
    // standby snapshot), so until one such upload happened (a few tries).
    let idle = false;
    let before = new Date(0);
    for (let i = 0; i < 5 && !idle; i++) {
      const uploads = await db().walUpload.count({ where: { clusterId: cluster.id } });
      before = (await db().pitrCluster.findUniqueOrThrow({ where: { id: cluster.id } })).coveredUntil!;
      await supervisor!.archiveNow(cluster.id);
      idle = (await db().walUpload.count({ where: { clusterId: cluster.id } })) === uploads;
    }
    expect(idle).toBe(true);
    const covered = (await db().pitrCluster.findUniqueOrThrow({ where: { id: cluster.id } })).coveredUntil!;
    expect(covered.getTime()).toBeGreaterThan(before.getTime());
    const w = (await app.gql(PointInTimeRecoveryDocument, { id: gid('Environment', envId) }, { key })).data!.environment!.pointInTimeRecovery;
    expect(new Date(w.latestRecoveryTime as string).getTime()).toBe(covered.getTime());

    const res = await app.gql(RestoreToPointInTimeDocument, { input: { environmentId: gid('Environment', envId), pointInTime: covered.toISOString(), createSafetySnapshot: false, cloneDatabaseName: 'app_idle_end' } as never }, { key });
    const r = res.data?.restoreToPointInTime;
    if (r?.__typename !== 'RestorePayload') throw new Error(JSON.stringify(res));
    const states = await follow(app, key, r.operation.id);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    const want = (await sql(source.url('app'), 'SELECT count(*)::int AS n, max(id)::text AS top FROM pitr_rows')).rows[0];
    expect((await sql(source.url('app_idle_end'), 'SELECT count(*)::int AS n, max(id)::text AS top FROM pitr_rows')).rows[0]).toEqual(want);
  }, 600_000);
});
