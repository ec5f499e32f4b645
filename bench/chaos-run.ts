/**
 * The chaos run (`npm run chaos`, and its short form in test/api/chaos.test.ts): `backplane start`
 * is killed with SIGKILL (its whole process group, pg_dump and pg_restore included, as a machine
 * loss would) at chosen and at random moments of snapshots and restores, restarted each time,
 * and after each round everything a crash must not leave behind is looked for:
 *
 * - every operation ended: SUCCEEDED, or FAILED with a reason;
 * - stock `restic check --read-data` passes without --no-lock, and `restic list locks` is empty;
 * - no `<db>__bp_restore_<id>` database and no `<files>.bp_restore_<id>` folder is left;
 * - every READY snapshot restores with stock `restic restore`;
 * - a restore that failed left the target byte-identical (database rows and files).
 *
 * Aimed kills watch the operation's phase in the catalog and kill once the wanted phase is
 * reached: `restore:pg_restore` (phase restoring, with pg_restore connected), `snapshot:finalizing`
 * (the harness holds the snapshot's catalog row, so the job waits in that phase, which is
 * otherwise a few milliseconds long), `snapshot:dumping`, `restore:safety-snapshot`; random ones
 * kill after a seeded random share of the last run's duration. `__bp_pre_` databases and
 * folders of successful restores are kept by design until they expire; the run drops them after
 * each round (their expiry) so the disk does not fill.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { decodeGlobalID, encodeGlobalID } from '@pothos/plugin-relay';
import pg from 'pg';
import { createDb } from '../src/db/client.ts';
import { freePort } from '../src/db/pg-server.ts';
import { seedEnvironment } from './catalog-seed.ts';
import { sql } from './snapshot-data.ts';
import { gql } from './snapshot-server.ts';

const exec = promisify(execFile);
const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface ChaosOptions {
  /** A migrated, empty catalog database. */
  catalogUrl: string;
  /** The environment's database, filled. */
  envUrl: string;
  /** The environment's files folder, filled. */
  filesPath: string;
  /** Where the repository, restores checked with restic and the server log go. */
  workDir: string;
  kills: number;
  seed: number;
  /** The run stops starting rounds after this (it is bounded in time); the result says so. */
  deadlineMs: number;
  /** Aimed kills, cycled in this order; `random` is a random moment of a snapshot or restore. */
  aims?: Aim[];
  /** Extra environment for the server (BACKPLANE_REPO_KDF=fast in tests). */
  serverEnv?: Record<string, string>;
  log(msg: string): void;
}

export type Aim = 'snapshot:finalizing' | 'restore:pg_restore' | 'snapshot:dumping' | 'restore:safety-snapshot' | 'snapshot:random' | 'restore:random';

export const DEFAULT_AIMS: Aim[] = ['snapshot:finalizing', 'restore:pg_restore', 'snapshot:dumping', 'restore:random', 'snapshot:random', 'restore:safety-snapshot'];

export interface RoundResult {
  round: number;
  aim: Aim;
  killed: boolean;
  /** The operation's phase when the kill landed (for a restore's safety snapshot, both phases). */
  phaseHit: string | null;
  outcome: string;
  error: string | null;
  attempts: number;
  seconds: number;
  problems: string[];
}

export interface ChaosResult {
  seed: number;
  killsRequested: number;
  kills: number;
  rounds: number;
  stoppedByDeadline: boolean;
  seconds: number;
  phasesHit: Record<string, number>;
  recoveries: { retriedToSuccess: number; failedByRecovery: number; finishedBeforeKill: number };
  leftovers: { lockFiles: number; restoreDatabases: number; stagingFolders: number; total: number };
  readySnapshotsVerified: number;
  unrestorableReadySnapshots: number;
  resticCheckFailures: number;
  operationsUnended: number;
  failedWithoutReason: number;
  failedRestoresThatChangedTheTarget: number;
  problems: string[];
  roundLog: RoundResult[];
}

/** mulberry32: a small seeded generator, so a run can be repeated. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Per table, the row count and two sums of 60-bit slices of each row's md5: equal digests, equal
 * rows (as a multiset), without sorting a few hundred MB of rows each round.
 */
