/**
 * Snapshot benchmark (`npm run bench:snapshot`; not a test): a whole environment (PostgreSQL
 * database plus files folder) through Backplane's real service path, against the raw tools on
 * the same data in the same run.
 *
 * Steps:
 *   raw-snapshot      pg_dump -Fc -Z0 | zstd -3 > file, then tar of the files | zstd -3 > file
 *   ours-snapshot-1   createSnapshot over GraphQL, run by the worker of `backplane start`, LOCAL destination
 *   ours-snapshot-2   the same after UPDATE of a random 1% of every table's rows
 *   raw-restore       zstd -d | pg_restore into a fresh database (one job, like ours), zstd -d | tar -x
 *   ours-restore      restoreSnapshot (SWAP, no safety snapshot) of snapshot 1: database and files
 *   ours-restore-db   the same, database only (against raw pg_restore alone)
 * While each of our steps runs, simple GraphQL queries go to the same server at BENCH_QPS per
 * second (open loop); p50/p95/p99 are reported per step, and once with the server idle. The raw
 * database steps run under the same load, sent to an idle `backplane start`, so both sides
 * share the machine with the same extra work.
 *
 * Our side runs as a `backplane start` child process per step (API and worker in one process,
 * as `npm start` runs it); peak memory is measured the same way for it and for the raw pipelines
 * (see snapshot-measure.ts). Memory is reported per step for Backplane's own tree (the process,
 * whose API, job and codec threads are threads, plus the pg_dump/pg_restore it spawns) over the
 * measured job alone, with the PostgreSQL cluster beside it (Pss), and for an idle `backplane
 * start`, embedded (as `npm start` runs it) and with DATABASE_URL: `memory` in the JSON. Each such server first runs one small job of the step's kind on a
 * second environment (warmJob), and every step starts from the same machine state (settle,
 * dropCaches): bench/README.md says why.
 *
 * The whole sequence runs BENCH_RUNS times (default 3), each run into an empty repository of
 * its own; each step reports its median run and each ratio the median of the runs' ratios.
 *
 * Settings: BENCH_DB_MB (default 1024), BENCH_FILES_MB (default 100), BENCH_QPS (default 20),
 * BENCH_RUNS (default 3), BENCH_KEEP=1 keeps bench/work/snapshot-*. Results: a table on stdout
 * and bench/results/snapshot.json.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeGlobalID, encodeGlobalID } from '@pothos/plugin-relay';
import { Logger, runMigrations as installWorkerSchema } from 'graphile-worker';
import pg from 'pg';
import { redactUrl } from '../src/app/secrets.ts';
import { createDb } from '../src/db/client.ts';
import { applyMigrations } from '../src/db/migrate.ts';
import { createDatabase, dropDatabase, startScratchPostgres, type ScratchPostgres } from '../src/db/pg-server.ts';
import { seedEnvironment } from './catalog-seed.ts';
import { machineInfo } from './machine.ts';
import { changeOnePercent, databaseBytes, generateDatabase, generateFiles, sql, treeBytes } from './snapshot-data.ts';
import { postmasterPid, runPipeline, samplePostgresPss, sampleTreeRss, startLoad, summarize, treePssKB, type CommandResult, type LatencySummary } from './snapshot-measure.ts';
import { gql, startServer, type ServerProcess } from './snapshot-server.ts';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const DB_MB = Number(process.env.BENCH_DB_MB ?? 1024);
const FILES_MB = Number(process.env.BENCH_FILES_MB ?? 100);
const QPS = Number(process.env.BENCH_QPS ?? 20);
const KEEP = process.env.BENCH_KEEP === '1';
/** Whole runs of the sequence; single runs on a shared 2-core machine vary by 10-30%. */
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const MB = 1e6;

const log = (msg: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);

interface StepResult {
  step: string;
  /** Logical bytes the step covered: database size (pg_database_size) plus file bytes, or part of it. */
  bytesIn: number;
  wallSeconds: number;
  /** bytesIn / wall time, MB/s (10^6 bytes). */
  throughputMBs: number;
  /** Peak sum of VmRSS over the process tree (server + pg_dump/pg_restore, or the pipeline's stages), MiB. */
  peakTreeMB: number;
  /** Ours: VmHWM of the server process. Raw: the sum of every stage's own max RSS. MiB. */
  peakMainMB: number;
  /**
   * CPU seconds (user + system) of our server process and its pg_dump/pg_restore, or of the
   * pipeline's stages; PostgreSQL's own backends are not counted on either side. Less sensitive
   * than wall time to other load on the machine.
   */
  cpuSeconds: number;
  /** Ours: RSS of the server process when it became ready, before the step (MiB). */
  serverReadyMB?: number;
  /** Ours: sum of VmRSS over the server's tree just before the measured job (after the warm-up job), MiB. */
  idleBeforeJobMB?: number;
  /**
   * Ours: peak sum of VmRSS over the server's tree during the measured job alone (peakTreeMB
   * also covers the warm-up job before it): the process (API thread, job thread, codec threads)
   * and the children it spawns (pg_dump, pg_restore, psql). MiB.
   */
  jobPeakTreeMB?: number;
  /**
   * Ours: peak Pss of the PostgreSQL cluster during the measured job (catalog and environment
   * database share it here: postmaster and every backend, its shared buffers divided among
   * them). Not part of Backplane's tree. MiB.
   */
  postgresPeakPssMB?: number;
  /** Bytes written: repository growth for ours, compressed output for raw. */
  bytesOut?: number;
  /** Ours: the job's own time (operation startedAt → finishedAt), without queueing and polling. */
  jobSeconds?: number;
  latency?: LatencySummary;
  notes?: string;
}

