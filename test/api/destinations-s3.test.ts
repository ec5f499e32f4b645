/**
 * S3 destinations end to end, against s3rver: the README's disaster recovery followed word for
 * word with the stock restic (only the bucket, its keys and the revealed password), and a whole
 * snapshot and restore through a proxy that fails every third request.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateDestinationDocument,
  DeleteSnapshotDocument,
  RevealRepositoryPasswordDocument,
  SetEnvironmentDestinationsDocument,
  SnapshotCopiesDocument,
  VerifySnapshotDocument,
  type CreateDestinationInput,
} from '../generated/graphql.ts';
import { S3Backend } from '../../src/destinations/s3.ts';
import type { TestApp } from '../harness/app.ts';
import { createScratchDatabase } from '../harness/database.ts';
import { gid } from '../harness/factories.ts';
import { startFlakyProxy, type FlakyProxy } from '../harness/flaky-proxy.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { S3RVER_CREDENTIALS, startS3rver, type StartedS3rver } from '../harness/s3rver.ts';
import { follow, startRestore, startWorkerSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';
import { requireTool } from '../harness/prerequisites.ts';

const exec = promisify(execFile);
await requireTool('restic', ['version'], 'apt-get install restic');

let app: TestApp;
let key: string;
let orgId: string;
let work: string;

beforeAll(async () => {
  ({ app, key, orgId } = await startWorkerSuite());
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-dest-s3-'));
});
afterAll(async () => {
  await app?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

async function createDestination(input: CreateDestinationInput): Promise<string> {
  const res = await app.gql(CreateDestinationDocument, { input }, { key });
  if (res.data?.createDestination.__typename !== 'DestinationPayload') throw new Error(JSON.stringify(res));
  return res.data.createDestination.destination.id;
}

async function useOnly(env: LiveEnvironment, destinationId: string) {
  const res = await app.gql(SetEnvironmentDestinationsDocument, { input: { environmentId: gid('Environment', env.id), destinationIds: [destinationId] } }, { key });
  expect(res.data?.setEnvironmentDestinations.__typename).toBe('EnvironmentDestinationsPayload');
}

describe('disaster recovery as the README tells it', () => {
  let s3: StartedS3rver;
  beforeAll(async () => {
    s3 = await startS3rver({ buckets: ['acme-backups'], tls: true });
  });
  afterAll(() => s3?.stop());

  it('with only the bucket and the revealed password, restic lists and restores every snapshot', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 300 });
    const destination = await createDestination({
      name: 'offsite',
      provider: 'CUSTOM',
      endpoint: s3.endpoint,
      bucket: 'acme-backups',
      prefix: 'backplane/shop',
      caCertificate: s3.ca,
      ...S3RVER_CREDENTIALS,
    });
    await useOnly(env, destination);

    const states: { db: Record<string, string>; files: Record<string, string>; id: string }[] = [];
    for (const round of [1, 2]) {
      const { snapshotId } = await takeSnapshot(app, key, env.id, { label: `round ${round}` });
      states.push({ db: await databaseDigest(env.databaseUrl), files: await filesDigest(env.filesPath), id: snapshotId });
      await sql(env.databaseUrl, `UPDATE customers SET name = 'round ${round}' WHERE id % 3 = 0`);
      await fs.writeFile(path.join(env.filesPath, `round-${round}.txt`), `after round ${round}\n`);
    }

    // Backplane and its catalog are gone; what is left: the bucket, its keys, the password.
    const res = await app.gql(RevealRepositoryPasswordDocument, { input: { id: destination } }, { key });
    const revealed = res.data?.revealRepositoryPassword;
    if (revealed?.__typename !== 'RepositoryPasswordPayload') throw new Error(JSON.stringify(res));
    expect(revealed.repository).toBe(`s3:${s3.endpoint}/acme-backups/backplane/shop`);
    const caFile = path.join(work, 'ca.pem');
    await fs.writeFile(caFile, s3.ca!);
    const env2 = { ...process.env, AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, RESTIC_PASSWORD: revealed.password };
    const restic = async (...args: string[]) =>
      (await exec('restic', ['-r', revealed.repository, '--cacert', caFile, '--no-cache', ...args], { env: env2, maxBuffer: 64 << 20 })).stdout;

    // README step 2: list.
    const listed = JSON.parse(await restic('snapshots', '--json')) as { id: string; tags: string[]; time: string }[];
    expect(listed).toHaveLength(2);
    expect(listed.every((s) => s.tags.includes('backplane') && s.tags.includes(`env:${env.id}`))).toBe(true);

    // README step 3: restore each, then load the dump into an empty database.
    for (const [i, sn] of listed.entries()) {
      const target = path.join(work, `restore-${i}`);
      await restic('restore', sn.id, '--target', target);
      expect(await filesDigest(path.join(target, 'files'))).toEqual(states[i].files);
      const dumps = await fs.readdir(path.join(target, 'db'));
      expect(dumps).toEqual([`${new URL(env.databaseUrl).pathname.slice(1)}.dump`]);
      const fresh = await createScratchDatabase('dr');
      await exec('pg_restore', ['--no-owner', '-d', fresh, path.join(target, 'db', dumps[0])]);
      expect(await databaseDigest(fresh)).toEqual(states[i].db);
    }
    expect(await restic('check', '--read-data')).toMatch(/no errors were found/);
  });
});

describe('S3 through a server that fails some requests', () => {
  let s3: StartedS3rver;
  let proxy: FlakyProxy;
  beforeAll(async () => {
    s3 = await startS3rver({ buckets: ['flaky'] });
    // Every third request fails: dropped, 500, 503, answered-but-lost, cut short, in turn.
    proxy = await startFlakyProxy({ target: s3.endpoint, every: 3 });
  });
  afterAll(async () => {
    await proxy?.stop();
    await s3?.stop();
  });

  it('a whole snapshot (multipart packs) and restore succeed; nothing is lost or duplicated', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 1000 });
    // Incompressible and over the 8 MiB multipart threshold once packed.
    await fs.writeFile(path.join(env.filesPath, 'large.bin'), randomBytes(20 * 1024 * 1024));
    const destination = await createDestination({ name: 'flaky', provider: 'CUSTOM', endpoint: proxy.endpoint, bucket: 'flaky', prefix: 'repo', ...S3RVER_CREDENTIALS });
    await useOnly(env, destination);
    const dbBefore = await databaseDigest(env.databaseUrl);
    const filesBefore = await filesDigest(env.filesPath);

    const { snapshotId } = await takeSnapshot(app, key, env.id);
    expect(proxy.failed.length).toBeGreaterThan(5);
    expect(proxy.requests.some((r) => r.method === 'POST' && r.url.includes('uploads'))).toBe(true);
    expect(proxy.requests.some((r) => r.method === 'PUT' && r.url.includes('partNumber='))).toBe(true);
    const copy = (await app.gql(SnapshotCopiesDocument, { id: snapshotId }, { key })).data?.snapshot?.copies[0];
    expect(copy).toMatchObject({ status: 'READY' });

    // What is in the bucket, read without the proxy: one snapshot, every pack whole and indexed once.
    const objects = await listObjects(s3.directory, 'flaky', 'repo');
    expect(objects.filter((k) => k.startsWith('snapshots/'))).toHaveLength(1);
    const v = await app.gql(VerifySnapshotDocument, { input: { snapshotId, readData: true } }, { key });
    if (v.data?.verifySnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(v));
    expect((await follow(app, key, v.data.verifySnapshot.operation.id)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    // Read-only over plain HTTP (no lock: restic's uploads would need TLS with s3rver).
    const { stdout } = await exec('restic', ['-r', `s3:${s3.endpoint}/flaky/repo`, '--no-cache', '--no-lock', 'check', '--read-data'], {
      env: { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', RESTIC_PASSWORD: await password(destination) },
    });
    expect(stdout).toMatch(/no errors were found/);

    await sql(env.databaseUrl, "UPDATE customers SET name = 'after'");
    await fs.rm(path.join(env.filesPath, 'large.bin'));
    const { operationId } = await startRestore(app, key, { snapshotId, createSafetySnapshot: false });
    const states = await follow(app, key, operationId);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect(await databaseDigest(env.databaseUrl)).toEqual(dbBefore);
    expect(await filesDigest(env.filesPath)).toEqual(filesBefore);
  });
});

describe('S3 listings past 1,000 keys', () => {
  let s3: StartedS3rver;
  let proxy: FlakyProxy;
  beforeAll(async () => {
    s3 = await startS3rver({ buckets: ['many'] });
    // Only listings fail here (every other page request): the paging is what is under test.
    proxy = await startFlakyProxy({ target: s3.endpoint, every: 2, match: (r) => r.method === 'GET' && r.url.includes('list-type=2') });
  });
  afterAll(async () => {
    await proxy?.stop();
    await s3?.stop();
  });

  it('the delete job prunes a repository of 1,100+ packs through a flaky server: every leftover pack found and removed, the rest intact', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 100 });
    const destination = await createDestination({ name: 'many', provider: 'CUSTOM', endpoint: proxy.endpoint, bucket: 'many', prefix: 'repo', ...S3RVER_CREDENTIALS });
    await useOnly(env, destination);
    const first = await takeSnapshot(app, key, env.id);
    await fs.writeFile(path.join(env.filesPath, 'second.txt'), 'only in the second snapshot\n');
    const second = await takeSnapshot(app, key, env.id);
    const filesSecond = await filesDigest(env.filesPath);

    // Leftovers of interrupted uploads: packs no index names, enough to need two listing pages.
    const direct = new S3Backend({ endpoint: s3.endpoint, region: 'us-east-1', bucket: 'many', prefix: 'repo', forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
    const junk = Array.from({ length: 1100 }, () => randomBytes(32).toString('hex'));
    try {
      let next = 0;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < junk.length) await direct.save({ type: 'data', name: junk[next++] }, randomBytes(64));
      }));
    } finally {
      await direct.close();
    }
    const packsBefore = (await listObjects(s3.directory, 'many', 'repo')).filter((k) => k.startsWith('data/'));
    expect(packsBefore.length).toBeGreaterThan(1100);

    const del = await app.gql(DeleteSnapshotDocument, { input: { id: first.snapshotId } }, { key });
    if (del.data?.deleteSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(del));
    const states = await follow(app, key, del.data.deleteSnapshot.operation.id);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    const packsAfter = new Set((await listObjects(s3.directory, 'many', 'repo')).filter((k) => k.startsWith('data/')).map((k) => k.split('/').at(-1)));
    expect(junk.filter((j) => packsAfter.has(j))).toEqual([]);
    expect(proxy.requests.filter((r) => r.method === 'GET' && r.url.includes('continuation-token')).length).toBeGreaterThan(0);
    expect(proxy.failed.length).toBeGreaterThan(0);

    await fs.rm(path.join(env.filesPath, 'second.txt'));
    const { operationId } = await startRestore(app, key, { snapshotId: second.snapshotId, createSafetySnapshot: false, includes: ['FILES'] });
    expect((await follow(app, key, operationId)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    expect(await filesDigest(env.filesPath)).toEqual(filesSecond);
  }, 180_000);
});

async function password(destinationGid: string): Promise<string> {
  const res = await app.gql(RevealRepositoryPasswordDocument, { input: { id: destinationGid } }, { key });
  if (res.data?.revealRepositoryPassword.__typename !== 'RepositoryPasswordPayload') throw new Error(JSON.stringify(res));
  return res.data.revealRepositoryPassword.password;
}

/** Keys under a prefix as s3rver stores them on disk (`<key>._S3rver_object`). */
async function listObjects(directory: string, bucket: string, prefix: string): Promise<string[]> {
  const root = path.join(directory, bucket, prefix);
  const out: string[] = [];
  const visit = async (rel: string) => {
    for (const e of await fs.readdir(path.join(root, rel), { withFileTypes: true })) {
      const p = path.posix.join(rel, e.name);
      if (e.isDirectory()) await visit(p);
      else if (p.endsWith('._S3rver_object')) out.push(p.slice(0, -'._S3rver_object'.length));
    }
  };
  await visit('');
  return out;
}