async function databaseDigest(url: string): Promise<string> {
  const tables = (await sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).rows.map((r) => String(r.tablename));
  const h = createHash('sha256');
  for (const t of tables) {
    const r = await sql(
      url,
      `SELECT count(*) AS n, coalesce(sum(('x' || substr(h, 1, 15))::bit(60)::bigint::numeric), 0)::text || '.' || coalesce(sum(('x' || substr(h, 16, 15))::bit(60)::bigint::numeric), 0)::text AS h
         FROM (SELECT md5(x::text) AS h FROM ${pg.escapeIdentifier(t)} x) s`,
    );
    h.update(`${t}:${r.rows[0].n}:${r.rows[0].h}\n`);
  }
  return h.digest('hex');
}

/** sha256 over every path, mode, size and content under dir. */
async function filesDigest(dir: string): Promise<string> {
  const h = createHash('sha256');
  const entries = (await fs.readdir(dir, { recursive: true, withFileTypes: true })).map((e) => path.join(e.parentPath, e.name)).sort();
  for (const p of entries) {
    const st = await fs.lstat(p);
    h.update(`${path.relative(dir, p)}:${st.mode}:${st.size}\n`);
    if (st.isFile()) h.update(await fs.readFile(p));
    else if (st.isSymbolicLink()) h.update(await fs.readlink(p));
  }
  return h.digest('hex');
}

const CREATE_SNAPSHOT = `mutation($input: CreateSnapshotInput!) { createSnapshot(input: $input) {
  __typename ... on SnapshotOperationPayload { operation { id } snapshot { id } } ... on Error { code message } } }`;
const RESTORE_SNAPSHOT = `mutation($input: RestoreSnapshotInput!) { restoreSnapshot(input: $input) {
  __typename ... on RestorePayload { operation { id } } ... on Error { code message } } }`;

