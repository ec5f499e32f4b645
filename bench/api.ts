/**
 * The API under load (a benchmark: it prints numbers and asserts nothing). `npm run bench:api`.
 *
 * Built `backplane serve` and `backplane worker` processes on a disposable PostgreSQL:
 * - subscribers: BENCH_CLIENTS graphql-ws clients (then as many SSE clients), each subscribed to
 *   `environmentActivity` and `operation` of one of BENCH_LIVE_ENVS environments, in
 *   BENCH_CLIENT_PROCS processes of their own (bench/api-clients.ts), while snapshots of those
 *   environments run in a worker process: lag from each event's server-side time to its arrival,
 *   clients that never saw the terminal state, activity events a client missed that others of
 *   its environment got, and the API process's CPU and RSS.
 * - catalog: BENCH_SNAPSHOTS snapshots over BENCH_CATALOG_ENVS environments in BENCH_PROJECTS
 *   projects (one environment holds a fifth of them), with operations, copies, restore logs,
 *   drills and alerts, inserted in bulk; the console's and an integrator's queries at BENCH_QPS,
 *   each for BENCH_QUERY_REQUESTS requests: p50/p99; then every query once more with auto_explain
 *   logging the plan of each SQL statement it ran: statements per request (at two page sizes,
 *   to show whether the count grows with the page) and sequential scans of large tables.
 * - jobs: BENCH_JOBS small environments each snapshotted once, with one worker process and
 *   with two: jobs per minute.
 * BENCH_PARTS=subscriptions,catalog,jobs picks parts; BENCH_TRANSPORTS=ws,sse the subscribers' transports
 * (one alone for an A/B of a change to one path); BENCH_QUERIES=overview,… the catalog's request types.
 * The jobs part: BENCH_JOB_WORKERS=1 one round only; BENCH_JOB_BUILDS=old=/path,new=/path with
 * BENCH_JOB_REPEAT=2 compares builds' workers interleaved (old, new, old, new); worker CPU seconds
 * are the measure that a shared machine's load moves least. BENCH_WORKER_NODE_ARGS=--cpu-prof….
 * BENCH_BASELINE_ROOT=<built checkout> times the catalog's requests on that build's server too, in
 * alternating rounds, for an A/B under the same load.
 * Output: bench/results/api.json (BENCH_OUT names another file there).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeBase64, encodeCursorChunk } from '@pothos/core';
import { encodeGlobalID } from '@pothos/plugin-relay';
import { Logger, runMigrations as installWorkerSchema } from 'graphile-worker';
import pg from 'pg';
import { createSecretBox, redactUrl } from '../src/app/secrets.ts';
import { createDb } from '../src/db/client.ts';
import { applyMigrations } from '../src/db/migrate.ts';
import { createDatabase, startScratchPostgres, type ScratchPostgres } from '../src/db/pg-server.ts';
import { issueApiKey } from '../src/services/api-keys.ts';
import type { ClientResult, ClientSpec, LoopDelay } from './api-clients.ts';
import { processCpuSeconds, procStatusKB, sampleTreeRss, summarize } from './snapshot-measure.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const num = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
const CLIENTS = num('BENCH_CLIENTS', 1000);
const CLIENT_PROCS = num('BENCH_CLIENT_PROCS', 2);
const LIVE_ENVS = num('BENCH_LIVE_ENVS', 10);
const LIVE_DB_MB = num('BENCH_LIVE_DB_MB', 40);
const LIVE_CONCURRENCY = num('BENCH_LIVE_CONCURRENCY', 4);
const SNAPSHOTS = num('BENCH_SNAPSHOTS', 100_000);
const CATALOG_ENVS = num('BENCH_CATALOG_ENVS', 1000);
const PROJECTS = num('BENCH_PROJECTS', 20);
const QPS = num('BENCH_QPS', 5);
const QUERY_REQUESTS = num('BENCH_QUERY_REQUESTS', 100);
const JOBS = num('BENCH_JOBS', 200);
const PARTS = new Set((process.env.BENCH_PARTS ?? 'subscriptions,catalog,jobs').split(','));
/** Worker process counts the jobs part runs, one round each. */
const JOB_WORKERS = (process.env.BENCH_JOB_WORKERS ?? '1,2').split(',').map(Number);
/**
 * Builds whose workers the jobs part runs, `label=checkout` with a built dist/, comma-separated
 * (this checkout when unset): each round runs every build in turn, BENCH_JOB_REPEAT times, so
 * an old and a new build are compared interleaved, under the same load and with the same
 * environments. The serve process (which only enqueues) is always this checkout's.
 */
const JOB_BUILDS = (process.env.BENCH_JOB_BUILDS ?? `this=${ROOT}`).split(',').map((b) => {
  const [label, root] = b.split('=');
  return { label, root: path.resolve(root) };
});
const JOB_REPEAT = num('BENCH_JOB_REPEAT', 1);
/** Node options for the started worker processes, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof/{build}` ({build}: the build's label). */
const WORKER_NODE_ARGS = (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
const TRANSPORTS = new Set((process.env.BENCH_TRANSPORTS ?? 'ws,sse').split(','));
/** Catalog request types to run, by name (all when unset): `BENCH_QUERIES=overview` for one. */
const QUERY_NAMES = process.env.BENCH_QUERIES ? new Set(process.env.BENCH_QUERIES.split(',')) : null;
/**
 * A checkout of another commit, built (`npm run build` there): the catalog's requests are then
 * timed on its server and on this one, in BENCH_BASELINE_ROUNDS rounds of alternating order, for an
 * A/B under the same machine load (plans and statement counts stay this build's).
 */
const BASELINE_ROOT = process.env.BENCH_BASELINE_ROOT ? path.resolve(process.env.BENCH_BASELINE_ROOT) : null;
const BASELINE_ROUNDS = num('BENCH_BASELINE_ROUNDS', 4);
/** Tables this large must not be read by a sequential scan on a request's path. */
const BIG_TABLE_ROWS = 10_000;

const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const load = () => os.loadavg().map((x) => round(x, 2));

// ---------------------------------------------------------------- processes

interface Proc {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

/** `backplane serve` or `worker` from the build, ready once it logged 'listening' / 'worker started'; its log goes to a file. */
async function startBackplane(command: 'serve' | 'worker', env: Record<string, string>, logFile: string, build = { label: 'this', root: ROOT }): Promise<Proc> {
  const nodeArgs = command === 'worker' ? WORKER_NODE_ARGS.map((a) => a.replaceAll('{build}', build.label)) : [];
  const child = spawn(process.execPath, [...nodeArgs, path.join(build.root, 'bin/backplane.js'), command], {
    cwd: build.root,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', OPERATION_STALE_MS: '3600000', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = createWriteStream(logFile, { flags: 'a' });
  child.stderr!.pipe(out);
  const ready = command === 'worker' ? 'worker started' : 'listening';
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      out.write(line + '\n');
      try {
        const rec = JSON.parse(line) as { msg?: string; port?: number };
        if (rec.msg === ready) resolve(rec.port ?? 0);
      } catch {
        // not a log line
      }
    });
    child.once('exit', (code) => reject(new Error(`backplane ${command} exited with ${code}; see ${logFile}`)));
  });
  return {
    child,
    url: `http://127.0.0.1:${port}/graphql`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function post(url: string, key: string, body: unknown, timeoutMs = 120_000): Promise<unknown> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
  const json = (await res.json()) as unknown;
  const list = Array.isArray(json) ? json : [json];
  for (const r of list as { errors?: unknown; data?: unknown }[]) if (r.errors || !r.data) throw new Error(`GraphQL error: ${JSON.stringify(r.errors ?? r).slice(0, 500)}`);
  return json;
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(url.replace(/\/graphql$/, '/metrics'))).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

/** The server's garbage collection time so far, in ms, by kind (major, minor, incremental, weakcb), from prom-client's default metrics. */
async function gcMs(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(url.replace(/\/graphql$/, '/metrics'))).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^nodejs_gc_duration_seconds_sum\{kind="(\w+)"\} ([\d.e+-]+)$/gm)) out[m[1]] = Number(m[2]) * 1000;
  return out;
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs: number, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

