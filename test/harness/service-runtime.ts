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
import path from 'node:path';
import { loadConfig } from '../../src/app/config.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import type { Scope } from '../../src/domain/scopes.ts';
import type { Deps } from '../../src/services/deps.ts';
import { runRestore } from '../../src/services/restores.ts';
import { createSnapshot, runSnapshot } from '../../src/services/snapshots.ts';
import type { Viewer } from '../../src/services/viewer.ts';
import { testEnv } from './app.ts';
import { freshDatabase } from './database.ts';
import { databaseDigest, filesDigest } from './live-environment.ts';

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

/** What a restore compares: digests of an environment's database and files. */
export type EnvState = { db: Record<string, string>; files: Record<string, string> };
export const envState = async (env: { databaseUrl: string; filesPath: string }): Promise<EnvState> => ({
  db: await databaseDigest(env.databaseUrl),
  files: await filesDigest(env.filesPath),
});

/** Takes a snapshot of `environmentId` with the job itself; returns its id, or throws unless it is READY. */
export async function snapshotByJob(deps: Deps, viewer: Viewer, environmentId: string, includes: ('DB' | 'FILES')[] = ['DB', 'FILES']): Promise<string> {
  const s = await createSnapshot(deps, viewer, { environmentId, includes });
  await runSnapshot(deps, s.operationId);
  const row = await deps.db.snapshot.findUniqueOrThrow({ where: { id: s.snapshotId } });
  if (row.status !== 'READY') throw new Error(`snapshot failed: ${row.error}`);
  return s.snapshotId;
}

/** Runs a requested restore's job; returns what it threw and what it recorded: its log, operation and alerts. */
export async function runRestoreJob(deps: Deps, operationId: string, restoreLogId: string, jobSignal?: AbortSignal) {
  const thrown = await runRestore(deps, operationId, jobSignal).then(() => null, (err: unknown) => err);
  return {
    thrown,
    log: await deps.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId } }),
    op: await deps.db.operation.findUniqueOrThrow({ where: { id: operationId } }),
    alerts: await deps.db.alert.findMany({ where: { operationId } }),
  };
}

/** A second LOCAL destination beside `env`'s, added to it after the first (so the first stays its primary). */
export async function addSecondDestination(runtime: Runtime, organizationId: string, env: { id: string; filesPath: string }): Promise<{ id: string; path: string }> {
  const secondPath = path.join(path.dirname(env.filesPath), 'second-repository');
  const d = await runtime.db.destination.create({ data: { organizationId, name: 'second', provider: 'LOCAL', config: { path: secondPath } } });
  await runtime.db.environmentDestination.create({ data: { environmentId: env.id, destinationId: d.id, createdAt: new Date(Date.now() + 1000) } });
  return { id: d.id, path: secondPath };
}
