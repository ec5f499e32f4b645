/**
 * WAL archiving against a PostgreSQL cluster of its own (the source), with the real pg_basebackup
 * and pg_receivewal, two streamer supervisors standing for two worker processes, and restic as
 * the independent reader of what landed in the repository.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ScratchPostgres } from '../../src/db/pg-server.ts';
import { LocalBackend } from '../../src/destinations/local.ts';
import { findSnapshot, Repository, resolvePath } from '../../src/engine/api.ts';
import type { PitrSupervisor } from '../../src/services/pitr-streamer.ts';
import { CreateBaseBackupDocument, PitrRetentionPreviewDocument, PointInTimeRecoveryDocument, UpsertScheduleDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { repositoryPassword, sql } from '../harness/live-environment.ts';
import { startWalArchivingSuite, type WalArchivingSuite } from '../harness/pitr-fixture.ts';
import { waitFor } from '../harness/schedule-helpers.ts';
import { restic } from '../harness/snapshot-helpers.ts';

let suite: WalArchivingSuite;
let app: TestApp;
let key: string;
let source: ScratchPostgres;
let sourceUrl: string;
let envId: string;
let destinationId: string;
let repoPath: string;
let tmp: string;

const db = () => app.runtime.db;

beforeAll(async () => {
  suite = await startWalArchivingSuite({
    name: 'pitr',
    walArchiveIntervalSeconds: 5,
    seed: async (url, adminUrl) => {
      await sql(url, "CREATE TABLE ticks (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp(), pad text); INSERT INTO ticks (pad) SELECT repeat(md5(random()::text), 6) FROM generate_series(1, 100000)");
      // Settled as a database at rest is: later base backups differ by what the workload changes,
      // not by hint bits the first reads would set all over the table.
      await sql(url, 'VACUUM (FREEZE, ANALYZE) ticks');
      await sql(adminUrl, 'CHECKPOINT');
    },
  });
  ({ app, key, source, sourceUrl, envId, destinationId, repoPath, tmp } = suite);
  await app.startWorker();
}, 120_000);

afterAll(() => suite?.stop());

const clusterRow = async () => db().pitrCluster.findFirstOrThrow({ where: { environments: { some: { id: envId } } } });
const supervise: WalArchivingSuite['supervise'] = (name, extra) => suite.supervise(name, extra);
const receivers = async () => Number((await sql(source.adminUrl, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE application_name = 'backplane-receivewal'")).rows[0].n);
const uploadedNames = async () => new Set((await db().walUpload.findMany({ where: { destinationId } })).flatMap((u) => u.files));

/** The segment the server writes now, switched out so it completes; with its bytes as the server has them. */
async function completeCurrentSegment(): Promise<{ name: string; bytes: Buffer }> {
  await sql(sourceUrl, "INSERT INTO ticks (pad) SELECT repeat('y', 100) FROM generate_series(1, 500)");
  const name = (await sql(source.adminUrl, 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS n')).rows[0].n as string;
  await sql(source.adminUrl, 'SELECT pg_switch_wal()');
  // Read at once: the server may recycle the file once the slot has passed it.
  const bytes = (await sql(source.adminUrl, 'SELECT pg_read_binary_file($1) AS b', [`pg_wal/${name}`])).rows[0].b as Buffer;
  return { name, bytes };
}

describe('point-in-time recovery: archiving', () => {
  let a: PitrSupervisor;
  let b: PitrSupervisor;

  it('two workers: exactly one takes the lease and streams; the first base backup follows on its own', async () => {
    a = supervise('worker-a');
    b = supervise('worker-b');
    const holder = await waitFor(async () => [a, b].filter((s) => s.streaming().some((x) => x.receiverPid)), (l) => l.length >= 1, 'a streamer', 60_000);
    expect(holder).toHaveLength(1);
    expect((await clusterRow()).leaseOwner).toBe(holder[0].workerId);
    await waitFor(receivers, (n) => n === 1, 'pg_receivewal connected', 60_000);
    // Both keep ticking: still one streamer.
    await waitFor(async () => (await clusterRow()).leaseExpiresAt!.getTime(), (t) => t > Date.now() + 1_000, 'a renewed lease');
    expect([a, b].filter((s) => s.streaming().length)).toHaveLength(1);
    expect(await receivers()).toBe(1);
    const first = await waitFor(() => db().baseBackup.findMany({ where: { status: { not: 'CREATING' } } }), (l) => l.length > 0, 'the first base backup', 120_000);
    expect(first[0]).toMatchObject({ status: 'READY' });
    expect(first[0].startWal).toMatch(/^[0-9A-F]{24}$/);
  }, 240_000);

  it('stores the base backup as the layout says, restic lists it, and a second one adds far fewer bytes', async () => {
    const cluster = await clusterRow();
    const password = await repositoryPassword(app, destinationId);
    const listed = JSON.parse(await restic(repoPath, password, 'snapshots', '--json', '--tag', 'pitr-base')) as { tags: string[]; paths: string[] }[];
    expect(listed).toHaveLength(1);
    const firstRow = await db().baseBackup.findFirstOrThrow({ where: { status: 'READY' } });
    expect(listed[0].tags).toEqual(expect.arrayContaining(['backplane', 'pitr-base', `cluster:${cluster.systemIdentifier}`, `timeline:1`, `start-wal:${firstRow.startWal}`, `end-wal:${firstRow.endWal}`]));
    const files = await restic(repoPath, password, 'ls', 'latest', '--tag', 'pitr-base');
    expect(files).toContain(`/pitr/${cluster.systemIdentifier}/base.tar`);

    await sql(sourceUrl, "UPDATE ticks SET pad = repeat('z', 200) WHERE id <= 100");
    const started = await app.gql(CreateBaseBackupDocument, { input: { environmentId: gid('Environment', envId), idempotencyKey: 'bb-2' } }, { key });
    const payload = started.data!.createBaseBackup;
    if (payload.__typename !== 'BaseBackupOperationPayload') throw new Error(JSON.stringify(payload));
    const again = await app.gql(CreateBaseBackupDocument, { input: { environmentId: gid('Environment', envId), idempotencyKey: 'bb-2' } }, { key });
    expect(again.data!.createBaseBackup).toMatchObject({ operation: { id: payload.operation.id } });
    const second = await waitFor(() => db().baseBackup.findUniqueOrThrow({ where: { id: payload.baseBackup.id } }), (r) => r.status !== 'CREATING', 'the second base backup', 120_000);
    expect(second.status).toBe('READY');
    // Only the chunks around what changed (the updated pages, pg_control, the manifest…) are new.
    expect(Number(firstRow.addedBytes)).toBeGreaterThan(4 << 20);
    expect(Number(second.addedBytes)).toBeLessThan(Number(second.sizeBytes) / 10);
    expect(Number(second.addedBytes)).toBeLessThan(Number(firstRow.addedBytes) / 3);
  }, 240_000);

  it('archives a segment once it completes (pg_switch_wal); restic restores it byte-identical to pg_wal', async () => {
    const { name, bytes } = await completeCurrentSegment();
    await waitFor(uploadedNames, (s) => s.has(name), `segment ${name} in the catalog`, 60_000);
    const cluster = await clusterRow();
    const password = await repositoryPassword(app, destinationId);
    const walSnaps = JSON.parse(await restic(repoPath, password, 'snapshots', '--json', '--tag', 'pitr-wal')) as { id: string; time: string }[];
    expect(walSnaps.length).toBeGreaterThan(0);
    const out = path.join(tmp, 'wal-restore');
    // The layout's recovery: every WAL snapshot restored in time order into one folder.
    for (const sn of walSnaps.sort((x, y) => x.time.localeCompare(y.time))) await restic(repoPath, password, 'restore', sn.id, '--target', out);
    const restored = await fs.readFile(path.join(out, 'pitr', cluster.systemIdentifier, 'wal', name));
    expect(restored.equals(bytes)).toBe(true);
  }, 120_000);

  // The streamer uploads the growing segment's `.partial` at every archive interval, and the
  // segment once complete: cut where the earlier copies ended, each copy's blobs up to its end
  // are the next copy's too, so the segment's WAL is stored once, not again in each copy.
  it('stores a segment once across its partial uploads and its completion: each copy adds only what was written since', async () => {
    const holder = [a, b].find((s) => s.streaming().length)!;
    const cluster = await clusterRow();
    await completeCurrentSegment();
    for (let i = 0; i < 3; i++) {
      await sql(sourceUrl, 'INSERT INTO ticks (pad) SELECT md5(random()::text) || md5(random()::text) FROM generate_series(1, 500)');
      await holder.archiveNow(cluster.id);
    }
    const { name } = await completeCurrentSegment();
    await waitFor(uploadedNames, (s) => s.has(name), `segment ${name} in the catalog`, 60_000);
    const uploads = (await db().walUpload.findMany({ where: { destinationId }, orderBy: { createdAt: 'asc' } })).filter((u) => u.files.includes(`${name}.partial`) || u.files.includes(name));
    expect(uploads.filter((u) => u.files.includes(`${name}.partial`)).length).toBeGreaterThanOrEqual(3);
    expect(uploads.at(-1)!.files).toContain(name);
    const repo = await Repository.open(new LocalBackend(repoPath), await repositoryPassword(app, destinationId));
    try {
      const contents: string[][] = [];
      for (const u of uploads) {
        const file = u.files.includes(name) ? name : `${name}.partial`;
        const node = await resolvePath(repo, await findSnapshot(repo, u.repoSnapshotId), `/pitr/${cluster.systemIdentifier}/wal/${file}`);
        contents.push(node.content!);
      }
      for (let k = 1; k < contents.length; k++) {
        const later = new Set(contents[k]);
        // Of an earlier copy, only the zeros after where it ended may be stored differently.
        for (const id of contents[k - 1].filter((id) => !later.has(id))) expect((await repo.loadBlob('data', id)).every((x) => x === 0)).toBe(true);
      }
    } finally {
      await repo.close();
    }
  }, 120_000);

  it('a pg_receivewal killed with SIGKILL is restarted and the archive has no gap', async () => {
    const holder = [a, b].find((s) => s.streaming().length)!;
    const pid = holder.streaming()[0].receiverPid!;
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => holder.streaming()[0]?.receiverPid ?? null, (p) => p !== null && p !== pid, 'a new pg_receivewal', 60_000);
    const { name, bytes } = await completeCurrentSegment();
    await waitFor(uploadedNames, (s) => s.has(name), `segment ${name} after the restart`, 60_000);
    expect(await db().pitrGap.count()).toBe(0);
    // Every segment from the first base backup's start to the newest one is archived.
    const names = [...(await uploadedNames())].filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
    const firstBase = await db().baseBackup.findFirstOrThrow({ where: { status: 'READY' }, orderBy: { startedAt: 'asc' } });
    const seg = (n: string) => parseInt(n.slice(8, 16), 16) * 256 + parseInt(n.slice(16), 16);
    for (let s = seg(firstBase.startWal!); s < seg(name); s++) expect(names.map(seg)).toContain(s);
    const cluster = await clusterRow();
    const password = await repositoryPassword(app, destinationId);
    const out = path.join(tmp, 'wal-restore-2');
    const walSnaps = JSON.parse(await restic(repoPath, password, 'snapshots', '--json', '--tag', 'pitr-wal')) as { id: string; time: string }[];
    for (const sn of walSnaps.sort((x, y) => x.time.localeCompare(y.time))) await restic(repoPath, password, 'restore', sn.id, '--target', out);
    expect((await fs.readFile(path.join(out, 'pitr', cluster.systemIdentifier, 'wal', name))).equals(bytes)).toBe(true);
  }, 120_000);

  it('reports the recovery window from the catalog', async () => {
    // A commit, then the window must reach past it within an archive interval or so.
    const committed = new Date((await sql(sourceUrl, 'INSERT INTO ticks (pad) VALUES ($1) RETURNING at', ['w'])).rows[0].at as string);
    const res = await waitFor(
      () => app.gql(PointInTimeRecoveryDocument, { id: gid('Environment', envId) }, { key }),
      // ARCHIVING too: on a loaded machine an upload can come later than two archive intervals,
      // which is LAGGING, rightly, until it lands (seen once at load 28).
      (r) =>
        !!r.data?.environment?.pointInTimeRecovery.latestRecoveryTime &&
        new Date(r.data.environment.pointInTimeRecovery.latestRecoveryTime as string) >= committed &&
        r.data.environment.pointInTimeRecovery.status === 'ARCHIVING',
      'the window to pass the commit, archiving',
      60_000,
    );
    const w = res.data!.environment!.pointInTimeRecovery;
    const bases = await db().baseBackup.findMany({ where: { status: 'READY' }, orderBy: { finishedAt: 'asc' } });
    expect(w).toMatchObject({ enabled: true, status: 'ARCHIVING', gaps: [], systemIdentifier: (await clusterRow()).systemIdentifier });
    expect(new Date(w.earliestRecoveryTime as string).getTime()).toBe(bases[0].finishedAt!.getTime());
    expect(w.baseBackups).toHaveLength(2);
    expect(Number(w.archivedBytes)).toBeGreaterThan(16 << 20);
    expect(w.lagSeconds).toBeLessThanOrEqual(10);
  }, 120_000);

  it('raises PITR_LAGGING when nothing is archived for two archive intervals, and shows LAGGING', async () => {
    const d = await db().destination.findUniqueOrThrow({ where: { id: destinationId } });
    // On a loaded machine an upload round can take longer than two intervals earlier in this file,
    // which raises PITR_LAGGING then (rightly): the alert under test is one raised after the
    // archive was keeping up and the repository went away.
    await waitFor(async () => (await app.gql(PointInTimeRecoveryDocument, { id: gid('Environment', envId) }, { key })).data!.environment!.pointInTimeRecovery.status, (st) => st === 'ARCHIVING', 'archiving', 60_000);
    const since = new Date();
    // The repository is gone from where the catalog says it is: every upload fails.
    await db().destination.update({ where: { id: destinationId }, data: { config: { path: path.join(tmp, 'moved') } } });
    try {
      await sql(sourceUrl, "INSERT INTO ticks (pad) VALUES ('lag')");
      const alert = await waitFor(() => db().alert.findFirst({ where: { environmentId: envId, type: 'PITR_LAGGING', createdAt: { gte: since } } }), (a) => a !== null, 'PITR_LAGGING', 60_000);
      expect(alert!.message).toContain('nothing archived since');
      const res = await app.gql(PointInTimeRecoveryDocument, { id: gid('Environment', envId) }, { key });
      expect(res.data!.environment!.pointInTimeRecovery.status).toBe('LAGGING');
      expect(res.data!.environment!.pointInTimeRecovery.lagSeconds).toBeGreaterThanOrEqual(10);
    } finally {
      await db().destination.update({ where: { id: destinationId }, data: { config: d.config as object } });
    }
    await waitFor(async () => (await app.gql(PointInTimeRecoveryDocument, { id: gid('Environment', envId) }, { key })).data!.environment!.pointInTimeRecovery.status, (st) => st === 'ARCHIVING', 'archiving again', 60_000);
  }, 120_000);

  it('a base backup that fails raises BASE_BACKUP_FAILED and stores nothing', async () => {
    // pg_basebackup to stdout takes one tablespace: a second one makes it fail.
    const dir = path.join(tmp, 'tblspc');
    await fs.mkdir(dir);
    // PostgreSQL runs as its own user here: it must reach the folder.
    await fs.chmod(tmp, 0o755);
    const st = await fs.stat(path.join(source.dataDir, 'PG_VERSION'));
    await fs.chown(dir, st.uid, st.gid);
    await sql(source.adminUrl, `CREATE TABLESPACE extra LOCATION '${dir}'`);
    try {
      const password = await repositoryPassword(app, destinationId);
      const before = JSON.parse(await restic(repoPath, password, 'snapshots', '--json', '--tag', 'pitr-base')).length as number;
      const started = await app.gql(CreateBaseBackupDocument, { input: { environmentId: gid('Environment', envId) } }, { key });
      const payload = started.data!.createBaseBackup;
      if (payload.__typename !== 'BaseBackupOperationPayload') throw new Error(JSON.stringify(payload));
      const row = await waitFor(() => db().baseBackup.findUniqueOrThrow({ where: { id: payload.baseBackup.id } }), (r) => r.status !== 'CREATING', 'the failing base backup', 120_000);
      expect(row.status).toBe('FAILED');
      const alert = await waitFor(() => db().alert.findFirst({ where: { environmentId: envId, type: 'BASE_BACKUP_FAILED' } }), (a) => a !== null, 'BASE_BACKUP_FAILED');
      expect(alert!.message).toContain('Base backup failed');
      expect(JSON.parse(await restic(repoPath, password, 'snapshots', '--json', '--tag', 'pitr-base'))).toHaveLength(before);
    } finally {
      await sql(source.adminUrl, 'DROP TABLESPACE extra');
    }
  }, 180_000);

  it('drops a slot that retains more than the cap: a gap and alerts, closed by the next base backup', async () => {
    await suite.stopSupervisors();
    await waitFor(receivers, (n) => n === 0, 'no streamer');
    // Nobody streams: the slot keeps what the server writes now.
    for (let i = 0; i < 3; i++) await completeCurrentSegment();
    const c = supervise('worker-c', { slotCapBytes: 8n << 20n });
    const gap = await waitFor(() => db().pitrGap.findFirst(), (g) => g !== null, 'the gap', 60_000);
    expect(gap!.reason).toBe('SLOT_DROPPED');
    const alerts = await waitFor(() => db().alert.findMany({ where: { environmentId: envId } }), (l) => l.some((x) => x.type === 'PITR_GAP'), 'the alerts');
    expect(alerts.map((x) => x.type)).toEqual(expect.arrayContaining(['PITR_SLOT_DROPPED', 'PITR_GAP']));
    const closed = await waitFor(() => db().pitrGap.findFirstOrThrow({ where: { id: gap!.id } }), (g) => g.toTime !== null, 'a base backup closing the gap', 120_000);
    const res = await app.gql(PointInTimeRecoveryDocument, { id: gid('Environment', envId) }, { key });
    expect(res.data!.environment!.pointInTimeRecovery.gaps).toEqual([{ reason: 'SLOT_DROPPED', from: gap!.fromTime.toISOString(), to: closed.toTime!.toISOString(), detail: expect.stringContaining('over the cap') }]);
    await c.stop();
  }, 240_000);

  it('retention: previewRetention lists the base backups and WAL past walRetentionDays, and applying forgets exactly those', async () => {
    const res = await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', envId), walRetentionDays: 1 } as never }, { key });
    expect(res.data?.upsertSchedule.__typename).toBe('SchedulePayload');
    const ready = await db().baseBackup.findMany({ where: { status: 'READY' }, orderBy: { startedAt: 'desc' } });
    expect(ready.length).toBeGreaterThanOrEqual(3);
    // All but the newest base backup, and the WAL before them, three days old.
    const aged = ready.slice(1);
    const day3 = 3 * 86_400_000;
    await db().walUpload.updateMany({ where: { createdAt: { lt: aged[0].startedAt } }, data: { createdAt: new Date(Date.now() - day3 - 3_600_000) } });
    for (const b of aged) await db().baseBackup.update({ where: { id: b.id }, data: { startedAt: new Date(b.startedAt.getTime() - day3), finishedAt: new Date(b.finishedAt!.getTime() - day3) } });
    const preview = (await app.gql(PitrRetentionPreviewDocument, { environmentId: gid('Environment', envId) }, { key })).data!.previewRetention;
    if (preview.__typename !== 'RetentionPreview') throw new Error(JSON.stringify(preview));
    const plan = preview.pointInTimeRecovery!;
    // The newest base backup older than the period stays: recovery to the period's start needs it.
    expect(plan.baseBackups.map((b) => b.id).sort()).toEqual(aged.slice(1).map((b) => b.id).sort());
    expect(plan.walBefore).toBe(aged[0].startWal);
    expect(plan.walSnapshots).toBeGreaterThan(0);
    const doomedWal = (await db().walUpload.findMany({ where: { createdAt: { lt: new Date(Date.now() - day3) } } })).filter((u) => u.files.every((f) => f.slice(0, 24) < aged[0].startWal!));
    expect(doomedWal).toHaveLength(plan.walSnapshots);

    const r = supervise('worker-r');
    await waitFor(() => db().baseBackup.count({ where: { status: 'DELETED' } }), (n) => n === plan.baseBackups.length, 'retention applied', 120_000);
    await r.stop();
    const password = await repositoryPassword(app, destinationId);
    const left = JSON.parse(await restic(repoPath, password, 'snapshots', '--json')) as { id: string; tags: string[] }[];
    const leftIds = new Set(left.map((x) => x.id));
    for (const b of plan.baseBackups) expect(leftIds.has(((await db().baseBackup.findUniqueOrThrow({ where: { id: b.id } })).copies as { repoSnapshotId: string }[])[0].repoSnapshotId)).toBe(false);
    for (const u of doomedWal) expect(leftIds.has(u.repoSnapshotId)).toBe(false);
    expect(left.filter((x) => x.tags.includes('pitr-base'))).toHaveLength(ready.length - plan.baseBackups.length);
    expect(await db().walUpload.count({ where: { id: { in: doomedWal.map((u) => u.id) } } })).toBe(0);
    await restic(repoPath, password, 'check');
    const after = (await app.gql(PitrRetentionPreviewDocument, { environmentId: gid('Environment', envId) }, { key })).data!.previewRetention;
    expect(after).toMatchObject({ pointInTimeRecovery: { baseBackups: [], walSnapshots: 0 } });
  }, 240_000);

  it("leaves a live lease of another worker alone, and takes it over once it expires (that worker died)", async () => {
    const cluster = await clusterRow();
    // A worker that died holding the lease: its row stays as it left it.
    const expiry = new Date(Date.now() + 4_000);
    await db().pitrCluster.update({ where: { id: cluster.id }, data: { leaseOwner: 'dead-worker', leaseExpiresAt: expiry } });
    const heir = supervise('heir', { leaseMs: 3_000 });
    const taken = await waitFor(clusterRow, (row) => row.leaseOwner !== 'dead-worker', 'the lease to change hands', 60_000);
    expect(taken.leaseOwner).toBe('heir');
    // Taken (its expiry set to then + 3 s) only once the dead worker's lease had run out.
    expect(taken.leaseExpiresAt!.getTime() - 3_000).toBeGreaterThanOrEqual(expiry.getTime());
    await waitFor(async () => heir.streaming()[0]?.receiverPid ?? null, (p) => p !== null, 'the heir streaming', 60_000);
    await waitFor(receivers, (n) => n === 1, 'one pg_receivewal', 60_000);
    await heir.stop();
  }, 120_000);
});
