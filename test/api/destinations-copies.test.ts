/**
 * Several copies of each snapshot: every destination of an environment gets one; a failing
 * destination leaves the snapshot READY or FAILED as the failure policy says; restores and
 * downloads read the next copy when the first cannot be reached; copies added later send only
 * what the target lacks; verification reads each copy and notices damage.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import {
  CancelOperationDocument,
  CopySnapshotDocument,
  CreateDestinationDocument,
  OperationMessageDocument,
  SetEnvironmentDestinationsDocument,
  SnapshotCopiesDocument,
  SnapshotDownloadDocument,
  UpdateDestinationDocument,
  VerifySnapshotDocument,
} from '../generated/graphql.ts';
import { runDestinationVerify } from '../../src/services/verify.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeOrganization } from '../harness/factories.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, repositoryPassword, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { startFlakyProxy } from '../harness/flaky-proxy.ts';
import { S3RVER_CREDENTIALS, startS3rver, type StartedS3rver } from '../harness/s3rver.ts';
import { follow, restic, startRestore, startSnapshot, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let s3: StartedS3rver;
let key: string;
let orgId: string;

beforeAll(async () => {
  [app, s3] = await Promise.all([startTestApp(), startS3rver({ buckets: ['copies'] })]);
  await app.startWorker();
  const org = await makeOrganization(app.runtime.db);
  orgId = org.id;
  key = (await makeApiKey(app.runtime.db, org.id, { scopes: ['admin'] })).secret;
});
afterAll(async () => {
  await app?.stop();
  await s3?.stop();
});

const raw = (globalId: string) => decodeGlobalID(globalId).id;

async function s3Destination(name: string): Promise<string> {
  const res = await app.gql(CreateDestinationDocument, { input: { name, provider: 'CUSTOM', endpoint: s3.endpoint, bucket: 'copies', prefix: name, ...S3RVER_CREDENTIALS } }, { key });
  if (res.data?.createDestination.__typename !== 'DestinationPayload') throw new Error(JSON.stringify(res));
  return res.data.createDestination.destination.id;
}

async function setDestinations(env: LiveEnvironment, ids: string[]) {
  const res = await app.gql(SetEnvironmentDestinationsDocument, { input: { environmentId: gid('Environment', env.id), destinationIds: ids } }, { key });
  expect(res.data?.setEnvironmentDestinations.__typename).toBe('EnvironmentDestinationsPayload');
}

/** Points a destination at a port nobody listens on (or back at s3rver). */
async function reachable(destinationGid: string, yes: boolean) {
  const d = await app.runtime.db.destination.findUniqueOrThrow({ where: { id: raw(destinationGid) } });
  await app.runtime.db.destination.update({ where: { id: d.id }, data: { config: { ...(d.config as object), endpoint: yes ? s3.endpoint : 'http://127.0.0.1:1' } } });
}

/** The snapshot with its copies in the order of `order` (destination ids); copies made together share createdAt. */
async function copies(snapshotId: string, order: string[] = []) {
  const res = await app.gql(SnapshotCopiesDocument, { id: snapshotId }, { key });
  const s = res.data!.snapshot!;
  const rank = (id: string) => (order.includes(id) ? order.indexOf(id) : order.length);
  return { ...s, copies: [...s.copies].sort((a, b) => rank(a.destination.id) - rank(b.destination.id)) };
}

