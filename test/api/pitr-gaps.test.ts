/**
 * What the source server does to the WAL archive, with the real streamer (a supervisor as a
 * worker runs it), pg_receivewal, pg_basebackup and restores through the API, while a workload
 * commits rows stamped with clock_timestamp(): WAL the server removed before it was streamed (a
 * MISSING_WAL gap), and standbys promoted in its place: one the archive follows across the new
 * timeline, one that forked before the archive's position (a TIMELINE_SWITCH gap until a new base
 * backup), one that forked inside the segment the archive was in (followed, with a closed gap).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redactUrl } from '../../src/app/secrets.ts';
import { defaultPgBinaries } from '../../src/db/pg-binaries.ts';
import { freePort, startCluster, stopCluster, type PgCluster, type ScratchPostgres, startScratchPostgres } from '../../src/db/pg-server.ts';
import { startPitrSupervisor, type PitrSupervisor } from '../../src/services/pitr-streamer.ts';
import { PointInTimeRecoveryDocument, RestoreToPointInTimeDocument, UpsertScheduleDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeOrganization, makeProject } from '../harness/factories.ts';
import { sql } from '../harness/live-environment.ts';
import { startWorkload, timeBetweenCommits } from '../harness/pitr-fixture.ts';
import { waitFor } from '../harness/schedule-helpers.ts';
import { follow } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let source: ScratchPostgres;
/** Standbys made during the tests, each under a folder of its own. */
const standbys: { cluster: PgCluster; root: string }[] = [];
/** The server the environment points at: the source, then the promoted standby. */
let serverUrl: (database: string) => string;
let envId: string;
let home: string;
let workload: ReturnType<typeof startWorkload> | null = null;
let supervisor: PitrSupervisor | null = null;

const db = () => app.runtime.db;
const settings = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: 300 };

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-gaps-'));
  source = await startScratchPostgres();
  serverUrl = (d) => source.url(d);
  await sql(source.adminUrl, 'CREATE DATABASE app');
  app = await startTestApp({ env: { BACKPLANE_HOME: home } });
  const org = await makeOrganization(db());
  key = (await makeApiKey(db(), org.id, { scopes: ['admin'] })).secret;
  const project = await makeProject(db(), org.id);
  const d = await db().destination.create({ data: { organizationId: org.id, name: 'local', provider: 'LOCAL', config: { path: path.join(home, 'repo') } } });
  const env = await db().environment.create({
    data: {
      organizationId: org.id,
      projectId: project.id,
      name: 'pitr-gaps',
      databaseUrlEncrypted: app.runtime.deps.secrets.seal(source.url('app')),
      databaseUrlRedacted: redactUrl(source.url('app')),
      databaseName: 'app',
      settings: { create: {} },
      destinations: { create: [{ destinationId: d.id }] },
    },
  });
  envId = env.id;
  workload = startWorkload(source.url('app'));
  const res = await app.gql(UpsertScheduleDocument, { input: { environmentId: gid('Environment', envId), walEnabled: true, walArchiveIntervalSeconds: 5 } as never }, { key });
  expect(res.data?.upsertSchedule.__typename).toBe('SchedulePayload');
  // Base backups run here; the streamer is this test's own supervisor, stopped and started at will.
  await app.startWorker();
  supervisor = supervise();
}, 120_000);

afterAll(async () => {
  await workload?.stop();
  await supervisor?.stop();
  await app?.stop();
  for (const s of standbys) {
    await stopCluster(s.cluster.dataDir, await defaultPgBinaries('system')).catch(() => undefined);
    await fs.rm(s.root, { recursive: true, force: true });
  }
  await source?.stop();
  if (home) await fs.rm(home, { recursive: true, force: true });
});

function supervise() {
  return startPitrSupervisor(app.runtime.deps, { home, workerId: 'gaps', tickMs: 200, leaseMs: 3_000 });
}