interface Server {
  child: ChildProcess;
  url: string;
  exited: Promise<unknown>;
}

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const started = Date.now();
  const random = rng(o.seed);
  const aims = o.aims ?? DEFAULT_AIMS;
  const db = createDb(o.catalogUrl);
  const repositoryPath = path.join(o.workDir, 'repository');
  const logFile = path.join(o.workDir, 'server.log');
  const seeded = await seedEnvironment(db, {
    name: 'Chaos',
    projectName: 'Chaos',
    databaseUrl: o.envUrl,
    databaseName: decodeURIComponent(new URL(o.envUrl).pathname.slice(1)),
    filesPath: o.filesPath,
    repositoryPath,
  });
  const { secretKey, secrets, env, key, envGid } = seeded;
  const destination = seeded.destination!;

  const result: ChaosResult = {
    seed: o.seed,
    killsRequested: o.kills,
    kills: 0,
    rounds: 0,
    stoppedByDeadline: false,
    seconds: 0,
    phasesHit: {},
    recoveries: { retriedToSuccess: 0, failedByRecovery: 0, finishedBeforeKill: 0 },
    leftovers: { lockFiles: 0, restoreDatabases: 0, stagingFolders: 0, total: 0 },
    readySnapshotsVerified: 0,
    unrestorableReadySnapshots: 0,
    resticCheckFailures: 0,
    operationsUnended: 0,
    failedWithoutReason: 0,
    failedRestoresThatChangedTheTarget: 0,
    problems: [],
    roundLog: [],
  };

  const startServer = async (): Promise<Server> => {
    const port = await freePort();
    const out = openSync(logFile, 'a');
    // Its own process group: the kill takes pg_dump and pg_restore with it, as a lost machine would.
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'backplane.js'), 'start'], {
      cwd: ROOT,
      detached: true,
      env: {
        ...process.env,
        DATABASE_URL: o.catalogUrl,
        BACKPLANE_SECRET_KEY: secretKey,
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        // Recovery within seconds of the restart, not the default minute.
        OPERATION_STALE_MS: '4000',
        OPERATION_HEARTBEAT_MS: '500',
        ...o.serverEnv,
      },
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`backplane start exited before it was ready; see ${logFile}`);
      if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) break;
      if (Date.now() > deadline) throw new Error(`backplane start was not ready within 120 s; see ${logFile}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { child, url: `${url}/graphql`, exited };
  };
  const kill = async (s: Server) => {
    try {
      process.kill(-s.child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    await s.exited;
  };

  const opRow = (id: string) => db.operation.findUniqueOrThrow({ where: { id } });
  const busyRestore = async () => (await sql(o.envUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'backplane-restore'")).rows[0].n > 0;
  const lastSeconds: Record<'snapshot' | 'restore', number> = { snapshot: 10, restore: 20 };
  const verified = new Set<string>();

  let server = await startServer();
  try {
    // A first snapshot, unkilled, so restores have something to restore from the first round.
    {
      const d = await gql<{ createSnapshot: { operation?: { id: string } } }>(server.url, key, CREATE_SNAPSHOT, { input: { environmentId: envGid } });
      const id = decodeGlobalID(d.createSnapshot.operation!.id).id;
      const t = Date.now();
      const end = await waitFor(() => opRow(id), (op) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status), 'the first snapshot', 30 * 60_000);
      if (end.status !== 'SUCCEEDED') throw new Error(`the first snapshot failed: ${end.error}`);
      lastSeconds.snapshot = (Date.now() - t) / 1000;
      o.log(`first snapshot: ${lastSeconds.snapshot.toFixed(1)} s`);
      // And one restore, unkilled: random restore kills then spread over a whole restore, and a
      // successful swap is part of the run.
      const first = await db.snapshot.findFirstOrThrow({ where: { environmentId: env.id, status: 'READY' } });
      const r = await gql<{ restoreSnapshot: { operation?: { id: string } } }>(server.url, key, RESTORE_SNAPSHOT, { input: { snapshotId: encodeGlobalID('Snapshot', first.id) } });
      const rid = decodeGlobalID(r.restoreSnapshot.operation!.id).id;
      const rt = Date.now();
      const rend = await waitFor(() => opRow(rid), (op) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status), 'the first restore', 30 * 60_000);
      if (rend.status !== 'SUCCEEDED') throw new Error(`the first restore failed: ${rend.error}`);
      lastSeconds.restore = (Date.now() - rt) / 1000;
      o.log(`first restore: ${lastSeconds.restore.toFixed(1)} s`);
    }

    for (let round = 0; result.kills < o.kills; round++) {
      if (Date.now() - started > o.deadlineMs) {
        result.stoppedByDeadline = true;
        o.log('deadline reached: no further rounds');
        break;
      }
      const aim = aims[round % aims.length];
      const kind = aim.startsWith('snapshot') ? 'snapshot' : 'restore';
      const roundStart = Date.now();
      const problems: string[] = [];
      // A little change each round, so that snapshots differ and a restore changes something.
      await sql(o.envUrl, 'CREATE TABLE IF NOT EXISTS chaos_rounds (round int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())');
      await sql(o.envUrl, 'INSERT INTO chaos_rounds (round) VALUES ($1) ON CONFLICT DO NOTHING', [round]);
      await fs.writeFile(path.join(o.filesPath, `chaos-round-${round}.txt`), `round ${round} seed ${o.seed}\n`);

      let operationId: string;
      let snapshotId: string | null = null;
      let before: { db: string; files: string } | null = null;
      if (kind === 'snapshot') {
        const d = await gql<{ createSnapshot: { operation?: { id: string }; snapshot?: { id: string } } }>(server.url, key, CREATE_SNAPSHOT, { input: { environmentId: envGid } });
        operationId = decodeGlobalID(d.createSnapshot.operation!.id).id;
        snapshotId = decodeGlobalID(d.createSnapshot.snapshot!.id).id;
      } else {
        const ready = await db.snapshot.findMany({ where: { environmentId: env.id, status: 'READY', kind: { not: 'SAFETY' } }, orderBy: { createdAt: 'asc' } });
        const from = ready[Math.floor(random() * ready.length)];
        before = { db: await databaseDigest(o.envUrl), files: await filesDigest(o.filesPath) };
        const safety = aim === 'restore:safety-snapshot' || random() < 0.5;
        const d = await gql<{ restoreSnapshot: { operation?: { id: string }; code?: string; message?: string } }>(server.url, key, RESTORE_SNAPSHOT, {
          input: { snapshotId: encodeGlobalID('Snapshot', from.id), createSafetySnapshot: safety },
        });
        if (!d.restoreSnapshot.operation) throw new Error(`restoreSnapshot: ${JSON.stringify(d.restoreSnapshot)}`);
        operationId = decodeGlobalID(d.restoreSnapshot.operation.id).id;
      }

      // --- the kill
      let holder: pg.Client | null = null;
      let phaseHit: string | null = null;
      let killed = false;
      try {
        const ended = (op: { status: string }) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status);
        if (aim === 'snapshot:finalizing') {
          holder = new pg.Client({ connectionString: o.catalogUrl });
          await holder.connect();
          await holder.query('BEGIN');
          await holder.query('SELECT id FROM snapshots WHERE id = $1 FOR UPDATE', [snapshotId]);
        }
        const phaseWanted: Record<string, (phase: string | null, op: { bytesDone: bigint }) => Promise<boolean>> = {
          'snapshot:finalizing': async (p) => p === 'finalizing',
          // Once bytes flow: the backup holds its repository lock by then, which the kill leaves behind.
          'snapshot:dumping': async (p, op) => p === 'dumping' && op.bytesDone > 0n,
          // Inside the safety snapshot's own dump, not the instant the restore enters the phase.
          'restore:safety-snapshot': async (p) =>
            p === 'safety-snapshot' && (await db.operation.count({ where: { environmentId: env.id, type: 'SNAPSHOT', status: 'RUNNING', phase: 'dumping', id: { not: operationId } } })) > 0,
          'restore:pg_restore': async (p) => p === 'restoring' && (await busyRestore()),
        };
        const wanted = phaseWanted[aim];
        if (wanted) {
          const op = await waitFor(() => opRow(operationId), async (op) => ended(op) || (await wanted(op.phase, op)), `${aim}`, 30 * 60_000);
          killed = !ended(op);
        } else {
          const at = Date.now() + random() * lastSeconds[kind] * 1000;
          const op = await waitFor(() => opRow(operationId), (op) => ended(op) || Date.now() >= at, 'a random moment', 30 * 60_000);
          killed = !ended(op);
        }
        if (killed) {
          await kill(server);
          const op = await opRow(operationId);
          phaseHit = `${kind}:${op.phase}`;
          if (kind === 'restore' && op.phase === 'safety-snapshot') {
            const inner = await db.operation.findFirst({ where: { environmentId: env.id, type: 'SNAPSHOT', status: 'RUNNING', id: { not: operationId } } });
            if (inner) phaseHit += `/${inner.phase}`;
          }
        }
      } finally {
        await holder?.query('ROLLBACK').catch(() => undefined);
        await holder?.end().catch(() => undefined);
      }
      if (killed) {
        result.kills++;
        result.phasesHit[phaseHit!] = (result.phasesHit[phaseHit!] ?? 0) + 1;
        server = await startServer();
      } else {
        result.recoveries.finishedBeforeKill++;
      }

      // --- every operation ends
      const settled = await waitFor(
        () => db.operation.count({ where: { status: { in: ['QUEUED', 'RUNNING'] } } }),
        (n) => n === 0,
        'every operation to end',
        30 * 60_000,
      ).catch(() => -1);
      if (settled !== 0) {
        result.operationsUnended++;
        problems.push('operations still QUEUED or RUNNING');
      }
      const op = await opRow(operationId);
      if (op.status === 'SUCCEEDED' && killed) result.recoveries.retriedToSuccess++;
      if (op.status === 'FAILED' && /stopped responding/.test(op.error ?? '')) result.recoveries.failedByRecovery++;
      const failedNoReason = await db.operation.count({ where: { status: 'FAILED', OR: [{ error: null }, { error: '' }] } });
      if (failedNoReason) {
        result.failedWithoutReason = failedNoReason;
        problems.push(`${failedNoReason} FAILED operations without a reason`);
      }
      if (op.status === 'SUCCEEDED' && !killed) lastSeconds[kind] = (Date.now() - roundStart) / 1000;

      // --- a failed restore left the target as it was
      if (kind === 'restore' && op.status !== 'SUCCEEDED' && before) {
        const after = { db: await databaseDigest(o.envUrl), files: await filesDigest(o.filesPath) };
        if (after.db !== before.db || after.files !== before.files) {
          result.failedRestoresThatChangedTheTarget++;
          problems.push(`a ${op.status} restore changed the target (${after.db !== before.db ? 'database' : ''} ${after.files !== before.files ? 'files' : ''})`);
        }
      }

      // --- leftovers
      const password = secrets.open((await db.destination.findUniqueOrThrow({ where: { id: destination.id } })).repositoryPasswordEncrypted!);
      const restic = (...args: string[]) =>
        exec('restic', ['-r', repositoryPath, '--no-cache', ...args], { env: { ...process.env, RESTIC_PASSWORD: password }, maxBuffer: 64 << 20 });
      const locks = (await restic('--no-lock', 'list', 'locks')).stdout.split('\n').filter(Boolean).length;
      const tempDbs = (await sql(o.envUrl, "SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_bp\\_restore\\_%'")).rows.length;
      const siblings = await fs.readdir(path.dirname(o.filesPath));
      const staging = siblings.filter((n) => n.startsWith(`${path.basename(o.filesPath)}.bp_restore_`)).length;
      result.leftovers.lockFiles += locks;
      result.leftovers.restoreDatabases += tempDbs;
      result.leftovers.stagingFolders += staging;
      if (locks + tempDbs + staging) problems.push(`leftovers: ${locks} locks, ${tempDbs} temp databases, ${staging} staging folders`);
      // What a successful restore keeps on purpose until it expires: expired here.
      for (const r of (await sql(o.envUrl, "SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_bp\\_pre\\_%'")).rows) {
        const admin = new URL(o.envUrl);
        admin.pathname = '/postgres';
        await sql(admin.toString(), `DROP DATABASE ${pg.escapeIdentifier(String(r.datname))} WITH (FORCE)`);
      }
      for (const n of siblings.filter((n) => n.startsWith(`${path.basename(o.filesPath)}.bp_pre_`))) {
        await fs.rm(path.join(path.dirname(o.filesPath), n), { recursive: true, force: true });
      }

      // --- stock restic: the whole repository, with its lock
      try {
        await restic('check', '--read-data');
      } catch (err) {
        result.resticCheckFailures++;
        problems.push(`restic check --read-data: ${String((err as { stderr?: string }).stderr ?? err).slice(0, 500)}`);
      }

      // --- every READY snapshot restores (each once; check --read-data keeps watching its data)
      const ready = await db.snapshotCopy.findMany({ where: { destinationId: destination.id, status: 'READY', snapshot: { status: 'READY' } }, include: { snapshot: true } });
      for (const copy of ready) {
        if (!copy.repoSnapshotId || verified.has(copy.repoSnapshotId)) continue;
        const target = path.join(o.workDir, 'restic-restore');
        await fs.rm(target, { recursive: true, force: true });
        try {
          await restic('restore', copy.repoSnapshotId, '--target', target);
          const dumps = await fs.readdir(path.join(target, 'db')).catch(() => []);
          if (copy.snapshot.includes.includes('DB') && dumps.length !== 1) throw new Error('no database dump in the restored snapshot');
          verified.add(copy.repoSnapshotId);
          result.readySnapshotsVerified++;
        } catch (err) {
          result.unrestorableReadySnapshots++;
          problems.push(`READY snapshot ${copy.snapshotId} does not restore: ${String((err as Error).message).slice(0, 300)}`);
          verified.add(copy.repoSnapshotId);
        } finally {
          await fs.rm(target, { recursive: true, force: true });
        }
      }

      const r: RoundResult = { round, aim, killed, phaseHit, outcome: op.status, error: op.error, attempts: op.attempts, seconds: Math.round((Date.now() - roundStart) / 100) / 10, problems };
      result.roundLog.push(r);
      result.rounds++;
      result.problems.push(...problems.map((p) => `round ${round}: ${p}`));
      o.log(`round ${round} ${aim}: ${killed ? `killed in ${phaseHit}` : 'ended before the kill'} → ${op.status}${op.error ? ` (${op.error})` : ''}, ${r.seconds} s${problems.length ? `; PROBLEMS: ${problems.join('; ')}` : ''}`);
    }
  } finally {
    await kill(server).catch(() => undefined);
    await db.$disconnect();
  }
  result.leftovers.total = result.leftovers.lockFiles + result.leftovers.restoreDatabases + result.leftovers.stagingFolders;
  result.seconds = Math.round((Date.now() - started) / 1000);
  return result;
}

async function waitFor<T>(read: () => Promise<T>, ok: (v: T) => boolean | Promise<boolean>, what: string, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (await ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
