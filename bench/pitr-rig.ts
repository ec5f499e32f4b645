/**
 * The pieces both PITR benchmarks (`bench/pitr.ts`, `bench/pitr-scale.ts`) stand on: a source
 * PostgreSQL 15 cluster of its own (fsync, synchronous_commit and full_page_writes on,
 * `archive_mode = on`) with a pgbench database and a table of rows stamped with clock_timestamp();
 * pgBackRest archiving it through `archive_command` (wrapped to time each push); `backplane start`
 * on a catalog of its own, PITR enabled over GraphQL (pg_receivewal on a slot); the write load;
 * the first base backup of each tool; and one recovery to a time with each tool, checked against
 * the stamped rows.
 *
 * `withPitrRig` builds it and tears everything down at the end (the work folder too, unless
 * BENCH_KEEP=1), also when the benchmark fails half-way.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { Logger, runMigrations as installWorkerSchema } from 'graphile-worker';
import { createDb } from '../src/db/client.ts';
import { applyMigrations } from '../src/db/migrate.ts';
import { defaultPgBinaries } from '../src/db/pg-binaries.ts';
import { createDatabase, freePort, pgRunAs, startScratchPostgres, type ScratchPostgres } from '../src/db/pg-server.ts';
import { seedEnvironment } from './catalog-seed.ts';
import { sql } from './snapshot-data.ts';
import { gql, startServer, type ServerProcess } from './snapshot-server.ts';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
export const KEEP = process.env.BENCH_KEEP === '1';
export const MiB = 2 ** 20;
export const GiB = 2 ** 30;
/** A WAL segment's size (the server's default). */
export const SEG = 16 * MiB;

export const log = (msg: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
export const loadavg = () => os.loadavg().map((x) => round(x));

export function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median: round(median), min: round(s[0]), max: round(s.at(-1)!), n: s.length };
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]) : NaN;
}

/** Bytes of the regular files under dir (no directory entries: an object store has none). */
export function fileBytes(dir: string): number {
  const out = execFileSync('find', [dir, '-type', 'f', '-printf', '%s\\n'], { encoding: 'utf8' });
  return out.split('\n').reduce((n, l) => n + (Number(l) || 0), 0);
}

export async function dirBytes(dir: string): Promise<number> {
  const out = execFileSync('du', ['-sb', dir], { encoding: 'utf8' });
  return Number(out.split('\t')[0]);
}

