import { defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.ts';

// The test files that judge the mutated services (scripts/mutate.ts passes them), in one project
// with the PostgreSQL harness, since Stryker runs a single vitest per worker.
const include = JSON.parse(process.env.BP_MUTATE_TESTS ?? '[]') as string[];

export default mergeConfig({ ...base, test: { ...base.test, projects: undefined } }, defineConfig({
  test: { include, globalSetup: ['test/harness/global-setup.ts'], testTimeout: 60_000, hookTimeout: 120_000 },
}));
