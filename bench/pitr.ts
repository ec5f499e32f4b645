/**
 * Point-in-time recovery benchmark (`npm run bench:pitr`; not a test): Backplane's PITR as a user
 * runs it (`backplane start` on a catalog, PITR enabled, base backups taken and a clone restored
 * to a time through the GraphQL API) next to pgBackRest on the same source cluster and the same
 * write load, in the same run.
 *
 * The source is a PostgreSQL 15 cluster of its own (fsync, synchronous_commit and
 * full_page_writes on, as a real server runs) with `archive_mode = on`; pgBackRest archives
 * through `archive_command` (wrapped to time each push), Backplane streams with pg_receivewal on
 * a slot. The load is pgbench at a fixed rate with a script whose every transaction also inserts
 * a row stamped with clock_timestamp(), so the newest commit anywhere is `max(stamped)`.
 *
 * Steps, in order:
 *   1. base backups: Backplane's first (taken when PITR is enabled), pgBackRest's full.
 *   2. steady load for BENCH_PITR_LOAD_S: the WAL rate it makes; each archiver's lag; how much
 *      each repository grew per GiB of that WAL, against `zstd -3` of the same segments.
 *   3. second base backups under the load: ours through createBaseBackup, pgBackRest's `incr`;
 *      each side every byte it stored: ours BaseBackup.addedBytes (packs whole, index, snapshot),
 *      pgBackRest the growth of the files under its backup/ (data files, backup.manifest and its
 *      copy, the history manifest, backup.info and its copy).
 *   4. archive throughput: with Backplane stopped, a burst of WAL; pgBackRest archives it as it
 *      comes (each push timed); then Backplane starts and catches up: its time to cover the burst.
 *   5. recovery to the time the steady load ended (the first base backup plus all its WAL): ours
 *      as a clone (restoreToPointInTime), pgBackRest's `restore --type=time` plus the server's
 *      replay until it is promoted.
 *   6. RPO: BENCH_PITR_CRASHES times, under the load, `pg_ctl stop -m immediate` at a random
 *      moment; the newest commit each side can recover (ours: the API's latestRecoveryTime;
 *      pgBackRest: the last commit record in its newest archived segment, read with pg_waldump)
 *      against the last commit the server made (read after it restarts).
 *
 * Settings: BENCH_PITR_SCALE (pgbench scale, default 20: ~300 MiB; 68 is ~1 GiB),
 * BENCH_PITR_LOAD_S (default 180; 900 for "15 minutes of WAL"), BENCH_PITR_TPS (default 150),
 * BENCH_PITR_ARCHIVE_S (our archive interval and pgBackRest's archive_timeout, default 5),
 * BENCH_PITR_BURST_MB (default 256), BENCH_PITR_CRASHES (default 5), BENCH_PITR_SEED (default 1),
 * BENCH_PITR_RECOVERIES (step 5's runs, default 1), BENCH_PITR_BASELINE_ROOT (another checkout,
 * built: step 5 then alternates a server from it and ours, for an A/B in the same run),
 * BENCH_KEEP=1 keeps the work folder. Results: a summary on stdout and bench/results/pitr.json.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeGlobalID, encodeGlobalID } from '@pothos/plugin-relay';
import { Logger, runMigrations as installWorkerSchema } from 'graphile-worker';
import pg from 'pg';
import { createSecretBox, redactUrl } from '../src/app/secrets.ts';
import { createDb } from '../src/db/client.ts';
import { applyMigrations } from '../src/db/migrate.ts';
import { defaultPgBinaries } from '../src/db/pg-binaries.ts';
import { createDatabase, freePort, pgRunAs, startCluster, startScratchPostgres, type ScratchPostgres } from '../src/db/pg-server.ts';
import { issueApiKey } from '../src/services/api-keys.ts';
import { machineInfo } from './machine.ts';
import { sql } from './snapshot-data.ts';
import { gql, startServer, type ServerProcess } from './snapshot-server.ts';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const PG_BIN = '/usr/lib/postgresql/15/bin';
const SCALE = Number(process.env.BENCH_PITR_SCALE ?? 20);
const LOAD_S = Number(process.env.BENCH_PITR_LOAD_S ?? 180);
const TPS = Number(process.env.BENCH_PITR_TPS ?? 150);
const ARCHIVE_S = Number(process.env.BENCH_PITR_ARCHIVE_S ?? 5);
const BURST_MB = Number(process.env.BENCH_PITR_BURST_MB ?? 256);
const CRASHES = Number(process.env.BENCH_PITR_CRASHES ?? 5);
const KEEP = process.env.BENCH_KEEP === '1';
const RECOVERIES = Number(process.env.BENCH_PITR_RECOVERIES ?? 1);
const BASELINE_ROOT = process.env.BENCH_PITR_BASELINE_ROOT || undefined;
const MiB = 2 ** 20;
const GiB = 2 ** 30;

const log = (msg: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
const loadavg = () => os.loadavg().map((x) => round(x));

/** A small seeded generator (mulberry32): the crash moments repeat from run to run. */
function seeded(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median: round(median), min: round(s[0]), max: round(s.at(-1)!), n: s.length };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]) : NaN;
}

/** Bytes of the regular files under dir (no directory entries: an object store has none). */
function fileBytes(dir: string): number {
  const out = execFileSync('find', [dir, '-type', 'f', '-printf', '%s\\n'], { encoding: 'utf8' });
  return out.split('\n').reduce((n, l) => n + (Number(l) || 0), 0);
}

