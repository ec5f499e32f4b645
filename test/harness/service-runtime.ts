/**
 * Services called directly, with no HTTP server and no worker: the same runtime (Prisma client,
 * event bus over LISTEN/NOTIFY, secret box) a process builds, on a fresh migrated database.
 * For tests that judge a service's logic where going through the API adds only time (mutation
 * testing runs them once per mutant).
 *
 * ```ts
 * const rt = await startServiceRuntime();
 * await createSnapshot(rt.deps, viewer, { environmentId });
 * ```
 */
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../src/app/config.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import type { Scope } from '../../src/domain/scopes.ts';
import type { Viewer } from '../../src/services/viewer.ts';
import { testEnv } from './app.ts';
import { freshDatabase } from './database.ts';

export async function startServiceRuntime(prefix = 'svc'): Promise<Runtime & { databaseUrl: string }> {
  const databaseUrl = await freshDatabase(prefix);
  const config = loadConfig(testEnv(databaseUrl, randomBytes(32).toString('hex')));
  const runtime = await createRuntime(config, databaseUrl, createLogger(config.LOG_LEVEL));
  return { ...runtime, databaseUrl };
}

/** A viewer as the API would build it for a key of `organizationId` (limited to `projectIds` when given). */
export function viewerOf(organizationId: string, projectIds: string[] | null = null, scopes: Scope[] = ['admin']): Viewer {
  return { organizationId, apiKeyId: 'test-key', scopes: new Set(scopes), projectIds };
}
