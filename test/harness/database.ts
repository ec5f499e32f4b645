/**
 * Databases for test files, on the run's PostgreSQL (started by global-setup.ts).
 *
 * ```ts
 * import { freshDatabase } from '../harness/database.ts';
 * const url = await freshDatabase(); // migrated, private to this file
 * ```
 * Everything is deleted with the cluster when the run ends; nothing to clean up per file.
 */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { createDatabase, dropDatabase } from '../../src/db/pg-server.ts';

/** Superuser URL of the test cluster's `postgres` database. */
export function adminUrl(): string {
  return inject('pgAdminUrl');
}

/** URL of database `name` on the test cluster, as the superuser. */
export function databaseUrl(name: string): string {
  const u = new URL(adminUrl());
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

function uniqueName(prefix: string): string {
  const clean = prefix.toLowerCase().replace(/[^a-z0-9_]+/g, '_').slice(0, 30);
  return `${clean}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

/** A new database with every migration applied (a copy of the template); returns its URL. */
export async function freshDatabase(prefix = 'test'): Promise<string> {
  const name = uniqueName(prefix);
  await createDatabase(adminUrl(), name, inject('pgTemplateDatabase'));
  return databaseUrl(name);
}

/** A new empty database (no migrations), e.g. an environment's own database; returns its URL. */
export async function createScratchDatabase(prefix = 'scratch'): Promise<string> {
  const name = uniqueName(prefix);
  await createDatabase(adminUrl(), name);
  return databaseUrl(name);
}

/** Drops a database made by this module, ending its connections. Optional: the run's end deletes all. */
export async function dropTestDatabase(url: string): Promise<void> {
  await dropDatabase(adminUrl(), decodeURIComponent(new URL(url).pathname.slice(1)));
}