async function dirBytes(dir: string): Promise<number> {
  const out = execFileSync('du', ['-sb', dir], { encoding: 'utf8' });
  return Number(out.split('\t')[0]);
}

interface RunResult {
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a tool to its end (as `uid`/`gid` when given); rejects with its stderr when it fails. */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number; allowFail?: boolean } = {}): Promise<RunResult> {
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

const parseLsn = (lsn: string) => {
  const [hi, lo] = lsn.split('/');
  return BigInt(`0x${hi}`) * 2n ** 32n + BigInt(`0x${lo}`);
};
const SEG = 16 * MiB;
const segmentName = (tli: number, lsn: bigint) => {
  const n = lsn / BigInt(SEG);
  const hex = (v: bigint | number) => v.toString(16).toUpperCase().padStart(8, '0');
  return hex(tli) + hex(n / 256n) + hex(n % 256n);
};

const UPSERT_SCHEDULE = `mutation($input: UpsertScheduleInput!) { upsertSchedule(input: $input) { __typename ... on Error { code message } } }`;
const CREATE_BASE_BACKUP = `mutation($input: CreateBaseBackupInput!) { createBaseBackup(input: $input) {
  __typename ... on BaseBackupOperationPayload { operation { id } baseBackup { id } } ... on Error { code message } } }`;
const PITR_WINDOW = `query($id: ID!) { environment(id: $id) { pointInTimeRecovery { status earliestRecoveryTime latestRecoveryTime lagSeconds archivedBytes
  baseBackups { id status sizeBytes addedBytes startedAt finishedAt } gaps { reason from to } } } }`;
const RESTORE_TO_TIME = `mutation($input: RestoreToPointInTimeInput!) { restoreToPointInTime(input: $input) {
  __typename ... on RestorePayload { operation { id } } ... on Error { code message } } }`;

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

async function main() {
  const started = new Date();
  const loadAtStart = loadavg();
  const rand = seeded(Number(process.env.BENCH_PITR_SEED ?? 1));
  // Under the OS temp dir: the user PostgreSQL and pgBackRest run as must reach every folder.
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-bench-'));
  await fs.chmod(root, 0o755);
  const runAs = await pgRunAs();
  const asPg = { uid: runAs.uid, gid: runAs.gid };
  const chownPg = async (p: string) => {
    if (runAs.uid !== undefined) await fs.chown(p, runAs.uid, runAs.gid!);
  };
  const binaries = await defaultPgBinaries('system');
  let catalogServer: ScratchPostgres | undefined;
  let source: ScratchPostgres | undefined;
  let server: ServerProcess | undefined;
  let pgbench: ChildProcess | undefined;
  const cleanups: (() => Promise<void>)[] = [];
  try {
    log(`work dir ${root}; pgbench scale ${SCALE}, ${TPS} tps for ${LOAD_S} s, archive interval ${ARCHIVE_S} s, ${CRASHES} crashes`);
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
      archive_timeout: ARCHIVE_S,
      unix_socket_directories: sockDir,
      max_connections: 100,
    };
    source = await startScratchPostgres({ tmpRoot: root, settings: sourceSettings });
    const src = source;
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
    log(`pgbench -i -s ${SCALE}`);
    const init = await run(path.join(PG_BIN, 'pgbench'), ['-i', '-q', '-s', String(SCALE), '--no-vacuum', 'app'], { env: pgEnv });
    await sql(appUrl, 'CREATE TABLE pitr_rows (id bigserial PRIMARY KEY, stamped timestamptz NOT NULL); CREATE INDEX ON pitr_rows (stamped)');
    await sql(appUrl, 'VACUUM ANALYZE');
    const dbBytes = Number((await one<{ n: string }>(appUrl, "SELECT pg_database_size('app') AS n")).n);
    const clusterBytes = Number((await one<{ n: string }>(srcAdmin, 'SELECT sum(pg_database_size(datname))::bigint AS n FROM pg_database')).n);
    log(`  app database ${(dbBytes / MiB).toFixed(0)} MiB (cluster ${(clusterBytes / MiB).toFixed(0)} MiB) in ${init.seconds.toFixed(0)} s`);
    const scriptFile = path.join(root, 'load.sql');
    await fs.writeFile(scriptFile, PGBENCH_SCRIPT);
    const startLoad = () => {
      const child = spawn(path.join(PG_BIN, 'pgbench'), ['-n', '-c', '4', '-j', '2', '-R', String(TPS), '-T', '36000', '-s', String(SCALE), '-f', scriptFile, 'app'], { env: pgEnv, stdio: 'ignore' });
      child.on('error', () => undefined);
      pgbench = child;
      return child;
    };
    const stopLoad = async () => {
      const child = pgbench;
      pgbench = undefined;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await exited;
    };

    // --- the catalog and our server
    catalogServer = await startScratchPostgres({ tmpRoot: root });
    const catalogUrl = catalogServer.url('backplane');
    await createDatabase(catalogServer.adminUrl, 'backplane');
    await applyMigrations(catalogUrl);
    await installWorkerSchema({ connectionString: catalogUrl, logger: new Logger(() => () => {}) });
    const secretKey = randomBytes(32).toString('hex');
    const secrets = createSecretBox(Buffer.from(secretKey, 'hex'));
    const db = createDb(catalogUrl);
    cleanups.push(async () => db.$disconnect());
    const org = await db.organization.create({ data: { name: 'Bench' } });
    const project = await db.project.create({ data: { organizationId: org.id, name: 'App' } });
    const repoPath = path.join(root, 'repository');
    const dest = await db.destination.create({ data: { organizationId: org.id, name: 'local', provider: 'LOCAL', config: { path: repoPath } } });
    const env = await db.environment.create({
      data: {
        organizationId: org.id,
        projectId: project.id,
        name: 'production',
        type: 'PRODUCTION',
        databaseUrlEncrypted: secrets.seal(appUrl),
        databaseUrlRedacted: redactUrl(appUrl),
        databaseName: 'app',
        settings: { create: { timeoutSeconds: 6 * 3600 } },
        destinations: { create: [{ destinationId: dest.id }] },
      },
    });
    const key = (await issueApiKey(db, { organizationId: org.id, name: 'bench', scopes: ['admin'] })).secret;
    const envGid = encodeGlobalID('Environment', env.id);
    const home = path.join(root, 'home');
    const serverLog = path.join(root, 'server.log');
    const startOurs = () => startServer({ databaseUrl: catalogUrl, secretKey, logFile: serverLog, env: { BACKPLANE_HOME: home } });
    const pitrWindow = async () => (await gql<{ environment: { pointInTimeRecovery: PitrWindow } }>(server!.url, key, PITR_WINDOW, { id: envGid })).environment.pointInTimeRecovery;
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

    server = await startOurs();
    const lsnEnable = await currentLsn();
    const tEnable = Date.now();
    const enabled = await gql<{ upsertSchedule: { __typename: string; message?: string } }>(server.url, key, UPSERT_SCHEDULE, { input: { environmentId: envGid, walEnabled: true, walArchiveIntervalSeconds: ARCHIVE_S } });
    if (enabled.upsertSchedule.__typename !== 'SchedulePayload') throw new Error(`enabling PITR: ${JSON.stringify(enabled.upsertSchedule)}`);

    // --- 1. first base backups (no load yet: each alone on the machine)
    log('first base backups');
    const firstBase = await (async () => {
      for (;;) {
        const b = await db.baseBackup.findFirst({ orderBy: { startedAt: 'asc' } });
        if (b) return baseBackupRow(b.id);
        await sleep(200);
      }
    })();
    if (firstBase.status !== 'READY') throw new Error(`our first base backup: ${firstBase.status} ${firstBase.error}`);
    const ourBase1 = { sizeBytes: Number(firstBase.sizeBytes), addedBytes: Number(firstBase.addedBytes), seconds: (firstBase.finishedAt!.getTime() - firstBase.startedAt.getTime()) / 1000, sinceEnableSeconds: (firstBase.finishedAt!.getTime() - tEnable) / 1000 };
    log(`  ours: ${(ourBase1.addedBytes / MiB).toFixed(1)} MiB added of ${(ourBase1.sizeBytes / MiB).toFixed(0)} MiB in ${ourBase1.seconds.toFixed(1)} s`);
    const pgbrInfo = async () => JSON.parse((await pgbackrest(['info', '--output=json'])).stdout)[0].backup as { type: string; label: string; info: { size: number; delta: number; repository: { size: number; delta: number } }; timestamp: { start: number; stop: number } }[];
    // What a pgBackRest backup adds is more than its info's repository.delta (its data files):
    // also backup.manifest and its .copy, the manifest kept in backup.history and the grown
    // backup.info (and .copy), all under backup/. Ours (addedBytes) counts packs whole, index and snapshot.
    const pgbrBackupDir = path.join(pgbrRepo, 'backup');
    const pgbrBytes0 = fileBytes(pgbrBackupDir);
    const pgbrFull = await pgbackrest(['backup', '--type=full']);
    const full = (await pgbrInfo()).at(-1)!;
    const pgbrBytes1 = fileBytes(pgbrBackupDir);
    const pgbrBase1 = { sizeBytes: full.info.size, addedBytes: pgbrBytes1 - pgbrBytes0, dataFilesBytes: full.info.repository.delta, seconds: round(pgbrFull.seconds) };
    log(`  pgBackRest full: ${(pgbrBase1.addedBytes / MiB).toFixed(1)} MiB stored (${(pgbrBase1.dataFilesBytes / MiB).toFixed(1)} MiB of it data files) of ${(pgbrBase1.sizeBytes / MiB).toFixed(0)} MiB in ${pgbrBase1.seconds} s`);

    // --- 2. steady load
    await oursCovers(new Date());
    await pgbrCovers(await currentLsn());
    const repoBefore = { ours: await dirBytes(repoPath), pgbr: await dirBytes(path.join(pgbrRepo, 'archive')) };
    const ourParts = async () => Object.fromEntries(await Promise.all(['data', 'index', 'snapshots'].map(async (d) => [d, await dirBytes(path.join(repoPath, d))] as const)));
    const partsBefore = await ourParts();
    const uploadsBefore = await db.walUpload.count();
    const lsnLoadStart = await currentLsn();
    log(`steady load: ${TPS} tps for ${LOAD_S} s`);
    startLoad();
    const tLoadStart = Date.now();
    const lagSamples = { ours: [] as number[], pgbrBytes: [] as number[] };
    while (Date.now() - tLoadStart < LOAD_S * 1000) {
      await sleep(1000);
      const c = await db.pitrCluster.findFirst({ select: { coveredUntil: true } });
      if (c?.coveredUntil) lagSamples.ours.push((Date.now() - c.coveredUntil.getTime()) / 1000);
      // WAL written past the end of the newest segment pgBackRest holds.
      const a = await one<{ w: string | null; l: string }>(srcAdmin, 'SELECT last_archived_wal AS w, pg_current_wal_lsn()::text AS l FROM pg_stat_archiver');
      if (a.w && /^[0-9A-F]{24}$/.test(a.w)) {
        const end = (BigInt(`0x${a.w.slice(8, 16)}`) * 256n + BigInt(`0x${a.w.slice(16, 24)}`) + 1n) * BigInt(SEG);
        lagSamples.pgbrBytes.push(Math.max(0, Number(parseLsn(a.l) - end)));
      }
    }
    const tLoadEnd = new Date();
    const lsnLoadEnd = await currentLsn();
    const committedInLoad = Number((await one<{ n: string }>(appUrl, 'SELECT count(*) AS n FROM pitr_rows WHERE stamped >= $1', [new Date(tLoadStart)])).n);
    const walLoad = Number(lsnLoadEnd - lsnLoadStart);
    const walRate = walLoad / ((tLoadEnd.getTime() - tLoadStart) / 1000);
    log(`  ${(walLoad / MiB).toFixed(0)} MiB of WAL at ${(walRate / MiB).toFixed(2)} MiB/s, ${committedInLoad} commits`);

    // --- 3. second base backups, under the load
    log('second base backups (under the load)');
    // Both archives reach the end of the steady load first: the repository growth is the load's WAL.
    await oursCovers(tLoadEnd);
    await pgbrCovers(lsnLoadEnd);
    const repoAfter = { ours: await dirBytes(repoPath), pgbr: await dirBytes(path.join(pgbrRepo, 'archive')) };
    const partsAfter = await ourParts();
    const loadUploads = (await db.walUpload.findMany({ orderBy: { createdAt: 'asc' }, skip: uploadsBefore })).filter((u) => u.createdAt.getTime() >= tLoadStart);
    const ourBreakdown = {
      uploads: loadUploads.length,
      uploadsWithPartial: loadUploads.filter((u) => u.files.some((f) => f.endsWith('.partial'))).length,
      addedMiB: round(loadUploads.reduce((a, u) => a + Number(u.addedBytes), 0) / MiB, 1),
      dataMiB: round((partsAfter.data - partsBefore.data) / MiB, 1),
      indexMiB: round((partsAfter.index - partsBefore.index) / MiB, 2),
      snapshotsMiB: round((partsAfter.snapshots - partsBefore.snapshots) / MiB, 2),
    };
    const second = await gql<{ createBaseBackup: { __typename: string; operation?: { id: string }; baseBackup?: { id: string } } }>(server.url, key, CREATE_BASE_BACKUP, { input: { environmentId: envGid } });
    if (!second.createBaseBackup.baseBackup) throw new Error(`createBaseBackup: ${JSON.stringify(second.createBaseBackup)}`);
    // BaseBackup is not a Node: its id is the catalog's own.
    const secondBase = await baseBackupRow(second.createBaseBackup.baseBackup.id);
    if (secondBase.status !== 'READY') throw new Error(`our second base backup: ${secondBase.status} ${secondBase.error}`);
    const ourBase2 = { sizeBytes: Number(secondBase.sizeBytes), addedBytes: Number(secondBase.addedBytes), seconds: (secondBase.finishedAt!.getTime() - secondBase.startedAt.getTime()) / 1000 };
    log(`  ours: ${(ourBase2.addedBytes / MiB).toFixed(1)} MiB added in ${ourBase2.seconds.toFixed(1)} s`);
    const pgbrIncr = await pgbackrest(['backup', '--type=incr']);
    const incr = (await pgbrInfo()).at(-1)!;
    const pgbrBase2 = { sizeBytes: incr.info.size, addedBytes: fileBytes(pgbrBackupDir) - pgbrBytes1, dataFilesBytes: incr.info.repository.delta, seconds: round(pgbrIncr.seconds), type: incr.type };
    log(`  pgBackRest ${incr.type}: ${(pgbrBase2.addedBytes / MiB).toFixed(1)} MiB stored (${(pgbrBase2.dataFilesBytes / MiB).toFixed(1)} MiB of it data files) in ${pgbrBase2.seconds} s`);
    await stopLoad();

    // zstd -3 of the segments the steady load wrote (from the one after the switch before it to
    // the one the switch after it closed), decompressed from pgBackRest's copies; both
    // repositories archived exactly these in the phase (ours also its partial copies).
    let zstdBytes = 0;
    let zstdSegments = 0;
    const archiveDir = path.join(pgbrRepo, 'archive', 'bench');
    const firstLoadSeg = segmentName(1, lsnLoadStart);
    const lastLoadSeg = segmentName(1, lsnLoadEnd);
    const stored = (await run('find', [archiveDir, '-type', 'f', '-name', '*.zst'])).stdout.split('\n').filter(Boolean);
    for (const file of stored) {
      const name = path.basename(file).slice(0, 24);
      if (!/^[0-9A-F]{24}$/.test(name) || name < firstLoadSeg || name > lastLoadSeg) continue;
      const r = await run('sh', ['-c', `zstd -d -q -c '${file}' | zstd -3 -q -c | wc -c`]);
      zstdBytes += Number(r.stdout.trim());
      zstdSegments++;
    }

    // --- 4. archive throughput: a burst of WAL while Backplane is stopped, then its catch-up
    log(`archive throughput: a burst of ~${BURST_MB} MiB of WAL`);
    await oursCovers(new Date());
    await server.stop();
    server = undefined;
    const pushesBeforeBurst = (await pushes()).length;
    const lsnBurst0 = await currentLsn();
    const tBurst0 = Date.now();
    // Rows of ~1 KiB incompressible-ish text; WAL is about the heap bytes plus index entries.
    await sql(appUrl, `CREATE TABLE burst AS SELECT g AS id, repeat(md5(g::text), 30) AS body FROM generate_series(1, ${Math.round((BURST_MB * MiB) / 1100)}) g`);
    const tBurst1 = new Date();
    const lsnBurst1 = await currentLsn();
    const burstWal = Number(lsnBurst1 - lsnBurst0);
    const tPgbrDone = await pgbrCovers(lsnBurst1);
    const burstPushes = (await pushes()).slice(pushesBeforeBurst).filter((p) => p.ok);
    const pushSeconds = burstPushes.reduce((s, p) => s + (p.end - p.start), 0);
    const pushBytes = burstPushes.reduce((s, p) => s + p.bytes, 0);
    log(`  ${(burstWal / MiB).toFixed(0)} MiB of WAL in ${((tBurst1.getTime() - tBurst0) / 1000).toFixed(1)} s; pgBackRest covered it ${((tPgbrDone.getTime() - tBurst1.getTime()) / 1000).toFixed(1)} s after, ${burstPushes.length} pushes taking ${pushSeconds.toFixed(1)} s`);
    const tOursStart = Date.now();
    server = await startOurs();
    const tOursReady = Date.now();
    const tOursDone = await oursCovers(tBurst1);
    const oursCatchUp = (tOursDone.getTime() - tOursReady) / 1000;
    log(`  ours: started in ${((tOursReady - tOursStart) / 1000).toFixed(1)} s, covered the burst ${oursCatchUp.toFixed(1)} s after it was ready`);
    await sql(appUrl, 'DROP TABLE burst');

    // --- 5. recovery to the end of the steady load: the first base backups plus all its WAL
    const target = tLoadEnd;
    const expectedRows = Number((await one<{ n: string }>(appUrl, 'SELECT count(*) AS n FROM pitr_rows WHERE stamped <= $1', [target])).n);
    log(`recovery to ${target.toISOString()} (${expectedRows} stamped rows by then)`);
    const recoverOnce = async (attempt = 0): Promise<{ seconds: number; untilReplayedSeconds: number | null; phases: Record<string, number>; rows: number; loadAverage: number[]; retries: number }> => {
      await sql(srcAdmin, 'CHECKPOINT');
      execFileSync('sync');
      const tOurRestore = Date.now();
      const restored = await gql<{ restoreToPointInTime: { __typename: string; operation?: { id: string } } }>(server!.url, key, RESTORE_TO_TIME, { input: { environmentId: envGid, pointInTime: target.toISOString(), cloneDatabaseName: 'app_at_t' } });
      if (!restored.restoreToPointInTime.operation) throw new Error(`restoreToPointInTime: ${JSON.stringify(restored.restoreToPointInTime)}`);
      const op = await waitOperation(restored.restoreToPointInTime.operation.id);
      // A server just started applies PITR retention (prune, an exclusive lock) at once; a restore
      // meanwhile fails to lock the repository rather than waiting: start over.
      if (op.status === 'FAILED' && /locked exclusively/.test(op.error ?? '') && attempt < 10) {
        await sleep(2000);
        return recoverOnce(attempt + 1);
      }
      if (op.status !== 'SUCCEEDED') throw new Error(`our restore: ${op.status} ${op.error}`);
      const ourEnd = op.finishedAt!.getTime();
      const ph = op.phases;
      const r = {
        seconds: round((ourEnd - tOurRestore) / 1000),
        // Until the instance has replayed to the time: what pgBackRest's figure covers.
        untilReplayedSeconds: ph['moving-database'] ? round((ph['moving-database'] - tOurRestore) / 1000) : null,
        phases: Object.fromEntries(Object.entries(ph).map(([k, v]) => [k, round((v - tOurRestore) / 1000)])),
        rows: Number((await one<{ n: string }>(src.url('app_at_t'), 'SELECT count(*) AS n FROM pitr_rows')).n),
        loadAverage: loadavg(),
        retries: attempt,
      };
      await sql(srcAdmin, 'DROP DATABASE app_at_t');
      // Rows are stamped before their commit: under load one stamped by the time may commit after
      // it, and no recovery to the time holds it. Compared across runs (and with pgBackRest's) instead.
      if (r.rows !== expectedRows) log(`  (${r.rows} stamped rows, ${expectedRows} stamped by the time)`);
      return r;
    };
    // Each run from a server of its own (the build under test, or BENCH_PITR_BASELINE_ROOT's),
    // alternating baseline and ours, so both meet the same machine state on a shared machine.
    const ourRuns: Awaited<ReturnType<typeof recoverOnce>>[] = [];
    const baselineRuns: Awaited<ReturnType<typeof recoverOnce>>[] = [];
    for (let i = 0; i < RECOVERIES; i++) {
      for (const which of BASELINE_ROOT ? (['baseline', 'ours'] as const) : (['ours'] as const)) {
        if (BASELINE_ROOT) {
          await server?.stop();
          server = await startServer({ databaseUrl: catalogUrl, secretKey, logFile: serverLog, env: { BACKPLANE_HOME: home }, root: which === 'baseline' ? BASELINE_ROOT : undefined });
        }
        const r = await recoverOnce();
        (which === 'ours' ? ourRuns : baselineRuns).push(r);
        log(`  ${which}: ${r.seconds} s (replayed after ${r.untilReplayedSeconds} s), ${r.rows} rows; phases ${JSON.stringify(r.phases)}; load ${r.loadAverage[0]}`);
      }
    }
    const ourRecovery = {
      seconds: stats(ourRuns.map((r) => r.seconds)).median,
      untilReplayedSeconds: stats(ourRuns.map((r) => r.untilReplayedSeconds ?? NaN)).median,
      rows: ourRuns[0].rows,
      secondsStats: stats(ourRuns.map((r) => r.seconds)),
      untilReplayedStats: stats(ourRuns.map((r) => r.untilReplayedSeconds ?? NaN)),
      runs: ourRuns,
      ...(baselineRuns.length
        ? { baseline: { root: BASELINE_ROOT, secondsStats: stats(baselineRuns.map((r) => r.seconds)), untilReplayedStats: stats(baselineRuns.map((r) => r.untilReplayedSeconds ?? NaN)), runs: baselineRuns } }
        : {}),
    };
    if (BASELINE_ROOT) log(`  medians: ours ${ourRecovery.secondsStats.median} s (${ourRecovery.secondsStats.min}-${ourRecovery.secondsStats.max}), baseline ${ourRecovery.baseline!.secondsStats.median} s (${ourRecovery.baseline!.secondsStats.min}-${ourRecovery.baseline!.secondsStats.max})`);

    const pgbrRuns: { seconds: number; restoreCommandSeconds: number; rows: number }[] = [];
    for (let i = 0; i < RECOVERIES; i++) {
      await sql(srcAdmin, 'CHECKPOINT');
      execFileSync('sync');
      const restoreDir = path.join(root, 'pgbr-restore');
      await fs.mkdir(restoreDir, { mode: 0o700 });
      await chownPg(restoreDir);
      const restorePort = await freePort();
      const tPgbrRestore = Date.now();
      const pgTime = target.toISOString().replace('T', ' ').replace('Z', '+00');
      await pgbackrest(['restore', `--pg1-path=${restoreDir}`, '--type=time', `--target=${pgTime}`, '--target-action=promote']);
      const tFetched = Date.now();
      // Archiving off: this copy must not push its new timeline into the source's stanza.
      await run(path.join(PG_BIN, 'pg_ctl'), ['start', '-D', restoreDir, '-w', '-t', '3600', '-l', path.join(restoreDir, 'restore.log'), '-o', `-p ${restorePort} -c archive_mode=off -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`], { ...asPg, env: { ...process.env, LC_MESSAGES: 'C' } });
      const restoredUrl = `postgresql://${src.user}:${encodeURIComponent(src.password)}@127.0.0.1:${restorePort}`;
      for (;;) {
        const r = await one<{ r: boolean }>(`${restoredUrl}/postgres`, 'SELECT pg_is_in_recovery() AS r').catch(() => ({ r: true }));
        if (!r.r) break;
        await sleep(100);
      }
      const r = {
        seconds: round((Date.now() - tPgbrRestore) / 1000),
        restoreCommandSeconds: round((tFetched - tPgbrRestore) / 1000),
        rows: Number((await one<{ n: string }>(`${restoredUrl}/app`, 'SELECT count(*) AS n FROM pitr_rows')).n),
      };
      log(`  pgBackRest: ${r.seconds} s (restore ${r.restoreCommandSeconds} s, then replay), ${r.rows} rows; load ${loadavg()[0]}`);
      await run(path.join(PG_BIN, 'pg_ctl'), ['stop', '-D', restoreDir, '-m', 'fast', '-w'], { ...asPg });
      await fs.rm(restoreDir, { recursive: true, force: true });
      pgbrRuns.push(r);
    }
    const pgbrRecovery = { seconds: stats(pgbrRuns.map((r) => r.seconds)).median, secondsStats: stats(pgbrRuns.map((r) => r.seconds)), rows: pgbrRuns[0].rows, runs: pgbrRuns };
    const rowCounts = [...new Set([...ourRuns, ...baselineRuns, ...pgbrRuns].map((r) => r.rows))];
    if (rowCounts.length > 1) log(`  the recoveries disagree: ${rowCounts.join(', ')} rows`);

    // --- 6. RPO: crash the source at random moments under the load
    log(`RPO: ${CRASHES} crashes under the load`);
    const crashes: { crashedAt: string; lastCommit: string; ours: { newestRecoverable: string | null; rpoSeconds: number | null }; pgbackrest: { lastArchivedSegment: string | null; newestRecoverable: string | null; rpoSeconds: number | null } }[] = [];
    const tempWal = path.join(root, 'waldump');
    await fs.mkdir(tempWal);
    for (let i = 0; i < CRASHES; i++) {
      startLoad();
      // Both archives are live again before the random moment.
      await sleep(1000);
      await oursCovers(new Date(), 120_000);
      const wait = ARCHIVE_S * 1000 * (1 + 2 * rand());
      await sleep(wait);
      const crashedAt = new Date();
      await run(path.join(PG_BIN, 'pg_ctl'), ['stop', '-D', src.dataDir, '-m', 'immediate', '-w'], { ...asPg });
      await stopLoad();
      // Whatever either side would still manage to send has had its chance.
      await sleep(Math.max(10_000, 2 * ARCHIVE_S * 1000));
      const oursLatest = await latestRecoverable();
      // pgBackRest: the newest segment in its archive, and the last commit record in it.
      const files = (await run('find', [archiveDir, '-type', 'f', '-name', '*.zst'])).stdout.split('\n').filter((f) => /\/[0-9A-F]{24}-[0-9a-f]{40}\.zst$/.test(f)).sort((a, b) => path.basename(a).localeCompare(path.basename(b)));
      let pgbrLastCommit: Date | null = null;
      let lastSeg: string | null = null;
      // The newest segments may hold no commit (a checkpoint, a switch): look back a few.
      for (const f of files.slice(-4).reverse()) {
        lastSeg ??= path.basename(f).slice(0, 24);
        const plain = path.join(tempWal, path.basename(f).slice(0, 24));
        await run('sh', ['-c', `zstd -d -q -f -o '${plain}' '${f}'`]);
        const dump = await run(path.join(PG_BIN, 'pg_waldump'), [plain], { allowFail: true });
        await fs.rm(plain, { force: true });
        const commits = [...dump.stdout.matchAll(/desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC/g)];
        if (commits.length) {
          pgbrLastCommit = new Date(`${commits.at(-1)![1].replace(' ', 'T')}Z`);
          break;
        }
      }
      // Back up (crash recovery of the local WAL): every acknowledged commit is there again.
      await startCluster({ dataDir: src.dataDir, port: src.port, password: src.password, binaries, settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: 300, ...sourceSettings } });
      const last = new Date((await one<{ t: Date }>(appUrl, 'SELECT max(stamped) AS t FROM pitr_rows')).t);
      const newestBy = async (t: Date | null) => (t ? ((await one<{ t: Date | null }>(appUrl, 'SELECT max(stamped) AS t FROM pitr_rows WHERE stamped <= $1', [t])).t ?? null) : null);
      const oursNewest = await newestBy(oursLatest);
      const pgbrNewest = await newestBy(pgbrLastCommit);
      const rpo = (n: Date | null) => (n ? round((last.getTime() - new Date(n).getTime()) / 1000) : null);
      crashes.push({
        crashedAt: crashedAt.toISOString(),
        lastCommit: last.toISOString(),
        ours: { newestRecoverable: oursNewest ? new Date(oursNewest).toISOString() : null, rpoSeconds: rpo(oursNewest) },
        pgbackrest: { lastArchivedSegment: lastSeg, newestRecoverable: pgbrNewest ? new Date(pgbrNewest).toISOString() : null, rpoSeconds: rpo(pgbrNewest) },
      });
      log(`  crash ${i + 1}: RPO ours ${rpo(oursNewest)} s, pgBackRest ${rpo(pgbrNewest)} s`);
    }
    await stopLoad();
    await oursCovers(new Date(), 120_000);
    await pgbrCovers(await currentLsn());

    const window = await pitrWindow();
    const totals = { ours: await dirBytes(repoPath), pgbr: await dirBytes(pgbrRepo) };
    const loadAtEnd = loadavg();
    const ourWalGrowth = repoAfter.ours - repoBefore.ours;
    const pgbrWalGrowth = repoAfter.pgbr - repoBefore.pgbr;
    const perGiB = (b: number) => round((b / walLoad) * GiB / MiB, 1);
    const result = {
      bench: 'pitr',
      started: started.toISOString(),
      finished: new Date().toISOString(),
      machine: machineInfo({ postgres: [path.join(PG_BIN, 'postgres'), ['--version']], zstd: ['zstd', ['--version']] }),
      loadAverage: { start: loadAtStart, end: loadAtEnd },
      settings: { pgbenchScale: SCALE, loadSeconds: LOAD_S, tps: TPS, archiveIntervalSeconds: ARCHIVE_S, burstMiB: BURST_MB, crashes: CRASHES, seed: Number(process.env.BENCH_PITR_SEED ?? 1) },
      source: { appDatabaseMiB: round(dbBytes / MiB, 1), clusterMiB: round(clusterBytes / MiB, 1), settings: 'fsync, synchronous_commit, full_page_writes on; archive_mode on, archive_timeout = the archive interval' },
      pgbackrest: { version: (await run('pgbackrest', ['version'])).stdout.trim(), config: 'compress-type=zst, compress-level=3, process-max = cores, archive_command (synchronous archive-push), backups with start-fast' },
      rpo: {
        note: 'newest recoverable commit: ours = the newest stamped row at or before the API\'s latestRecoveryTime read after the crash; pgBackRest = the newest stamped row at or before the last COMMIT record (pg_waldump) in its newest archived segments. Last commit = max(stamped) after the server restarted.',
        oursSeconds: stats(crashes.map((c) => c.ours.rpoSeconds ?? NaN).filter((x) => !Number.isNaN(x))),
        pgbackrestSeconds: stats(crashes.map((c) => c.pgbackrest.rpoSeconds ?? NaN).filter((x) => !Number.isNaN(x))),
        crashes,
      },
      steadyLoad: {
        seconds: round((tLoadEnd.getTime() - tLoadStart) / 1000, 1),
        commits: committedInLoad,
        walMiB: round(walLoad / MiB, 1),
        walRateMiBs: round(walRate / MiB, 3),
        oursLagSeconds: { median: percentile(lagSamples.ours, 50), p95: percentile(lagSamples.ours, 95), max: percentile(lagSamples.ours, 100) },
        pgbackrestBehindMiB: { median: round(percentile(lagSamples.pgbrBytes, 50) / MiB, 1), p95: round(percentile(lagSamples.pgbrBytes, 95) / MiB, 1), max: round(percentile(lagSamples.pgbrBytes, 100) / MiB, 1) },
      },
      archiveThroughput: {
        burstWalMiB: round(burstWal / MiB, 1),
        burstGeneratedMiBs: round(burstWal / MiB / ((tBurst1.getTime() - tBurst0) / 1000), 1),
        oursCatchUpSeconds: round(oursCatchUp, 1),
        oursMiBs: round(burstWal / MiB / oursCatchUp, 1),
        oursStartSeconds: round((tOursReady - tOursStart) / 1000, 1),
        pgbackrestPushes: burstPushes.length,
        pgbackrestPushSecondsMedian: stats(burstPushes.map((p) => p.end - p.start)).median,
        pgbackrestMiBs: round(pushBytes / MiB / pushSeconds, 1),
        pgbackrestCoveredAfterBurstSeconds: round((tPgbrDone.getTime() - tBurst1.getTime()) / 1000, 1),
        note: 'ours: Backplane stopped during the burst, then started; MiB/s = the burst\'s WAL over the time from the server being ready to the API\'s window passing the burst. pgBackRest: segments pushed while the burst ran, MiB/s = segment bytes over the summed archive-push times (archive_command runs one at a time).',
      },
      repositoryPerGiBOfWal: {
        walMiB: round(walLoad / MiB, 1),
        oursMiB: perGiB(ourWalGrowth),
        pgbackrestMiB: perGiB(pgbrWalGrowth),
        zstd3MiB: perGiB(zstdBytes),
        note: 'growth of our repository and of pgBackRest\'s archive/ folder while the steady load ran, and zstd -3 of the segments it filled, each per GiB of WAL the load wrote (LSN difference)',
        segments: zstdSegments,
        oursBreakdown: ourBreakdown,
      },
      baseBackups: {
        ours: { first: ourBase1, second: ourBase2 },
        pgbackrest: { full: pgbrBase1, second: pgbrBase2 },
        secondOverFirst: { ours: round(ourBase2.addedBytes / ourBase1.addedBytes, 3), pgbackrest: round(pgbrBase2.addedBytes / pgbrBase1.addedBytes, 3) },
      },
      recovery: {
        targetTime: target.toISOString(),
        expectedRows,
        rowCountsSeen: rowCounts,
        walToReplayMiB: round(Number(lsnLoadEnd - lsnEnable) / MiB, 1),
        ours: ourRecovery,
        pgbackrest: pgbrRecovery,
        note: 'ours: restoreToPointInTime as a clone, from the mutation to the operation\'s finish (fetching the base, replaying in a temporary instance, moving the one database into a new database); untilReplayedSeconds ends when moving-database starts. pgBackRest: restore --type=time of the whole cluster plus PostgreSQL\'s replay until promoted.',
      },
      repositoryTotalMiB: { ours: round(totals.ours / MiB, 1), pgbackrest: round(totals.pgbr / MiB, 1) },
      window: { earliest: window.earliestRecoveryTime, latest: window.latestRecoveryTime, gaps: window.gaps.length },
      note: SCALE < 68 || LOAD_S < 900 ? `smaller than the issue's "1 GiB plus 15 minutes of WAL": ${round(dbBytes / MiB)} MiB database, ${LOAD_S} s of load` : 'at the issue\'s scale',
    };
    await fs.mkdir(path.join(BENCH, 'results'), { recursive: true });
    await fs.writeFile(path.join(BENCH, 'results', 'pitr.json'), `${JSON.stringify(result, null, 2)}\n`);
    log(`RPO median ours ${result.rpo.oursSeconds.median} s (${result.rpo.oursSeconds.min}-${result.rpo.oursSeconds.max}), pgBackRest ${result.rpo.pgbackrestSeconds.median} s (${result.rpo.pgbackrestSeconds.min}-${result.rpo.pgbackrestSeconds.max})`);
    log(`repository per GiB of WAL: ours ${result.repositoryPerGiBOfWal.oursMiB} MiB, pgBackRest ${result.repositoryPerGiBOfWal.pgbackrestMiB} MiB, zstd -3 ${result.repositoryPerGiBOfWal.zstd3MiB} MiB`);
    log(`second base backup added: ours ${ourBase2.addedBytes.toLocaleString('en')} bytes, pgBackRest ${pgbrBase2.type} ${pgbrBase2.addedBytes.toLocaleString('en')} (${(100 * (ourBase2.addedBytes / pgbrBase2.addedBytes - 1)).toFixed(1)} %)`);
    log(`recovery: ours ${ourRecovery.seconds} s (replayed at ${ourRecovery.untilReplayedSeconds} s), pgBackRest ${pgbrRecovery.seconds} s`);
    log(`repositories: ours ${result.repositoryTotalMiB.ours} MiB, pgBackRest ${result.repositoryTotalMiB.pgbackrest} MiB; load average ${loadAtStart.join(' ')} -> ${loadAtEnd.join(' ')}`);
    log('wrote bench/results/pitr.json');
  } finally {
    await stopLoad_(pgbench);
    await server?.stop().catch(() => undefined);
    for (const c of cleanups) await c().catch(() => undefined);
    await source?.stop().catch(() => undefined);
    await catalogServer?.stop().catch(() => undefined);
    if (!KEEP) await fs.rm(root, { recursive: true, force: true });
    else log(`kept ${root}`);
  }
}

async function stopLoad_(child: ChildProcess | undefined) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await exited;
}


main().catch((err) => {
  console.error(err);
  process.exit(1);
});
