import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import {
  CancelOperationDocument,
  CreateSnapshotDocument,
  DeleteSnapshotDocument,
  PinSnapshotDocument,
  SnapshotDocument,
  UnpinSnapshotDocument,
} from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { repositoryPassword, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { follow, restic, startSnapshot, takeSnapshot, startSnapshotSuite } from '../harness/snapshot-helpers.ts';
import { until } from '../harness/process.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;

beforeAll(async () => {
  ({ app, key, env } = await startSnapshotSuite());
});
afterAll(() => app?.stop());

/**
 * Holds an exclusive lock on a table of the environment's database, so pg_dump waits: a snapshot
 * that is reliably in progress for as long as the test needs, without timing guesses.
 */
async function holdTableLock(url: string): Promise<() => Promise<void>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query('BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
  return async () => {
    await c.query('ROLLBACK');
    await c.end();
  };
}

/**
 * The repository's password for restic; null only when no repository was ever created at the
 * destination, which is then asserted: a missing password never quietly skips restic's checks.
 */
async function passwordOfRepository(): Promise<string | null> {
  const d = await app.runtime.db.destination.findUniqueOrThrow({ where: { id: env.destinationId } });
  if (d.repositoryPasswordEncrypted) return repositoryPassword(app, env.destinationId);
  await expect(fs.stat(path.join(env.repositoryPath, 'config')), 'a repository exists but the catalog has no password for it').rejects.toMatchObject({ code: 'ENOENT' });
  return null;
}

async function repoSnapshotCount(): Promise<number> {
  const password = await passwordOfRepository();
  if (!password) return 0;
  return (JSON.parse(await restic(env.repositoryPath, password, 'snapshots', '--json')) as unknown[]).length;
}

async function dumpsRunning(): Promise<number> {
  const r = await sql(env.databaseUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'backplane-dump' AND datname = current_database()");
  return r.rows[0].n;
}

describe('idempotency', () => {
  it('the same key and input return the same operation; another input is a conflict', async () => {
    const input = { environmentId: gid('Environment', env.id), includes: ['DB' as const], label: 'idem', idempotencyKey: 'deploy-77' };
    const a = await app.gql(CreateSnapshotDocument, { input }, { key });
    const b = await app.gql(CreateSnapshotDocument, { input }, { key });
    if (a.data?.createSnapshot.__typename !== 'SnapshotOperationPayload' || b.data?.createSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error('no payload');
    expect(b.data.createSnapshot.operation.id).toBe(a.data.createSnapshot.operation.id);
    expect(b.data.createSnapshot.snapshot.id).toBe(a.data.createSnapshot.snapshot.id);
    const before = await app.runtime.db.snapshot.count();
    const c = await app.gql(CreateSnapshotDocument, { input: { ...input, label: 'other' } }, { key });
    expect(c.data?.createSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'IDEMPOTENCY_KEY_REUSED' });
    // The header works the same as the field.
    const h1 = await app.gql(CreateSnapshotDocument, { input: { environmentId: input.environmentId, includes: ['DB'] } }, { key, headers: { 'idempotency-key': 'hdr-1' } });
    const h2 = await app.gql(CreateSnapshotDocument, { input: { environmentId: input.environmentId, includes: ['DB'] } }, { key, headers: { 'idempotency-key': 'hdr-1' } });
    expect((h1.data?.createSnapshot as { operation: { id: string } }).operation.id).toBe((h2.data?.createSnapshot as { operation: { id: string } }).operation.id);
    expect(await app.runtime.db.snapshot.count()).toBe(before + 1);
    await follow(app, key, a.data.createSnapshot.operation.id);
    await follow(app, key, (h1.data?.createSnapshot as { operation: { id: string } }).operation.id);
  });
});

describe('the Idempotency-Key header', () => {
  // One header, one piece of work: otherwise which mutation owns the key depends on execution
  // order, and a client that batches differently on a retry would get another one's result.
  it('is refused, before anything runs, on a request that would start several things with it', async () => {
    const create = (alias: string, label: string) => `${alias}: createSnapshot(input: { environmentId: "${gid('Environment', env.id)}", includes: [DB], label: "${label}" }) { __typename }`;
    const headers = { 'idempotency-key': 'hdr-many' };
    const before = await app.runtime.db.snapshot.count();
    const refused = async (body: unknown) => {
      const res = await app.post(body, { key, headers });
      const json = (await res.json()) as { errors?: { message: string; extensions?: { code?: string } }[] };
      return { status: res.status, code: json.errors?.[0]?.extensions?.code, message: json.errors?.[0]?.message };
    };
    const batch = [{ query: `mutation { ${create('a', 'batch-1')} }` }, { query: `mutation { ${create('b', 'batch-2')} }` }];
    expect(await refused(batch)).toMatchObject({ status: 400, code: 'BAD_REQUEST', message: expect.stringMatching(/has 2 that start work/) });
    expect(await refused({ query: `mutation { ${create('a', 'one-1')} ${create('b', 'one-2')} }` })).toMatchObject({ status: 400, code: 'BAD_REQUEST' });
    expect(await refused({ query: `mutation { ...twice } fragment twice on Mutation { ${create('a', 'frag-1')} ... on Mutation { ${create('b', 'frag-2')} } }` })).toMatchObject({ status: 400, code: 'BAD_REQUEST' });
    expect(await app.runtime.db.snapshot.count()).toBe(before);
    // One mutation beside queries keeps the header.
    const res = await app.post([{ query: '{ viewer { scopes } }' }, { query: `mutation { ${create('only', 'single')} }` }], { key, headers });
    expect(res.status).toBe(200);
    const [, created] = (await res.json()) as [unknown, { data: { only: { __typename: string } } }];
    expect(created.data.only.__typename).toBe('SnapshotOperationPayload');
    expect(await app.runtime.db.snapshot.count()).toBe(before + 1);
    const op = await app.runtime.db.operation.findFirstOrThrow({ where: { snapshot: { label: 'single' } } });
    await follow(app, key, gid('Operation', op.id));
  });
});

describe('one operation per environment at a time', () => {
  it('a second snapshot waits, visibly QUEUED, and runs after the first', async () => {
    const release = await holdTableLock(env.databaseUrl);
    const first = await startSnapshot(app, key, env.id, { includes: ['DB'] });
    await follow(app, key, first.operationId, (s) => s.phase === 'dumping');
    const second = await startSnapshot(app, key, env.id, { includes: ['DB'] });
    const queued = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: second.operationId.length ? (await idOf(second.operationId)) : '' } });
    expect(queued.status).toBe('QUEUED');
    await release();
    expect((await follow(app, key, first.operationId)).at(-1)?.status).toBe('SUCCEEDED');
    expect((await follow(app, key, second.operationId)).at(-1)?.status).toBe('SUCCEEDED');
    const [a, b] = await Promise.all([idOf(first.operationId), idOf(second.operationId)].map(async (p) => app.runtime.db.operation.findUniqueOrThrow({ where: { id: await p } })));
    expect(b.startedAt!.getTime()).toBeGreaterThanOrEqual(a.finishedAt!.getTime());
  });
});

