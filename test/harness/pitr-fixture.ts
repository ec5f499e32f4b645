/**
 * A stand-in for the archiving side of point-in-time recovery, for the recovery tests until the
 * real archiver is merged: a PostgreSQL cluster of its own whose WAL `pg_receivewal` streams
 * (through a physical slot) into a folder, plus base backups and WAL snapshots written into a
 * repository with the engine's `backup()`, exactly as the PITR repository layout says (see
 * src/sources/pitr-layout.ts): `/pitr/<sysid>/base.tar` tagged pitr-base, and
 * `/pitr/<sysid>/wal/<name>` tagged pitr-wal holding only what is new or changed since the
 * previous WAL snapshot, the current segment as `<segment>.partial`. Also the two worlds PITR
 * API tests start from: the archiving side's (startWalArchivingSuite: a source cluster, an app,
 * a PITR environment with WAL archiving on) and the recovery side's (startPitrRestoreSuite: an
 * app with a worker, this fixture's cluster and an environment on its database `shop`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import { redactUrl } from '../../src/app/secrets.ts';
import { backup, type Repository } from '../../src/engine/api.ts';
import { startScratchPostgres, type ScratchPostgres } from '../../src/db/pg-server.ts';
import type { Scope } from '../../src/domain/scopes.ts';
import { startPitrSupervisor, type PitrSupervisor } from '../../src/services/pitr-streamer.ts';
import { segmentOfLsn } from '../../src/sources/pitr-layout.ts';
import { UpsertScheduleDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from './app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from './factories.ts';

const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface PitrCluster {
  server: ScratchPostgres;
  /** The system identifier, decimal. */
  sysid: string;
  /** URL of a database on the cluster (as the superuser). */
  url(database?: string): string;
  /** Takes a base backup into `repo`; its snapshot time is the moment pg_basebackup finished. */
  baseBackup(repo: Repository): Promise<{ snapshotId: string; time: Date; startWal: string; endWal: string }>;
  /**
   * Closes the current segment (pg_switch_wal) when asked, waits until the receiver has all WAL
   * written so far, and stores what is new or changed since the last call into `repo`. Its
   * snapshot time is taken first: the WAL in it covers everything committed before it.
   */
  archiveWal(repo: Repository, opts?: { switchSegment?: boolean }): Promise<{ snapshotId: string; time: Date; files: string[] }>;
  /** Where pg_receivewal writes: segments, and the current one as `<segment>.partial`. */
  walDir: string;
  /** What archiveWal does before it reads walDir: everything committed before the returned time is in walDir then. */
  flushWal(opts?: { switchSegment?: boolean }): Promise<Date>;
  stop(): Promise<void>;
}

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text)).rows;
  } finally {
    await c.end();
  }
}

function connEnv(server: ScratchPostgres): NodeJS.ProcessEnv {
  return { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(server.port), PGUSER: server.user, PGPASSWORD: server.password, LC_MESSAGES: 'C' };
}

