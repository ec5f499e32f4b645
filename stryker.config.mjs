// Mutation testing (`npm run mutate`, see scripts/mutate.ts): which services to mutate and which
// tests judge them come from the wrapper through the environment, so one config serves any subset.
const files = JSON.parse(process.env.BP_MUTATE_FILES ?? '["src/services/viewer.ts","src/services/retention.ts"]');
// One incremental record per set of mutated files: a re-run after new tests only runs the mutants
// whose code or covering tests changed.
// The same name keeps each run's report and sandboxes apart, so two files can be measured at once.
const runName = process.env.BP_MUTATE_NAME ?? 'default';

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner', './scripts/stryker-ignorers.mjs'],
  // Log lines and the text of typed errors (their codes stay mutated): see scripts/stryker-ignorers.mjs.
  ignorers: ['log-calls', 'error-message-text'],
  vitest: { configFile: 'vitest.mutate.config.ts', related: false },
  mutate: files,
  // Each mutant runs only the tests that reached it; tests are written so that any one of them
  // passes alone, so a kill is never an artefact of running a test without its neighbours.
  coverageAnalysis: 'perTest',
  // The machine is shared: two vitests by default, each with its own test PostgreSQL (global
  // setup) and each test file with its own database, so the two never see each other's rows.
  concurrency: Number(process.env.BP_MUTATE_CONCURRENCY ?? 2),
  incremental: process.env.BP_MUTATE_INCREMENTAL !== '0',
  incrementalFile: `.stryker-incremental/${runName}.json`,
  timeoutMS: 60_000,
  timeoutFactor: 3,
  reporters: ['json', 'clear-text', 'progress'],
  jsonReporter: { fileName: `reports/mutation/${runName}.json` },
  tempDirName: `.stryker-tmp/${runName}`,
  cleanTempDir: true,
  ignorePatterns: ['.stryker-tmp', '.stryker-incremental', 'bench/results', 'bench/data', 'bench/work', '.backplane', 'coverage', 'reports'],
  ignoreStatic: true,
};
