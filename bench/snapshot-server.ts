/**
 * Our side of the snapshot benchmark as users run it: `backplane start` (API and worker in one
 * process, the `npm start` default) as a child process pointed at the benchmark's catalog, so its
 * wall time and memory are measured from outside like the raw pipelines'. One fresh process per
 * measured step, so each step's VmHWM is that step's own peak.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/db/pg-server.ts';
import { processCpuSeconds, procStatusKB, sampleTreeRss, treeRssKB } from './snapshot-measure.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface ServerProcess {
  pid: number;
  url: string;
  /** Peak sum of VmRSS over the server and its children (pg_dump, pg_restore) since start, MiB. */
  peakTreeMB(): number;
  /** VmRSS of the server once it answered /readyz (Prisma and the GraphQL schema loaded), MiB. */
  readyMB: number;
  /** Sum of VmRSS over the server and its children now, MiB. */
  treeMB(): number;
  /** VmHWM of the server process now, MiB. */
  hwmMB(): number;
  /** CPU seconds (user + system) of the server and its exited children so far. */
  cpuSeconds(): number;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<void>;
}

/**
 * Starts `backplane start` on a free port. Without `databaseUrl` it runs as `npm start` does by
 * default: the embedded PostgreSQL and demo under `home` (its first start runs initdb).
 */
export async function startServer(opts: { databaseUrl?: string; home?: string; secretKey?: string; logFile: string; env?: Record<string, string>; root?: string }): Promise<ServerProcess> {
  const port = await freePort();
  const log = openSync(opts.logFile, 'a');
  // BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to look inside a step.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // `root`: another checkout's build (an A/B against an earlier commit in the same run).
  const root = opts.root ?? ROOT;
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, path.join(root, 'bin', 'backplane.js'), 'start'], {
    cwd: root,
    env: {
      ...process.env,
      // Empty counts as unset (config.ts).
      DATABASE_URL: opts.databaseUrl ?? '',
      BACKPLANE_SECRET_KEY: opts.secretKey ?? '',
      ...(opts.home ? { BACKPLANE_HOME: opts.home } : {}),
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
      // A GiB-sized step must not trip the stale-operation sweeper or the job timeout.
      OPERATION_STALE_MS: String(3_600_000),
      ...opts.env,
    },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const sampler = sampleTreeRss(child.pid!);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.databaseUrl ? 60_000 : 180_000);
  for (;;) {
    const early = await Promise.race([exited, new Promise((r) => setTimeout(() => r('wait'), 200))]);
    if (early !== 'wait') {
      sampler.stop();
      throw new Error(`backplane start exited with ${String(early)} before it was ready; see ${opts.logFile}`);
    }
    const ok = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`backplane start was not ready in time; see ${opts.logFile}`);
    }
  }
  return {
    pid: child.pid!,
    url: `${url}/graphql`,
    readyMB: procStatusKB(child.pid!, 'VmRSS') / 1024,
    peakTreeMB: () => sampler.peakMB(),
    treeMB: () => treeRssKB(child.pid!) / 1024,
    hwmMB: () => procStatusKB(child.pid!, 'VmHWM') / 1024,
    cpuSeconds: () => processCpuSeconds(child.pid!),
    async stop() {
      sampler.stop();
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** POSTs one GraphQL operation; throws on transport or GraphQL errors. */
export async function gql<T = Record<string, unknown>>(url: string, key: string, query: string, variables?: Record<string, unknown>): Promise<T> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ query, variables }) });
  const json = (await res.json()) as { data?: T; errors?: unknown };
  if (json.errors || !json.data) throw new Error(`GraphQL error: ${JSON.stringify(json.errors ?? json)}`);
  return json.data;
}