const clusterRow = () => db().pitrCluster.findFirstOrThrow({ where: { environments: { some: { id: envId } } } });
const receivers = async (url: string) => Number((await sql(url, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE application_name = 'backplane-receivewal'")).rows[0].n);
const pitrWindow = async () => (await app.gql(PointInTimeRecoveryDocument, { id: gid('Environment', envId) }, { key })).data!.environment!.pointInTimeRecovery;
const windowPast = (t: Date) =>
  waitFor(pitrWindow, (w) => !!w.earliestRecoveryTime && !!w.latestRecoveryTime && new Date(w.latestRecoveryTime as string) > t, `the recovery window past ${t.toISOString()}`, 180_000);
const restoreTo = (t: Date, clone: string) =>
  app.gql(RestoreToPointInTimeDocument, { input: { environmentId: gid('Environment', envId), pointInTime: t.toISOString(), createSafetySnapshot: false, cloneDatabaseName: clone } as never }, { key });
const countAt = async (t: Date) => (await sql(serverUrl('app'), 'SELECT count(*)::int AS n, max(id)::int AS top FROM pitr_rows WHERE stamped <= $1', [t])).rows[0] as { n: number; top: number };

/** A clone restored to `t` through the API holds exactly the rows committed at or before `t`. */
async function expectExactClone(t: Date, name: string) {
  const res = await restoreTo(t, name);
  const r = res.data?.restoreToPointInTime;
  if (r?.__typename !== 'RestorePayload') throw new Error(JSON.stringify(res));
  const states = await follow(app, key, r.operation.id);
  expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
  const got = (await sql(serverUrl(name), 'SELECT count(*)::int AS n, max(id)::int AS top, max(stamped) AS newest FROM pitr_rows')).rows[0] as { n: number; top: number; newest: Date };
  const want = await countAt(t);
  expect(got.n).toBe(want.n);
  expect(got.top).toBe(want.top);
  expect(got.newest.getTime()).toBeLessThanOrEqual(t.getTime());
}

/** A streaming standby of the server at `primary` (as a failover pair has), started and caught up. */
async function startStandby(primary: { port: number; user: string; password: string; adminUrl: string }): Promise<PgCluster> {
  const binaries = await defaultPgBinaries('system');
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-standby-'));
  await fs.chmod(root, 0o755);
  const dataDir = path.join(root, 'data');
  const env = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(primary.port), PGUSER: primary.user, PGPASSWORD: primary.password };
  // A server promoted a moment ago refuses a base backup until its first checkpoint (full_page_writes is off here).
  await sql(primary.adminUrl, 'CHECKPOINT');
  await run(path.join(binaries.binDir, 'pg_basebackup'), ['-D', dataDir, '-R', '-X', 'stream', '--checkpoint=fast'], env);
  const cluster = await startCluster({ dataDir, port: await freePort(), password: primary.password, binaries, settings });
  standbys.push({ cluster, root });
  await waitFor(async () => Number((await sql(primary.adminUrl, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE application_name <> 'backplane-receivewal' AND state = 'streaming'")).rows[0].n), (n) => n === 1, 'the standby streaming', 60_000);
  return cluster;
}

/** Points the environment at `cluster` (what a failover's DNS or an operator does) and moves the workload there. */
async function failOverTo(cluster: PgCluster) {
  const url = cluster.url('app');
  serverUrl = (d) => cluster.url(d);
  await db().environment.update({ where: { id: envId }, data: { databaseUrlEncrypted: app.runtime.deps.secrets.seal(url), databaseUrlRedacted: redactUrl(url) } });
  workload = startWorkload(url);
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} failed (${code}): ${err}`))));
  });
}

describe('gaps and timelines of the WAL archive', () => {
  it('WAL the server removed while nobody streamed: a MISSING_WAL gap is listed and alerted, a time in it refused, times either side restored exactly', async () => {
    const firstBase = await waitFor(() => db().baseBackup.findFirst({ where: { status: { not: 'CREATING' } } }), (b) => b !== null, 'the first base backup', 180_000);
    expect(firstBase!.status, firstBase!.error ?? '').toBe('READY');
    await windowPast(new Date(firstBase!.finishedAt!.getTime() + 3_000));
    await supervisor!.stop();
    supervisor = null;
    await waitFor(() => receivers(source.adminUrl), (n) => n === 0, 'no pg_receivewal');
    const cluster = await clusterRow();
    // Without the slot (dropped by hand, as an operator short of disk might), the checkpoints
    // recycle the WAL the spool would continue from.
    await sql(source.adminUrl, 'SELECT pg_drop_replication_slot($1)', [cluster.slotName]);
    const resumeSegment = (await sql(source.adminUrl, 'SELECT pg_walfile_name($1::pg_lsn) AS n', [cluster.lastArchivedLsn])).rows[0].n as string;
    await waitFor(
      async () => {
        await sql(source.adminUrl, 'SELECT pg_switch_wal()');
        await sql(source.adminUrl, 'CHECKPOINT');
        return (await sql(source.adminUrl, 'SELECT count(*)::int AS n FROM pg_ls_waldir() WHERE name = $1', [resumeSegment])).rows[0].n as number;
      },
      (n) => n === 0,
      `segment ${resumeSegment} removed from pg_wal`,
      60_000,
    );

    supervisor = supervise();
    const gap = await waitFor(() => db().pitrGap.findFirst({ where: { reason: 'MISSING_WAL' } }), (g) => g !== null, 'the MISSING_WAL gap', 120_000);
    expect(gap!.fromTime.getTime()).toBe(cluster.coveredUntil!.getTime());
    expect(await db().pitrGap.count()).toBe(1);
    const alert = await waitFor(() => db().alert.findFirst({ where: { environmentId: envId, type: 'PITR_GAP' } }), (a) => a !== null, 'PITR_GAP');
    expect(alert!.message).toContain('MISSING_WAL');
    const closed = await waitFor(() => db().pitrGap.findUniqueOrThrow({ where: { id: gap!.id } }), (g) => g.toTime !== null, 'a base backup closing the gap', 180_000);
    const w = await windowPast(new Date(closed.toTime!.getTime() + 3_000));
    expect(w.gaps).toEqual([{ reason: 'MISSING_WAL', from: gap!.fromTime.toISOString(), to: closed.toTime!.toISOString(), detail: expect.stringContaining('has already been removed') }]);

    const inGap = await restoreTo(new Date((gap!.fromTime.getTime() + closed.toTime!.getTime()) / 2), 'app_in_gap');
    expect(inGap.data?.restoreToPointInTime).toMatchObject({ __typename: 'ConflictError', code: 'PITR_IN_GAP' });
    expect(await db().restoreLog.count({ where: { cloneDatabaseName: 'app_in_gap' } })).toBe(0);

    const before = await timeBetweenCommits(serverUrl('app'), new Date(firstBase!.finishedAt!.getTime() + 300), gap!.fromTime);
    await expectExactClone(before.t, 'app_before_gap');
    const after = await timeBetweenCommits(serverUrl('app'), new Date(closed.toTime!.getTime() + 300), new Date(w.latestRecoveryTime as string));
    await expectExactClone(after.t, 'app_after_gap');
  }, 900_000);

  it('a standby promoted in the source’s place: the archive follows the new timeline, lists the switch, and a time after it restores exactly', async () => {
    const binaries = await defaultPgBinaries('system');
    const standby = await startStandby(source);
    await windowPast(new Date());

    // Failover: the source stops (a fast shutdown sends the standby all its WAL), the standby is
    // promoted, and the environment is pointed at it.
    await workload!.stop();
    workload = null;
    await stopCluster(source.dataDir, binaries);
    await sql(standby.url('postgres'), 'SELECT pg_promote(true, 60)');
    const promotedAt = new Date();
    const url = standby.url('app');
    await failOverTo(standby);

    const seen = await waitFor(pitrWindow, (w) => w.timelineSwitches.length === 1, 'the timeline switch listed', 180_000);
    const history = (await sql(standby.url('postgres'), "SELECT pg_read_file('pg_wal/00000002.history') AS t")).rows[0].t as string;
    expect(seen.timelineSwitches[0]).toMatchObject({ timeline: 2, parentTimeline: 1 });
    expect(history).toContain(seen.timelineSwitches[0].switchLsn);
    const names = new Set((await db().walUpload.findMany()).flatMap((u) => u.files));
    expect(names.has('00000002.history')).toBe(true);
    await waitFor(async () => (await sql(url, 'SELECT count(*)::int AS n FROM pitr_rows WHERE stamped > $1', [promotedAt])).rows[0].n as number, (n) => n >= 40, 'commits on the new timeline', 60_000);
    const w = await windowPast(new Date());
    // Followed from where the archive was: nothing lost, so no gap besides the first test's.
    expect(w.gaps.map((g) => g.reason)).toEqual(['MISSING_WAL']);
    expect((await clusterRow()).timeline).toBe(2);

    // Recovered from a base backup of timeline 1 across the switch, to a time on timeline 2.
    const target = await timeBetweenCommits(url, new Date(promotedAt.getTime() + 300), new Date(w.latestRecoveryTime as string));
    await expectExactClone(target.t, 'app_after_promotion');
  }, 900_000);

  it('a standby promoted that missed WAL the archive holds: the archive cannot follow, so a TIMELINE_SWITCH gap is listed and alerted until the next base backup; a time in it refused, one after it restored exactly', async () => {
    const binaries = await defaultPgBinaries('system');
    const primary = standbys[0].cluster;
    const behind = await startStandby({ ...primary, adminUrl: primary.url('postgres') });
    // The standby stops receiving; the primary goes on, and the archive takes its WAL into later segments.
    await stopCluster(behind.dataDir, binaries);
    const forkSegment = (await sql(primary.url('postgres'), 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS n')).rows[0].n as string;
    for (let i = 0; i < 2; i++) {
      await sql(primary.url('app'), "INSERT INTO pitr_rows (stamped, payload) SELECT clock_timestamp(), repeat('y', 200) FROM generate_series(1, 200)");
      await sql(primary.url('postgres'), 'SELECT pg_switch_wal()');
    }
    await windowPast(new Date());
    const seg = (n: string) => parseInt(n.slice(8, 16), 16) * 256 + parseInt(n.slice(16, 24), 16);
    expect(Math.max(...(await db().walUpload.findMany({ where: { timeline: 2 } })).flatMap((u) => u.files).filter((n) => n.startsWith('00000002') && !n.endsWith('.history')).map(seg))).toBeGreaterThan(seg(forkSegment));
    const coveredBefore = (await clusterRow()).coveredUntil!;
    const alertsBefore = await db().alert.count({ where: { environmentId: envId, type: 'PITR_GAP' } });

    // The primary is lost; the standby that fell behind is promoted in its place.
    await workload!.stop();
    workload = null;
    await stopCluster(primary.dataDir, binaries);
    const restarted = await startCluster({ dataDir: behind.dataDir, port: behind.port, password: behind.password, binaries, settings });
    await sql(restarted.url('postgres'), 'SELECT pg_promote(true, 60)');
    await failOverTo(restarted);

    const gap = await waitFor(() => db().pitrGap.findFirst({ where: { reason: 'TIMELINE_SWITCH' } }), (g) => g !== null, 'the TIMELINE_SWITCH gap', 180_000);
    expect(gap!.detail).toContain("not in this server's history");
    expect(gap!.fromTime.getTime()).toBe(coveredBefore.getTime());
    await waitFor(() => db().alert.count({ where: { environmentId: envId, type: 'PITR_GAP' } }), (n) => n === alertsBefore + 1, 'a PITR_GAP alert');
    const closed = await waitFor(() => db().pitrGap.findUniqueOrThrow({ where: { id: gap!.id } }), (g) => g.toTime !== null, 'a base backup closing the gap', 180_000);
    const w = await windowPast(new Date(closed.toTime!.getTime() + 3_000));
    expect(w.gaps.map((g) => g.reason), JSON.stringify(w.gaps)).toEqual(['MISSING_WAL', 'TIMELINE_SWITCH']);
    expect(w.timelineSwitches.map((t) => [t.timeline, t.parentTimeline])).toEqual([[2, 1], [3, 2]]);

    const inGap = await restoreTo(new Date((gap!.fromTime.getTime() + closed.toTime!.getTime()) / 2), 'app_in_fork');
    expect(inGap.data?.restoreToPointInTime).toMatchObject({ __typename: 'ConflictError', code: 'PITR_IN_GAP' });
    const after = await timeBetweenCommits(serverUrl('app'), new Date(closed.toTime!.getTime() + 300), new Date(w.latestRecoveryTime as string));
    await expectExactClone(after.t, 'app_after_fork');
  }, 900_000);

  it('a standby promoted that missed commits the archive holds in the same segment: followed, but the stretch whose commits the new timeline lacks is a TIMELINE_SWITCH gap; a time after it restores exactly', async () => {
    const binaries = await defaultPgBinaries('system');
    const primary = standbys.at(-1)!.cluster;
    const behind = await startStandby({ ...primary, adminUrl: primary.url('postgres') });
    await stopCluster(behind.dataDir, binaries);
    const forkSegment = (await sql(primary.url('postgres'), 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS n')).rows[0].n as string;
    // Commits the standby never gets, archived, still in the segment where it stopped.
    const lostFrom = new Date();
    await waitFor(async () => (await sql(primary.url('app'), 'SELECT count(*)::int AS n FROM pitr_rows WHERE stamped > $1', [lostFrom])).rows[0].n as number, (n) => n >= 20, 'commits the standby misses', 60_000);
    await windowPast(new Date());
    await workload!.stop();
    workload = null;
    expect((await sql(primary.url('postgres'), 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS n')).rows[0].n).toBe(forkSegment);
    const coveredBefore = (await clusterRow()).coveredUntil!;
    await stopCluster(primary.dataDir, binaries);
    const restarted = await startCluster({ dataDir: behind.dataDir, port: behind.port, password: behind.password, binaries, settings });
    await sql(restarted.url('postgres'), 'SELECT pg_promote(true, 60)');
    await failOverTo(restarted);

    const seen = await waitFor(pitrWindow, (w) => w.timelineSwitches.some((t) => t.timeline === 4), 'timeline 4 listed', 180_000);
    expect(seen.timelineSwitches.find((t) => t.timeline === 4)).toMatchObject({ parentTimeline: 3 });
    const gap = seen.gaps.find((g) => g.reason === 'TIMELINE_SWITCH' && g.detail?.includes('timeline 4'));
    expect(gap, JSON.stringify(seen.gaps)).toBeDefined();
    expect(gap!.detail).toContain('not on the new timeline');
    expect(new Date(gap!.from).getTime()).toBe(coveredBefore.getTime());
    expect(gap!.to).not.toBeNull();
    const inGap = await restoreTo(new Date((new Date(gap!.from).getTime() + new Date(gap!.to!).getTime()) / 2), 'app_in_lost');
    expect(inGap.data?.restoreToPointInTime).toMatchObject({ __typename: 'ConflictError', code: 'PITR_IN_GAP' });

    const gapEnd = new Date(gap!.to!);
    await waitFor(async () => (await sql(serverUrl('app'), 'SELECT count(*)::int AS n FROM pitr_rows WHERE stamped > $1', [gapEnd])).rows[0].n as number, (n) => n >= 40, 'commits on timeline 4', 60_000);
    const w = await windowPast(new Date());
    const after = await timeBetweenCommits(serverUrl('app'), new Date(gapEnd.getTime() + 300), new Date(w.latestRecoveryTime as string));
    await expectExactClone(after.t, 'app_after_lost');
  }, 900_000);
});
