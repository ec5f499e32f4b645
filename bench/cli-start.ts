/**
 * Command-line start-up benchmark (`npm run bench:cli-start`; not a test): how long `backplane
 * repo` takes before and around a little work, next to restic on the same small repository.
 *
 *   node -e 0                  Node's own start, the floor for any Node command line
 *   repo --help                node bin/backplane.js repo --help: start-up and nothing else
 *   repo snapshots             the same on a small repository (includes scrypt with restic's
 *                              parameters, N=2^15 r=8 p=1, as every restic command pays too)
 *   restic snapshots           restic --no-lock snapshots on that repository
 *   npx repo --help            npx backplane repo --help, as the README writes commands
 *
 * Each command runs BENCH_RUNS times (default 15; npx 5) one after another under /usr/bin/time:
 * median wall and median CPU (user + system) milliseconds. On a shared machine wall times swell
 * with the load; CPU much less. Output: a table and bench/results/cli-start.json (with the load
 * average at start and end). Runs `npm run build` first (the script does), so bin/backplane.js
 * runs dist/.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH);
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 15));
const BIN = join(ROOT, 'bin', 'backplane.js');

interface Measure {
  name: string;
  command: string;
  runs: number;
  wallMs: number;
  cpuMs: number;
  wallMsAll: number[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function measure(name: string, argv: string[], env: NodeJS.ProcessEnv, runs: number): Promise<Measure> {
  const timeFile = join(tmpdir(), `bp-cli-start-${process.pid}.time`);
  const walls: number[] = [];
  const cpus: number[] = [];
  // One unmeasured run first: the files it reads are then in the page cache for every run.
  for (let i = -1; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync('/usr/bin/time', ['-f', '%U %S', '-o', timeFile, ...argv], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
    const wall = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0) throw new Error(`${argv.join(' ')} exited with ${r.status}: ${r.stderr.toString()}`);
    const [user, sys] = (await readFile(timeFile, 'utf8')).trim().split('\n').pop()!.split(' ').map(Number);
    if (i < 0) continue;
    walls.push(wall);
    cpus.push((user + sys) * 1000);
  }
  await rm(timeFile, { force: true });
  return { name, command: argv.join(' '), runs, wallMs: round(median(walls)), cpuMs: round(median(cpus)), wallMsAll: walls.map(round) };
}

const round = (n: number) => Math.round(n * 10) / 10;

async function main(): Promise<void> {
  const work = join(BENCH, 'work', 'cli-start');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const repo = join(work, 'repo');
  const data = join(work, 'data');
  await cp(join(ROOT, 'src', 'engine'), data, { recursive: true });
  const env: NodeJS.ProcessEnv = { ...process.env, BACKPLANE_REPO: repo, BACKPLANE_REPO_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: 'bench' };
  delete env.BACKPLANE_REPO_KDF;
  for (const args of [['init'], ['backup', '-q', data], ['backup', '-q', data]]) {
    execFileSync(process.execPath, [BIN, 'repo', ...args], { cwd: ROOT, env, stdio: 'ignore' });
  }

  const loadStart = loadavg()[0];
  const results: Measure[] = [];
  const steps: [string, string[], number][] = [
    ['node -e 0', [process.execPath, '-e', '0'], RUNS],
    ['repo --help', [process.execPath, BIN, 'repo', '--help'], RUNS],
    ['repo snapshots', [process.execPath, BIN, 'repo', 'snapshots'], RUNS],
    ['restic snapshots', ['restic', '--no-lock', 'snapshots'], RUNS],
    ['npx repo --help', ['npx', 'backplane', 'repo', '--help'], Math.min(RUNS, 5)],
  ];
  for (const [name, argv, runs] of steps) {
    const m = await measure(name, argv, env, runs);
    results.push(m);
    process.stdout.write(`${name.padEnd(18)} wall ${String(m.wallMs).padStart(7)} ms   cpu ${String(m.cpuMs).padStart(7)} ms   (${runs} runs, medians)\n`);
  }
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    loadAverage1m: { start: round(loadStart), end: round(loadavg()[0]) },
    results,
  };
  await writeFile(join(BENCH, 'results', 'cli-start.json'), JSON.stringify(report, null, 2) + '\n');
  await rm(work, { recursive: true, force: true });
}

await main();
