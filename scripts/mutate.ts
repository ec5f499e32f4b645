/**
 * `npm run mutate [-- file…]`: mutation testing of the services that carry the product's
 * promises. Runs Stryker (stryker.config.mjs) over the given files (default: all of TARGETS) with
 * the tests listed for them, then records each file's score, its counts and its surviving mutants
 * in bench/results/mutation.json, merged with what earlier runs recorded for other files.
 * Not part of CI: every mutant is a test run.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';

/** The tests that judge each file: what covers its promises, small enough to run per mutant. */
const TARGETS: Record<string, string[]> = {
  'src/services/viewer.ts': ['test/services/viewer.test.ts', 'test/api/auth.test.ts'],
  'src/services/retention.ts': ['test/services/retention-plan.test.ts', 'test/services/retention-apply.test.ts'],
  'src/services/restores.ts': ['test/services/restore-request.test.ts', 'test/services/restore-job.test.ts', 'test/services/restore-job-failures.test.ts', 'test/services/restore-job-new-environment.test.ts', 'test/services/restore-lock-wait.test.ts'],
  'src/services/snapshots.ts': ['test/services/snapshot-request.test.ts', 'test/services/snapshot-job.test.ts', 'test/services/snapshot-job-limits.test.ts'],
  'src/services/operations.ts': ['test/services/operations.test.ts', 'test/services/operations-scope.test.ts', 'test/services/steady-total.test.ts'],
};

const OUT = 'bench/results/mutation.json';

interface Mutant { id: string; mutatorName: string; replacement?: string; status: string; statusReason?: string; location: { start: { line: number; column: number } } }
interface Report { files: Record<string, { mutants: Mutant[] }> }

/** What stryker.config.mjs's ignorers leave out, recorded with every result. */
const EXCLUDED = {
  'log-calls': 'every mutant inside a logger call (deps.logger.info/warn/error…): log text and fields, not behaviour',
  'error-message-text': "the message string of `new XError(ErrorCode.X, '…')`: the code, which callers act on, stays mutated and is asserted",
  static: 'static mutants (module-level constants run once at import; Stryker ignoreStatic)',
};

// `--tests a.test.ts,b.test.ts` judges the files by those tests only (a quick partial measure;
// the tests used are recorded with each file's result). A file may be given as `file.ts:10-200`
// (Stryker's line range) to measure a part of it; the range is recorded.
// `--report path --seconds n` records an existing Stryker JSON report (a run whose wrapper was
// stopped or older) instead of running Stryker.
const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args.splice(args.indexOf(name), 2)[1] : null);
const fromReport = option('--report');
const givenSeconds = option('--seconds');
const override = args.includes('--tests') ? args.splice(args.indexOf('--tests'), 2)[1].split(',') : null;
const files = args.length ? args : Object.keys(TARGETS);
const fileOf = (f: string) => f.replace(/:\d+(:\d+)?-\d+(:\d+)?$/, '');
const rangeOf = (file: string) => files.filter((f) => fileOf(f) === file && f !== file).map((f) => f.slice(file.length + 1)).join(',') || null;
for (const f of files) if (!TARGETS[fileOf(f)]) throw new Error(`no tests are listed for ${fileOf(f)} in scripts/mutate.ts`);
if (override) for (const f of files) TARGETS[fileOf(f)] = override;
const tests = [...new Set(files.flatMap((f) => TARGETS[fileOf(f)]))];
// Names this run's report, sandboxes and incremental record (see stryker.config.mjs).
const runName = [...new Set(files.map((f) => path.basename(fileOf(f), '.ts')))].join('+');
const REPORT = fromReport ?? `reports/mutation/${runName}.json`;

const started = Date.now();
if (!fromReport) {
  const code = await new Promise<number>((resolve) => {
    const child = spawn('npx', ['stryker', 'run', 'stryker.config.mjs'], {
      stdio: 'inherit',
      env: { ...process.env, BP_MUTATE_NAME: runName, BP_MUTATE_FILES: JSON.stringify(files), BP_MUTATE_TESTS: JSON.stringify(tests) },
    });
    child.on('exit', (c) => resolve(c ?? 1));
  });
  if (code !== 0) process.exit(code);
}
const seconds = givenSeconds ? Number(givenSeconds) : Math.round((Date.now() - started) / 1000);
const commit = await new Promise<string>((resolve) => {
  const git = spawn('git', ['rev-parse', '--short', 'HEAD']);
  let out = '';
  git.stdout.on('data', (d: Buffer) => (out += d));
  git.on('exit', () => resolve(out.trim()));
});

interface Entry {
  score: number | null; killed: number; timeout: number; survived: number; noCoverage: number; errors: number; ignored: number;
  ignoredBy: Record<string, number>; range: string | null; tests: string[]; survivors: string[]; reasons: Record<string, string>;
  runSeconds: number; runFiles: number; recordedAt: string; commit: string; parts?: Record<string, Omit<Entry, 'survivors' | 'reasons' | 'parts'>>;
}
const scoreOf = (e: Pick<Entry, 'killed' | 'timeout' | 'survived' | 'noCoverage'>) => {
  const detected = e.killed + e.timeout;
  const undetected = e.survived + e.noCoverage;
  return detected + undetected ? Math.round((1000 * detected) / (detected + undetected)) / 10 : null;
};

