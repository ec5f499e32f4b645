/**
 * Measuring tools for the snapshot benchmark: peak memory of a process tree, shell pipelines
 * timed the same way, and an open-loop GraphQL load generator for latency percentiles.
 *
 * Peak memory is measured two ways, the same for our server and for the raw pipelines:
 * - `peakTreeMB`: the largest sum of VmRSS over a process and all its descendants, sampled every
 *   50 ms (so pg_dump under our worker counts, as pg_dump and zstd count in the raw pipeline);
 * - `peakMainMB`: VmHWM (the kernel's exact high-water mark) of the main process, read just
 *   before it exits. For a raw pipeline, the sum of each stage's own maximum RSS as
 *   `/usr/bin/time` reports it (an upper bound of the tree's peak).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/** VmRSS / VmHWM of one process in KiB, or 0 when it is gone. */
export function procStatusKB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** pid → parent pid for every process now. */
function parentMap(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // The command name may hold spaces and parentheses; the fields after the last ')' do not.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // exited while we looked
    }
  }
  return children;
}

/** Sum of VmRSS (KiB) of `root` and every descendant. */
export function treeRssKB(root: number): number {
  const children = parentMap();
  let total = 0;
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop()!;
    total += procStatusKB(pid, 'VmRSS');
    stack.push(...(children.get(pid) ?? []));
  }
  return total;
}

/** Sum of Pss (KiB) of `root` and every descendant: shared pages (a server's shared buffers) divided among the processes sharing them. */
export function treePssKB(root: number): number {
  const children = parentMap();
  let total = 0;
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop()!;
    try {
      const m = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').match(/^Pss:\s+(\d+) kB/m);
      total += m ? Number(m[1]) : 0;
    } catch {
      // exited while we looked
    }
    stack.push(...(children.get(pid) ?? []));
  }
  return total;
}

/** The postmaster of the PostgreSQL cluster in `dataDir` (first line of postmaster.pid), or undefined. */
export function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Samples the PostgreSQL cluster in `dataDir` (postmaster and backends, Pss, every 250 ms: reading
 * smaps costs more than status) until stopped; returns the peak in MiB.
 */
export function samplePostgresPss(dataDir: string, everyMs = 250): { stop(): number } {
  let peak = 0;
  const tick = () => {
    const pid = postmasterPid(dataDir);
    if (pid) peak = Math.max(peak, treePssKB(pid));
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return {
    stop() {
      clearInterval(timer);
      tick();
      return peak / 1024;
    },
  };
}

/** Samples the tree under `root` until stopped; returns the peak in MiB. */
export function sampleTreeRss(root: number, everyMs = 50): { stop(): number; peakMB(): number } {
  let peak = 0;
  const tick = () => (peak = Math.max(peak, treeRssKB(root)));
  tick();
  const timer = setInterval(tick, everyMs);
  return {
    peakMB: () => peak / 1024,
    stop() {
      clearInterval(timer);
      return peak / 1024;
    },
  };
}

export interface CommandResult {
  wallSeconds: number;
  peakTreeMB: number;
  /** Sum of the maximum RSS of each stage (from /usr/bin/time), MiB. */
  sumStageMaxMB: number;
  /** User + system CPU seconds of all stages. */
  cpuSeconds: number;
}

/** utime+stime of a process plus its reaped children (pg_dump, pg_restore), seconds. */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14-17 of stat (utime, stime, cutime, cstime) are 11-14 after the command name, in clock ticks.
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  } catch {
    return NaN;
  }
}

/**
 * Runs a pipeline of stages (argv arrays) joined by pipes through bash, each stage under
 * `/usr/bin/time -f %M`, with `stdoutFile` as the last stage's output (or none).
 */
