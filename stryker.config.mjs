// Mutation testing (`npm run mutate`, see scripts/mutate.ts): which services to mutate and which
// tests judge them come from the wrapper through the environment, so one config serves any subset.
const files = JSON.parse(process.env.BP_MUTATE_FILES ?? '["src/services/viewer.ts","src/services/retention.ts"]');

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner'],
  vitest: { configFile: 'vitest.mutate.config.ts', related: false },
  mutate: files,
  // Each mutant runs only the tests that reached it; tests are written so that any one of them
  // passes alone, so a kill is never an artefact of running a test without its neighbours.
  coverageAnalysis: 'perTest',
  // The machine is shared: one vitest (and one test PostgreSQL) at a time.
  concurrency: 1,
  timeoutMS: 60_000,
  timeoutFactor: 3,
  reporters: ['json', 'clear-text', 'progress'],
  jsonReporter: { fileName: '.stryker-tmp/report.json' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
  ignorePatterns: ['bench/results', 'bench/data', 'bench/work', '.backplane', 'coverage', 'reports'],
  ignoreStatic: true,
};
