import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { print } from 'graphql';
import { expect } from 'vitest';
import { CreateSnapshotDocument, RestoreSnapshotDocument, WatchOperationDocument } from '../generated/graphql.ts';
import type { Scope } from '../../src/domain/scopes.ts';
import type { TestApp } from './app.ts';
import { gid } from './factories.ts';

const exec = promisify(execFile);

export interface OpState {
  id: string;
  status: string;
  phase?: string | null;
  percent?: number | null;
  bytesDone: string;
  bytesTotal?: string | null;
  error?: string | null;
}

/** Follows an operation over graphql-ws until it ends (or `until` says stop); returns every state seen. */
export async function follow(app: TestApp, key: string, operationId: string, until?: (s: OpState) => boolean): Promise<OpState[]> {
  const client = app.ws(key);
  const states: OpState[] = [];
  for await (const r of client.iterate({ query: print(WatchOperationDocument), variables: { id: operationId } })) {
    if (r.errors) throw new Error(JSON.stringify(r.errors));
    const op = (r.data as { operation: OpState }).operation;
    states.push(op);
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status) || until?.(op)) break;
  }
  return states;
}

/** Starts a snapshot through the API; returns the operation and snapshot ids. */
export async function startSnapshot(app: TestApp, key: string, environmentId: string, input: Record<string, unknown> = {}) {
  const res = await app.gql(CreateSnapshotDocument, { input: { environmentId: gid('Environment', environmentId), ...input } }, { key });
  if (res.data?.createSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(res));
  return { operationId: res.data.createSnapshot.operation.id, snapshotId: res.data.createSnapshot.snapshot.id };
}

/** Takes a snapshot and waits for it to be READY. */
export async function takeSnapshot(app: TestApp, key: string, environmentId: string, input: Record<string, unknown> = {}) {
  const s = await startSnapshot(app, key, environmentId, input);
  const states = await follow(app, key, s.operationId);
  if (states.at(-1)?.status !== 'SUCCEEDED') throw new Error(`snapshot did not succeed: ${JSON.stringify(states.at(-1))}`);
  return s;
}

export async function startRestore(app: TestApp, key: string, input: Record<string, unknown>) {
  const res = await app.gql(RestoreSnapshotDocument, { input: input as never }, { key });
  if (res.data?.restoreSnapshot.__typename !== 'RestorePayload') throw new Error(JSON.stringify(res));
  return { operationId: res.data.restoreSnapshot.operation.id, restoreLogId: res.data.restoreSnapshot.restoreLog.id };
}

export async function restic(repo: string, password: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('restic', ['-r', repo, '--no-cache', ...args], { env: { ...process.env, RESTIC_PASSWORD: password }, maxBuffer: 64 << 20 });
  return stdout;
}

/**
 * A server with a worker (unless `worker: false`, for tests whose jobs run in another process),
 * an organization and a key of theirs (admin unless told).
 */
export async function startWorkerSuite(opts: { scopes?: Scope[]; secretKey?: string; worker?: boolean } = {}) {
  const { startTestApp } = await import('./app.ts');
  const { makeApiKey, makeOrganization } = await import('./factories.ts');
  const app = await startTestApp({ secretKey: opts.secretKey });
  if (opts.worker !== false) await app.startWorker();
  const org = await makeOrganization(app.runtime.db);
  const key = (await makeApiKey(app.runtime.db, org.id, { scopes: opts.scopes ?? ['admin'] })).secret;
  return { app, key, orgId: org.id };
}

/** What most snapshot test files start from: startWorkerSuite with a write key, and a live environment. */
export async function startSnapshotSuite(opts: { envName?: string; secretKey?: string; worker?: boolean } = {}) {
  const { makeLiveEnvironment } = await import('./live-environment.ts');
  const suite = await startWorkerSuite({ scopes: ['backups:write'], secretKey: opts.secretKey, worker: opts.worker });
  const env = await makeLiveEnvironment(suite.app, { organizationId: suite.orgId, name: opts.envName });
  return { ...suite, env };
}

/** A dead worker's last heartbeat, an hour ago: what waiting out OPERATION_STALE_MS would give. */
export async function ageHeartbeat(app: TestApp, operationId: string) {
  const op = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: operationId } });
  expect(op.status).toBe('RUNNING');
  await app.runtime.db.operation.update({ where: { id: operationId }, data: { heartbeatAt: new Date(Date.now() - 3_600_000) } });
}