describe('cancel and timeout', () => {
  it('cancelOperation stops a running snapshot: pg_dump is gone, nothing partial is visible, the repository checks', async () => {
    const snapshotsBefore = await repoSnapshotCount();
    const release = await holdTableLock(env.databaseUrl);
    try {
      const s = await startSnapshot(app, key, env.id);
      await follow(app, key, s.operationId, (st) => st.phase === 'dumping');
      await until(dumpsRunning, (n) => n === 1, 'pg_dump to connect');
      const res = await app.gql(CancelOperationDocument, { input: { id: s.operationId } }, { key });
      expect(res.data?.cancelOperation.__typename).toBe('OperationPayload');
      const end = (await follow(app, key, s.operationId)).at(-1);
      expect(end?.status).toBe('CANCELLED');
      expect(await dumpsRunning()).toBe(0);
      const snap = (await app.gql(SnapshotDocument, { id: s.snapshotId }, { key })).data?.snapshot;
      expect(snap?.status).toBe('FAILED');
      const again = await app.gql(CancelOperationDocument, { input: { id: s.operationId } }, { key });
      expect(again.data?.cancelOperation).toMatchObject({ __typename: 'ConflictError', code: 'OPERATION_FINISHED' });
    } finally {
      await release();
    }
    expect(await repoSnapshotCount()).toBe(snapshotsBefore);
    const password = await passwordOfRepository();
    if (password) await restic(env.repositoryPath, password, 'check');
  });

  it("the environment's timeoutSeconds fails a snapshot that runs too long, with an alert", async () => {
    await app.runtime.db.environmentSettings.update({ where: { environmentId: env.id }, data: { timeoutSeconds: 1 } });
    const release = await holdTableLock(env.databaseUrl);
    try {
      const s = await startSnapshot(app, key, env.id, { includes: ['DB'] });
      const end = (await follow(app, key, s.operationId)).at(-1);
      expect(end).toMatchObject({ status: 'FAILED', error: 'Timed out after 1 s' });
      expect(await dumpsRunning()).toBe(0);
      const alert = await app.runtime.db.alert.findFirst({ where: { environmentId: env.id, type: 'SNAPSHOT_FAILED' }, orderBy: { createdAt: 'desc' } });
      expect(alert?.message).toContain('Timed out');
    } finally {
      await release();
      await app.runtime.db.environmentSettings.update({ where: { environmentId: env.id }, data: { timeoutSeconds: 3600 } });
    }
  });
});