async function dirBytes(dir: string): Promise<number> {
  try {
    return await treeBytes(dir);
  } catch {
    return 0;
  }
}


/** Waits for an operation to end, polling the catalog directly (not the API under measurement). */
async function waitForOperation(catalog: pg.Client, operationId: string): Promise<{ status: string; error: string | null; jobSeconds: number; finishedAt: Date | null }> {
  for (;;) {
    // Epoch milliseconds straight from PostgreSQL: the columns hold UTC without a zone.
    const r = await catalog.query<{ status: string; error: string | null; startedAt: Date | null; finishedAt: Date | null }>(
      `SELECT status, error, to_timestamp(extract(epoch FROM "startedAt")) AS "startedAt", to_timestamp(extract(epoch FROM "finishedAt")) AS "finishedAt" FROM operations WHERE id = $1`,
      [operationId],
    );
    const op = r.rows[0];
    if (op && ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status)) {
      const jobSeconds = op.startedAt && op.finishedAt ? (op.finishedAt.getTime() - op.startedAt.getTime()) / 1000 : NaN;
      return { status: op.status, error: op.error, jobSeconds, finishedAt: op.finishedAt };
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** Waits until no graphile-worker job is locked (the finished job has been completed). */
async function waitForJobRelease(catalog: pg.Client, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await catalog.query<{ n: string }>('SELECT count(*) AS n FROM graphile_worker.jobs WHERE locked_at IS NOT NULL');
    if (Number(r.rows[0].n) === 0) return true;
    await new Promise((res) => setTimeout(res, 50));
  }
  return false;
}

const CREATE_SNAPSHOT = `mutation($input: CreateSnapshotInput!) { createSnapshot(input: $input) {
  __typename ... on SnapshotOperationPayload { operation { id } snapshot { id } } ... on Error { code message } } }`;
const RESTORE_SNAPSHOT = `mutation($input: RestoreSnapshotInput!) { restoreSnapshot(input: $input) {
  __typename ... on RestorePayload { operation { id } } ... on Error { code message } } }`;

async function main() {
  const started = new Date();
  // Other work on the machine skews wall times and latencies; the report says how busy it was.
  const loadAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  await fs.mkdir(path.join(BENCH, 'work'), { recursive: true });
  const work = await fs.mkdtemp(path.join(BENCH, 'work', 'snapshot-'));
  let server: ScratchPostgres | undefined;
  let running: ServerProcess | undefined;
  const catalog = { client: undefined as pg.Client | undefined };
  try {
    log(`work dir ${work}; database ${DB_MB} MiB, files ${FILES_MB} MiB, ${QPS} queries/s`);
    server = await startScratchPostgres({ tmpRoot: work });
    const catalogUrl = server.url('backplane');
    await createDatabase(server.adminUrl, 'backplane');
    await applyMigrations(catalogUrl);
    await installWorkerSchema({ connectionString: catalogUrl, logger: new Logger(() => () => {}) });

    // --- data
    log('generating the environment database');
    await createDatabase(server.adminUrl, 'shop');
    const envUrl = server.url('shop');
    let t = performance.now();
    const generated = await generateDatabase(envUrl, DB_MB, log);
    log(`  ${(generated.bytes / 2 ** 20).toFixed(0)} MiB in ${((performance.now() - t) / 1000).toFixed(0)} s, rows ${JSON.stringify(generated.rows)}`);
    const filesPath = path.join(work, 'files');
    await fs.mkdir(filesPath);
    const files = await generateFiles(filesPath, FILES_MB);
    log(`  files: ${files.files} files, ${(files.bytes / 2 ** 20).toFixed(0)} MiB`);
    const dbBytes = generated.bytes;
    const totalBytes = dbBytes + files.bytes;

    // --- the catalog: organization, project, environment, LOCAL destination, admin key
    const db = createDb(catalogUrl);
    const { secretKey, secrets, org, project, env, key } = await seedEnvironment(db, { name: 'Bench', projectName: 'Shop', databaseUrl: envUrl, databaseName: 'shop', filesPath });
    catalog.client = new pg.Client({ connectionString: catalogUrl });
    await catalog.client.connect();

    // A second, small environment (a few MB) for the job each step's server runs before the
    // measured one (see warmJob).
    await createDatabase(server.adminUrl, 'warm');
    const warmUrl = server.url('warm');
    await sql(warmUrl, `CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
      INSERT INTO notes SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g`);
    const warmFiles = path.join(work, 'warm-files');
    await fs.mkdir(warmFiles);
    await generateFiles(warmFiles, 2);
    const warmEnv = await db.environment.create({
      data: { organizationId: org.id, projectId: project.id, name: 'warm-up', type: 'STAGING', databaseUrlEncrypted: secrets.seal(warmUrl), databaseUrlRedacted: redactUrl(warmUrl), databaseName: 'warm', filesPath: warmFiles },
    });
    const warmDest = await db.destination.create({ data: { organizationId: org.id, name: 'warm-up', provider: 'LOCAL', config: { path: path.join(work, 'warm-repository') } } });
    await db.environmentDestination.create({ data: { environmentId: warmEnv.id, destinationId: warmDest.id } });

    let results: StepResult[] = [];
    const step = (r: Omit<StepResult, 'throughputMBs'>): StepResult => {
      const full = { ...r, throughputMBs: Math.round((r.bytesIn / MB / r.wallSeconds) * 10) / 10 };
      results.push(full);
      log(`  ${r.step}: ${r.wallSeconds.toFixed(1)} s, ${full.throughputMBs} MB/s, peak ${r.peakTreeMB.toFixed(0)} MiB${r.latency ? `, GraphQL p99 ${r.latency.p99Ms} ms` : ''}`);
      return full;
    };
    const pgEnv = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(server.port), PGUSER: server.user, PGPASSWORD: server.password };

    // The raw pipelines run under the same query load as ours: an idle `backplane start` gets the
    // probe queries meanwhile, so both sides share the machine with the same extra work (and
    // the probes' p99 shows what the machine alone does to latency).
    const logFile = path.join(work, 'server.log');
    // Before every timed step: what the step before left for PostgreSQL's background work is
    // done first, so that no step pays for it. A GiB-sized restore leaves a GiB of new rows,
    // which autovacuum would vacuum and analyze in the middle of the next step (an explicit
    // VACUUM ANALYZE resets the counters it goes by), and a GiB of dirty buffers and dirty
    // pages, which CHECKPOINT and sync write out.
    const adminUrl = server.adminUrl;
    const pgDataDir = server.dataDir;
    const settle = async () => {
      await dropLeftovers(adminUrl, work);
      const dbs = await catalog.client!.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate');
      for (const { datname } of dbs.rows) {
        const u = new URL(adminUrl);
        u.pathname = `/${encodeURIComponent(datname)}`;
        await sql(u.toString(), 'VACUUM (ANALYZE)');
      }
      await catalog.client!.query('CHECKPOINT');
      execFileSync('sync');
      await dropCaches();
    };
    // Every step's server first answers a second of queries, so that no step measures a cold
    // process compiling its request path.
    const warmUp = async (url: string) => {
      const warm = startLoad(url, key, 50);
      await new Promise((r) => setTimeout(r, 1000));
      await warm.stop();
    };
    const underLoad = async <T>(fn: () => Promise<T>): Promise<{ value: T; latency: LatencySummary; samples: number[] }> => {
      await settle();
      running = await startServer({ databaseUrl: catalogUrl, secretKey, logFile });
      try {
        await warmUp(running.url);
        const load = startLoad(running.url, key, QPS);
        const value = await fn();
        return { value, latency: await load.stop(), samples: load.samples() };
      } finally {
        await running.stop();
        running = undefined;
      }
    };
    const combine = (a: CommandResult, b: CommandResult) => ({
      wallSeconds: a.wallSeconds + b.wallSeconds,
      cpuSeconds: a.cpuSeconds + b.cpuSeconds,
      peakTreeMB: Math.max(a.peakTreeMB, b.peakTreeMB),
      peakMainMB: Math.max(a.sumStageMaxMB, b.sumStageMaxMB),
    });
    const envGid = encodeGlobalID('Environment', env.id);
    // Before each of our measured steps, its server runs one job of the same kind on the small
    // environment: a snapshot, or a restore of one. A server's first job compiles the job code
    // (Prisma's query plans, V8's optimizing compiler): about 0.3 s of CPU in the job's first
    // seconds, which a server that has run before does not pay again.
    let warmSnapshotGid = '';
    const warmJob = async (url: string, kind: 'snapshot' | 'restore') => {
      let operationGid: string;
      if (kind === 'snapshot' || !warmSnapshotGid) {
        const d = await gql<{ createSnapshot: { operation?: { id: string }; snapshot?: { id: string } } }>(url, key, CREATE_SNAPSHOT, { input: { environmentId: encodeGlobalID('Environment', warmEnv.id), includes: ['DB', 'FILES'] } });
        if (!d.createSnapshot.operation) throw new Error(`warm-up createSnapshot: ${JSON.stringify(d.createSnapshot)}`);
        warmSnapshotGid ||= d.createSnapshot.snapshot!.id;
        operationGid = d.createSnapshot.operation.id;
      } else {
        const d = await gql<{ restoreSnapshot: { operation?: { id: string } } }>(url, key, RESTORE_SNAPSHOT, { input: { snapshotId: warmSnapshotGid, includes: ['DB', 'FILES'], strategy: 'SWAP', createSafetySnapshot: false } });
        if (!d.restoreSnapshot.operation) throw new Error(`warm-up restoreSnapshot: ${JSON.stringify(d.restoreSnapshot)}`);
        operationGid = d.restoreSnapshot.operation.id;
      }
      const op = await waitForOperation(catalog.client!, decodeGlobalID(operationGid).id);
      if (op.status !== 'SUCCEEDED') throw new Error(`warm-up ${kind}: ${op.status}: ${op.error}`);
      if (!(await waitForJobRelease(catalog.client!, 30_000))) throw new Error(`warm-up ${kind}: its job stayed locked`);
    };

    log('idle backplane start');
    await settle();
    const idleStart = await measureIdleStart(work, catalogUrl, secretKey, logFile);
    log(`  idle start: embedded first ${idleStart.embeddedFirstStart.treeMB} MiB, embedded again ${idleStart.embeddedRestart.treeMB} MiB (its PostgreSQL ${idleStart.embeddedRestart.postgresPssMB} MiB Pss), with DATABASE_URL ${idleStart.withDatabaseUrl.treeMB} MiB`);

    const runs: RunResult[] = [];
    for (let run = 1; run <= RUNS; run++) {
      if (RUNS > 1) log(`run ${run} of ${RUNS}`);
      results = [];
      // Every run starts from an empty repository of its own (a destination of its own, so no
      // earlier run's snapshot is taken for a parent) and leaves no extra database behind.
      const repoPath = path.join(work, `repository-${run}`);
      const dest = await db.destination.create({ data: { organizationId: org.id, name: `local-${run}`, provider: 'LOCAL', config: { path: repoPath } } });
      await db.environmentDestination.deleteMany({ where: { environmentId: env.id } });
      await db.environmentDestination.create({ data: { environmentId: env.id, destinationId: dest.id } });
      const raw = path.join(work, 'raw');
      await fs.rm(raw, { recursive: true, force: true });
      await fs.mkdir(raw);

      // --- raw snapshot: the same bytes through the stock tools
      log('raw snapshot');
      const { value: rawDump, latency: rawDumpLatency, samples: rawDumpSamples } = await underLoad(() => runPipeline([['pg_dump', '--format=custom', '--compress=0', '--no-password', '--dbname=shop'], ['zstd', '-3', '-q', '-c']], { workDir: raw, env: pgEnv, stdoutFile: path.join(raw, 'shop.dump.zst') }));
      await settle();
      const rawTar = await runPipeline([['tar', '-C', filesPath, '-cf', '-', '.'], ['zstd', '-3', '-q', '-c']], { workDir: raw, stdoutFile: path.join(raw, 'files.tar.zst') });
      step({ step: 'raw-snapshot-db', bytesIn: dbBytes, wallSeconds: rawDump.wallSeconds, cpuSeconds: rawDump.cpuSeconds, peakTreeMB: rawDump.peakTreeMB, peakMainMB: rawDump.sumStageMaxMB, bytesOut: (await fs.stat(path.join(raw, 'shop.dump.zst'))).size, latency: rawDumpLatency });
      step({ step: 'raw-snapshot-files', bytesIn: files.bytes, wallSeconds: rawTar.wallSeconds, cpuSeconds: rawTar.cpuSeconds, peakTreeMB: rawTar.peakTreeMB, peakMainMB: rawTar.sumStageMaxMB, bytesOut: (await fs.stat(path.join(raw, 'files.tar.zst'))).size });
      const rawSnapshot = step({ step: 'raw-snapshot', bytesIn: totalBytes, ...combine(rawDump, rawTar), bytesOut: (await dirBytes(raw)) });

      // --- ours: one server process per step
      const ours = async (name: string, bytesIn: number, start: (url: string) => Promise<string>, opts: { idle?: boolean } = {}) => {
        log(name);
        await settle();
        running = await startServer({ databaseUrl: catalogUrl, secretKey, logFile });
        let idle: LatencySummary | undefined;
        await warmUp(running.url);
        await warmJob(running.url, name.startsWith('ours-restore') ? 'restore' : 'snapshot');
        if (opts.idle) {
          // What the queries cost on an idle server.
          const cpuIdle0 = running.cpuSeconds();
          const load = startLoad(running.url, key, QPS);
          await new Promise((r) => setTimeout(r, 5000));
          idle = await load.stop();
          // What the probe queries themselves cost the server, to tell apart from the snapshot's CPU.
          idle.serverCpuMsPerRequest = Math.round(((running.cpuSeconds() - cpuIdle0) * 1000 / idle.requests) * 10) / 10;
          log(`  idle GraphQL: p50 ${idle.p50Ms} ms, p99 ${idle.p99Ms} ms, ${idle.serverCpuMsPerRequest} ms of server CPU per request`);
        }
        const repoBefore = await dirBytes(repoPath);
        const idleBeforeJobMB = Math.round(running.treeMB());
        const jobTree = sampleTreeRss(running.pid);
        const jobPostgres = samplePostgresPss(pgDataDir);
        const load = startLoad(running.url, key, QPS);
        const cpu0 = running.cpuSeconds();
        const t0 = Date.now();
        const operationId = await start(running.url);
        const op = await waitForOperation(catalog.client!, operationId);
        // Until the operation's end as the server recorded it (and published it to subscribers),
        // not until the next poll of the catalog noticed it: polling adds up to 100 ms.
        const wallSeconds = ((op.finishedAt?.getTime() ?? Date.now()) - t0) / 1000;
        const cpuSeconds = running.cpuSeconds() - cpu0;
        const jobPeakTreeMB = Math.round(jobTree.stop());
        const postgresPeakPssMB = Math.round(jobPostgres.stop());
        const latency = await load.stop();
        const samples = load.samples();
        // The operation row is final before graphile-worker has completed the job; stopping the
        // server in that window has left the job (and the environment's named queue) locked.
        const released = await waitForJobRelease(catalog.client!, 30_000);
        if (!released) log(`  ${name}: graphile-worker job still locked 30 s after the operation ended`);
        const peakMainMB = running.hwmMB();
        const peakTreeMB = running.peakTreeMB();
        const serverReadyMB = Math.round(running.readyMB);
        await running.stop();
        running = undefined;
        if (op.status !== 'SUCCEEDED') throw new Error(`${name}: operation ${op.status}: ${op.error}`);
        const r = step({ step: name, bytesIn, wallSeconds, cpuSeconds, serverReadyMB, idleBeforeJobMB, jobPeakTreeMB, postgresPeakPssMB, jobSeconds: op.jobSeconds, peakTreeMB, peakMainMB, bytesOut: (await dirBytes(repoPath)) - repoBefore, latency });
        return { result: r, idle, samples };
      };

      let firstSnapshotGid = '';
      const snapshot = async (url: string) => {
        const d = await gql<{ createSnapshot: { __typename: string; operation?: { id: string }; snapshot?: { id: string }; message?: string } }>(url, key, CREATE_SNAPSHOT, { input: { environmentId: envGid, includes: ['DB', 'FILES'] } });
        if (!d.createSnapshot.operation) throw new Error(`createSnapshot: ${JSON.stringify(d.createSnapshot)}`);
        firstSnapshotGid ||= d.createSnapshot.snapshot!.id;
        return decodeGlobalID(d.createSnapshot.operation.id).id;
      };
      const first = await ours('ours-snapshot-1', totalBytes, snapshot, { idle: run === 1 });

      const changed = await changeOnePercent(envUrl);
      const dbBytes2 = await databaseBytes(envUrl);
      log(`updated ${changed} rows (1%); database now ${(dbBytes2 / 2 ** 20).toFixed(0)} MiB`);
      const second = await ours('ours-snapshot-2', dbBytes2 + files.bytes, snapshot);
      second.result.notes = `after UPDATE of ${changed} rows (a random 1% of each table); files unchanged`;

      // --- raw restore: a fresh database, one pg_restore job fed from a pipe like ours, no --no-owner (superuser, as ours decides)
      log('raw restore');
      const { value: rawRestoreDb, latency: rawRestoreLatency } = await underLoad(async () => {
        await createDatabase(adminUrl, 'shop_raw_restore');
        return runPipeline([['zstd', '-d', '-q', '-c'], ['pg_restore', '--exit-on-error', '--no-password', '--dbname=shop_raw_restore']], { workDir: raw, env: pgEnv, stdinFile: path.join(raw, 'shop.dump.zst') });
      });
      const extractDir = path.join(work, 'raw-extract');
      await fs.mkdir(extractDir);
      await settle();
      const rawRestoreFiles = await runPipeline([['zstd', '-d', '-q', '-c'], ['tar', '-C', extractDir, '-xf', '-']], { workDir: raw, stdinFile: path.join(raw, 'files.tar.zst') });
      const rawRestoreDbStep = step({ step: 'raw-restore-db', bytesIn: dbBytes, wallSeconds: rawRestoreDb.wallSeconds, cpuSeconds: rawRestoreDb.cpuSeconds, peakTreeMB: rawRestoreDb.peakTreeMB, peakMainMB: rawRestoreDb.sumStageMaxMB, latency: rawRestoreLatency });
      step({ step: 'raw-restore-files', bytesIn: files.bytes, wallSeconds: rawRestoreFiles.wallSeconds, cpuSeconds: rawRestoreFiles.cpuSeconds, peakTreeMB: rawRestoreFiles.peakTreeMB, peakMainMB: rawRestoreFiles.sumStageMaxMB });
      const rawRestore = step({ step: 'raw-restore', bytesIn: totalBytes, ...combine(rawRestoreDb, rawRestoreFiles) });
      await fs.rm(extractDir, { recursive: true, force: true });

      const restore = (includes: string[]) => async (url: string) => {
        const d = await gql<{ restoreSnapshot: { __typename: string; operation?: { id: string } } }>(url, key, RESTORE_SNAPSHOT, { input: { snapshotId: firstSnapshotGid, includes, strategy: 'SWAP', createSafetySnapshot: false } });
        if (!d.restoreSnapshot.operation) throw new Error(`restoreSnapshot: ${JSON.stringify(d.restoreSnapshot)}`);
        return decodeGlobalID(d.restoreSnapshot.operation.id).id;
      };
      const oursRestore = await ours('ours-restore', totalBytes, restore(['DB', 'FILES']));
      const restoredRows = Number((await sql(envUrl, 'SELECT count(*) AS n FROM orders')).rows[0].n);
      if (restoredRows !== generated.rows.orders) throw new Error(`restored database has ${restoredRows} orders, expected ${generated.rows.orders}`);
      const oursRestoreDb = await ours('ours-restore-db', dbBytes, restore(['DB']));

      const r2 = (x: number) => Math.round(x * 100) / 100;
      const ratios: Ratios = {
        snapshotThroughputOursOverRaw: r2(first.result.throughputMBs / rawSnapshot.throughputMBs),
        restoreTimeOursOverRaw: r2(oursRestore.result.wallSeconds / rawRestore.wallSeconds),
        restoreDbTimeOursOverRaw: r2(oursRestoreDb.result.wallSeconds / rawRestoreDbStep.wallSeconds),
        graphqlP99DuringSnapshotMs: first.result.latency!.p99Ms,
        // The same probes while the raw pg_dump | zstd runs beside an idle server: the machine's share.
        graphqlP99DuringRawSnapshotMs: rawDumpLatency.p99Ms,
        peakMemoryOursOverRawSnapshot: r2((first.result.jobPeakTreeMB ?? first.result.peakTreeMB) / rawSnapshot.peakTreeMB),
        cpuOursOverRawSnapshot: r2(first.result.cpuSeconds / rawSnapshot.cpuSeconds),
        // With ~1 MiB chunks, 1% of rows updated at random touches most chunks of the dump.
        secondSnapshotAddedOverFirst: r2((second.result.bytesOut ?? 0) / (first.result.bytesOut || 1)),
      };
      runs.push({ run, steps: results, ratios, idle: first.idle, databaseBytesAfterUpdate: dbBytes2, snapshotProbes: first.samples, rawSnapshotProbes: rawDumpSamples });
      if (RUNS > 1) printRatios(`run ${run}`, ratios);
    }
    await db.$disconnect();

    // --- report: each step's median run, each ratio's median over the runs (every ratio pairs
    // figures of one run, measured minutes apart on the same machine)
    const steps = runs[0].steps.map((s0) => medianStep(runs.map((r) => r.steps.find((s) => s.step === s0.step)!)));
    const ratios = Object.fromEntries(Object.keys(runs[0].ratios).map((k) => [k, median(runs.map((r) => r.ratios[k as keyof Ratios]))])) as unknown as Ratios;
    // A run's p99 rests on its two slowest probes of ~130; the probes of all runs pooled give
    // the percentile more to stand on (each run's own is in runs[].ratios).
    const errorsOf = (step: string) => runs.reduce((n, r) => n + (r.steps.find((s) => s.step === step)?.latency?.errors ?? 0), 0);
    const snapshotProbes = summarize(runs.flatMap((r) => r.snapshotProbes), errorsOf('ours-snapshot-1'), QPS);
    const rawSnapshotProbes = summarize(runs.flatMap((r) => r.rawSnapshotProbes), errorsOf('raw-snapshot-db'), QPS);
    ratios.graphqlP99DuringSnapshotMs = snapshotProbes.p99Ms;
    ratios.graphqlP99DuringRawSnapshotMs = rawSnapshotProbes.p99Ms;
    const targets = { snapshotThroughputOursOverRaw: '>= 0.8', restoreTimeOursOverRaw: '<= 1.1', graphqlP99DuringSnapshotMs: '< 50' };
    printTable(steps, runs[0].idle!, RUNS);
    printRatios(RUNS > 1 ? `median of ${RUNS} runs (p99: all runs' probes, ${snapshotProbes.requests} during our first snapshots)` : 'ratios', ratios);
    const mem = memoryReport(steps, idleStart);
    process.stdout.write(`memory (Backplane's tree: the server process and the pg_dump/pg_restore it spawns; PostgreSQL apart): job peak ${mem.jobPeakTreeMB} MiB (aim < ${MEMORY_AIMS.jobTreeMB}); per step ${mem.perStep.map((m) => `${m.step} ${m.jobPeakTreeMB}`).join(', ')}\n`);
    // The aims are about Backplane's own processes: the embedded PostgreSQL is a process tree of its own, given beside them, not in the sum.
    process.stdout.write(`  idle start (Backplane's processes, PostgreSQL not included) ${idleStart.embeddedRestart.treeMB} MiB embedded (first start ${idleStart.embeddedFirstStart.treeMB}; the embedded PostgreSQL beside it ${idleStart.embeddedRestart.postgresPssMB} MiB Pss), ${idleStart.withDatabaseUrl.treeMB} MiB with DATABASE_URL (aim < ${MEMORY_AIMS.idleStartMB})\n\n`);
    if (RUNS > 1) {
      for (const k of ['snapshotThroughputOursOverRaw', 'restoreTimeOursOverRaw', 'restoreDbTimeOursOverRaw', 'graphqlP99DuringSnapshotMs'] as const) {
        process.stdout.write(`  ${k} per run: ${runs.map((r) => r.ratios[k]).join(', ')}\n`);
      }
      process.stdout.write('\n');
    }

    const report = {
      benchmark: 'snapshot',
      date: started.toISOString(),
      durationSeconds: Math.round((Date.now() - started.getTime()) / 1000),
      machine: { ...machineInfo({ pgDump: ['pg_dump', ['--version']], zstd: ['zstd', ['--version']] }), loadAverageAtStart: loadAtStart, loadAverageAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
      settings: {
        BENCH_DB_MB: DB_MB,
        BENCH_FILES_MB: FILES_MB,
        BENCH_QPS: QPS,
        BENCH_RUNS: RUNS,
        probeQuery: '{ viewer { scopes } environments(first: 5) { totalCount } }',
        destination: 'LOCAL',
        server: 'backplane start (API and worker in one process), one process per step; the raw database steps run while an idle one gets the same probe load',
        scratchPostgres: 'fsync=off, synchronous_commit=off',
        betweenSteps: `leftover databases dropped, VACUUM (ANALYZE) of every database, CHECKPOINT and sync before every timed step${cachesDropped ? ', then the page cache dropped and 3 s of waiting' : ' (the page cache could not be dropped: not root)'}`,
        runs: 'every run: the whole sequence into an empty repository of its own; steps report their median run, ratios the median of the runs\' ratios',
        oursWallTime: 'from sending the mutation to the finishedAt the server recorded for the operation',
      },
      sizes: { databaseBytes: dbBytes, databaseBytesAfterUpdate: runs[0].databaseBytesAfterUpdate, rows: generated.rows, filesBytes: files.bytes, fileCount: files.files, totalBytes },
      units: { throughput: 'MB/s, 10^6 bytes of database size (pg_database_size) + file bytes per second of wall time', memory: 'MiB' },
      steps,
      memory: memoryReport(steps, idleStart),
      latencyIdle: runs[0].idle,
      latencyDuringFirstSnapshotAllRuns: snapshotProbes,
      latencyDuringRawSnapshotAllRuns: rawSnapshotProbes,
      ratios,
      targets,
      runs: runs.map((r) => ({ run: r.run, ratios: r.ratios, steps: r.steps })),
    };
    const out = path.join(BENCH, 'results', 'snapshot.json');
    await fs.mkdir(path.dirname(out), { recursive: true });
    await fs.writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
    log(`wrote ${path.relative(process.cwd(), out)}`);
  } finally {
    const r = running as ServerProcess | undefined;
    await r?.stop().catch(() => undefined);
    await catalog.client?.end().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    if (!KEEP) await fs.rm(work, { recursive: true, force: true });
  }
}

interface Ratios {
  snapshotThroughputOursOverRaw: number;
  restoreTimeOursOverRaw: number;
  restoreDbTimeOursOverRaw: number;
  graphqlP99DuringSnapshotMs: number;
  graphqlP99DuringRawSnapshotMs: number;
  peakMemoryOursOverRawSnapshot: number;
  cpuOursOverRawSnapshot: number;
  secondSnapshotAddedOverFirst: number;
}

interface RunResult {
  run: number;
  steps: StepResult[];
  ratios: Ratios;
  idle?: LatencySummary;
  databaseBytesAfterUpdate: number;
  /** Probe latencies (ms) during our first snapshot, and beside the raw pg_dump | zstd. */
  snapshotProbes: number[];
  rawSnapshotProbes: number[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : Math.round(((s[m - 1] + s[m]) / 2) * 1000) / 1000;
}

/** A step's figures over the runs: the run of median wall time, as measured (its latency, memory and CPU with it). */
function medianStep(xs: StepResult[]): StepResult {
  const byWall = [...xs].sort((a, b) => a.wallSeconds - b.wallSeconds);
  return byWall[Math.floor((byWall.length - 1) / 2)];
}

/** Whether the page cache could be dropped before each step (root on Linux); recorded in the report. */
let cachesDropped: boolean | undefined;

/**
 * Before every step, where allowed: the page cache goes, and the step waits 3 s. Every step then
 * starts from the same memory: nothing cached, and the freed memory handed back to the host. On
 * a VM that reports free pages to its host (Firecracker, as here; many clouds), memory touched
 * for the first time after that costs a host page fault, so without this a step ran faster or
 * slower by what the step before it had freed: a restore of the database and the files took
 * 1-2.5 s longer than one of the database alone, the files' side doing 0.8 s of work, and raw
 * pg_restore moved between 11 and 16 s. With it, the two restores of ours took the same time.
 */
async function dropCaches(): Promise<void> {
  if (cachesDropped === false) return;
  try {
    await fs.writeFile('/proc/sys/vm/drop_caches', '3');
    cachesDropped = true;
  } catch {
    cachesDropped = false;
    return;
  }
  await new Promise((r) => setTimeout(r, 3000));
}

/**
 * Before every step: the databases and folders a SWAP restore keeps for taking it back by hand
 * (`shop__bp_pre_…`, `files.bp_pre_…`) and the raw restore's database go, so every step finds the
 * same cluster (the environment's database and the catalog). With a GiB-sized database or two
 * more in it, restores ran 1-1.5 s slower, raw and ours alike; until 2026-12-01 the raw restore
 * ran with none and ours with one or two.
 */
async function dropLeftovers(adminUrl: string, work: string): Promise<void> {
  const dbs = await sql(adminUrl, `SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_bp\\_%' OR datname = 'shop_raw_restore'`);
  for (const { datname } of dbs.rows as { datname: string }[]) await dropDatabase(adminUrl, datname);
  for (const name of await fs.readdir(work)) {
    if (/\.bp_(pre|restore)_/.test(name)) await fs.rm(path.join(work, name), { recursive: true, force: true });
  }
}

/** Aims of issue #21 item 4 and item 5: Backplane's own process tree, MiB. */
const MEMORY_AIMS = { jobTreeMB: 300, idleStartMB: 200 };

interface IdleSample {
  /** Sum of VmRSS over `backplane start` and its children (pg_receivewal, when PITR runs), MiB: the largest of 5 samples, 1 s apart. */
  treeMB: number;
  /** The embedded PostgreSQL (a separate process tree: it outlives a crashed Backplane), Pss, MiB. */
  postgresPssMB?: number;
  /** From start to /readyz, seconds. */
  readySeconds: number;
}

/**
 * Idle `backplane start`, as `npm start` runs it (embedded PostgreSQL under its own
 * BACKPLANE_HOME: the first start makes the cluster and the demo, the second reuses them), and
 * as the measured steps run it (DATABASE_URL). Each is measured 10 s after it answered /readyz,
 * once start-up's work (migrations, the demo, the job thread, the codec threads) has settled.
 */
async function measureIdleStart(work: string, catalogUrl: string, secretKey: string, logFile: string): Promise<{ embeddedFirstStart: IdleSample; embeddedRestart: IdleSample; withDatabaseUrl: IdleSample }> {
  const home = path.join(work, 'embedded-home');
  const one = async (opts: { databaseUrl?: string; home?: string; secretKey?: string }): Promise<IdleSample> => {
    const t0 = performance.now();
    const s = await startServer({ ...opts, logFile });
    const readySeconds = Math.round((performance.now() - t0) / 100) / 10;
    try {
      await new Promise((r) => setTimeout(r, 10_000));
      let treeMB = 0;
      for (let i = 0; i < 5; i++) {
        treeMB = Math.max(treeMB, s.treeMB());
        await new Promise((r) => setTimeout(r, 1000));
      }
      const pg = opts.home ? postmasterPid(path.join(home, 'pg')) : undefined;
      return { treeMB: Math.round(treeMB), ...(pg ? { postgresPssMB: Math.round(treePssKB(pg) / 1024) } : {}), readySeconds };
    } finally {
      await s.stop();
    }
  };
  const embeddedFirstStart = await one({ home });
  const embeddedRestart = await one({ home });
  const withDatabaseUrl = await one({ databaseUrl: catalogUrl, secretKey });
  return { embeddedFirstStart, embeddedRestart, withDatabaseUrl };
}

function memoryReport(steps: StepResult[], idleStart: Awaited<ReturnType<typeof measureIdleStart>>) {
  const ours = steps.filter((s) => s.jobPeakTreeMB !== undefined);
  const peak = Math.max(...ours.map((s) => s.jobPeakTreeMB!));
  return {
    aims: MEMORY_AIMS,
    counted:
      "Backplane's tree: the `backplane start` process (API thread, job thread and codec threads are threads of it) and the processes it spawns (pg_dump, pg_restore, psql, pg_receivewal), sum of VmRSS sampled every 50 ms. PostgreSQL is listed apart (Pss of postmaster and backends): the bench's cluster holds both the catalog and the environment database; the embedded one is a separate process tree.",
    jobPeakTreeMB: peak,
    jobAimMet: peak < MEMORY_AIMS.jobTreeMB,
    idleStartAimMet: Math.max(idleStart.embeddedRestart.treeMB, idleStart.withDatabaseUrl.treeMB) < MEMORY_AIMS.idleStartMB,
    idleStart,
    perStep: ours.map((s) => ({ step: s.step, serverReadyMB: s.serverReadyMB, idleBeforeJobMB: s.idleBeforeJobMB, jobPeakTreeMB: s.jobPeakTreeMB, postgresPeakPssMB: s.postgresPeakPssMB })),
  };
}

function printRatios(title: string, ratios: Ratios) {
  process.stdout.write(`${title}:\n`);
  process.stdout.write(`  snapshot throughput ours/raw ${ratios.snapshotThroughputOursOverRaw} (aim >= 0.8)\n`);
  process.stdout.write(`  restore time ours/raw ${ratios.restoreTimeOursOverRaw} (aim <= 1.1); database only ${ratios.restoreDbTimeOursOverRaw}\n`);
  process.stdout.write(`  GraphQL p99 during the first snapshot ${ratios.graphqlP99DuringSnapshotMs} ms (aim < 50; beside the raw pipeline ${ratios.graphqlP99DuringRawSnapshotMs} ms)\n`);
  process.stdout.write(`  peak memory ours/raw (snapshot, process trees) ${ratios.peakMemoryOursOverRawSnapshot}\n\n`);
}

function printTable(results: StepResult[], idle: LatencySummary, runs: number) {
  const head = ['step', 'MB in', 'wall s', 'job s', 'cpu s', 'MB/s', 'peak tree MiB', 'job peak MiB', 'peak main MiB', 'MB out', 'GraphQL p50/p95/p99 ms'];
  const rows = results.map((r) => [
    r.step,
    (r.bytesIn / MB).toFixed(0),
    r.wallSeconds.toFixed(1),
    r.jobSeconds === undefined ? '' : r.jobSeconds.toFixed(1),
    r.cpuSeconds.toFixed(1),
    r.throughputMBs.toFixed(1),
    r.peakTreeMB.toFixed(0),
    r.jobPeakTreeMB === undefined ? '' : String(r.jobPeakTreeMB),
    r.peakMainMB.toFixed(0),
    r.bytesOut === undefined ? '' : (r.bytesOut / MB).toFixed(0),
    r.latency ? `${r.latency.p50Ms}/${r.latency.p95Ms}/${r.latency.p99Ms}${r.latency.errors ? ` (${r.latency.errors} err)` : ''}` : '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const title = runs > 1 ? `each step's median run of ${runs}` : 'steps';
  process.stdout.write(`\n${title}\n${fmt(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.map(fmt).join('\n')}\n\n`);
  process.stdout.write(`GraphQL on an idle server: p50 ${idle.p50Ms} ms, p95 ${idle.p95Ms} ms, p99 ${idle.p99Ms} ms\n\n`);
}

await main();