describe('a snapshot on several destinations', () => {
  let env: LiveEnvironment;
  let remote: string;
  let local: string;

  beforeAll(async () => {
    env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 200 });
    remote = await s3Destination('primary');
    local = gid('Destination', env.destinationId);
    // The S3 destination first: it receives the capture, the local one a copy.
    await setDestinations(env, [remote, local]);
  });

  it('goes to every destination, each copy with its own status and bytes', async () => {
    const { snapshotId } = await takeSnapshot(app, key, env.id);
    const s = await copies(snapshotId, [remote, local]);
    expect(s.status).toBe('READY');
    expect(s.copies.map((c) => [c.destination.id, c.status])).toEqual([[remote, 'READY'], [local, 'READY']]);
    expect(s.copies.every((c) => BigInt(c.sizeBytes) > 0n && BigInt(c.addedBytes) > 0n)).toBe(true);
    const password = await repositoryPassword(app, env.destinationId);
    expect(await restic(env.repositoryPath, password, 'check', '--read-data')).toMatch(/no errors were found/);
  });

  it('restores and downloads from the next copy when the first destination is unreachable', async () => {
    const dbBefore = await databaseDigest(env.databaseUrl);
    const filesBefore = await filesDigest(env.filesPath);
    const { snapshotId } = await takeSnapshot(app, key, env.id);
    await sql(env.databaseUrl, "UPDATE customers SET name = 'changed after'");
    await fs.writeFile(path.join(env.filesPath, 'README.md'), 'changed after\n');
    await reachable(remote, false);
    try {
      const { operationId } = await startRestore(app, key, { snapshotId, createSafetySnapshot: false });
      const states = await follow(app, key, operationId);
      expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
      expect(await databaseDigest(env.databaseUrl)).toEqual(dbBefore);
      expect(await filesDigest(env.filesPath)).toEqual(filesBefore);

      const dl = await app.gql(SnapshotDownloadDocument, { id: snapshotId, variant: 'DATABASE_AND_FILES' }, { key });
      const download = dl.data?.snapshot?.download;
      const url = download?.__typename === 'Download' ? download.url : undefined;
      expect(url, JSON.stringify(dl)).toBeTruthy();
      const res = await fetch(url!);
      expect(res.status).toBe(200);
      expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(1000);
    } finally {
      await reachable(remote, true);
    }
  });

  it('ALERT_ONLY (the default): with one destination down the snapshot is READY, its copy there FAILED, and an alert says so', async () => {
    await reachable(remote, false);
    try {
      const alertsBefore = await app.runtime.db.alert.count({ where: { environmentId: env.id, type: 'COPY_FAILED' } });
      const { snapshotId } = await takeSnapshot(app, key, env.id, { label: 'one down' });
      const s = await copies(snapshotId, [remote, local]);
      expect(s.status).toBe('READY');
      expect(s.copies.map((c) => c.status)).toEqual(['FAILED', 'READY']);
      expect(s.copies[0].error).toMatch(/cannot reach/);
      expect(await app.runtime.db.alert.count({ where: { environmentId: env.id, type: 'COPY_FAILED' } })).toBe(alertsBefore + 1);
      // Its health is known from use, as a test would have found it.
      const d = await app.runtime.db.destination.findUniqueOrThrow({ where: { id: raw(remote) } });
      expect(d).toMatchObject({ status: 'UNREACHABLE' });
      expect(d.lastError).toMatch(/Nothing answers at the endpoint/);
      expect(await app.runtime.db.alert.count({ where: { organizationId: orgId, type: 'DESTINATION_UNREACHABLE' } })).toBe(1);
    } finally {
      await reachable(remote, true);
    }
  });

  it('PAUSE_SCHEDULE: the snapshot must reach every destination, so one down makes it FAILED and leaves nothing behind', async () => {
    await app.runtime.db.environmentSettings.update({ where: { environmentId: env.id }, data: { failurePolicy: 'PAUSE_SCHEDULE' } });
    await reachable(remote, false);
    try {
      const password = await repositoryPassword(app, env.destinationId);
      const before = (JSON.parse(await restic(env.repositoryPath, password, 'snapshots', '--json')) as unknown[]).length;
      const { operationId, snapshotId } = await startSnapshot(app, key, env.id, { label: 'strict' });
      const states = await follow(app, key, operationId);
      expect(states.at(-1)).toMatchObject({ status: 'FAILED' });
      expect(states.at(-1)?.error).toMatch(/PAUSE_SCHEDULE/);
      const s = await copies(snapshotId, [remote, local]);
      expect(s.status).toBe('FAILED');
      expect(s.copies.map((c) => c.status)).toEqual(['FAILED', 'FAILED']);
      expect((JSON.parse(await restic(env.repositoryPath, password, 'snapshots', '--json')) as unknown[]).length).toBe(before);
      expect(await app.runtime.db.alert.count({ where: { environmentId: env.id, type: 'SNAPSHOT_FAILED', operationId: raw(operationId) } })).toBe(1);
    } finally {
      await reachable(remote, true);
      await app.runtime.db.environmentSettings.update({ where: { environmentId: env.id }, data: { failurePolicy: 'ALERT_ONLY' } });
    }
  });

  it('RETRY: the snapshot is READY and the failed copy is tried again later, by a copy operation', async () => {
    await app.runtime.db.environmentSettings.update({ where: { environmentId: env.id }, data: { failurePolicy: 'RETRY', retryBackoffSeconds: 6 } });
    await reachable(remote, false);
    let snapshotId: string;
    try {
      ({ snapshotId } = await takeSnapshot(app, key, env.id, { label: 'retried' }));
      expect((await copies(snapshotId, [remote, local])).copies.map((c) => c.status)).toEqual(['FAILED', 'READY']);
    } finally {
      await reachable(remote, true);
      await app.runtime.db.environmentSettings.update({ where: { environmentId: env.id }, data: { failurePolicy: 'ALERT_ONLY' } });
    }
    const op = await app.runtime.db.operation.findFirstOrThrow({ where: { snapshotId: raw(snapshotId), type: 'COPY_SNAPSHOT' } });
    const states = await follow(app, key, gid('Operation', op.id));
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect((await copies(snapshotId, [remote, local])).copies.map((c) => c.status)).toEqual(['READY', 'READY']);
    expect(await app.runtime.db.destination.findUniqueOrThrow({ where: { id: raw(remote) } })).toMatchObject({ status: 'HEALTHY', lastError: null });
  });
});