const CREATE_SNAPSHOT = `mutation($input: CreateSnapshotInput!) { createSnapshot(input: $input) { __typename ... on SnapshotOperationPayload { operation { id } } ... on Error { code message } } }`;

async function createSnapshots(url: string, key: string, envIds: string[], includes: string[]): Promise<string[]> {
  const ops: string[] = [];
  for (const id of envIds) {
    const d = (await post(url, key, { query: CREATE_SNAPSHOT, variables: { input: { environmentId: encodeGlobalID('Environment', id), includes } } })) as { data: { createSnapshot: { operation?: { id: string } } } };
    if (!d.data.createSnapshot.operation) throw new Error(`createSnapshot: ${JSON.stringify(d.data.createSnapshot)}`);
    ops.push(d.data.createSnapshot.operation.id);
  }
  return ops;
}

async function opStatuses(catalog: pg.Client, since: Date): Promise<{ status: string; n: number; last: Date | null }[]> {
  const r = await catalog.query<{ status: string; n: number; last: Date | null }>(`SELECT status, count(*)::int AS n, max("finishedAt") AS last FROM operations WHERE "createdAt" >= $1 AND type = 'SNAPSHOT' GROUP BY status`, [since]);
  return r.rows;
}

// ---------------------------------------------------------------- environments with real data

interface Setup {
  server: ScratchPostgres;
  catalogUrl: string;
  secretKey: string;
  work: string;
  orgId: string;
  key: string;
}

async function sqlOn(url: string, text: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

/** `count` environments, each its own database (a copy of one generated template) and files folder. */
async function makeEnvironments(s: Setup, prefix: string, count: number, dbMB: number, filesKB: number): Promise<string[]> {
  const template = `${prefix}_template`;
  await createDatabase(s.server.adminUrl, template);
  // Rows of mixed text and random hex: compressible like real data, not deduplicable within the dump.
  const rows = Math.max(1000, Math.round((dbMB * 2 ** 20) / 260));
  await sqlOn(s.server.url(template), `CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, kind text NOT NULL, body text NOT NULL);
    INSERT INTO events SELECT g, now() - make_interval(secs => g), (ARRAY['order','refund','signup','login'])[1 + g % 4],
      md5(g::text) || ' customer ' || (g % 9973) || ' ' || md5(random()::text) || md5(random()::text) || repeat(' note', 20 + g % 10)
    FROM generate_series(1, ${rows}) g`);
  const secrets = createSecretBox(Buffer.from(s.secretKey, 'hex'));
  const db = createDb(s.catalogUrl);
  try {
    const project = await db.project.create({ data: { organizationId: s.orgId, name: prefix } });
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const name = `${prefix}_${i}`;
      await createDatabase(s.server.adminUrl, name, template);
      const files = path.join(s.work, 'files', name);
      await fs.mkdir(files, { recursive: true });
      for (let f = 0; f < 4; f++) await fs.writeFile(path.join(files, `file-${f}.bin`), randomBytes(Math.round((filesKB * 1024) / 4)));
      const url = s.server.url(name);
      const env = await db.environment.create({
        data: { organizationId: s.orgId, projectId: project.id, name, type: 'PRODUCTION', databaseUrlEncrypted: secrets.seal(url), databaseUrlRedacted: redactUrl(url), databaseName: name, filesPath: files, settings: { create: { timeoutSeconds: 3600 } } },
      });
      ids.push(env.id);
    }
    return ids;
  } finally {
    await db.$disconnect();
  }
}

/** A fresh LOCAL destination for each of `envIds` (each=true) or one shared by all, replacing their destinations. */
async function freshDestinations(s: Setup, envIds: string[], tag: string, each: boolean): Promise<void> {
  const db = createDb(s.catalogUrl);
  try {
    let shared: string | undefined;
    for (const [i, envId] of envIds.entries()) {
      if (!shared || each) {
        const d = await db.destination.create({ data: { organizationId: s.orgId, name: `${tag}-${each ? i : 'all'}`, provider: 'LOCAL', config: { path: path.join(s.work, 'repositories', `${tag}-${each ? i : 'all'}`) } } });
        shared = d.id;
      }
      await db.environmentDestination.deleteMany({ where: { environmentId: envId } });
      await db.environmentDestination.create({ data: { environmentId: envId, destinationId: shared } });
    }
  } finally {
    await db.$disconnect();
  }
}

// ---------------------------------------------------------------- part a: subscribers

interface ChildHandle {
  child: ChildProcess;
  send(msg: unknown): void;
  next(type: string): Promise<Record<string, unknown>>;
}

