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
  'src/services/retention.ts': ['test/services/retention-plan.test.ts', 'test/api/retention.test.ts'],
  'src/services/restores.ts': ['test/api/restore.test.ts', 'test/api/restore-safety.test.ts', 'test/api/restore-concurrency.test.ts'],
  'src/services/snapshots.ts': ['test/api/snapshots.test.ts', 'test/api/snapshot-lifecycle.test.ts'],
  'src/services/operations.ts': ['test/api/operations-recovery.test.ts', 'test/api/snapshot-lifecycle.test.ts'],
};

const REPORT = '.stryker-tmp/report.json';
const OUT = 'bench/results/mutation.json';

interface Mutant { id: string; mutatorName: string; replacement?: string; status: string; location: { start: { line: number; column: number } } }
interface Report { files: Record<string, { mutants: Mutant[] }> }

// `--tests a.test.ts,b.test.ts` judges the files by those tests only (a quick partial measure;
// the tests used are recorded with each file's result).
const args = process.argv.slice(2);
const override = args.includes('--tests') ? args.splice(args.indexOf('--tests'), 2)[1].split(',') : null;
const files = args.length ? args : Object.keys(TARGETS);
for (const f of files) if (!TARGETS[f]) throw new Error(`no tests are listed for ${f} in scripts/mutate.ts`);
if (override) for (const f of files) TARGETS[f] = override;
const tests = [...new Set(files.flatMap((f) => TARGETS[f]))];

const started = Date.now();
const code = await new Promise<number>((resolve) => {
  const child = spawn('npx', ['stryker', 'run', 'stryker.config.mjs'], {
    stdio: 'inherit',
    env: { ...process.env, BP_MUTATE_FILES: JSON.stringify(files), BP_MUTATE_TESTS: JSON.stringify(tests) },
  });
  child.on('exit', (c) => resolve(c ?? 1));
});
if (code !== 0) process.exit(code);
const seconds = Math.round((Date.now() - started) / 1000);

const report = JSON.parse(await fs.readFile(REPORT, 'utf8')) as Report;
const previous = await fs.readFile(OUT, 'utf8').then((t) => JSON.parse(t), () => ({ files: {} }));
const summary: Record<string, unknown> = { ...previous.files };
for (const [file, { mutants }] of Object.entries(report.files)) {
  const n = (s: string) => mutants.filter((m) => m.status === s).length;
  const detected = n('Killed') + n('Timeout');
  const undetected = n('Survived') + n('NoCoverage');
  summary[path.relative(process.cwd(), path.resolve(file))] = {
    // Stryker's score: detected / (detected + undetected); compile and runtime errors do not count.
    score: detected + undetected ? Math.round((1000 * detected) / (detected + undetected)) / 10 : null,
    killed: n('Killed'),
    timeout: n('Timeout'),
    survived: n('Survived'),
    noCoverage: n('NoCoverage'),
    errors: n('RuntimeError') + n('CompileError'),
    ignored: n('Ignored'),
    tests: TARGETS[path.relative(process.cwd(), path.resolve(file))],
    survivors: mutants
      .filter((m) => m.status === 'Survived' || m.status === 'NoCoverage')
      .map((m) => `${m.location.start.line}:${m.location.start.column} ${m.mutatorName} ${m.status === 'NoCoverage' ? '(no coverage) ' : ''}→ ${JSON.stringify(m.replacement ?? '')}`),
    runSeconds: seconds,
    runFiles: files.length,
    recordedAt: new Date().toISOString(),
  };
}
await fs.mkdir(path.dirname(OUT), { recursive: true });
await fs.writeFile(OUT, `${JSON.stringify({ tool: 'stryker 9.6.1, vitest runner, coverageAnalysis perTest', files: summary }, null, 2)}\n`);
console.log(`mutation scores written to ${OUT} (${seconds} s)`);