/**
 * A file measured in parts (line ranges, one run each, when a whole run does not fit in the time
 * there is): each part is kept with its own counts, commit and tests, and the file's figures are
 * their sum. A whole-file run replaces the parts.
 */
function withPart(prev: Entry | undefined, part: Entry): Entry {
  const { survivors: _s, reasons: _r, parts: _p, ...light } = part;
  const earlier = prev?.parts ? Object.entries(prev.parts).filter(([r]) => r !== part.range) : [];
  const parts = Object.fromEntries([...earlier, [part.range!, light]]);
  const all = Object.values(parts);
  const sum = (k: 'killed' | 'timeout' | 'survived' | 'noCoverage' | 'errors' | 'ignored' | 'runSeconds') => all.reduce((n, x) => n + x[k], 0);
  const ignoredBy: Record<string, number> = {};
  for (const x of all) for (const [k, v] of Object.entries(x.ignoredBy ?? {})) ignoredBy[k] = (ignoredBy[k] ?? 0) + v;
  const inOtherParts = (prev?.survivors ?? []).filter((s) => prev?.parts && inRanges(Number(s.split(':')[0]), earlier.map(([r]) => r)));
  const survivors = [...inOtherParts, ...part.survivors].sort((a, b) => parseInt(a) - parseInt(b) || a.localeCompare(b));
  const counts = { killed: sum('killed'), timeout: sum('timeout'), survived: sum('survived'), noCoverage: sum('noCoverage') };
  return {
    ...part,
    score: scoreOf(counts),
    ...counts,
    errors: sum('errors'),
    ignored: sum('ignored'),
    ignoredBy,
    range: Object.keys(parts).join(','),
    tests: [...new Set(all.flatMap((x) => x.tests))],
    survivors,
    // Reasons are kept for the survivors that remain, whichever part they are in.
    reasons: Object.fromEntries(Object.entries({ ...(prev?.reasons ?? {}), ...part.reasons }).filter(([k]) => survivors.some((s) => s.startsWith(`${k} `)))),
    runSeconds: sum('runSeconds'),
    parts,
  };
}
function inRanges(line: number, ranges: string[]): boolean {
  return ranges.some((r) => r.split(',').some((one) => {
    const [a, b] = one.split('-').map((x) => parseInt(x));
    return line >= a && line <= b;
  }));
}

const report = JSON.parse(await fs.readFile(REPORT, 'utf8')) as Report;
// Read at the end, not the start: another file's run may have recorded meanwhile.
const previous = await fs.readFile(OUT, 'utf8').then((t) => JSON.parse(t), () => ({ files: {} }));
const summary: Record<string, unknown> = { ...previous.files };
for (const [reported, { mutants: reportedMutants }] of Object.entries(report.files)) {
  const file = path.relative(process.cwd(), path.resolve(reported));
  // An incremental run's report also holds results it reused from other ranges: a part counts its own lines only.
  const partRange = rangeOf(file);
  const mutants = partRange ? reportedMutants.filter((m) => inRanges(m.location.start.line, [partRange])) : reportedMutants;
  const n = (s: string) => mutants.filter((m) => m.status === s).length;
  const key = (m: Mutant) => `${m.location.start.line}:${m.location.start.column} ${m.mutatorName}`;
  const survivors = mutants.filter((m) => m.status === 'Survived' || m.status === 'NoCoverage');
  // Reasons are written by a person into mutation.json; they are kept for the survivors that remain.
  const oldReasons = ((previous.files[file] as { reasons?: Record<string, string> } | undefined)?.reasons ?? {}) as Record<string, string>;
  const reasons = Object.fromEntries(survivors.map(key).filter((k) => oldReasons[k]).map((k) => [k, oldReasons[k]]));
  const ignoredBy: Record<string, number> = {};
  for (const m of mutants.filter((x) => x.status === 'Ignored')) ignoredBy[m.statusReason ?? 'ignored'] = (ignoredBy[m.statusReason ?? 'ignored'] ?? 0) + 1;
  const entry: Entry = {
    // Stryker's score: detected / (detected + undetected); compile and runtime errors do not count.
    score: scoreOf({ killed: n('Killed'), timeout: n('Timeout'), survived: n('Survived'), noCoverage: n('NoCoverage') }),
    killed: n('Killed'),
    timeout: n('Timeout'),
    survived: n('Survived'),
    noCoverage: n('NoCoverage'),
    errors: n('RuntimeError') + n('CompileError'),
    ignored: n('Ignored'),
    ignoredBy,
    range: rangeOf(file),
    tests: TARGETS[file],
    survivors: survivors.map((m) => `${key(m)} ${m.status === 'NoCoverage' ? '(no coverage) ' : ''}→ ${JSON.stringify(m.replacement ?? '')}`),
    reasons,
    runSeconds: seconds,
    runFiles: files.length,
    recordedAt: new Date().toISOString(),
    commit,
  };
  summary[file] = entry.range ? withPart(previous.files[file] as Entry | undefined, entry) : entry;
}
await fs.mkdir(path.dirname(OUT), { recursive: true });
await fs.writeFile(OUT, `${JSON.stringify({ ...previous, tool: 'stryker 9.6.1, vitest runner, coverageAnalysis perTest', excluded: EXCLUDED, files: summary }, null, 2)}\n`);
console.log(`mutation scores written to ${OUT} (${seconds} s)`);