function forkClients(): ChildHandle {
  const child = fork(path.join(ROOT, 'bench/api-clients.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map<string, (m: Record<string, unknown>) => void>();
  const got = new Map<string, Record<string, unknown>>();
  child.on('message', (m: Record<string, unknown>) => {
    const w = waiting.get(m.type as string);
    if (w) w(m);
    else got.set(m.type as string, m);
  });
  return {
    child,
    send: (msg) => child.send(msg as never),
    next: (type) =>
      got.has(type)
        ? Promise.resolve(got.get(type)!)
        : new Promise((resolve, reject) => {
            waiting.set(type, resolve);
            child.once('exit', (code) => reject(new Error(`client process exited with ${code} before '${type}'`)));
          }),
  };
}

async function subscribers(s: Setup, envIds: string[], transport: 'ws' | 'sse', roundNo: number) {
  log(`subscribers over ${transport}: ${CLIENTS} clients on ${envIds.length} environments`);
  await freshDestinations(s, envIds, `live-${roundNo}`, true);
  const catalog = new pg.Client({ connectionString: s.catalogUrl });
  catalog.on('error', () => undefined);
  await catalog.connect();
  const env = { DATABASE_URL: s.catalogUrl, BACKPLANE_SECRET_KEY: s.secretKey, BACKPLANE_HOME: path.join(s.work, 'home') };
  const api = await startBackplane('serve', env, path.join(s.work, `serve-${transport}.log`));
  const children: ChildHandle[] = [];
  let worker: Proc | undefined;
  try {
    const since = new Date();
    // Queued before any worker runs, so every subscriber is in place before the first change.
    const ops = await createSnapshots(api.url, s.key, envIds, ['DB', 'FILES']);
    const specs: ClientSpec[] = Array.from({ length: CLIENTS }, (_, i) => ({ environmentId: encodeGlobalID('Environment', envIds[i % envIds.length]), operationId: ops[i % envIds.length] }));
    for (let p = 0; p < CLIENT_PROCS; p++) children.push(forkClients());
    const idleRssMB = procStatusKB(api.child.pid!, 'VmRSS') / 1024;
    const t0 = performance.now();
    children.forEach((c, p) => c.send({ type: 'start', url: api.url, key: s.key, transport, clients: specs.filter((_, i) => i % CLIENT_PROCS === p) }));
    await Promise.all(children.map((c) => c.next('subscribed')));
    // Waits for every subscription, but measures anyway after 3 minutes: how many the server
    // holds is part of the result (a stream that never opened shows as a client without the end).
    const inPlace = await until(() => metric(api.url, 'backplane_event_subscribers'), (n) => n >= 2 * CLIENTS, `${2 * CLIENTS} subscriptions`, 180_000).catch(() => metric(api.url, 'backplane_event_subscribers'));
    const subscribeSeconds = (performance.now() - t0) / 1000;
    const subscribedRssMB = procStatusKB(api.child.pid!, 'VmRSS') / 1024;
    log(`  ${inPlace} of ${2 * CLIENTS} subscriptions in place in ${subscribeSeconds.toFixed(1)} s; API RSS ${subscribedRssMB.toFixed(0)} MiB`);

    const rss = sampleTreeRss(api.child.pid!);
    const cpu0 = processCpuSeconds(api.child.pid!);
    const w0 = performance.now();
    worker = await startBackplane('worker', { ...env, WORKER_CONCURRENCY: String(LIVE_CONCURRENCY) }, path.join(s.work, `worker-${transport}.log`));
    const done = await until(() => opStatuses(catalog, since), (rows) => rows.filter((r) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(r.status)).reduce((a, r) => a + r.n, 0) >= envIds.length, 'the snapshots to end', 600_000);
    const jobsSeconds = (performance.now() - w0) / 1000;
    const finish = children.map((c) => c.next('result'));
    children.forEach((c) => c.send({ type: 'finish', waitMs: 30_000 }));
    const finished = await Promise.all(finish);
    const results = finished.flatMap((m) => m.clients as ClientResult[]);
    const clientLoopDelayMs = finished.map((m) => m.loopDelayMs as LoopDelay);
    const cpuSeconds = processCpuSeconds(api.child.pid!) - cpu0;
    const peakRssMB = rss.stop();
    const activityLag = results.flatMap((r) => r.activityLagMs);
    const operationLag = results.flatMap((r) => r.operationLagMs);
    const all = [...activityLag, ...operationLag];
    // Every client of one environment should get the same activity events: a client with fewer than the most any of them got missed some.
    const most = new Map<string, number>();
    for (const r of results) most.set(r.environmentId, Math.max(most.get(r.environmentId) ?? 0, r.activityLagMs.length));
    const activityEventsMissed = results.reduce((a, r) => a + (most.get(r.environmentId)! - r.activityLagMs.length), 0);
    const summary = {
      transport,
      clients: CLIENTS,
      subscriptions: 2 * CLIENTS,
      subscriptionsInPlace: inPlace,
      environments: envIds.length,
      workerConcurrency: LIVE_CONCURRENCY,
      snapshots: Object.fromEntries(done.map((r) => [r.status, r.n])),
      jobsSeconds: round(jobsSeconds),
      subscribeSeconds: round(subscribeSeconds),
      lagMs: { p50: round(pct(all, 50)), p99: round(pct(all, 99)), max: round(Math.max(...all)), events: all.length },
      activityLagMs: { p50: round(pct(activityLag, 50)), p99: round(pct(activityLag, 99)), events: activityLag.length },
      operationLagMs: { p50: round(pct(operationLag, 50)), p99: round(pct(operationLag, 99)), events: operationLag.length },
      lost: {
        clientsWithoutTerminalOperation: results.filter((r) => !r.operationCompleted || !['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(r.operationStatus ?? '')).length,
        clientsWithoutTerminalActivity: results.filter((r) => !r.activitySawTerminal).length,
        activityEventsMissed,
        clientErrors: results.reduce((a, r) => a + r.errors.length, 0),
        firstError: results.find((r) => r.errors.length)?.errors[0] ?? null,
      },
      // Each client process's own event-loop delay over the run: an arrival waits for it before it is stamped.
      clientLoopDelayMs,
      server: { idleRssMB: round(idleRssMB), subscribedRssMB: round(subscribedRssMB), peakRssMB: round(peakRssMB), cpuSeconds: round(cpuSeconds, 2), cpuShareOfOneCore: round(cpuSeconds / jobsSeconds, 2) },
    };
    log(`  lag p50 ${summary.lagMs.p50} ms, p99 ${summary.lagMs.p99} ms over ${all.length} arrivals; client event-loop delay p99 ${clientLoopDelayMs.map((d) => d.p99).join(', ')} ms (max ${clientLoopDelayMs.map((d) => d.max).join(', ')}); lost ${JSON.stringify(summary.lost)}; API peak RSS ${summary.server.peakRssMB} MiB, CPU ${summary.server.cpuSeconds} s in ${summary.jobsSeconds} s`);
    return summary;
  } finally {
    for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    await worker?.stop();
    await api.stop();
    await catalog.end();
  }
}

// ---------------------------------------------------------------- part b: the catalog

/** uuid v7-like ids from a time, so ids sort by creation as the application's do. */
const UUID7 = `CREATE OR REPLACE FUNCTION bench_uuid7(ts timestamptz) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-8' || substr(r, 4, 3) || '-' || substr(r, 7, 12)
  FROM (SELECT lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') AS h, md5(random()::text || clock_timestamp()::text) AS r) x $$`;

async function seedCatalog(url: string, orgId: string, destinationId: string): Promise<{ bigEnvironmentId: string; counts: Record<string, number> }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(UUID7);
    await c.query(`INSERT INTO projects (id, "organizationId", name, "createdAt", "updatedAt")
      SELECT bench_uuid7(now() - make_interval(days => 400 - p)), $1, 'project-' || p, now() - make_interval(days => 400 - p), now() FROM generate_series(1, $2::int) p`, [orgId, PROJECTS]);
    await c.query(`INSERT INTO environments (id, "organizationId", "projectId", name, type, "databaseUrlEncrypted", "databaseUrlRedacted", "databaseName", "createdAt", "updatedAt")
      SELECT bench_uuid7(now() - make_interval(days => 390, mins => e)), $1, p.id, 'env-' || e, (ARRAY['PRODUCTION','STAGING','DEVELOPMENT','PREVIEW']::"EnvironmentType"[])[1 + e % 4],
             'sealed', 'postgres://app:***@db/app' || e, 'app' || e, now() - make_interval(days => 390, mins => e), now()
      FROM generate_series(0, $2::int - 1) e
      JOIN LATERAL (SELECT id FROM projects WHERE "organizationId" = $1 ORDER BY name OFFSET (e % $3::int) LIMIT 1) p ON true`, [orgId, CATALOG_ENVS, PROJECTS]);
    await c.query(`INSERT INTO environment_destinations ("environmentId", "destinationId") SELECT id, $2 FROM environments WHERE "organizationId" = $1`, [orgId, destinationId]);
    const envs = (await c.query<{ id: string; projectId: string }>(`SELECT id, "projectId" FROM environments WHERE "organizationId" = $1 ORDER BY name`, [orgId])).rows;
    // One environment holds a fifth of the snapshots (a year of 10-minute snapshots), the rest share the others.
    const big = envs[0];
    const bigCount = Math.round(SNAPSHOTS / 5);
    const perOther = Math.floor((SNAPSHOTS - bigCount) / (envs.length - 1));
    await c.query(`CREATE TEMP TABLE plan_snapshots AS
      SELECT $1::text AS env, g AS n, now() - make_interval(mins => 10 * g) AS at FROM generate_series(1, $2::int) g
      UNION ALL
      SELECT e.id, g, now() - make_interval(hours => 6 * g, mins => (hashtext(e.id) & 255)) FROM environments e CROSS JOIN generate_series(1, $3::int) g WHERE e."organizationId" = $4 AND e.id <> $1`, [big.id, bigCount, perOther, orgId]);
    await c.query(`ALTER TABLE plan_snapshots ADD COLUMN sid text, ADD COLUMN oid text`);
    await c.query(`UPDATE plan_snapshots SET sid = bench_uuid7(at), oid = bench_uuid7(at - interval '1 second')`);
    await c.query(`INSERT INTO operations (id, "organizationId", "environmentId", type, status, phase, "bytesDone", "bytesTotal", attempts, "startedAt", "finishedAt", "createdAt", "updatedAt")
      SELECT oid, $1, env, 'SNAPSHOT', CASE WHEN n % 97 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END::"OperationStatus", 'done', 50000000, 50000000, 1, at, at + interval '40 seconds', at - interval '1 second', at + interval '40 seconds'
      FROM plan_snapshots`, [orgId]);
    await c.query(`INSERT INTO snapshots (id, "organizationId", "projectId", "environmentId", kind, includes, label, status, "sizeBytes", "addedBytes", "fileCount", "durationMs", pinned, "createdAt", "completedAt", "expiresAt")
      SELECT p.sid, $1, e."projectId", p.env,
             (CASE WHEN p.n % 50 = 0 THEN 'MANUAL' WHEN p.n % 31 = 0 THEN 'PRE_DEPLOY' ELSE 'SCHEDULED' END)::"SnapshotKind",
             CASE WHEN p.n % 3 = 0 THEN ARRAY['DB']::"SnapshotInclude"[] ELSE ARRAY['DB','FILES']::"SnapshotInclude"[] END,
             CASE WHEN p.n % 50 = 0 THEN 'release ' || p.n ELSE NULL END,
             (CASE WHEN p.n % 97 = 0 THEN 'FAILED' WHEN p.n % 89 = 0 THEN 'DELETED' ELSE 'READY' END)::"SnapshotStatus",
             50000000 + p.n, 100000 + p.n % 5000, 120, 40000, p.n % 500 = 0, p.at, p.at + interval '40 seconds', p.at + interval '30 days'
      FROM plan_snapshots p JOIN environments e ON e.id = p.env`, [orgId]);
    await c.query(`UPDATE operations o SET "snapshotId" = p.sid FROM plan_snapshots p WHERE o.id = p.oid`);
    await c.query(`INSERT INTO snapshot_copies (id, "snapshotId", "destinationId", status, "repoSnapshotId", "sizeBytes", "addedBytes", "createdAt", "completedAt")
      SELECT bench_uuid7(at), sid, $1, 'READY', md5(sid), 50000000, 100000, at, at + interval '40 seconds' FROM plan_snapshots WHERE n % 97 <> 0`, [destinationId]);
    // A restore for every 50th snapshot, a drill for every 20th, an alert for every 20th.
    await c.query(`CREATE TEMP TABLE plan_work AS SELECT p.*, bench_uuid7(at + interval '1 hour') AS wid, bench_uuid7(at + interval '1 hour 1 second') AS oid2 FROM plan_snapshots p WHERE n % 20 = 0`);
    await c.query(`INSERT INTO operations (id, "organizationId", "environmentId", type, status, phase, "bytesDone", attempts, "startedAt", "finishedAt", "createdAt", "updatedAt", "snapshotId")
      SELECT oid2, $1, env, (CASE WHEN n % 50 = 0 THEN 'RESTORE' ELSE 'RESTORE_DRILL' END)::"OperationType", 'SUCCEEDED', 'done', 0, 1, at + interval '1 hour', at + interval '1 hour 2 minutes', at + interval '1 hour', at + interval '1 hour 2 minutes', sid
      FROM plan_work WHERE n % 97 <> 0`, [orgId]);
    await c.query(`INSERT INTO restore_logs (id, "organizationId", "snapshotId", "sourceEnvironmentId", "targetEnvironmentId", "operationId", strategy, includes, status, "createdAt", "completedAt")
      SELECT wid, $1, sid, env, env, oid2, 'SWAP', ARRAY['DB']::"SnapshotInclude"[], 'SUCCEEDED', at + interval '1 hour', at + interval '1 hour 2 minutes' FROM plan_work WHERE n % 50 = 0 AND n % 97 <> 0`, [orgId]);
    await c.query(`INSERT INTO restore_drills (id, "organizationId", "environmentId", "snapshotId", "operationId", scheduled, status, "rtoMs", "createdAt", "completedAt")
      SELECT wid, $1, env, sid, oid2, true, 'SUCCEEDED', 60000 + n % 30000, at + interval '1 hour', at + interval '1 hour 2 minutes' FROM plan_work WHERE n % 50 <> 0 AND n % 97 <> 0`, [orgId]);
    await c.query(`INSERT INTO alerts (id, "organizationId", "environmentId", "operationId", type, severity, message, "readAt", "dismissedAt", "createdAt")
      SELECT bench_uuid7(at + interval '2 seconds'), $1, env, oid, (CASE WHEN n % 97 = 0 THEN 'SNAPSHOT_FAILED' ELSE 'RETENTION_DELETED' END)::"AlertType",
             (CASE WHEN n % 97 = 0 THEN 'CRITICAL' ELSE 'INFO' END)::"AlertSeverity", 'bench alert ' || n,
             CASE WHEN n % 3 = 0 THEN at END, CASE WHEN n % 5 = 0 THEN at END, at + interval '2 seconds'
      FROM plan_snapshots WHERE n % 20 = 0 OR n % 97 = 0`, [orgId]);
    await c.query('DROP FUNCTION bench_uuid7(timestamptz)');
    await c.query('VACUUM (ANALYZE)');
    const counts: Record<string, number> = {};
    for (const t of ['projects', 'environments', 'snapshots', 'snapshot_copies', 'operations', 'restore_logs', 'restore_drills', 'alerts']) {
      counts[t] = (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t}`)).rows[0].n;
    }
    return { bigEnvironmentId: big.id, counts };
  } finally {
    await c.end();
  }
}

const SNAPSHOT_FIELDS = `id kind label status includes pinned pinLabel sizeBytes addedBytes durationMs createdAt completedAt error`;
const OPERATION_FIELDS = `id type status phase percent bytesDone bytesTotal message error cancelRequested createdAt startedAt finishedAt environment { id name } snapshot { id label status }`;

interface CatalogQuery {
  name: string;
  /** What the request is, for the report. */
  what: string;
  body(first: number): unknown;
  /** Page sizes at which statements are counted (the count must not grow with the page). */
  pages: number[];
}

function catalogQueries(ids: { big: string; small: string; project: string; snapshots: string[]; operations: string[]; deepCursor: string }): CatalogQuery[] {
  const env = (id: string) => encodeGlobalID('Environment', id);
  const envPage = `query($id: ID!, $first: Int, $after: String, $filter: SnapshotFilter) { environment(id: $id) { id name type databaseName filesPath project { id name }
    snapshots(first: $first, after: $after, filter: $filter) { totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { node { __typename ${SNAPSHOT_FIELDS} } } } } }`;
  const overview = (first: number) => `{ projects(first: 20) { totalCount edges { node { id name environments(first: ${first}) { totalCount edges { node { id name type
    schedule { id paused nextDbRunAt nextFullRunAt } pointInTimeRecovery { enabled status earliestRecoveryTime latestRecoveryTime lagSeconds }
    snapshots(first: 1) { totalCount edges { node { id status sizeBytes createdAt } } } } } } } } } alertCounts { unread undismissed } }`;
  const nodeIds = [...ids.snapshots.slice(0, 4).map((i) => encodeGlobalID('Snapshot', i)), ...ids.operations.slice(0, 3).map((i) => encodeGlobalID('Operation', i)), env(ids.big), env(ids.small), encodeGlobalID('Project', ids.project)];
  return [
    { name: 'environmentSnapshotsFiltered', what: 'the console environment page: snapshots first N of the environment with a fifth of the catalog, filter READY + SCHEDULED, totalCount', pages: [10, 50], body: (first) => ({ query: envPage, variables: { id: env(ids.big), first, filter: { statuses: ['READY'], kinds: ['SCHEDULED'] } } }) },
    { name: 'environmentSnapshotsDeepCursor', what: 'the same environment, first N after a cursor three quarters deep (15,000 of 20,000 by default), no filter', pages: [10, 50], body: (first) => ({ query: envPage, variables: { id: env(ids.big), first, after: ids.deepCursor } }) },
    { name: 'environmentSnapshotsSmall', what: 'snapshots first N of an ordinary environment (80 snapshots), filter by label', pages: [10, 50], body: (first) => ({ query: envPage, variables: { id: env(ids.small), first, filter: { labelContains: 'release' } } }) },
    { name: 'projectSnapshots', what: 'an integrator: project.snapshots first N, READY, created in the last 30 days', pages: [10, 50], body: (first) => ({ query: `query($id: ID!, $first: Int, $since: DateTime) { node(id: $id) { ... on Project { id snapshots(first: $first, filter: { statuses: [READY], createdAfter: $since }) { totalCount edges { cursor node { ${SNAPSHOT_FIELDS} environment { id name } } } } } } }`, variables: { id: encodeGlobalID('Project', ids.project), first, since: new Date(Date.now() - 30 * 86400_000).toISOString() } }) },
    { name: 'overview', what: 'the console overview: 20 projects → environments first N, each with its schedule, PITR state and latest snapshot; alert counts', pages: [10, 50], body: (first) => ({ query: overview(first) }) },
    { name: 'alertCounts', what: 'alertCounts { unread undismissed } plus the first 20 alerts', pages: [20], body: () => ({ query: `{ alertCounts { unread undismissed } alerts(first: 20) { totalCount edges { node { id type severity message createdAt readAt environment { id name } } } } }` }) },
    { name: 'nodeLookup', what: 'node(id) of one snapshot with its environment and copies', pages: [1], body: () => ({ query: `query($id: ID!) { node(id: $id) { ... on Snapshot { ${SNAPSHOT_FIELDS} environment { id name } copies { status sizeBytes destination { id name } } } } }`, variables: { id: encodeGlobalID('Snapshot', ids.snapshots[0]) } }) },
    { name: 'nodesBatch', what: 'nodes(ids) of 10 objects of four types', pages: [10], body: () => ({ query: `query($ids: [ID!]!) { nodes(ids: $ids) { __typename id ... on Snapshot { snapshotStatus: status createdAt } ... on Operation { operationStatus: status percent } ... on Environment { name } ... on Project { name } } }`, variables: { ids: nodeIds } }) },
    { name: 'httpBatch10', what: 'an HTTP batch of 10 operations: snapshot(id) × 5, operation(id) × 3, two environments with their latest snapshot', pages: [10], body: () => [
      ...ids.snapshots.slice(0, 5).map((i) => ({ query: `query($id: ID!) { snapshot(id: $id) { ${SNAPSHOT_FIELDS} } }`, variables: { id: encodeGlobalID('Snapshot', i) } })),
      ...ids.operations.slice(0, 3).map((i) => ({ query: `query($id: ID!) { operation(id: $id) { ${OPERATION_FIELDS} } }`, variables: { id: encodeGlobalID('Operation', i) } })),
      ...[ids.big, ids.small].map((i) => ({ query: `query($id: ID!) { environment(id: $id) { id name snapshots(first: 1) { edges { node { id status createdAt } } } } }`, variables: { id: env(i) } })),
    ] },
    { name: 'runningOperations', what: 'the console operations page: operations QUEUED or RUNNING, first 50', pages: [50], body: () => ({ query: `{ operations(filter: { statuses: [QUEUED, RUNNING] }, first: 50) { totalCount edges { node { ${OPERATION_FIELDS} } } } }` }) },
    { name: 'environmentOperations', what: 'an environment\'s operations first N (integrator)', pages: [10, 50], body: (first) => ({ query: `query($id: ID!, $first: Int) { environment(id: $id) { operations(first: $first) { totalCount edges { node { ${OPERATION_FIELDS} } } } } }`, variables: { id: env(ids.big), first } }) },
    { name: 'restoreLogs', what: 'the console restore log of an environment, first 10', pages: [10], body: () => ({ query: `query($id: ID!) { environment(id: $id) { id restoreLogs(first: 10) { totalCount edges { node { id status strategy includes createdAt completedAt snapshot { id label createdAt } safetySnapshot { id } sourceEnvironment { id name } targetEnvironment { id name } operation { ${OPERATION_FIELDS} } } } } } }`, variables: { id: env(ids.big) } }) },
    { name: 'environmentsDrillStats', what: 'environments first N with restoreDrillStats and their latest snapshot', pages: [10, 50], body: (first) => ({ query: `query($first: Int) { environments(first: $first) { edges { node { id name restoreDrillStats { count failures medianRtoSeconds lastRtoSeconds } snapshots(first: 1) { edges { node { id createdAt } } } } } } }`, variables: { first } }) },
  ];
}

interface PlanNode { 'Node Type': string; 'Relation Name'?: string; 'Index Name'?: string; 'Actual Rows'?: number; 'Rows Removed by Filter'?: number; 'Actual Loops'?: number; Plans?: PlanNode[] }
interface LoggedPlan { app: string; query: string; plan: PlanNode }

/** The plans auto_explain wrote to PostgreSQL's JSON log since `offset`. */
async function readPlans(logPath: string, offset: number): Promise<{ plans: LoggedPlan[]; marks: string[] }> {
  const text = (await fs.readFile(logPath, 'utf8')).slice(offset);
  const plans: LoggedPlan[] = [];
  const marks: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let rec: { message?: string; application_name?: string };
    try {
      rec = JSON.parse(line);
    } catch {
      continue;
    }
    const m = rec.message ?? '';
    const i = m.indexOf('plan:\n');
    if (!m.startsWith('duration:') || i < 0) continue;
    const doc = JSON.parse(m.slice(i + 6)) as { 'Query Text': string; Plan: PlanNode };
    const mark = /bench-mark:([\w:-]+)/.exec(doc['Query Text'])?.[1];
    if (mark && rec.application_name === 'bench') marks.push(mark);
    plans.push({ app: rec.application_name ?? '', query: mark ? `mark:${mark}` : doc['Query Text'], plan: doc.Plan });
  }
  return { plans, marks };
}

function walk(node: PlanNode, visit: (n: PlanNode) => void): void {
  visit(node);
  for (const c of node.Plans ?? []) walk(c, visit);
}

/**
 * `n` requests of one type at QPS (open loop: sent on schedule, not after the previous answer).
 * A request that falls far behind its schedule is not waited for past 30 s (an error), and a run
 * that has taken three times its planned duration stops sending: an overloaded server would
 * otherwise take the whole run. At most 8 requests are outstanding: one the server cannot keep up
 * with is counted as an error instead of piling up a backlog that the next run would wait behind.
 */
async function timeRequests(url: string, key: string, q: CatalogQuery, n: number): Promise<{ lat: number[]; errors: number; firstError?: string }> {
  const first = Math.max(...q.pages);
  const lat: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const inflight: Promise<void>[] = [];
  let outstanding = 0;
  const start = performance.now();
  const planned = (n * 1000) / QPS;
  for (let i = 0; i < n; i++) {
    if (performance.now() - start > 3 * planned) {
      errors += n - i;
      break;
    }
    const due = start + (i * 1000) / QPS;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (outstanding >= 8) {
      errors++;
      firstError ??= 'not sent: 8 requests of this type were still outstanding';
      continue;
    }
    outstanding++;
    const t0 = performance.now();
    inflight.push(post(url, key, q.body(first), 30_000).finally(() => outstanding--).then(() => void lat.push(performance.now() - t0), (err: Error) => void (errors++, (firstError ??= err.message.slice(0, 300)))));
  }
  await Promise.all(inflight);
  // Requests given up on may still run in the server: the next run starts once it answers again.
  await post(url, key, { query: '{ viewer { scopes } }' }, 600_000);
  return { lat, errors, firstError };
}

async function catalogPart(s: Setup) {

  log(`catalog: ${SNAPSHOTS} snapshots over ${CATALOG_ENVS} environments in ${PROJECTS} projects`);
  const url = s.server.url('catalog');
  await createDatabase(s.server.adminUrl, 'catalog');
  await applyMigrations(url);
  await installWorkerSchema({ connectionString: url, logger: new Logger(() => () => {}) });
  const db = createDb(url);
  const org = await db.organization.create({ data: { name: 'Catalog' } });
  const dest = await db.destination.create({ data: { organizationId: org.id, name: 's3', provider: 'LOCAL', config: { path: path.join(s.work, 'repositories', 'catalog') } } });
  const key = (await issueApiKey(db, { organizationId: org.id, name: 'bench', scopes: ['admin'] })).secret;
  await db.$disconnect();
  let t = performance.now();
  const { bigEnvironmentId, counts } = await seedCatalog(url, org.id, dest.id);
  const seedSeconds = (performance.now() - t) / 1000;
  log(`  seeded in ${seedSeconds.toFixed(0)} s: ${JSON.stringify(counts)}`);

  const c = new pg.Client({ connectionString: url, application_name: 'bench' });
  c.on('error', () => undefined);
  await c.connect();
  const small = (await c.query<{ id: string; projectId: string }>(`SELECT id, "projectId" FROM environments WHERE "organizationId" = $1 AND name = 'env-7'`, [org.id])).rows[0];
  const snaps = (await c.query<{ id: string }>(`SELECT id FROM snapshots WHERE "environmentId" = $1 AND status = 'READY' ORDER BY id DESC OFFSET 500 LIMIT 5`, [bigEnvironmentId])).rows.map((r) => r.id);
  const opIds = (await c.query<{ id: string }>(`SELECT id FROM operations WHERE "environmentId" = $1 ORDER BY id DESC OFFSET 100 LIMIT 3`, [small.id])).rows.map((r) => r.id);
  const deep = (await c.query<{ id: string }>(`SELECT id FROM snapshots WHERE "environmentId" = $1 ORDER BY id DESC OFFSET $2 LIMIT 1`, [bigEnvironmentId, Math.floor(SNAPSHOTS / 5 * 0.75)])).rows[0].id;
  const queries = catalogQueries({ big: bigEnvironmentId, small: small.id, project: small.projectId, snapshots: snaps, operations: opIds, deepCursor: encodeBase64(`GPC:${encodeCursorChunk(deep)}`) }).filter((q) => !QUERY_NAMES || QUERY_NAMES.has(q.name));

  const serveEnv = { DATABASE_URL: url, BACKPLANE_SECRET_KEY: s.secretKey, BACKPLANE_HOME: path.join(s.work, 'home') };
  const api = await startBackplane('serve', serveEnv, path.join(s.work, 'serve-catalog.log'));
  const baseline = BASELINE_ROOT ? await startBackplane('serve', serveEnv, path.join(s.work, 'serve-catalog-baseline.log'), { label: 'baseline', root: BASELINE_ROOT }) : null;
  try {
    // Warm: every request a few times, so no measured one compiles code paths.
    for (const server of baseline ? [baseline, api] : [api]) for (let i = 0; i < 3; i++) for (const q of queries) for (const p of q.pages) await post(server.url, key, q.body(p));

    // Timings: each request alone at a steady rate. With a baseline server, each type is timed on
    // both in BASELINE_ROUNDS rounds whose order alternates (baseline, current, current, baseline…),
    // so that both see the same machine load.
    const timings: Record<string, ReturnType<typeof summarize>> = {};
    const baselineTimings: Record<string, ReturnType<typeof summarize>> = {};
    // Garbage collection in the server while each type was timed: a type timed after one that
    // leaves much garbage (the overview) may pay for its collection.
    const gcWhileTimed: Record<string, Record<string, number>> = {};
    const baselineGcWhileTimed: Record<string, Record<string, number>> = {};
    const firstError: Record<string, string> = {};
    let cpuSeconds = 0;
    for (const q of queries) {
      const runs = { current: { lat: [] as number[], errors: 0 }, baseline: { lat: [] as number[], errors: 0 } };
      const rounds = baseline ? BASELINE_ROUNDS : 1;
      for (let turn = 0; turn < rounds; turn++) {
        const order = !baseline ? (['current'] as const) : turn % 2 === 0 ? (['baseline', 'current'] as const) : (['current', 'baseline'] as const);
        for (const which of order) {
          const server = which === 'current' ? api : baseline!;
          const cpu0 = processCpuSeconds(api.child.pid!);
          const gc0 = await gcMs(server.url);
          const r = await timeRequests(server.url, key, q, Math.ceil(QUERY_REQUESTS / rounds));
          if (which === 'current') cpuSeconds += processCpuSeconds(api.child.pid!) - cpu0;
          const gc = ((which === 'current' ? gcWhileTimed : baselineGcWhileTimed)[q.name] ??= {});
          for (const [kind, ms] of Object.entries(await gcMs(server.url))) gc[kind] = round((gc[kind] ?? 0) + ms - (gc0[kind] ?? 0));
          runs[which].lat.push(...r.lat);
          runs[which].errors += r.errors;
          if (r.firstError && which === 'current') firstError[q.name] ??= r.firstError;
        }
      }
      const t = (timings[q.name] = summarize(runs.current.lat, runs.current.errors, QPS));
      const b = baseline ? (baselineTimings[q.name] = summarize(runs.baseline.lat, runs.baseline.errors, QPS)) : null;
      log(`  ${q.name.padEnd(30)} p50 ${t.p50Ms} ms  p99 ${t.p99Ms} ms  gc ${JSON.stringify(gcWhileTimed[q.name])}${runs.current.errors ? `  ${runs.current.errors} errors` : ''}${b ? `   baseline p50 ${b.p50Ms} ms  p99 ${b.p99Ms} ms  gc ${JSON.stringify(baselineGcWhileTimed[q.name])}${runs.baseline.errors ? `  ${runs.baseline.errors} errors` : ''}   (load ${load().join(' ')})` : ''}`);
    }

    // Plans and statement counts: auto_explain logs every statement's plan (with row counts, no timing) while each request runs once, alone.
    const logPath = path.join(s.server.dataDir, 'log', 'postgresql.json');
    await c.query(`ALTER SYSTEM SET auto_explain.log_min_duration = 0`);
    await c.query(`SELECT pg_reload_conf()`);
    // A reload reaches each backend before its next statement; one request first lets every pooled connection of the server see it.
    for (let i = 0; i < 4; i++) await post(api.url, key, queries[0].body(10));
    const offset = (await fs.stat(logPath)).size;
    for (const q of queries) {
      for (const p of q.pages) {
        await c.query(`SELECT 'bench-mark:${q.name}:${p}:begin'`);
        await post(api.url, key, q.body(p));
        await c.query(`SELECT 'bench-mark:${q.name}:${p}:end'`);
      }
    }
    await c.query(`ALTER SYSTEM RESET auto_explain.log_min_duration`);
    await c.query(`SELECT pg_reload_conf()`);
    const rows = new Map((await c.query<{ relname: string; n: number }>(`SELECT relname, reltuples::bigint AS n FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace`)).rows.map((r) => [r.relname, Number(r.n)]));
    // The log collector writes asynchronously: wait for the last mark.
    const lastMark = `${queries.at(-1)!.name}:${queries.at(-1)!.pages.at(-1)}:end`;
    const { plans } = await until(() => readPlans(logPath, offset), (r) => r.marks.includes(lastMark), 'the last plan in the log', 30_000, 100);

    const checks: Record<string, { statements: Record<string, number>; seqScans: string[]; filteredScans: string[]; statementsText: string[] }> = {};
    let current: { name: string; page: number } | null = null;
    for (const p of plans) {
      const mark = /^mark:([\w-]+):(\d+):(begin|end)$/.exec(p.query);
      if (mark) {
        current = mark[3] === 'begin' ? { name: mark[1], page: Number(mark[2]) } : null;
        continue;
      }
      if (!current || p.app === 'bench' || p.app === 'backplane-events') continue;
      const ch = (checks[current.name] ??= { statements: {}, seqScans: [], filteredScans: [], statementsText: [] });
      ch.statements[`first${current.page}`] = (ch.statements[`first${current.page}`] ?? 0) + 1;
      if (current.page === Math.max(...queries.find((q) => q.name === current!.name)!.pages)) ch.statementsText.push(p.query.replace(/\s+/g, ' ').slice(0, 300));
      walk(p.plan, (n) => {
        const rel = n['Relation Name'];
        if (!rel) return;
        const big = (rows.get(rel) ?? 0) >= BIG_TABLE_ROWS;
        if (n['Node Type'] === 'Seq Scan' && big) ch.seqScans.push(`${rel} (${rows.get(rel)} rows): ${p.query.replace(/\s+/g, ' ').slice(0, 160)}`);
        // An index scan that throws away thousands of rows reads the table almost as a sequential scan would.
        const removed = (n['Rows Removed by Filter'] ?? 0) * (n['Actual Loops'] ?? 1);
        if (big && removed > 1000) ch.filteredScans.push(`${n['Node Type']} ${n['Index Name'] ?? ''} on ${rel} removed ${removed} rows: ${p.query.replace(/\s+/g, ' ').slice(0, 160)}`);
      });
    }
    const requests = queries.map((q) => {
      const ch = checks[q.name] ?? { statements: {}, seqScans: [], filteredScans: [], statementsText: [] };
      const counts = q.pages.map((p) => ch.statements[`first${p}`] ?? 0);
      return {
        name: q.name,
        what: q.what,
        latency: timings[q.name],
        serverGcMsWhileTimed: gcWhileTimed[q.name] ?? {},
        firstError: firstError[q.name] ?? null,
        meetsLatencyAim: timings[q.name].p99Ms < 50,
        statementsPerRequest: ch.statements,
        statementCountGrowsWithPage: counts.length > 1 && counts.at(-1)! > counts[0],
        seqScansOfBigTables: ch.seqScans,
        scansFilteringOver1000Rows: ch.filteredScans,
        statements: ch.statementsText,
      };
    });
    for (const r of requests) log(`  ${r.name.padEnd(30)} statements ${JSON.stringify(r.statementsPerRequest)}${r.statementCountGrowsWithPage ? ' GROWS WITH PAGE' : ''}${r.seqScansOfBigTables.length ? ` SEQ SCAN: ${r.seqScansOfBigTables.join('; ')}` : ''}${r.scansFilteringOver1000Rows.length ? ` FILTERED: ${r.scansFilteringOver1000Rows.length}` : ''}`);
    return {
      rows: counts, seedSeconds: round(seedSeconds), ratePerSecond: QPS, requestsEach: QUERY_REQUESTS, serverCpuSecondsWhileTimed: round(cpuSeconds, 2), serverRssMB: round(procStatusKB(api.child.pid!, 'VmRSS') / 1024), requests,
      ...(baseline ? { baseline: { root: BASELINE_ROOT, rounds: BASELINE_ROUNDS, latency: baselineTimings, serverGcMsWhileTimed: baselineGcWhileTimed } } : {}),
    };
  } finally {
    await api.stop();
    await baseline?.stop();
    await c.end();
  }
}

// ---------------------------------------------------------------- part c: jobs

async function jobsPart(s: Setup) {
  log(`jobs: ${JOBS} small environments`);
  const envIds = await makeEnvironments(s, 'small', JOBS, 1, 64);
  const catalog = new pg.Client({ connectionString: s.catalogUrl });
  catalog.on('error', () => undefined);
  await catalog.connect();
  const env = { DATABASE_URL: s.catalogUrl, BACKPLANE_SECRET_KEY: s.secretKey, BACKPLANE_HOME: path.join(s.work, 'home') };
  const api = await startBackplane('serve', env, path.join(s.work, 'serve-jobs.log'));
  const rounds = [];
  try {
    const plan = Array.from({ length: JOB_REPEAT }, () => JOB_BUILDS.flatMap((build) => JOB_WORKERS.map((workers) => ({ build, workers })))).flat();
    for (const [n, { build, workers }] of plan.entries()) {
      await freshDestinations(s, envIds, `jobs-${n}-${workers}`, false);
      const since = new Date();
      await createSnapshots(api.url, s.key, envIds, ['DB', 'FILES']);
      const procs: Proc[] = [];
      try {
        const started = await Promise.all(Array.from({ length: workers }, (_, i) => startBackplane('worker', env, path.join(s.work, `worker-jobs-${n}-${workers}-${i}.log`), build)));
        procs.push(...started);
        const t0 = performance.now();
        const cpu0 = procs.reduce((a, p) => a + processCpuSeconds(p.child.pid!), 0);
        const done = await until(() => opStatuses(catalog, since), (rows) => rows.filter((r) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(r.status)).reduce((a, r) => a + r.n, 0) >= JOBS, `${JOBS} snapshots`, 1_800_000, 250);
        const seconds = (performance.now() - t0) / 1000;
        const cpu = procs.reduce((a, p) => a + processCpuSeconds(p.child.pid!), 0) - cpu0;
        const r = { ...(JOB_BUILDS.length > 1 ? { build: build.label } : {}), workerProcesses: workers, workerConcurrency: 2, jobs: JOBS, seconds: round(seconds), jobsPerMinute: round((JOBS / seconds) * 60), statuses: Object.fromEntries(done.map((x) => [x.status, x.n])), workerCpuSeconds: round(cpu), loadavg: load() };
        log(`  ${JOB_BUILDS.length > 1 ? `${build.label}: ` : ''}${workers} worker process(es): ${r.jobsPerMinute} jobs/min (${r.seconds} s), worker CPU ${r.workerCpuSeconds} s, ${JSON.stringify(r.statuses)}, load ${r.loadavg.join(' ')}`);
        rounds.push(r);
      } finally {
        await Promise.all(procs.map((p) => p.stop()));
      }
    }
  } finally {
    await api.stop();
    await catalog.end();
  }
  return { rounds, note: 'each environment: a 1 MiB database (one table) and 4 files of 16 KiB; one LOCAL destination shared by the 200 per round, fresh each round; time from the workers being ready to the last operation ending' };
}

// ---------------------------------------------------------------- main

/** What this bench found and what was changed for it (2026-12-07), kept with every result. */
const FIXED = [
  'N+1: the console overview ran two statements per environment (snapshots(first: 1) and its totalCount), 2 per environment + 9: measured 107 with 50 environments, so about 2,000 for 20 projects of 50 (that run was stopped after its overview requests fell minutes behind); now one LATERAL query for the pages and one GROUP BY for the counts (10 statements at first 10 and at first 50).',
  'N+1: restoreDrillStats ran one statement per environment (101 for 50 environments with their latest snapshot); now one for the list (4).',
  'N+1: a page of 10 restore logs read each log\'s snapshot and source environment one by one (30 statements); now one statement each (12).',
  'Indexes: snapshots and operations are paged newest first by id (the cursor), but their indexes were (environmentId, createdAt, id): PostgreSQL read and sorted all of an environment\'s rows; now (environmentId, id DESC) for both and (projectId, id DESC) for snapshots (migration list_indexes_by_id).',
  'Event lag: environmentActivity.at was the time the API delivered the event; every event now carries the time it was published through NOTIFY, and Operation.updatedAt is exposed, so lag is measured from the server-side creation of the event.',
  'Subscriber lag: every subscriber re-read the operation (twice for environmentActivity) and its Operation access check ran one more query: 106 SQL statements per event with 100 graphql-ws clients on one environment; now one read per event shared by all subscribers of the process, each deciding with its own ACCESS rule on that row (2 statements per event with 100 clients, 2.5 with 500).',
  'Indexes: an environment\'s operations totalCount scanned all operations (195 ms for 21,000 of 105,000 at load ~25; 1.7 ms from the new (environmentId, organizationId) index); snapshot counts from (environmentId, organizationId, status); the overview read its 1,000 latest snapshots by scanning the table (42 ms; 5.7 ms through the primary key) and re-read each environment for its PITR state.',
  'Overview (1,000 environments): its latest snapshots were read by 1,000 ids after the LATERAL statement, a statement PostgreSQL planned as a sequential scan of the snapshots; the LATERAL statement now returns the rows (8 statements, was 9, no sequential scan), counts bind the environments as one array, and visibility checks the row decides (and PITR-off windows) take no promise: server CPU per overview request, sequential, old and new build interleaved under the same load: medians 270 -> 218 ms (load 13-18, first change only) and 385 -> 273 ms (load 17-20, all changes); bench:api overview alone at load 3-4: p50 2.35/2.67 s -> 1.41 s/0.28 s, p99 4.1/4.2 s -> 3.0/3.5 s; still far from the 50 ms p99 aim, most of the rest being per-object GraphQL and Pothos work and garbage collection.',
];

async function main() {
  const started = new Date();
  const loadAtStart = load();
  await fs.mkdir(path.join(ROOT, 'bench', 'work'), { recursive: true });
  const work = await fs.mkdtemp(path.join(ROOT, 'bench', 'work', 'api-'));
  await fs.chmod(work, 0o755);
  const server = await startScratchPostgres({
    tmpRoot: work,
    settings: {
      max_connections: 500,
      // auto_explain.log_min_duration stays at its default (off) here: a setting given on the command line would outrank the ALTER SYSTEM that turns it on for the plan check.
      shared_preload_libraries: 'auto_explain',
      'auto_explain.log_format': 'json',
      'auto_explain.log_analyze': 'on',
      'auto_explain.log_timing': 'off',
      logging_collector: 'on',
      log_destination: 'jsonlog',
      log_directory: 'log',
      log_filename: 'postgresql.log',
    },
  });
  const result: Record<string, unknown> = { at: started.toISOString(), fixed: FIXED, machine: { cpu: os.cpus()[0]?.model, cpus: os.availableParallelism(), memoryGiB: round(os.totalmem() / 2 ** 30), node: process.version }, loadavgAtStart: loadAtStart };
  try {
    const catalogUrl = server.url('backplane');
    await createDatabase(server.adminUrl, 'backplane');
    await applyMigrations(catalogUrl);
    await installWorkerSchema({ connectionString: catalogUrl, logger: new Logger(() => () => {}) });
    const secretKey = randomBytes(32).toString('hex');
    const db = createDb(catalogUrl);
    const org = await db.organization.create({ data: { name: 'Bench' } });
    const key = (await issueApiKey(db, { organizationId: org.id, name: 'bench', scopes: ['admin'] })).secret;
    await db.$disconnect();
    const s: Setup = { server, catalogUrl, secretKey, work, orgId: org.id, key };

    if (PARTS.has('catalog')) result.catalog = { ...(await catalogPart(s)), loadavgAfter: load() };
    if (PARTS.has('subscriptions')) {
      const envIds = await makeEnvironments(s, 'live', LIVE_ENVS, LIVE_DB_MB, 2048);
      result.subscriptions = {
        environmentDbMB: LIVE_DB_MB,
        ...(TRANSPORTS.has('ws') ? { ws: { ...(await subscribers(s, envIds, 'ws', 1)), loadavgAfter: load() } } : {}),
        ...(TRANSPORTS.has('sse') ? { sse: { ...(await subscribers(s, envIds, 'sse', 2)), loadavgAfter: load() } } : {}),
      };
    }
    if (PARTS.has('jobs')) result.jobs = await jobsPart(s);
    result.loadavgAtEnd = load();
    result.seconds = round((Date.now() - started.getTime()) / 1000);
    await fs.mkdir(path.join(ROOT, 'bench', 'results'), { recursive: true });
    const out = path.join(ROOT, 'bench', 'results', process.env.BENCH_OUT ?? 'api.json');
    await fs.writeFile(out, JSON.stringify(result, null, 2) + '\n');
    log(`wrote ${out}`);
  } finally {
    await server.stop();
    if (!process.env.BENCH_KEEP) await fs.rm(work, { recursive: true, force: true });
  }
}

await main();
