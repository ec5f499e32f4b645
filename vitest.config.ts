import { defineConfig } from 'vitest/config';

// Two projects: the engine and destination tests need no database, so they run without the
// PostgreSQL harness; everything that touches the control plane gets a disposable PostgreSQL.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    projects: [
      {
        test: {
          name: 'engine',
          include: ['test/engine/**/*.test.ts', 'test/destinations/**/*.test.ts', 'test/cli/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: 'api',
          include: ['test/api/**/*.test.ts', 'test/services/**/*.test.ts', 'test/db/**/*.test.ts', 'test/jobs/**/*.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