interface RunResult {
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a tool to its end (as `uid`/`gid` when given); rejects with its stderr when it fails. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number; allowFail?: boolean } = {}): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, uid: opts.uid, gid: opts.gid, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const r = { stdout, stderr, seconds: (performance.now() - t0) / 1000 };
      if (code === 0 || opts.allowFail) resolve(r);
      else reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed (${code}): ${stderr.trim().slice(-2000)}`));
    });
  });
}

export const parseLsn = (lsn: string) => {
  const [hi, lo] = lsn.split('/');
  return BigInt(`0x${hi}`) * 2n ** 32n + BigInt(`0x${lo}`);
};
export const segmentName = (tli: number, lsn: bigint) => {
  const n = lsn / BigInt(SEG);
  const hex = (v: bigint | number) => v.toString(16).toUpperCase().padStart(8, '0');
  return hex(tli) + hex(n / 256n) + hex(n % 256n);
};

const UPSERT_SCHEDULE = `mutation($input: UpsertScheduleInput!) { upsertSchedule(input: $input) { __typename ... on Error { code message } } }`;
const PITR_WINDOW = `query($id: ID!) { environment(id: $id) { pointInTimeRecovery { status earliestRecoveryTime latestRecoveryTime lagSeconds archivedBytes
  baseBackups { id status sizeBytes addedBytes startedAt finishedAt } gaps { reason from to } } } }`;
const RESTORE_TO_TIME = `mutation($input: RestoreToPointInTimeInput!) { restoreToPointInTime(input: $input) {
  __typename ... on RestorePayload { operation { id } } ... on Error { code message } } }`;
const OPEN_INSTANCE = `mutation($input: OpenRecoveryInstanceInput!) { openRecoveryInstance(input: $input) {
  __typename ... on RecoveryInstancePayload { operation { id } recoveryInstance { id } } ... on Error { code message } } }`;
const CLOSE_INSTANCE = `mutation($input: CloseRecoveryInstanceInput!) { closeRecoveryInstance(input: $input) { __typename ... on Error { code message } } }`;

interface PitrWindow {
  status: string;
  earliestRecoveryTime: string | null;
  latestRecoveryTime: string | null;
  lagSeconds: number | null;
  archivedBytes: string;
  baseBackups: { id: string; status: string; sizeBytes: string; addedBytes: string; startedAt: string; finishedAt: string | null }[];
  gaps: { reason: string; from: string; to: string | null }[];
}

/** The pgbench script: a TPC-B-like account update plus one row stamped inside the transaction. */
const PGBENCH_SCRIPT = `\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
INSERT INTO pitr_rows (stamped) VALUES (clock_timestamp());
END;
`;

/**
 * How far before the recovery time a row must be stamped to count as certainly committed by then
 * (a transaction stamps its row, then commits; under load the commit may come later). Rows stamped
 * earlier than this are a recovery's exact expectation.
 */
const COMMIT_MARGIN_MS = 2000;

/** What a recovery gave, read from the recovered `app` database. */
export interface RecoveredRows {
  rows: number;
  /** The newest stamped row: at or before the time when the recovery is exact. */
  maxStamped: string | null;
  /** Rows stamped before the time less COMMIT_MARGIN_MS: every one of them must be there. */
  rowsBeforeMargin: number;
  /** The source's count for the same bound. */
  expectedBeforeMargin: number;
  /** maxStamped <= the time and rowsBeforeMargin = expectedBeforeMargin. */
  exact: boolean;
}

/** The settings both PITR benchmarks read from the environment, over each one's defaults. */
export function pitrSettings(defaults: { scale: number; loadS: number; recoveries: number }) {
  const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
  return {
    scale: num('BENCH_PITR_SCALE', defaults.scale),
    loadS: num('BENCH_PITR_LOAD_S', defaults.loadS),
    tps: num('BENCH_PITR_TPS', 150),
    archiveS: num('BENCH_PITR_ARCHIVE_S', 5),
    recoveries: num('BENCH_PITR_RECOVERIES', defaults.recoveries),
  };
}

export interface RigOptions {
  /** pgbench scale: 20 is ~300 MiB, 68 ~1 GiB. */
  scale: number;
  /** The write load's transactions per second (4 clients). */
  tps: number;
  /** Our archive interval and pgBackRest's archive_timeout, seconds. */
  archiveS: number;
  /** The work folder's name prefix under the OS temp dir. */
  prefix: string;
}

/** Whatever the rig started, so that `withPitrRig` can stop it however the benchmark ends. */
interface Held {
  root?: string;
  source?: ScratchPostgres;
  catalog?: ScratchPostgres;
  server?: ServerProcess;
  pgbench?: ChildProcess;
  cleanups: (() => Promise<void>)[];
}

async function stopChild(child: ChildProcess | undefined) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await exited;
}

async function buildRig(o: RigOptions, held: Held) {
  // Under the OS temp dir: the user PostgreSQL and pgBackRest run as must reach every folder.
  const root = await fs.mkdtemp(path.join(os.tmpdir(), o.prefix));
  held.root = root;
  log(`work dir ${root}`);
  await fs.chmod(root, 0o755);
  const runAs = await pgRunAs();
  const asPg = { uid: runAs.uid, gid: runAs.gid };
  const chownPg = async (p: string) => {
    if (runAs.uid !== undefined) await fs.chown(p, runAs.uid, runAs.gid!);
  };
  const binaries = await defaultPgBinaries('system');
  const sockDir = path.join(root, 'sock');
  await fs.mkdir(sockDir);
  await chownPg(sockDir);
  // pgBackRest talks to the server through its Unix socket; the scratch default has none.
  const sourceSettings: Record<string, string | number> = {
    fsync: 'on',
    synchronous_commit: 'on',
    full_page_writes: 'on',
    wal_level: 'replica',
    max_wal_senders: 10,
    max_replication_slots: 10,
    archive_mode: 'on',
    archive_timeout: o.archiveS,
    unix_socket_directories: sockDir,
    max_connections: 100,
  };
  const src = await startScratchPostgres({ tmpRoot: root, settings: sourceSettings });
  held.source = src;
  const pgEnv = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(src.port), PGUSER: src.user, PGPASSWORD: src.password, LC_MESSAGES: 'C' };
  const srcAdmin = src.adminUrl;
  const one = async <T = Record<string, unknown>>(url: string, text: string, params?: unknown[]) => (await sql(url, text, params)).rows[0] as T;
  const currentLsn = async () => parseLsn((await one<{ l: string }>(srcAdmin, 'SELECT pg_current_wal_lsn()::text AS l')).l);

  // --- pgBackRest: repository, stanza, archive_command wrapped to time each push
  const pgbrRepo = path.join(root, 'pgbackrest');
  for (const d of [pgbrRepo, path.join(root, 'pgbackrest-lock'), path.join(root, 'pgbackrest-log')]) {
    await fs.mkdir(d);
    await chownPg(d);
  }
  const pgbrConf = path.join(root, 'pgbackrest.conf');
  await fs.writeFile(
    pgbrConf,
    [
      '[global]',
      `repo1-path=${pgbrRepo}`,
      'repo1-retention-full=10',
      // zstd at level 3 like ours, and as many processes as the machine has cores.
      'compress-type=zst',
      'compress-level=3',
      `process-max=${os.availableParallelism()}`,
      'start-fast=y',
      'log-level-console=warn',
      'log-level-file=info',
      `log-path=${path.join(root, 'pgbackrest-log')}`,
      `lock-path=${path.join(root, 'pgbackrest-lock')}`,
      '[bench]',
      `pg1-path=${src.dataDir}`,
      `pg1-port=${src.port}`,
      `pg1-socket-path=${sockDir}`,
      `pg1-user=${src.user}`,
      '',
    ].join('\n'),
  );
  await fs.chmod(pgbrConf, 0o644);
  const pushLog = path.join(root, 'archive-push.log');
  await fs.writeFile(pushLog, '');
  await chownPg(pushLog);
  const pushScript = path.join(root, 'pgbackrest-archive-push.sh');
  await fs.writeFile(
    pushScript,
    `#!/bin/sh\ns=$(date +%s.%N)\npgbackrest --config=${pgbrConf} --stanza=bench archive-push "$1"\nrc=$?\ne=$(date +%s.%N)\nsz=$(stat -c %s "$1")\necho "$(basename "$1") $s $e $rc $sz" >> ${pushLog}\nexit $rc\n`,
    { mode: 0o755 },
  );
  const pgbackrest = (args: string[], allowFail = false) => run('pgbackrest', [`--config=${pgbrConf}`, '--stanza=bench', ...args], { ...asPg, env: pgEnv, allowFail });
  await sql(srcAdmin, `ALTER SYSTEM SET archive_command = '${pushScript} %p'`);
  await sql(srcAdmin, 'SELECT pg_reload_conf()');
  await pgbackrest(['stanza-create']);
  const pushes = async () =>
    (await fs.readFile(pushLog, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [name, s, e, rc, size] = l.split(' ');
        return { name, start: Number(s), end: Number(e), ok: rc === '0', bytes: Number(size) };
      });

  // --- the workload's database
  await createDatabase(srcAdmin, 'app');
  const appUrl = src.url('app');
  log(`pgbench -i -s ${o.scale}`);
  const init = await run(path.join(PG_BIN, 'pgbench'), ['-i', '-q', '-s', String(o.scale), '--no-vacuum', 'app'], { env: pgEnv });
  await sql(appUrl, 'CREATE TABLE pitr_rows (id bigserial PRIMARY KEY, stamped timestamptz NOT NULL); CREATE INDEX ON pitr_rows (stamped)');
  await sql(appUrl, 'VACUUM ANALYZE');
  const dbBytes = Number((await one<{ n: string }>(appUrl, "SELECT pg_database_size('app') AS n")).n);
  const clusterBytes = Number((await one<{ n: string }>(srcAdmin, 'SELECT sum(pg_database_size(datname))::bigint AS n FROM pg_database')).n);
  log(`  app database ${(dbBytes / MiB).toFixed(0)} MiB (cluster ${(clusterBytes / MiB).toFixed(0)} MiB) in ${init.seconds.toFixed(0)} s`);
  const scriptFile = path.join(root, 'load.sql');
  await fs.writeFile(scriptFile, PGBENCH_SCRIPT);
  const startLoad = () => {
    const child = spawn(path.join(PG_BIN, 'pgbench'), ['-n', '-c', '4', '-j', '2', '-R', String(o.tps), '-T', '36000', '-s', String(o.scale), '-f', scriptFile, 'app'], { env: pgEnv, stdio: 'ignore' });
    child.on('error', () => undefined);
    held.pgbench = child;
    return child;
  };
  const stopLoad = async () => {
    const child = held.pgbench;
    held.pgbench = undefined;
    await stopChild(child);
  };

  // --- the catalog and our server
  const catalogServer = await startScratchPostgres({ tmpRoot: root });
  held.catalog = catalogServer;
  const catalogUrl = catalogServer.url('backplane');
  await createDatabase(catalogServer.adminUrl, 'backplane');
  await applyMigrations(catalogUrl);
  await installWorkerSchema({ connectionString: catalogUrl, logger: new Logger(() => () => {}) });
  const db = createDb(catalogUrl);
  held.cleanups.push(async () => db.$disconnect());
  const repoPath = path.join(root, 'repository');
  const { secretKey, envGid, key } = await seedEnvironment(db, { name: 'Bench', projectName: 'App', databaseUrl: appUrl, databaseName: 'app', repositoryPath: repoPath });
  const home = path.join(root, 'home');
  const serverLog = path.join(root, 'server.log');
  /** Starts `backplane start` on the catalog (from another checkout's build when `buildRoot` is given). */
  const startOurs = async (buildRoot?: string) => {
    held.server = await startServer({ databaseUrl: catalogUrl, secretKey, logFile: serverLog, env: { BACKPLANE_HOME: home }, root: buildRoot });
    return held.server;
  };
  const stopOurs = async () => {
    const s = held.server;
    held.server = undefined;
    await s?.stop();
  };
  /** A GraphQL request to the running server with the admin key. */
  const api = <T>(query: string, variables: Record<string, unknown>) => gql<T>(held.server!.url, key, query, variables);
  const pitrWindow = async () => (await api<{ environment: { pointInTimeRecovery: PitrWindow } }>(PITR_WINDOW, { id: envGid })).environment.pointInTimeRecovery;
  const latestRecoverable = async () => {
    const w = await pitrWindow();
    return w.latestRecoveryTime ? new Date(w.latestRecoveryTime) : null;
  };
  /** Waits until our window (the API's latestRecoveryTime) reaches `t`; returns when it did. */
  const oursCovers = async (t: Date, timeoutMs = 600_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = await latestRecoverable();
      if (l && l >= t) return new Date();
      if (Date.now() > deadline) throw new Error(`our recovery window did not reach ${t.toISOString()} (at ${l?.toISOString()})`);
      await sleep(100);
    }
  };
  /** Waits until pgBackRest has archived the segment holding `lsn` (switching to close it). */
  const pgbrCovers = async (lsn: bigint, timeoutMs = 600_000) => {
    const want = segmentName(1, lsn);
    await sql(srcAdmin, 'SELECT pg_switch_wal()');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await one<{ w: string | null }>(srcAdmin, 'SELECT last_archived_wal AS w FROM pg_stat_archiver');
      if (r.w && r.w.slice(0, 24) >= want) return new Date();
      if (Date.now() > deadline) throw new Error(`pgBackRest did not archive ${want} (at ${r.w})`);
      await sleep(100);
    }
  };
  /** Polls an operation to its end; `phases` holds when each phase was first seen (ms since the epoch). */
  const waitOperation = async (operationGid: string) => {
    const id = decodeGlobalID(operationGid).id;
    const phases: Record<string, number> = {};
    for (;;) {
      const op = await db.operation.findUniqueOrThrow({ where: { id } });
      if (op.phase && !(op.phase in phases)) phases[op.phase] = Date.now();
      if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status)) return { ...op, phases };
      await sleep(100);
    }
  };
  const baseBackupRow = async (id: string) => {
    for (;;) {
      const b = await db.baseBackup.findUniqueOrThrow({ where: { id } });
      if (b.status !== 'CREATING') return b;
      await sleep(200);
    }
  };
  const pgbrInfo = async () => JSON.parse((await pgbackrest(['info', '--output=json'])).stdout)[0].backup as { type: string; label: string; info: { size: number; delta: number; repository: { size: number; delta: number } }; timestamp: { start: number; stop: number } }[];
  // What a pgBackRest backup adds is more than its info's repository.delta (its data files):
  // also backup.manifest and its .copy, the manifest kept in backup.history and the grown
  // backup.info (and .copy), all under backup/. Ours (addedBytes) counts packs whole, index and snapshot.
  const pgbrBackupBytes = () => fileBytes(path.join(pgbrRepo, 'backup'));

  await startOurs();
  const lsnEnable = await currentLsn();
  const tEnable = Date.now();
  const enabled = await api<{ upsertSchedule: { __typename: string; message?: string } }>(UPSERT_SCHEDULE, { input: { environmentId: envGid, walEnabled: true, walArchiveIntervalSeconds: o.archiveS } });
  if (enabled.upsertSchedule.__typename !== 'SchedulePayload') throw new Error(`enabling PITR: ${JSON.stringify(enabled.upsertSchedule)}`);

  /** Ours (taken when PITR was enabled: waits for it) and pgBackRest's full, one after the other. */
  const firstBaseBackups = async () => {
    log('first base backups');
    const firstBase = await (async () => {
      for (;;) {
        const b = await db.baseBackup.findFirst({ orderBy: { startedAt: 'asc' } });
        if (b) return baseBackupRow(b.id);
        await sleep(200);
      }
    })();
    if (firstBase.status !== 'READY') throw new Error(`our first base backup: ${firstBase.status} ${firstBase.error}`);
    const ours = { sizeBytes: Number(firstBase.sizeBytes), addedBytes: Number(firstBase.addedBytes), seconds: (firstBase.finishedAt!.getTime() - firstBase.startedAt.getTime()) / 1000, sinceEnableSeconds: (firstBase.finishedAt!.getTime() - tEnable) / 1000 };
    log(`  ours: ${(ours.addedBytes / MiB).toFixed(1)} MiB added of ${(ours.sizeBytes / MiB).toFixed(0)} MiB in ${ours.seconds.toFixed(1)} s`);
    const before = pgbrBackupBytes();
    const pgbrFull = await pgbackrest(['backup', '--type=full']);
    const full = (await pgbrInfo()).at(-1)!;
    const pgbr = { sizeBytes: full.info.size, addedBytes: pgbrBackupBytes() - before, dataFilesBytes: full.info.repository.delta, seconds: round(pgbrFull.seconds) };
    log(`  pgBackRest full: ${(pgbr.addedBytes / MiB).toFixed(1)} MiB stored (${(pgbr.dataFilesBytes / MiB).toFixed(1)} MiB of it data files) of ${(pgbr.sizeBytes / MiB).toFixed(0)} MiB in ${pgbr.seconds} s`);
    return { ours, pgbr };
  };

  /** Reads what a recovery to `target` gave from its `app` database (at `url`), against the source's rows. */
  const recoveredRows = async (url: string, target: Date): Promise<RecoveredRows> => {
    const bound = new Date(target.getTime() - COMMIT_MARGIN_MS);
    const q = 'SELECT count(*) AS n, max(stamped) AS t, count(*) FILTER (WHERE stamped < $1) AS b FROM pitr_rows';
    const got = await one<{ n: string; t: Date | null; b: string }>(url, q, [bound]);
    const expectedBeforeMargin = Number((await one<{ n: string }>(appUrl, 'SELECT count(*) AS n FROM pitr_rows WHERE stamped < $1', [bound])).n);
    const maxStamped = got.t ? new Date(got.t) : null;
    return {
      rows: Number(got.n),
      maxStamped: maxStamped?.toISOString() ?? null,
      rowsBeforeMargin: Number(got.b),
      expectedBeforeMargin,
      exact: (!maxStamped || maxStamped <= target) && Number(got.b) === expectedBeforeMargin,
    };
  };

  /**
   * Ours: restoreToPointInTime to `target` as a clone (`app_at_t`, dropped after counting), from
   * the mutation to the operation's finish. `phases`: seconds from the mutation to each phase's start.
   */
  const recoverOurs = async (target: Date, attempt = 0): Promise<{ seconds: number; untilReplayedSeconds: number | null; phases: Record<string, number>; loadAverage: number[]; retries: number } & RecoveredRows> => {
    await sql(srcAdmin, 'CHECKPOINT');
    execFileSync('sync');
    const t0 = Date.now();
    const restored = await api<{ restoreToPointInTime: { __typename: string; operation?: { id: string } } }>(RESTORE_TO_TIME, { input: { environmentId: envGid, pointInTime: target.toISOString(), cloneDatabaseName: 'app_at_t' } });
    if (!restored.restoreToPointInTime.operation) throw new Error(`restoreToPointInTime: ${JSON.stringify(restored.restoreToPointInTime)}`);
    const op = await waitOperation(restored.restoreToPointInTime.operation.id);
    // A server just started applies PITR retention (prune, an exclusive lock) at once; a restore
    // meanwhile fails to lock the repository rather than waiting: start over.
    if (op.status === 'FAILED' && /locked exclusively/.test(op.error ?? '') && attempt < 10) {
      await sleep(2000);
      return recoverOurs(target, attempt + 1);
    }
    if (op.status !== 'SUCCEEDED') throw new Error(`our restore: ${op.status} ${op.error}`);
    const ph = op.phases;
    const r = {
      seconds: round((op.finishedAt!.getTime() - t0) / 1000),
      // Until the instance has replayed to the time: what pgBackRest's figure covers.
      untilReplayedSeconds: ph['moving-database'] ? round((ph['moving-database'] - t0) / 1000) : null,
      phases: Object.fromEntries(Object.entries(ph).map(([k, v]) => [k, round((v - t0) / 1000)])),
      ...(await recoveredRows(src.url('app_at_t'), target)),
      loadAverage: loadavg(),
      retries: attempt,
    };
    await sql(srcAdmin, 'DROP DATABASE app_at_t');
    return r;
  };

  /**
   * Ours, as a recovery instance: openRecoveryInstance at `target`, from the mutation until it is
   * READY (the whole cluster recovered to the time, read-only, on a TCP port: what pgBackRest's
   * restore also produces); rows counted over TCP with the source's role and password, then
   * closed and waited for until STOPPED (not timed). `phases`: seconds from the mutation.
   */
  const recoverOursInstance = async (target: Date, attempt = 0): Promise<{ seconds: number; phases: Record<string, number>; loadAverage: number[]; retries: number } & RecoveredRows> => {
    await sql(srcAdmin, 'CHECKPOINT');
    execFileSync('sync');
    const t0 = Date.now();
    const opened = await api<{ openRecoveryInstance: { __typename: string; operation?: { id: string }; recoveryInstance?: { id: string } } }>(OPEN_INSTANCE, { input: { environmentId: envGid, pointInTime: target.toISOString(), ttlMinutes: 10 } });
    const o = opened.openRecoveryInstance;
    if (!o.operation || !o.recoveryInstance) throw new Error(`openRecoveryInstance: ${JSON.stringify(o)}`);
    const op = await waitOperation(o.operation.id);
    const id = decodeGlobalID(o.recoveryInstance.id).id;
    if (op.status === 'FAILED' && /locked exclusively/.test(op.error ?? '') && attempt < 10) {
      await sleep(2000);
      return recoverOursInstance(target, attempt + 1);
    }
    if (op.status !== 'SUCCEEDED') throw new Error(`our recovery instance: ${op.status} ${op.error}`);
    const inst = await db.recoveryInstance.findUniqueOrThrow({ where: { id } });
    if (inst.status !== 'READY') throw new Error(`our recovery instance is ${inst.status}: ${inst.error}`);
    const ph = op.phases;
    const r = {
      // READY is written before the operation ends: from the mutation to readyAt.
      seconds: round((inst.readyAt!.getTime() - t0) / 1000),
      phases: Object.fromEntries(Object.entries(ph).map(([k, v]) => [k, round((v - t0) / 1000)])),
      ...(await recoveredRows(`postgresql://${src.user}:${encodeURIComponent(src.password)}@${inst.host}:${inst.port}/app`, target)),
      loadAverage: loadavg(),
      retries: attempt,
    };
    const closed = await api<{ closeRecoveryInstance: { __typename: string } }>(CLOSE_INSTANCE, { input: { id: o.recoveryInstance.id } });
    if (closed.closeRecoveryInstance.__typename !== 'RecoveryInstanceChangePayload') throw new Error(`closeRecoveryInstance: ${JSON.stringify(closed)}`);
    for (;;) {
      const s = await db.recoveryInstance.findUniqueOrThrow({ where: { id } });
      if (s.status !== 'READY') {
        if (s.status !== 'STOPPED') throw new Error(`our recovery instance ended ${s.status}: ${s.error}`);
        break;
      }
      await sleep(100);
    }
    return r;
  };

  /**
   * pgBackRest: `restore --type=time` of the whole cluster into a folder of its own, then the
   * server's replay until it is promoted; stopped and removed after counting.
   */
  const recoverPgbr = async (target: Date): Promise<{ seconds: number; restoreCommandSeconds: number; loadAverage: number[] } & RecoveredRows> => {
    await sql(srcAdmin, 'CHECKPOINT');
    execFileSync('sync');
    const restoreDir = path.join(root, 'pgbr-restore');
    await fs.mkdir(restoreDir, { mode: 0o700 });
    await chownPg(restoreDir);
    const restorePort = await freePort();
    const t0 = Date.now();
    const pgTime = target.toISOString().replace('T', ' ').replace('Z', '+00');
    await pgbackrest(['restore', `--pg1-path=${restoreDir}`, '--type=time', `--target=${pgTime}`, '--target-action=promote']);
    const tFetched = Date.now();
    held.cleanups.push(async () => {
      await run(path.join(PG_BIN, 'pg_ctl'), ['stop', '-D', restoreDir, '-m', 'immediate', '-w'], { ...asPg, allowFail: true });
    });
    // Archiving off: this copy must not push its new timeline into the source's stanza.
    await run(path.join(PG_BIN, 'pg_ctl'), ['start', '-D', restoreDir, '-w', '-t', '3600', '-l', path.join(restoreDir, 'restore.log'), '-o', `-p ${restorePort} -c archive_mode=off -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`], { ...asPg, env: { ...process.env, LC_MESSAGES: 'C' } });
    const restoredUrl = `postgresql://${src.user}:${encodeURIComponent(src.password)}@127.0.0.1:${restorePort}`;
    for (;;) {
      const r = await one<{ r: boolean }>(`${restoredUrl}/postgres`, 'SELECT pg_is_in_recovery() AS r').catch(() => ({ r: true }));
      if (!r.r) break;
      await sleep(100);
    }
    const r = {
      seconds: round((Date.now() - t0) / 1000),
      restoreCommandSeconds: round((tFetched - t0) / 1000),
      ...(await recoveredRows(`${restoredUrl}/app`, target)),
      loadAverage: loadavg(),
    };
    await run(path.join(PG_BIN, 'pg_ctl'), ['stop', '-D', restoreDir, '-m', 'fast', '-w'], { ...asPg });
    await fs.rm(restoreDir, { recursive: true, force: true });
    return r;
  };

  return {
    root,
    asPg,
    binaries,
    sourceSettings,
    src,
    srcAdmin,
    one,
    currentLsn,
    pgbrRepo,
    pgbackrest,
    pgbrInfo,
    pgbrBackupBytes,
    pushes,
    appUrl,
    dbBytes,
    clusterBytes,
    startLoad,
    stopLoad,
    db,
    repoPath,
    startOurs,
    stopOurs,
    api,
    envGid,
    pitrWindow,
    latestRecoverable,
    oursCovers,
    pgbrCovers,
    baseBackupRow,
    lsnEnable,
    firstBaseBackups,
    recoverOurs,
    recoverOursInstance,
    recoverPgbr,
  };
}

export type PitrRig = Awaited<ReturnType<typeof buildRig>>;

/** Builds the rig, runs `body` on it, then stops and removes everything it started. */
export async function withPitrRig<T>(o: RigOptions, body: (rig: PitrRig) => Promise<T>): Promise<T> {
  const held: Held = { cleanups: [] };
  try {
    return await body(await buildRig(o, held));
  } finally {
    await stopChild(held.pgbench);
    await held.server?.stop().catch(() => undefined);
    for (const c of held.cleanups) await c().catch(() => undefined);
    await held.source?.stop().catch(() => undefined);
    await held.catalog?.stop().catch(() => undefined);
    if (held.root) {
      if (!KEEP) await fs.rm(held.root, { recursive: true, force: true });
      else log(`kept ${held.root}`);
    }
  }
}