describe('a destination failing mid-upload', () => {
  it('the capture starts again, with a fresh dump, on the next destination', async () => {
    const s3b = await startS3rver({ buckets: ['refusing'] });
    // Every pack upload is refused; everything else (config, keys, locks, listings) works.
    const proxy = await startFlakyProxy({ target: s3b.endpoint, every: 1, failures: [{ status: 503, code: 'SlowDown' }], match: (r) => r.method === 'PUT' && r.url.includes('/data/') });
    try {
      const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 100 });
      const res = await app.gql(CreateDestinationDocument, { input: { name: 'refusing', provider: 'CUSTOM', endpoint: proxy.endpoint, bucket: 'refusing', ...S3RVER_CREDENTIALS } }, { key });
      if (res.data?.createDestination.__typename !== 'DestinationPayload') throw new Error(JSON.stringify(res));
      const refusing = res.data.createDestination.destination.id;
      const local = gid('Destination', env.destinationId);
      await setDestinations(env, [refusing, local]);
      const dbBefore = await databaseDigest(env.databaseUrl);
      const { snapshotId } = await takeSnapshot(app, key, env.id);
      expect(proxy.failed.length).toBeGreaterThan(0);
      const s = await copies(snapshotId, [refusing, local]);
      expect(s.status).toBe('READY');
      expect(s.copies.map((c) => c.status)).toEqual(['FAILED', 'READY']);
      expect(s.copies[0].error).toMatch(/SlowDown|503/);
      // The local copy is whole: restic reads the dump back.
      const password = await repositoryPassword(app, env.destinationId);
      expect(await restic(env.repositoryPath, password, 'check', '--read-data')).toMatch(/no errors were found/);
      await sql(env.databaseUrl, "UPDATE customers SET name = 'x'");
      const { operationId } = await startRestore(app, key, { snapshotId, createSafetySnapshot: false, includes: ['DB'] });
      expect((await follow(app, key, operationId)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
      expect(await databaseDigest(env.databaseUrl)).toEqual(dbBefore);
    } finally {
      await proxy.stop();
      await s3b.stop();
    }
  });
});

