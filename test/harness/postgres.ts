/**
 * The disposable PostgreSQL behind the `api` test project: one cluster per test run, and one
 * template database with our migrations and graphile-worker's schema that every test file copies (CREATE DATABASE …
 * TEMPLATE is a file copy, far faster than migrating each time).
 */
import { Logger, runMigrations as installWorkerSchema } from 'graphile-worker';
import pg from 'pg';
import { applyMigrations } from '../../src/db/migrate.ts';
import { createDatabase, startScratchPostgres, type ScratchPostgres } from '../../src/db/pg-server.ts';

/** Name of the migrated template database. */
export const TEMPLATE_DATABASE = 'backplane_template';

/** The running test cluster. */
export interface TestPostgres {
  /** Superuser URL of the `postgres` database (to create and drop databases). */
  adminUrl: string;
  /** Name of the migrated template database. */
  templateDatabase: string;
  /** Migrations applied to the template. */
  appliedMigrations: string[];
  /** Stops the server and deletes its directory. */
  stop(): Promise<void>;
}

/** Starts the cluster and builds the migrated template. */
export async function startTestPostgres(options: { migrationsDir?: string } = {}): Promise<TestPostgres> {
  const server: ScratchPostgres = await startScratchPostgres();
  try {
    await createDatabase(server.adminUrl, TEMPLATE_DATABASE);
    const appliedMigrations = await applyMigrations(server.url(TEMPLATE_DATABASE), { migrationsDir: options.migrationsDir });
    // graphile-worker's own schema too, so services can enqueue (add_job) in every test database
    // without each file installing it.
    await installWorkerSchema({ connectionString: server.url(TEMPLATE_DATABASE), logger: new Logger(() => () => {}) });
    // A template must have no connections while it is copied; forbidding them makes a stray
    // connection fail loudly instead of making some CREATE DATABASE fail at random.
    const admin = new pg.Client({ connectionString: server.adminUrl });
    await admin.connect();
    try {
      await admin.query(
        `ALTER DATABASE ${admin.escapeIdentifier(TEMPLATE_DATABASE)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`,
      );
    } finally {
      await admin.end();
    }
    return { adminUrl: server.adminUrl, templateDatabase: TEMPLATE_DATABASE, appliedMigrations, stop: () => server.stop() };
  } catch (err) {
    await server.stop();
    throw err;
  }
}