export async function runPipeline(stages: string[][], opts: { workDir: string; env?: NodeJS.ProcessEnv; stdoutFile?: string; stdinFile?: string }): Promise<CommandResult> {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const timeFiles = stages.map((_, i) => path.join(opts.workDir, `stage-${process.pid}-${i}.time`));
  // Redirections bind to one command of a pipeline: stdin to the first stage, stdout to the last.
  const line = stages
    .map((argv, i) => {
      const stdin = i === 0 && opts.stdinFile ? ` < ${q(opts.stdinFile)}` : '';
      const stdout = i === stages.length - 1 ? (opts.stdoutFile ? ` > ${q(opts.stdoutFile)}` : ' > /dev/null') : '';
      return `/usr/bin/time -f '%M %U %S' -o ${q(timeFiles[i])} ${argv.map(q).join(' ')}${stdin}${stdout}`;
    })
    .join(' | ');
  const script = `set -o pipefail; ${line}`;
  const started = performance.now();
  const child = spawn('bash', ['-c', script], { env: opts.env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'] });
  const sampler = sampleTreeRss(child.pid!);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const wallSeconds = (performance.now() - started) / 1000;
  const peakTreeMB = sampler.stop();
  if (code !== 0) throw new Error(`pipeline failed (${code}): ${script}\n${stderr.slice(-2000)}`);
  let sumKB = 0;
  let cpuSeconds = 0;
  for (const f of timeFiles) {
    // time -o writes the figures on the last line (a "Command exited with non-zero status" line may precede it).
    const [kb, user, sys] = (await fs.readFile(f, 'utf8')).trim().split('\n').at(-1)!.split(' ').map(Number);
    sumKB += kb;
    cpuSeconds += user + sys;
    await fs.rm(f, { force: true });
  }
  return { wallSeconds, peakTreeMB, sumStageMaxMB: sumKB / 1024, cpuSeconds };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export interface LatencySummary {
  requests: number;
  errors: number;
  ratePerSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Server CPU (including its idle background work) per request while only the probe ran. */
  serverCpuMsPerRequest?: number;
}

export function summarize(latencies: number[], errors: number, ratePerSecond: number): LatencySummary {
  const s = [...latencies].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  return { requests: s.length + errors, errors, ratePerSecond, p50Ms: r(percentile(s, 50)), p95Ms: r(percentile(s, 95)), p99Ms: r(percentile(s, 99)), maxMs: r(s.at(-1) ?? NaN) };
}

export const PROBE_QUERY = '{ viewer { scopes } environments(first: 5) { totalCount } }';

/**
 * Sends PROBE_QUERY at a fixed rate, open loop: a request is sent on schedule whether or not
 * the previous one answered (a closed loop would hide stalls by sending less), with at most
 * `maxInFlight` outstanding so a stuck server cannot pile up thousands.
 */
export function startLoad(url: string, key: string, ratePerSecond: number, maxInFlight = 50): { stop(): Promise<LatencySummary>; samples(): number[] } {
  const latencies: number[] = [];
  let errors = 0;
  let inFlight = 0;
  const pending = new Set<Promise<void>>();
  const body = JSON.stringify({ query: PROBE_QUERY });
  const one = async () => {
    const t0 = performance.now();
    try {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body });
      const json = (await res.json()) as { errors?: unknown; data?: { environments?: { totalCount: number } } };
      if (!res.ok || json.errors || json.data?.environments?.totalCount === undefined) errors++;
      else latencies.push(performance.now() - t0);
    } catch {
      errors++;
    }
  };
  const intervalMs = 1000 / ratePerSecond;
  const start = performance.now();
  let sent = 0;
  let stopped = false;
  // A timer per tick drifts; schedule each request against the start time instead.
  const tick = () => {
    if (stopped) return;
    const due = Math.floor((performance.now() - start) / intervalMs) + 1;
    while (sent < due) {
      sent++;
      if (inFlight >= maxInFlight) {
        errors++;
        continue;
      }
      inFlight++;
      const p = one().finally(() => {
        inFlight--;
        pending.delete(p);
      });
      pending.add(p);
    }
    timer = setTimeout(tick, Math.max(1, start + sent * intervalMs - performance.now()));
  };
  let timer = setTimeout(tick, 0);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await Promise.all(pending);
      return summarize(latencies, errors, ratePerSecond);
    },
    /** Every answered request's latency (ms), to pool runs before taking percentiles. */
    samples: () => [...latencies],
  };
}