describe('copySnapshot', () => {
  it('adds a copy to another destination later, sending only what it lacks', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 2000 });
    await fs.writeFile(path.join(env.filesPath, 'large.bin'), randomBytes(6 * 1024 * 1024));
    const extra = await s3Destination('later');
    const copy = async (snapshotId: string) => {
      const res = await app.gql(CopySnapshotDocument, { input: { snapshotId, destinationId: extra, idempotencyKey: `copy-${snapshotId}` } }, { key });
      if (res.data?.copySnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(res));
      const states = await follow(app, key, res.data.copySnapshot.operation.id);
      expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
      expect(res.data.copySnapshot.operation.type).toBe('COPY_SNAPSHOT');
      expect(res.data.copySnapshot.snapshot.id).toBe(snapshotId);
      const c = (await copies(snapshotId)).copies.find((x) => x.destination.id === extra)!;
      expect(c.status).toBe('READY');
      return BigInt(c.addedBytes);
    };
    const first = await takeSnapshot(app, key, env.id);
    const firstBytes = await copy(first.snapshotId);
    await sql(env.databaseUrl, "INSERT INTO customers (name, email) VALUES ('one more', 'more@example.com')");
    const second = await takeSnapshot(app, key, env.id);
    const secondBytes = await copy(second.snapshotId);
    expect(firstBytes).toBeGreaterThan(6_000_000n);
    expect(secondBytes).toBeLessThan(firstBytes / 4n);

    const again = await app.gql(CopySnapshotDocument, { input: { snapshotId: first.snapshotId, destinationId: extra } }, { key });
    expect(again.data?.copySnapshot).toMatchObject({ __typename: 'ConflictError', code: 'COPY_EXISTS' });
    // The same idempotency key answers with the first operation, even now that the copy exists.
    const replay = await app.gql(CopySnapshotDocument, { input: { snapshotId: first.snapshotId, destinationId: extra, idempotencyKey: `copy-${first.snapshotId}` } }, { key });
    expect(replay.data?.copySnapshot).toMatchObject({ __typename: 'SnapshotOperationPayload', snapshot: { id: first.snapshotId }, operation: { type: 'COPY_SNAPSHOT', status: 'SUCCEEDED' } });
    const reused = await app.gql(CopySnapshotDocument, { input: { snapshotId: second.snapshotId, destinationId: extra, idempotencyKey: `copy-${first.snapshotId}` } }, { key });
    expect(reused.data?.copySnapshot).toMatchObject({ __typename: 'ConflictError', code: 'IDEMPOTENCY_KEY_REUSED' });

    // Both copies of the second snapshot verify, with every data blob read.
    const v = await app.gql(VerifySnapshotDocument, { input: { snapshotId: second.snapshotId, readData: true } }, { key });
    if (v.data?.verifySnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(v));
    const states = await follow(app, key, v.data.verifySnapshot.operation.id);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    const msg = (await app.gql(OperationMessageDocument, { id: v.data.verifySnapshot.operation.id }, { key })).data?.operation?.message ?? '';
    expect(msg.split('\n')).toHaveLength(2);
    expect(msg).toMatch(/later: ok \(\d+ trees, \d+ data blobs, \d+ bytes read\)/);
  });
});

describe('a copy cancelled while queued', () => {
  it('leaves no copy row behind, and another copy can be asked for', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 20 });
    const extra = await s3Destination('cancelled');
    const { snapshotId } = await takeSnapshot(app, key, env.id, { includes: ['DB'] });
    const askCopy = async () => {
      const res = await app.gql(CopySnapshotDocument, { input: { snapshotId, destinationId: extra } }, { key });
      if (res.data?.copySnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(res));
      return res.data.copySnapshot.operation.id;
    };
    // The environment's queue is held by a snapshot whose pg_dump waits on a table lock.
    const lock = new pg.Client({ connectionString: env.databaseUrl });
    await lock.connect();
    await lock.query('BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
    let again: string;
    let blocker: { operationId: string };
    try {
      blocker = await startSnapshot(app, key, env.id, { includes: ['DB'] });
      const queued = await askCopy();
      const cancelled = await app.gql(CancelOperationDocument, { input: { id: queued } }, { key });
      expect(cancelled.data?.cancelOperation).toMatchObject({ operation: { status: 'CANCELLED' } });
      expect(await app.runtime.db.snapshotCopy.count({ where: { snapshotId: raw(snapshotId), destinationId: raw(extra) } })).toBe(0);
      again = await askCopy();
    } finally {
      await lock.query('ROLLBACK');
      await lock.end();
    }
    expect((await follow(app, key, again)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    expect((await follow(app, key, blocker.operationId)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    expect((await copies(snapshotId)).copies.find((c) => c.destination.id === extra)).toMatchObject({ status: 'READY' });
  });
});

describe('verifySnapshot', () => {
  it('passes an intact snapshot and, reading the data, finds a damaged one: FAILED, the copy and snapshot DAMAGED, alerts', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 300 });
    const { snapshotId } = await takeSnapshot(app, key, env.id);
    const verify = async (readData: boolean) => {
      const res = await app.gql(VerifySnapshotDocument, { input: { snapshotId, readData } }, { key });
      if (res.data?.verifySnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(res));
      return follow(app, key, res.data.verifySnapshot.operation.id);
    };
    const ok = await verify(true);
    expect(ok.at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    expect(ok.some((s) => s.phase === 'verifying')).toBe(true);
    expect(BigInt(ok.at(-1)!.bytesTotal ?? 0)).toBeGreaterThan(0n);
    expect(ok.at(-1)!.bytesDone).toBe(ok.at(-1)!.bytesTotal);

    // Damage every pack in its last byte: headers stay readable, blob MACs fail.
    const dataDir = path.join(env.repositoryPath, 'data');
    for (const sub of await fs.readdir(dataDir)) {
      for (const f of await fs.readdir(path.join(dataDir, sub))) {
        const p = path.join(dataDir, sub, f);
        const buf = await fs.readFile(p);
        buf[Math.floor(buf.length / 3)] ^= 0xff;
        await fs.writeFile(p, buf);
      }
    }
    const bad = await verify(true);
    expect(bad.at(-1)).toMatchObject({ status: 'FAILED' });
    expect(bad.at(-1)?.error).toMatch(/problem/);
    const alerts = await app.runtime.db.alert.findMany({ where: { environmentId: env.id, type: 'VERIFICATION_FAILED' } });
    expect(alerts).toHaveLength(1);
    // The damaged packs left the index: the copy and the snapshot lost data and say so.
    const s = await copies(snapshotId);
    expect(s).toMatchObject({ status: 'DAMAGED' });
    expect(s.copies[0]).toMatchObject({ status: 'DAMAGED' });
    expect(s.copies[0].error).toMatch(/pack .*damaged/);
    expect(await app.runtime.db.alert.count({ where: { environmentId: env.id, type: 'PACK_DAMAGED' } })).toBe(1);
  });
});