/** Runs a tool to its end; rejects with its stderr when it fails. Returns stderr. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, stdoutTo?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', stdoutTo ? 'pipe' : 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const out = stdoutTo ? createWriteStream(stdoutTo) : null;
    if (out) child.stdout!.pipe(out);
    child.on('error', reject);
    child.on('close', (code) => {
      const done = () => (code === 0 ? resolve(stderr) : reject(new Error(`${path.basename(cmd)} failed (${code}): ${stderr}`)));
      if (out && !out.writableFinished) out.on('finish', done);
      else done();
    });
  });
}

async function until(cond: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts the cluster and its WAL receiver. */
export async function startPitrCluster(): Promise<PitrCluster> {
  const server = await startScratchPostgres();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-fixture-'));
  const walDir = path.join(root, 'received');
  await fs.mkdir(walDir);
  const env = connEnv(server);
  // No transaction of its own between the workload's: a test picks a time after the last commit.
  await query(server.adminUrl, 'ALTER SYSTEM SET autovacuum = off');
  await query(server.adminUrl, 'SELECT pg_reload_conf()');
  const [{ sysid }] = await query<{ sysid: string }>(server.adminUrl, 'SELECT system_identifier::text AS sysid FROM pg_control_system()');
  await run(path.join(PG_BIN, 'pg_receivewal'), ['--create-slot', '--if-not-exists', '-S', 'bp_fixture'], env);
  let receiver: ChildProcess | null = spawn(path.join(PG_BIN, 'pg_receivewal'), ['-D', walDir, '-S', 'bp_fixture', '--no-loop', '-n', '--synchronous'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let receiverLog = '';
  receiver.stderr!.on('data', (d: Buffer) => (receiverLog += d.toString()));
  let receiverExited = false;
  receiver.on('close', () => (receiverExited = true));
  await until(async () => {
    if (receiverExited) throw new Error(`pg_receivewal stopped: ${receiverLog}`);
    return (await query<{ n: number }>(server.adminUrl, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE application_name = 'pg_receivewal' AND state = 'streaming'"))[0].n === 1;
  }, 'pg_receivewal to stream');

  /** Signatures (size, mtime) of the files stored so far, to store only what is new or changed. */
  const stored = new Map<string, string>();
  let staging = 0;

  const cluster: PitrCluster = {
    server,
    sysid,
    url: (database = 'postgres') => server.url(database),
    async baseBackup(repo) {
      const file = path.join(root, `base-${Date.now()}.tar`);
      await run(path.join(PG_BIN, 'pg_basebackup'), ['-D', '-', '-F', 'tar', '-X', 'none', '--checkpoint=fast'], env, file);
      const time = new Date();
      // With -X none pg_basebackup reports no WAL range: the start is in backup_label, and the
      // end is at most where the server's WAL stands now (a later end-wal only asks for more WAL).
      const label = await run('tar', ['-xOf', file, 'backup_label'], env, path.join(root, 'label'));
      void label;
      const labelText = await fs.readFile(path.join(root, 'label'), 'utf8');
      const start = /START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+) \(file ([0-9A-F]{24})\)/.exec(labelText);
      if (!start) throw new Error(`no start in backup_label: ${labelText}`);
      const tli = parseInt(start[2].slice(0, 8), 16);
      const [{ lsn }] = await query<{ lsn: string }>(server.adminUrl, 'SELECT pg_current_wal_lsn()::text AS lsn');
      const startWal = start[2];
      const endWal = segmentOfLsn(tli, lsn);
      const r = await backup(repo, { [`/pitr/${sysid}/base.tar`]: createReadStream(file) }, {
        tags: ['backplane', 'pitr-base', `cluster:${sysid}`, `timeline:${tli}`, `start-wal:${startWal}`, `end-wal:${endWal}`],
        time,
      });
      await fs.rm(file);
      return { snapshotId: r.snapshotId, time, startWal, endWal };
    },
    walDir,
    async flushWal(opts = {}) {
      const time = new Date();
      // The scratch cluster commits asynchronously: WAL of a commit may not be written yet. A
      // checkpoint writes all WAL inserted before it (and adds no commit record a recovery
      // target could stop at), so everything committed before `time` is in what we read.
      await query(server.adminUrl, 'CHECKPOINT');
      if (opts.switchSegment) await query(server.adminUrl, 'SELECT pg_switch_wal()');
      const [{ lsn }] = await query<{ lsn: string }>(server.adminUrl, 'SELECT pg_current_wal_lsn()::text AS lsn');
      await until(
        async () => (await query<{ ok: boolean }>(server.adminUrl, `SELECT coalesce(bool_and(flush_lsn >= '${lsn}'), false) AS ok FROM pg_stat_replication WHERE application_name = 'pg_receivewal'`))[0].ok,
        'pg_receivewal to flush',
      );
      return time;
    },
    async archiveWal(repo, opts = {}) {
      const time = await cluster.flushWal(opts);
      const dir = path.join(root, `stage-${++staging}`);
      await fs.mkdir(dir);
      const files: string[] = [];
      for (const name of (await fs.readdir(walDir)).sort()) {
        const st = await fs.stat(path.join(walDir, name));
        const sig = `${st.size}:${st.mtimeMs}`;
        if (stored.get(name) === sig) continue;
        await fs.copyFile(path.join(walDir, name), path.join(dir, name));
        files.push(name);
        stored.set(name, sig);
      }
      const r = await backup(repo, { [`/pitr/${sysid}/wal`]: dir }, { tags: ['backplane', 'pitr-wal', `cluster:${sysid}`], time });
      await fs.rm(dir, { recursive: true });
      return { snapshotId: r.snapshotId, time, files };
    },
    async stop() {
      receiver?.kill('SIGTERM');
      if (receiver && !receiverExited) await new Promise((r) => receiver!.once('close', r));
      receiver = null;
      await server.stop();
      await fs.rm(root, { recursive: true, force: true });
    },
  };
  return cluster;
}

/**
 * Commits one row at a time into `pitr_rows`, each stamped with clock_timestamp() inside its
 * transaction, until stopped: the workload the restore-to-T tests pick a time between commits of.
 */
export function startWorkload(url: string, opts: { intervalMs?: number } = {}): { stop(): Promise<void>; committed(): number } {
  let running = true;
  let committed = 0;
  const done = (async () => {
    const c = new pg.Client({ connectionString: url });
    c.on('error', () => {});
    await c.connect();
    try {
      await c.query('CREATE TABLE IF NOT EXISTS pitr_rows (id bigserial PRIMARY KEY, stamped timestamptz NOT NULL, payload text)');
      while (running) {
        await c.query("INSERT INTO pitr_rows (stamped, payload) VALUES (clock_timestamp(), repeat('x', 200))");
        committed++;
        await new Promise((r) => setTimeout(r, opts.intervalMs ?? 40));
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  })();
  // A test that failed stops the server under the workload: that is not another failure.
  done.catch(() => undefined);
  return {
    committed: () => committed,
    async stop() {
      running = false;
      await done;
    },
  };
}

/**
 * A time strictly between two consecutive commits of the workload, at least `gapMs` apart, after
 * `after` and before `before` (what the archive reaches): the rows stamped at or before it are
 * exactly those committed at or before it.
 */
export async function timeBetweenCommits(url: string, after: Date, before: Date, gapMs = 20): Promise<{ t: Date; expected: number }> {
  const rows = await query<{ id: string; stamped: Date; next: Date }>(
    url,
    `SELECT id::text, stamped, next FROM (SELECT id, stamped, lead(stamped) OVER (ORDER BY id) AS next FROM pitr_rows) x
      WHERE next IS NOT NULL AND stamped > '${after.toISOString()}' AND next < '${before.toISOString()}' AND next - stamped > interval '${gapMs * 2} milliseconds' ORDER BY id LIMIT 1`,
  );
  if (!rows[0]) throw new Error('no two commits far enough apart');
  // Just before the next row's stamp, not halfway: a commit comes after its row's stamp by as
  // long as the server takes (tens of ms on a loaded machine), so halfway could fall before the
  // first commit; but the workload's client waits intervalMs after a commit before it sends the
  // next insert, so that commit is long done 5 ms before the next stamp, and the next commit is
  // after its own stamp. Milliseconds only (what DateTime carries).
  const t = new Date(Math.floor(rows[0].next.getTime()) - 5);
  const [{ n }] = await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM pitr_rows WHERE stamped <= '${t.toISOString()}'`);
  return { t, expected: n };
}

/**
 * The archive most recovery tests stand on: the workload committing into `url`'s pitr_rows, WAL
 * archived, a base backup, 40 more commits, the WAL up to a closed segment archived. Returns when
 * the base backup finished, what the archive reaches, and a time between two commits after the
 * base backup (timeBetweenCommits) with the rows committed by then.
 */
export async function archiveStampedRows(cluster: PitrCluster, repo: Repository, url: string): Promise<{ firstBase: Date; archivedUntil: Date; target: { t: Date; expected: number } }> {
  const workload = startWorkload(url);
  try {
    await cluster.archiveWal(repo);
    const firstBase = (await cluster.baseBackup(repo)).time;
    const afterBase = new Date();
    const from = workload.committed();
    while (workload.committed() < from + 40) await new Promise((r) => setTimeout(r, 20));
    const archivedUntil = (await cluster.archiveWal(repo, { switchSegment: true })).time;
    await workload.stop();
    return { firstBase, archivedUntil, target: await timeBetweenCommits(url, new Date(afterBase.getTime() + 300), archivedUntil) };
  } finally {
    await workload.stop();
  }
}

/**
 * What a PITR test's world needs in the catalog: an organization, a key of `scope`, a project, a
 * LOCAL destination at `repoPath`, and environment `name` on the source database `sourceUrl`
 * (named `databaseName`) with that destination. WAL archiving is left for the test to enable.
 */
export async function makePitrEnvironment(
  app: TestApp,
  opts: { sourceUrl: string; databaseName: string; repoPath: string; name: string; scope: Scope },
): Promise<{ key: string; destinationId: string; envId: string }> {
  const db = app.runtime.db;
  const org = await makeOrganization(db);
  const key = (await makeApiKey(db, org.id, { scopes: [opts.scope] })).secret;
  const project = await makeProject(db, org.id);
  const d = await db.destination.create({ data: { organizationId: org.id, name: 'local', provider: 'LOCAL', config: { path: opts.repoPath } } });
  const env = await db.environment.create({
    data: {
      organizationId: org.id,
      projectId: project.id,
      name: opts.name,
      databaseUrlEncrypted: app.runtime.deps.secrets.seal(opts.sourceUrl),
      databaseUrlRedacted: redactUrl(opts.sourceUrl),
      databaseName: opts.databaseName,
      settings: { create: {} },
      destinations: { create: [{ destinationId: d.id }] },
    },
  });
  return { key, destinationId: d.id, envId: env.id };
}

/** The archiving side's world (startWalArchivingSuite). */
export interface WalArchivingSuite {
  app: TestApp;
  key: string;
  /** The source cluster, and its database `app` the environment captures. */
  source: ScratchPostgres;
  sourceUrl: string;
  envId: string;
  destinationId: string;
  /** The LOCAL destination's repository: `<tmp>/repo`. */
  repoPath: string;
  /** The test's own folder, removed by stop(). */
  tmp: string;
  /** A streamer supervisor standing for a worker process (its home `<tmp>/home`), stopped by stop() if the test did not. */
  supervise(workerId: string, extra?: Partial<Parameters<typeof startPitrSupervisor>[1]>): PitrSupervisor;
  /** Stops the supervisors started so far. */
  stopSupervisors(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A source cluster of its own with database `app` (filled by `seed` before the app starts), a
 * test app, a PITR environment `name` on it (makePitrEnvironment, repository `<tmp>/repo`) and WAL
 * archiving on in its schedule (every `walArchiveIntervalSeconds` when given). `home` makes
 * `<tmp>` the app's BACKPLANE_HOME.
 */
export async function startWalArchivingSuite(opts: {
  name: string;
  scope?: Scope;
  seed?: (sourceUrl: string, adminUrl: string) => Promise<unknown>;
  walArchiveIntervalSeconds?: number;
  home?: boolean;
  secretKey?: string;
}): Promise<WalArchivingSuite> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), `bp-${opts.name}-`));
  const source = await startScratchPostgres();
  const stop = async () => {
    await suite.stopSupervisors();
    await app?.stop();
    await source.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  };
  let app: TestApp | undefined;
  const supervisors: PitrSupervisor[] = [];
  const suite = {
    tmp,
    source,
    stop,
    supervise: (workerId: string, extra: Partial<Parameters<typeof startPitrSupervisor>[1]> = {}) => {
      const s = startPitrSupervisor(app!.runtime.deps, { home: path.join(tmp, 'home'), workerId, tickMs: 200, leaseMs: 3_000, ...extra });
      supervisors.push(s);
      return s;
    },
    async stopSupervisors() {
      for (const s of supervisors.splice(0)) await s.stop().catch(() => undefined);
    },
  };
  try {
    await query(source.adminUrl, 'CREATE DATABASE app');
    const sourceUrl = source.url('app');
    await opts.seed?.(sourceUrl, source.adminUrl);
    app = await startTestApp({ secretKey: opts.secretKey, env: opts.home ? { BACKPLANE_HOME: tmp } : undefined });
    const repoPath = path.join(tmp, 'repo');
    const { key, destinationId, envId } = await makePitrEnvironment(app, { sourceUrl, databaseName: 'app', repoPath, name: opts.name, scope: opts.scope ?? 'backups:write' });
    const input = { environmentId: gid('Environment', envId), walEnabled: true, ...(opts.walArchiveIntervalSeconds ? { walArchiveIntervalSeconds: opts.walArchiveIntervalSeconds } : {}) };
    const res = await app.gql(UpsertScheduleDocument, { input: input as never }, { key });
    expect(res.data?.upsertSchedule.__typename).toBe('SchedulePayload');
    return Object.assign(suite, { app, key, sourceUrl, envId, destinationId, repoPath });
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

/** The recovery side's world (startPitrRestoreSuite). */
export interface PitrRestoreSuite {
  app: TestApp;
  /** An admin key of the environment's organization. */
  key: string;
  cluster: PitrCluster;
  /** URL of database `shop` on the cluster, the one the environment holds. */
  shop(): string;
  envId: string;
  destinationId: string;
  /** Stops the app and the cluster; the test's folders are its own to remove. */
  stop(): Promise<void>;
}

/**
 * A test app with a worker (BACKPLANE_HOME `home`), an organization and an admin key, a fixture
 * cluster (startPitrCluster) with database `shop`, and an environment on `shop` (files at
 * `filesPath`, if given) with a LOCAL destination whose repository is `repository`. What the
 * archive holds is the test's to write (cluster.baseBackup, cluster.archiveWal).
 */
export async function startPitrRestoreSuite(opts: { home: string; repository: string; filesPath?: string }): Promise<PitrRestoreSuite> {
  const app = await startTestApp({ env: { BACKPLANE_HOME: opts.home } });
  let cluster: PitrCluster | undefined;
  const stop = async () => {
    await app.stop();
    await cluster?.stop();
  };
  try {
    await app.startWorker();
    const db = app.runtime.db;
    const org = await makeOrganization(db);
    const key = (await makeApiKey(db, org.id, { scopes: ['admin'] })).secret;
    cluster = await startPitrCluster();
    await query(cluster.url(), 'CREATE DATABASE shop');
    const shop = () => cluster!.url('shop');
    const project = await makeProject(db, org.id);
    const env = await makeEnvironment(db, app.runtime.deps.secrets, project, { databaseUrl: shop(), filesPath: opts.filesPath ?? null });
    const d = await db.destination.create({ data: { organizationId: org.id, name: 'local', provider: 'LOCAL', config: { path: opts.repository } } });
    await db.environmentDestination.create({ data: { environmentId: env.id, destinationId: d.id } });
    return { app, key, cluster, shop, envId: env.id, destinationId: d.id, stop };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