describe('pin and delete', () => {
  it('a pinned snapshot cannot be deleted; maxPinned is enforced; delete forgets and prunes, others stay intact', async () => {
    const keep = await takeSnapshot(app, key, env.id, { label: 'keep' });
    const victim = await takeSnapshot(app, key, env.id, { label: 'victim' });
    await app.runtime.db.environmentSettings.update({ where: { environmentId: env.id }, data: { maxPinned: 1 } });
    const pin = await app.gql(PinSnapshotDocument, { input: { id: victim.snapshotId, label: 'release 1.0' } }, { key });
    expect(pin.data?.pinSnapshot).toMatchObject({ __typename: 'SnapshotPayload', snapshot: { pinned: true, pinLabel: 'release 1.0' } });
    const tooMany = await app.gql(PinSnapshotDocument, { input: { id: keep.snapshotId } }, { key });
    expect(tooMany.data?.pinSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'MAX_PINNED' });
    const refused = await app.gql(DeleteSnapshotDocument, { input: { id: victim.snapshotId } }, { key });
    expect(refused.data?.deleteSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'SNAPSHOT_PINNED' });
    await app.gql(UnpinSnapshotDocument, { input: { id: victim.snapshotId } }, { key });

    const before = await repoSnapshotCount();
    const del = await app.gql(DeleteSnapshotDocument, { input: { id: victim.snapshotId } }, { key });
    if (del.data?.deleteSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(del));
    expect((await follow(app, key, del.data.deleteSnapshot.operation.id)).at(-1)?.status).toBe('SUCCEEDED');
    expect((await app.gql(SnapshotDocument, { id: victim.snapshotId }, { key })).data?.snapshot?.status).toBe('DELETED');
    expect(await repoSnapshotCount()).toBe(before - 1);
    const password = await repositoryPassword(app, env.destinationId);
    await restic(env.repositoryPath, password, 'check', '--read-data');
    expect((await app.gql(SnapshotDocument, { id: keep.snapshotId }, { key })).data?.snapshot?.status).toBe('READY');
    await app.runtime.db.environmentSettings.update({ where: { environmentId: env.id }, data: { maxPinned: 10 } });
  });

  it('deleting a snapshot that is still CREATING is refused', async () => {
    const release = await holdTableLock(env.databaseUrl);
    try {
      const s = await startSnapshot(app, key, env.id, { includes: ['DB'] });
      const res = await app.gql(DeleteSnapshotDocument, { input: { id: s.snapshotId } }, { key });
      expect(res.data?.deleteSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'SNAPSHOT_NOT_READY' });
      await app.gql(CancelOperationDocument, { input: { id: s.operationId } }, { key });
      await follow(app, key, s.operationId);
    } finally {
      await release();
    }
  });
});

/** Global operation id → database id. */
async function idOf(globalId: string): Promise<string> {
  return Buffer.from(globalId, 'base64').toString('utf8').split(':').slice(1).join(':');
}