describe('scheduled verification (verifyCron)', () => {
  it('plans one job per destination at the next cron time; the run verifies the newest snapshot of each environment there, then plans the next', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 50 });
    const other = await makeLiveEnvironment(app, { organizationId: orgId, rows: 50, projectId: env.projectId, destinationId: env.destinationId });
    await takeSnapshot(app, key, env.id, { includes: ['DB'] });
    const newest = await takeSnapshot(app, key, env.id, { includes: ['DB'] });
    const otherSnap = await takeSnapshot(app, key, other.id, { includes: ['DB'] });
    const id = gid('Destination', env.destinationId);
    const job = async () =>
      (await app.runtime.db.$queryRawUnsafe<{ task_identifier: string; run_at: Date }[]>('SELECT task_identifier, run_at FROM graphile_worker.jobs WHERE key = $1', `destination-verify:${env.destinationId}`))[0];

    const bad = await app.gql(UpdateDestinationDocument, { input: { id, verifyCron: 'every sunday' } }, { key });
    expect(bad.data?.updateDestination).toMatchObject({ __typename: 'ValidationError' });
    const set = await app.gql(UpdateDestinationDocument, { input: { id, verifyCron: '0 3 * * 0' } }, { key });
    expect(set.data?.updateDestination).toMatchObject({ destination: { verifyCron: '0 3 * * 0' } });
    const planned = await job();
    expect(planned.task_identifier).toBe('destination_verify');
    expect(planned.run_at.getUTCDay()).toBe(0);
    expect([planned.run_at.getUTCHours(), planned.run_at.getUTCMinutes()]).toEqual([3, 0]);
    expect(planned.run_at.getTime()).toBeGreaterThan(Date.now());

    // What the job does when its time comes.
    const ops = await runDestinationVerify(app.runtime.deps, env.destinationId);
    expect(ops).toHaveLength(2);
    const verified = await app.runtime.db.operation.findMany({ where: { id: { in: ops } } });
    expect(verified.map((o) => o.snapshotId).sort()).toEqual([raw(newest.snapshotId), raw(otherSnap.snapshotId)].sort());
    for (const opId of ops) expect((await follow(app, key, gid('Operation', opId))).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    expect((await job()).run_at.getTime()).toBe(planned.run_at.getTime());

    const cleared = await app.gql(UpdateDestinationDocument, { input: { id, verifyCron: '' } }, { key });
    expect(cleared.data?.updateDestination).toMatchObject({ destination: { verifyCron: null } });
    expect(await job()).toBeUndefined();
  });
});
