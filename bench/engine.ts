/**
 * Engine benchmark (`npm run bench:engine`; not a test): Backplane's storage engine against
 * restic and borg on the same data, each tool a child process under `/usr/bin/time -v` so that
 * wall time and peak RSS are measured the same way for all three.
 *
 * Two data shapes (dataset.ts): `mixed` (small and large files plus a pg_dump-like stream) and
 * `small-files` (20,000 small text files in 200 folders, large logs and random blobs; files
 * only). Steps per tool and shape, in a fresh repository each:
 *   files-first      first backup of the files tree
 *   files-unchanged  the same tree again (parent / files cache)
 *   files-1pct       after 1% of the files changed
 *   files-restore    restore that last files snapshot into an empty directory
 *   stream-first     a pg_dump-like stream on stdin (mixed only)
 *   stream-next      the next day's dump (1% of its sections changed; mixed only)
 * Then `cli-ready`: how long `backplane repo --help` takes to start and finish, run as the
 * bench runs it (dist/repo.mjs), through bin/backplane.js and through npx.
 *
 * Settings: BENCH_SIZE_MB (default 1024, the mixed shape), BENCH_SHAPES (default
 * `mixed,small-files`), BENCH_TOOLS (default `backplane,restic,borg`), BENCH_RUNS (default 3:
 * whole runs per tool, each step reporting its median run with the min and max), BENCH_KEEP=1
 * keeps the repositories under bench/work. Results: a table on stdout, bench/results/engine.json,
 * and the table in bench/README.md between its engine-table markers (`tsx bench/engine.ts
 * --readme` renders it again from the json alone).
 */
