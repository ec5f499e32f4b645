/**
 * vitest globalSetup of the `api` project: one PostgreSQL for the whole run, its migrated
 * template, and the admin URL handed to test files through `inject()` (see database.ts); the
 * run's temporary folder (run-temp.ts).
 */
import type { TestProject } from 'vitest/node';
import { startTestPostgres } from './postgres.ts';
import { useRunTempDir } from './run-temp.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the test cluster's `postgres` database. */
    pgAdminUrl: string;
    /** Database with every migration applied, to copy with CREATE DATABASE … TEMPLATE. */
    pgTemplateDatabase: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const removeTemp = await useRunTempDir();
  const pg = await startTestPostgres();
  project.provide('pgAdminUrl', pg.adminUrl);
  project.provide('pgTemplateDatabase', pg.templateDatabase);
  return async () => {
    try {
      await pg.stop();
    } finally {
      await removeTemp();
    }
  };
}
