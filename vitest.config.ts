import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

// graphql 16 has no "exports": Node (and so every dependency) loads its CommonJS entry, while
// Vite would pick the "module" entry for our own files: two copies, and "from another module or
// realm" errors. Point our files at the same entry Node uses.
const graphqlEntry = createRequire(import.meta.url).resolve('graphql');

// Two projects: the engine and destination tests need no database, so they run without the
// PostgreSQL harness; everything that touches the control plane gets a disposable PostgreSQL.
export default defineConfig({
  resolve: { alias: [{ find: /^graphql$/, replacement: graphqlEntry }] },
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'engine',
          include: ['test/engine/**/*.test.ts', 'test/destinations/**/*.test.ts', 'test/cli/**/*.test.ts'],
          globalSetup: ['test/harness/run-temp.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'api',
          include: ['test/api/**/*.test.ts', 'test/services/**/*.test.ts', 'test/db/**/*.test.ts', 'test/jobs/**/*.test.ts', 'test/sources/**/*.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