import { execFile, spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { changeOnePercent, ensureDataset, ensureSmallFilesDataset, treeSize, type DatasetInfo } from './dataset.ts';

const run = promisify(execFile);
const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = join(BENCH, '..');
const WORK = join(BENCH, 'work');
/** `backplane repo` as built by `npm run build` (the bench script builds first), without the server modules. */
const OURS = join(ROOT, 'dist/repo.mjs');
const PASSWORD = 'bench password';
/** No single step may run longer than this; keeps a broken tool from hanging the run. */
const STEP_TIMEOUT_MS = 30 * 60 * 1000;
/** Whole runs per tool (fresh repositories each); each step reports its median run. */
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
/** Restored trees go here, deleted only after the last restore (see emptyTrash). */
const TRASH = join(WORK, 'trash');
/**
 * How long ext4 keeps a deleted inode from being reused, once its inode table block is written
 * (60 s, RECENTCY_MIN in fs/ext4/ialloc.c; 360 s while the block is dirty), plus a margin.
 */
const INODE_RECENTCY_MS = 61_000;

type Step = 'files-first' | 'files-unchanged' | 'files-1pct' | 'files-restore' | 'stream-first' | 'stream-next';
const FILES_STEPS: Step[] = ['files-first', 'files-unchanged', 'files-1pct', 'files-restore'];
const STEPS: Step[] = [...FILES_STEPS, 'stream-first', 'stream-next'];

type ShapeName = 'mixed' | 'small-files';
const SHAPES: ShapeName[] = ['mixed', 'small-files'];

interface Measurement {
  tool: string;
  step: Step;
  /** Logical bytes the step covered (the tree or the stream). */
  bytesIn: number;
  /** The median run's (the one whose other figures these are). */
  wallSeconds: number;
  /** Fastest and slowest of the runs, and every run's, in run order. */
  wallSecondsMin?: number;
  wallSecondsMax?: number;
  wallSecondsRuns?: number[];
  /** bytesIn / wall time, in MB/s (10^6 bytes). */
  throughputMBs: number;
  /** Growth of the repository directory in this step: measured the same way for every tool. */
  bytesAdded: number;
  /**
   * New bytes as the tool reports them: backplane's bytesAdded and borg's deduplicated_size are
   * stored (compressed) bytes; restic 0.14's data_added is before compression.
   */
  toolReportedAdded: number;
  /** Apparent size of the repository directory after the step. */
  repoBytes: number;
  peakRssMB: number;
  userSeconds: number;
  systemSeconds: number;
}

/** How to drive one tool. */
interface Tool {
  name: string;
  version: string;
  init(repo: string): Promise<void>;
  /** argv (program first) and env for a backup of a directory or of stdin. */
  backup(repo: string, src: { dir: string } | { stdinName: string }, label: string): { argv: string[]; env: NodeJS.ProcessEnv };
  /** Bytes added, from the tool's own output. */
  added(stdout: string): number;
  /** argv, env and working directory that restore the newest files snapshot (named `files-1pct`) into target. */
  restore(repo: string, target: string): { argv: string[]; env: NodeJS.ProcessEnv; cwd?: string };
}

const ENV_BASE: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C' };
/** Backplane's files cache, like restic's cache, lives under bench/work and starts empty with each repository. */
const OUR_CACHE = join(WORK, 'backplane-cache');

const backplane: Tool = {
  name: 'backplane',
  version: 'working tree',
  async init(repo) {
    await run(process.execPath, [OURS, 'init', '--repo', repo], { cwd: ROOT, env: this.backup(repo, { dir: '' }, '').env });
  },
  backup(repo, src, _label) {
    const args = 'dir' in src ? [src.dir] : ['--stdin-filename', src.stdinName];
    return {
      argv: [process.execPath, OURS, 'backup', '--repo', repo, '--json', '--host', 'bench', ...args],
      env: { ...ENV_BASE, BACKPLANE_REPO_PASSWORD: PASSWORD, BACKPLANE_CACHE_DIR: OUR_CACHE },
    };
  },
  added(stdout) {
    return (JSON.parse(stdout) as { bytesAdded: number }).bytesAdded;
  },
  restore(repo, target) {
    const { env } = this.backup(repo, { dir: '' }, '');
    return { argv: [process.execPath, OURS, 'restore', '--repo', repo, 'latest', '--target', target, '--json'], env };
  },
};

const restic: Tool = {
  name: 'restic',
  version: '',
  async init(repo) {
    await run('restic', ['-r', repo, 'init', '--repository-version', '2'], { env: this.backup(repo, { dir: '' }, '').env });
  },
  backup(repo, src, _label) {
    const args = 'dir' in src ? [src.dir] : ['--stdin', '--stdin-filename', src.stdinName];
    return {
      // Compression stays at restic's default (auto); the cache lives under bench/work.
      argv: ['restic', '-r', repo, 'backup', '--json', '--host', 'bench', ...args],
      env: { ...ENV_BASE, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: join(WORK, 'restic-cache') },
    };
  },
  added(stdout) {
    const summary = stdout
      .split('\n')
      .filter((l) => l.includes('"summary"'))
      .map((l) => JSON.parse(l) as { data_added: number })
      .at(-1);
    if (!summary) throw new Error('restic printed no summary');
    return summary.data_added;
  },
  restore(repo, target) {
    const { env } = this.backup(repo, { dir: '' }, '');
    return { argv: ['restic', '-r', repo, 'restore', 'latest', '--target', target], env };
  },
};

const borg: Tool = {
  name: 'borg',
  version: '',
  async init(repo) {
    await run('borg', ['init', '--encryption=repokey-blake2', repo], { env: this.backup(repo, { dir: '' }, '').env });
  },
  backup(repo, src, label) {
    const args = 'dir' in src ? [`${repo}::${label}`, src.dir] : ['--stdin-name', src.stdinName, `${repo}::${label}`, '-'];
    return {
      argv: ['borg', 'create', '--json', '--compression', 'zstd,3', ...args],
      env: { ...ENV_BASE, BORG_PASSPHRASE: PASSWORD, BORG_BASE_DIR: join(WORK, 'borg-base') },
    };
  },
  added(stdout) {
    return (JSON.parse(stdout) as { archive: { stats: { deduplicated_size: number } } }).archive.stats.deduplicated_size;
  },
  restore(repo, target) {
    // borg extracts into the working directory.
    const { env } = this.backup(repo, { dir: '' }, '');
    return { argv: ['borg', 'extract', `${repo}::files-1pct`], env, cwd: target };
  },
};

/** Runs argv under /usr/bin/time -v; stdin from a file through a real pipe when given. */
async function timed(argv: string[], env: NodeJS.ProcessEnv, stdinFile?: string, cwd = ROOT): Promise<{ stdout: string; wallSeconds: number; peakRssMB: number; user: number; sys: number }> {
  const timeFile = join(WORK, 'time.txt');
  // What the steps before wrote is on disk before the clock starts: its writeback is not
  // charged to whichever step happens to run next.
  await run('sync');
  const started = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', ['-v', '-o', timeFile, ...argv], { cwd, env, stdio: [stdinFile ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  if (stdinFile) createReadStream(stdinFile, { highWaterMark: 1024 * 1024 }).pipe(child.stdin!);
  const timer = setTimeout(() => child.kill('SIGKILL'), STEP_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (code !== 0) throw new Error(`${argv.slice(0, 3).join(' ')}… exited with ${code}:\n${stderr.slice(-2000)}`);
  const t = await readFile(timeFile, 'utf8');
  const field = (name: string) => Number(new RegExp(`${name}[^:]*: ([\\d.]+)`).exec(t)?.[1] ?? NaN);
  return { stdout, wallSeconds, peakRssMB: field('Maximum resident set size') / 1024, user: field('User time'), sys: field('System time') };
}

async function benchTool(tool: Tool, data: DatasetInfo, steps: Step[], log: (s: string) => void): Promise<Measurement[]> {
  const repo = join(WORK, `${tool.name}-repo`);
  await rm(repo, { recursive: true, force: true });
  await rm(join(WORK, 'restic-cache'), { recursive: true, force: true });
  await rm(OUR_CACHE, { recursive: true, force: true });
  await rm(join(WORK, 'borg-base'), { recursive: true, force: true });
  await mkdir(WORK, { recursive: true });
  await tool.init(repo);
  let repoBytes = await treeSize(repo);
  const out: Measurement[] = [];
  for (const step of steps) {
    if (step === 'files-restore') {
      out.push(await benchRestore(tool, repo, repoBytes, data, log));
      continue;
    }
    let undo: (() => Promise<void>) | undefined;
    if (step === 'files-1pct') {
      const change = await changeOnePercent(data.filesDir, 'bench');
      undo = change.undo;
    }
    const stream = step === 'stream-first' ? data.dumpV1 : step === 'stream-next' ? data.dumpV2 : undefined;
    const bytesIn = stream ? (step === 'stream-first' ? data.dumpBytes : (await stat(stream)).size) : data.filesBytes;
    const { argv, env } = tool.backup(repo, stream ? { stdinName: 'db/app.dump' } : { dir: data.filesDir }, step);
    try {
      const t = await timed(argv, env, stream);
      const before = repoBytes;
      repoBytes = await treeSize(repo);
      const m: Measurement = {
        tool: tool.name,
        step,
        bytesIn,
        wallSeconds: round(t.wallSeconds, 2),
        throughputMBs: round(bytesIn / 1e6 / t.wallSeconds, 1),
        bytesAdded: repoBytes - before,
        toolReportedAdded: tool.added(t.stdout),
        repoBytes,
        peakRssMB: round(t.peakRssMB, 1),
        userSeconds: t.user,
        systemSeconds: t.sys,
      };
      out.push(m);
      log(`  ${tool.name.padEnd(9)} ${step.padEnd(15)} ${m.wallSeconds.toFixed(1).padStart(7)} s ${m.throughputMBs.toFixed(1).padStart(7)} MB/s  +${(m.bytesAdded / 1e6).toFixed(1)} MB  peak ${m.peakRssMB.toFixed(0)} MB`);
    } finally {
      await undo?.();
    }
  }
  if (!process.env.BENCH_KEEP) await rm(repo, { recursive: true, force: true });
  return out;
}

async function benchRestore(tool: Tool, repo: string, repoBytes: number, data: DatasetInfo, log: (s: string) => void): Promise<Measurement> {
  const target = join(WORK, `${tool.name}-restore`);
  await rm(target, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  try {
    const { argv, env, cwd } = tool.restore(repo, target);
    const t = await timed(argv, env, undefined, cwd);
    // Changed files kept their sizes, so a complete restore has exactly the data set's bytes.
    const restored = await treeSize(target);
    if (restored !== data.filesBytes) log(`  warning: ${tool.name} restored ${restored} bytes, expected ${data.filesBytes}`);
    const m: Measurement = {
      tool: tool.name,
      step: 'files-restore',
      bytesIn: restored,
      wallSeconds: round(t.wallSeconds, 2),
      throughputMBs: round(restored / 1e6 / t.wallSeconds, 1),
      bytesAdded: 0,
      toolReportedAdded: 0,
      repoBytes,
      peakRssMB: round(t.peakRssMB, 1),
      userSeconds: t.user,
      systemSeconds: t.sys,
    };
    log(`  ${tool.name.padEnd(9)} files-restore   ${m.wallSeconds.toFixed(1).padStart(7)} s ${m.throughputMBs.toFixed(1).padStart(7)} MB/s  peak ${m.peakRssMB.toFixed(0)} MB`);
    return m;
  } finally {
    // Not deleted now: the next restore would create its files among tens of thousands of
    // just-deleted inodes, which ext4 skips one by one (see emptyTrash).
    await mkdir(TRASH, { recursive: true });
    await rename(target, join(TRASH, `${tool.name}-${Date.now()}`));
  }
}

/**
 * Deletes the restored trees kept in TRASH; with `settle`, then waits until ext4 would reuse
 * their inodes. On ext4 without a journal (this machine's root), creating a file skips each free
 * inode of its group deleted in the last 60 s (360 s while its inode table block is dirty),
 * reading that block to learn when: with a restore's 20,000-25,000 files just deleted, that scan
 * took 13-33% of a restore's CPU samples (perf: __ext4_new_inode → find_inode_bit →
 * recently_deleted), for whichever tool came next, and a run after another run's delete took up
 * to 1.8x as long as the first run. So no restore has a bench's own deletions behind it.
 */
async function emptyTrash(settle: boolean, log: (s: string) => void): Promise<void> {
  await rm(TRASH, { recursive: true, force: true });
  await run('sync');
  if (!settle) return;
  log(`(restored trees of an earlier run deleted; waiting ${INODE_RECENTCY_MS / 1000} s until ext4 reuses their inodes)`);
  await new Promise((resolve) => setTimeout(resolve, INODE_RECENTCY_MS));
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function table(results: Measurement[]): string {
  const head = ['tool', 'step', 'wall s', 'MB/s', 'added MB', 'repo MB', 'peak RSS MB', 'cpu s'];
  const rows = results.map((m) => [
    m.tool,
    m.step,
    m.wallSeconds.toFixed(1),
    m.throughputMBs.toFixed(1),
    (m.bytesAdded / 1e6).toFixed(1),
    (m.repoBytes / 1e6).toFixed(1),
    m.peakRssMB.toFixed(0),
    (m.userSeconds + m.systemSeconds).toFixed(1),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

interface Ratio {
  tool: string;
  step: Step;
  /** tool / restic; below 1 is faster or smaller than restic. */
  wallTime: number;
  bytesAdded: number;
  repoBytes: number;
  peakRss: number;
}

function ratios(results: Measurement[]): Ratio[] {
  const out: Ratio[] = [];
  for (const m of results) {
    if (m.tool === 'restic') continue;
    const r = results.find((x) => x.tool === 'restic' && x.step === m.step);
    if (!r) continue;
    const q = (a: number, b: number) => (b > 0 ? round(a / b, 2) : NaN);
    out.push({ tool: m.tool, step: m.step, wallTime: q(m.wallSeconds, r.wallSeconds), bytesAdded: q(m.bytesAdded, r.bytesAdded), repoBytes: q(m.repoBytes, r.repoBytes), peakRss: q(m.peakRssMB, r.peakRssMB) });
  }
  return out;
}

/** Reads every file under the given paths once, so that they are in the page cache. */
async function warmPageCache(paths: string[]): Promise<void> {
  const buf = Buffer.allocUnsafe(1024 * 1024);
  const visit = async (p: string): Promise<void> => {
    const st = await stat(p);
    if (st.isDirectory()) {
      for (const name of await readdir(p)) await visit(join(p, name));
    } else if (st.isFile()) {
      const fh = await open(p, 'r');
      try {
        while ((await fh.read(buf, 0, buf.length, null)).bytesRead > 0);
      } finally {
        await fh.close();
      }
    }
  };
  for (const p of paths) await visit(p);
}

/** Median, min and max of a few timings of a short command (ms), from spawn to exit. */
async function startTimes(argv: string[], env: NodeJS.ProcessEnv, n: number): Promise<{ medianMs: number; minMs: number; maxMs: number }> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = process.hrtime.bigint();
    await run(argv[0], argv.slice(1), { cwd: ROOT, env });
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  times.sort((a, b) => a - b);
  return { medianMs: round(times[Math.floor((n - 1) / 2)], 0), minMs: round(times[0], 0), maxMs: round(times[n - 1], 0) };
}

/**
 * cli-ready: how long `backplane repo --help` takes from spawn to exit: the bundle the bench runs
 * (dist/repo.mjs), bin/backplane.js (what `npx backplane` starts), and npx itself; restic's
 * `version` beside them. The command line's start-up, not a repository's (no key is derived).
 */
async function cliReady(log: (s: string) => void): Promise<Record<string, { medianMs: number; minMs: number; maxMs: number }>> {
  const n = 7;
  const out: Record<string, { medianMs: number; minMs: number; maxMs: number }> = {
    'node dist/repo.mjs --help': await startTimes([process.execPath, OURS, '--help'], ENV_BASE, n),
    'node bin/backplane.js repo --help': await startTimes([process.execPath, join(ROOT, 'bin/backplane.js'), 'repo', '--help'], ENV_BASE, n),
    'npx backplane repo --help': await startTimes(['npx', '--no-install', 'backplane', 'repo', '--help'], ENV_BASE, n),
  };
  if (restic.version) out['restic version'] = await startTimes(['restic', 'version'], ENV_BASE, n);
  for (const [k, v] of Object.entries(out)) log(`  ${k.padEnd(36)} ${String(v.medianMs).padStart(5)} ms (${v.minMs}-${v.maxMs})`);
  return out;
}

interface ShapeReport {
  shape: ShapeName;
  dataset: { smallFiles: number; largeFiles: number; filesBytes: number; streamBytes: number };
  results: Measurement[];
  ratiosToRestic: Ratio[];
}

interface EngineReport {
  date: string;
  runsPerTool: number;
  machine: { cpus: number; loadAverage1m: { start: number; end: number } };
  versions: Record<string, string>;
  shapes: ShapeReport[];
  cliReady?: Record<string, { medianMs: number; minMs: number; maxMs: number }>;
}

const TABLE_START = '<!-- engine-table:start (generated by bench/engine.ts from bench/results/engine.json) -->';
const TABLE_END = '<!-- engine-table:end -->';

/** The README table: per shape and step, each tool's median wall time (min-max) and Backplane's ratio to restic. */
function readmeTable(report: EngineReport): string {
  const lines: string[] = [];
  const load = report.machine.loadAverage1m;
  lines.push(
    `Recorded ${report.date.slice(0, 10)}, ${report.runsPerTool} runs per tool (median, min-max in brackets), ${report.machine.cpus} cores, ` +
      `load average ${load.start} at start and ${load.end} at end; backplane ${report.versions.backplane}.`,
    '',
  );
  for (const shape of report.shapes) {
    const tools = [...new Set(shape.results.map((m) => m.tool))];
    const d = shape.dataset;
    lines.push(
      `**${shape.shape}**: ${d.smallFiles.toLocaleString('en-US')} small and ${d.largeFiles} large files, ${(d.filesBytes / 1e6).toFixed(0)} MB` +
        (d.streamBytes ? `; stream ${(d.streamBytes / 1e6).toFixed(0)} MB` : ''),
      '',
      `| step | ${tools.map((t) => `${t} s`).join(' | ')} | ${tools.filter((t) => t !== 'restic').map((t) => `${t} / restic`).join(' | ')} | CPU s (${tools.join(' / ')}) | peak RSS MB (${tools.join(' / ')}) |`,
      `|---|${tools.map(() => '---:').join('|')}|${tools.filter((t) => t !== 'restic').map(() => '---:').join('|')}|---:|---:|`,
    );
    const steps = [...new Set(shape.results.map((m) => m.step))];
    for (const step of steps) {
      const of = (t: string) => shape.results.find((m) => m.tool === t && m.step === step);
      const cell = (m: Measurement | undefined) =>
        !m ? '-' : m.wallSecondsMin !== undefined ? `${m.wallSeconds.toFixed(2)} (${m.wallSecondsMin.toFixed(2)}-${m.wallSecondsMax!.toFixed(2)})` : m.wallSeconds.toFixed(2);
      const ratio = (t: string) => {
        const r = shape.ratiosToRestic.find((x) => x.tool === t && x.step === step);
        return r && Number.isFinite(r.wallTime) ? r.wallTime.toFixed(2) : '-';
      };
      lines.push(
        `| ${step} | ${tools.map((t) => cell(of(t))).join(' | ')} | ${tools.filter((t) => t !== 'restic').map(ratio).join(' | ')} | ${tools.map((t) => { const m = of(t); return m ? (m.userSeconds + m.systemSeconds).toFixed(1) : '-'; }).join(' / ')} | ${tools.map((t) => of(t)?.peakRssMB.toFixed(0) ?? '-').join(' / ')} |`,
      );
    }
    lines.push('');
  }
  if (report.cliReady) {
    lines.push('`cli-ready` (spawn to exit, median of 7): ' + Object.entries(report.cliReady).map(([k, v]) => `\`${k}\` ${v.medianMs} ms`).join(', ') + '.', '');
  }
  return lines.join('\n');
}

/** Writes the table into bench/README.md between its markers. */
async function writeReadmeTable(report: EngineReport): Promise<void> {
  const path = join(BENCH, 'README.md');
  const text = await readFile(path, 'utf8');
  const a = text.indexOf(TABLE_START);
  const b = text.indexOf(TABLE_END);
  if (a < 0 || b < a) throw new Error(`bench/README.md has no engine-table markers`);
  await writeFile(path, `${text.slice(0, a + TABLE_START.length)}\n${readmeTable(report)}\n${text.slice(b)}`);
}

/** The data set of a shape. */
async function dataFor(shape: ShapeName, sizeMb: number, log: (s: string) => void): Promise<DatasetInfo> {
  return shape === 'mixed' ? ensureDataset(join(BENCH, 'data'), sizeMb, log) : ensureSmallFilesDataset(join(BENCH, 'data'), log);
}

/** Runs every tool over one shape: RUNS whole runs each, every step's median run with its spread. */
async function benchShape(shape: ShapeName, data: DatasetInfo, tools: Tool[], log: (s: string) => void): Promise<ShapeReport> {
  const steps = data.dumpV1 && data.dumpV2 ? STEPS : FILES_STEPS;
  const results: Measurement[] = [];
  for (const tool of tools) {
    log(`${shape} / ${tool.name}:`);
    // Every tool starts with the data set in the page cache, whatever ran before (the first
    // tool would otherwise read from disk what the others read from memory).
    await warmPageCache([data.filesDir, ...(data.dumpV1 ? [data.dumpV1] : []), ...(data.dumpV2 ? [data.dumpV2] : [])]);
    const runs: Measurement[][] = [];
    for (let r = 0; r < RUNS; r++) {
      if (RUNS > 1) log(`  run ${r + 1} of ${RUNS}`);
      runs.push(await benchTool(tool, data, steps, log));
    }
    // Per step, the run with the median wall time (the machine is shared; one run is noisy).
    for (const step of steps) {
      const inOrder = runs.map((ms) => ms.find((m) => m.step === step)!);
      const sorted = [...inOrder].sort((a, b) => a.wallSeconds - b.wallSeconds);
      const median = { ...sorted[Math.floor((sorted.length - 1) / 2)] };
      if (RUNS > 1) {
        median.wallSecondsMin = sorted[0].wallSeconds;
        median.wallSecondsMax = sorted[sorted.length - 1].wallSeconds;
        median.wallSecondsRuns = inOrder.map((m) => m.wallSeconds);
      }
      results.push(median);
    }
  }
  const d = { smallFiles: data.smallFiles, largeFiles: data.largeFiles, filesBytes: data.filesBytes, streamBytes: data.dumpBytes };
  return { shape, dataset: d, results, ratiosToRestic: ratios(results) };
}

async function main(): Promise<void> {
  const log = (s: string) => process.stderr.write(s + '\n');
  if (process.argv.includes('--readme')) {
    await writeReadmeTable(JSON.parse(await readFile(join(BENCH, 'results', 'engine.json'), 'utf8')) as EngineReport);
    log('bench/README.md: engine table rendered from bench/results/engine.json');
    return;
  }
  const sizeMb = Number(process.env.BENCH_SIZE_MB ?? 1024);
  if (!(sizeMb >= 16)) throw new Error('BENCH_SIZE_MB must be at least 16');
  const wanted = (process.env.BENCH_TOOLS ?? 'backplane,restic,borg').split(',');
  const shapes = (process.env.BENCH_SHAPES ?? SHAPES.join(',')).split(',') as ShapeName[];
  for (const s of shapes) if (!SHAPES.includes(s)) throw new Error(`BENCH_SHAPES: unknown shape ${s} (known: ${SHAPES.join(', ')})`);
  const head = (await run('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).catch(() => ({ stdout: '?' }))).stdout.trim();
  const engineDirty = (await run('git', ['status', '--porcelain', '--', 'src/engine'], { cwd: ROOT }).catch(() => ({ stdout: '' }))).stdout.trim() !== '';
  const versions = {
    backplane: `${head}${engineDirty ? ' + uncommitted src/engine changes' : ''}`,
    node: process.version,
    restic: (await run('restic', ['version']).catch(() => ({ stdout: '' }))).stdout.trim(),
    borg: (await run('borg', ['--version']).catch(() => ({ stdout: '' }))).stdout.trim(),
  };
  restic.version = versions.restic;
  borg.version = versions.borg;
  const tools = [backplane, restic, borg].filter((t) => wanted.includes(t.name) && (t === backplane || t.version));

  // Data sets first, so that generating them is not inside the measured stretch.
  const data = new Map<ShapeName, DatasetInfo>();
  for (const shape of shapes) {
    log(`data set ${shape}:`);
    const d = await dataFor(shape, sizeMb, log);
    log(`  files: ${d.smallFiles + d.largeFiles} (${(d.filesBytes / 1e6).toFixed(0)} MB)${d.dumpBytes ? `, stream ${(d.dumpBytes / 1e6).toFixed(0)} MB` : ''}`);
    data.set(shape, d);
  }

  // A bench that stopped early left its restored trees behind.
  if (await stat(TRASH).then(() => true, () => false)) await emptyTrash(true, log);
  const loadBefore = loadavg()[0];
  const started = Date.now();
  const reports: ShapeReport[] = [];
  for (const shape of shapes) reports.push(await benchShape(shape, data.get(shape)!, tools, log));
  await emptyTrash(false, log);
  log('cli-ready:');
  const ready = await cliReady(log);
  log(`(${((Date.now() - started) / 1000).toFixed(0)} s measuring)`);

  for (const r of reports) {
    process.stdout.write(`\n${r.shape}:\n${table(r.results)}\n\nratios to restic (tool / restic; < 1 is faster or smaller):\n`);
    for (const x of r.ratiosToRestic) {
      const f = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '   -');
      process.stdout.write(`  ${x.tool.padEnd(9)} ${x.step.padEnd(15)} time ${f(x.wallTime)}  added ${f(x.bytesAdded)}  repo ${f(x.repoBytes)}  peak RSS ${f(x.peakRss)}\n`);
    }
  }
  const report = {
    benchmark: 'engine',
    date: new Date().toISOString(),
    sizeMb,
    runsPerTool: RUNS,
    note:
      'MB = 10^6 bytes. Per shape and step, each tool\'s median run (wallSecondsMin/Max/Runs: the spread over the runs). bytesAdded is the growth of the repository directory in the step (toolReportedAdded: what the tool says; restic 0.14 reports data_added before compression). ' +
      'repoBytes is the apparent size of the repository directory (restic cache, Backplane files cache and borg cache/security dirs not counted; each starts empty with its repository). ' +
      'Backplane runs dist/repo.mjs (npm run build: the repo CLI bundled by esbuild, without the API server modules). Page cache warm for all tools. ' +
      'cliReady: spawn to exit of --help, in ms.',
    // Other work on the machine stretches wall times (CPU seconds much less): record how busy it was.
    machine: {
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model,
      memoryGB: round(totalmem() / 2 ** 30, 1),
      loadAverage1m: { start: round(loadBefore, 2), end: round(loadavg()[0], 2) },
    },
    versions,
    settings: {
      backplane: 'repository v2, FastCDC 512K/1M/8M, zstd per blob (engine default level), scrypt default, files cache under bench/work',
      restic: 'repository v2, compression auto (default)',
      borg: 'repokey-blake2, compression zstd,3',
    },
    shapes: reports,
    cliReady: ready,
  };
  await mkdir(join(BENCH, 'results'), { recursive: true });
  await writeFile(join(BENCH, 'results', 'engine.json'), JSON.stringify(report, null, 2) + '\n');
  await writeReadmeTable(report);
  log(`\nwrote bench/results/engine.json and the table in bench/README.md`);
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
