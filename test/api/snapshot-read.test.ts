import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateSnapshotDocument,
  EnvironmentSnapshotsDocument,
  ProjectSnapshotsDocument,
  RestoreSnapshotDocument,
  SnapshotDownloadDocument,
  WatchOperationDocument,
} from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { createScratchDatabase } from '../harness/database.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization } from '../harness/factories.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, type LiveEnvironment } from '../harness/live-environment.ts';
import { startSnapshot, takeSnapshot, startSnapshotSuite } from '../harness/snapshot-helpers.ts';

const exec = promisify(execFile);

let app: TestApp;
let key: string;
let orgId: string;
let env: LiveEnvironment;

beforeAll(async () => {
  ({ app, key, orgId, env } = await startSnapshotSuite());
});
afterAll(() => app?.stop());

describe('download', () => {
  it('streams a tar.zst that unpacks to the dump and the files; the dump restores to the same data', async () => {
    const { snapshotId } = await takeSnapshot(app, key, env.id);
    const res = await app.gql(SnapshotDownloadDocument, { id: snapshotId, ttlSeconds: 120 }, { key });
    const dl = downloadOf(res.data!.snapshot!.download);
    expect(dl.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/downloads\//);
    expect(new Date(dl.expiresAt).getTime()).toBeGreaterThan(Date.now() + 100_000);
    const body = await fetch(dl.url);
    expect(body.status).toBe(200);
    expect(body.headers.get('content-type')).toBe('application/zstd');

    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-dl-'));
    await fs.writeFile(path.join(dir, 'a.tar.zst'), Buffer.from(await body.arrayBuffer()));
    await exec('zstd', ['-d', '-q', path.join(dir, 'a.tar.zst'), '-o', path.join(dir, 'a.tar')]);
    await fs.mkdir(path.join(dir, 'out'));
    await exec('tar', ['-xf', path.join(dir, 'a.tar'), '-C', path.join(dir, 'out')]);
    expect(await filesDigest(path.join(dir, 'out', 'files'))).toEqual(await filesDigest(env.filesPath));
    const [dump] = await fs.readdir(path.join(dir, 'out', 'db'));
    const target = await createScratchDatabase('dl');
    await exec('pg_restore', ['--no-owner', '-d', target, path.join(dir, 'out', 'db', dump)]);
    expect(await databaseDigest(target)).toEqual(await databaseDigest(env.databaseUrl));

    const dbOnly = downloadOf((await app.gql(SnapshotDownloadDocument, { id: snapshotId, variant: 'DATABASE_ONLY' }, { key })).data!.snapshot!.download);
    const list = await listTar(dbOnly.url, dir);
    expect(list.every((n) => n.startsWith('db'))).toBe(true);
    expect(list.some((n) => n.endsWith('.dump'))).toBe(true);
  });

  it('names each variant\'s file after the environment, the snapshot time and the variant, whatever letters the name holds', async () => {
    const { db } = app.runtime.deps;
    const original = (await db.environment.findUniqueOrThrow({ where: { id: env.id } })).name;
    await db.environment.update({ where: { id: env.id }, data: { name: 'Магазин prod' } });
    try {
      const { snapshotId } = await takeSnapshot(app, key, env.id);
      const createdAt = (await db.snapshot.findUniqueOrThrow({ where: { id: decodeGlobalID(snapshotId).id } })).createdAt;
      const stamp = createdAt.toISOString().slice(0, 19).replace(/[-:]/g, '') + 'Z';
      const names: Record<string, string> = {};
      for (const [variant, suffix] of [['DATABASE_AND_FILES', 'full'], ['DATABASE_ONLY', 'db'], ['FILES_ONLY', 'files']] as const) {
        const dl = downloadOf((await app.gql(SnapshotDownloadDocument, { id: snapshotId, variant }, { key })).data!.snapshot!.download);
        const res = await fetch(dl.url);
        expect(res.status).toBe(200);
        const header = res.headers.get('content-disposition') ?? '';
        await res.arrayBuffer();
        const utf8 = /filename\*=UTF-8''([^;]+)/.exec(header)?.[1];
        expect(utf8 && decodeURIComponent(utf8), header).toBe(`Магазин-prod-${stamp}-${suffix}.tar.zst`);
        expect(/filename="([^"]+)"/.exec(header)?.[1]).toBe(`_______-prod-${stamp}-${suffix}.tar.zst`);
        names[variant] = utf8!;
      }
      expect(new Set(Object.values(names)).size).toBe(3);
    } finally {
      await db.environment.update({ where: { id: env.id }, data: { name: original } });
    }
  });

  it('an altered or expired link gets 403', async () => {
    const { snapshotId } = await takeSnapshot(app, key, env.id, { includes: ['DB'] });
    const dl = downloadOf((await app.gql(SnapshotDownloadDocument, { id: snapshotId }, { key })).data!.snapshot!.download);
    const [base, token] = dl.url.split('/downloads/');
    const [payload, sig] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), e: 4_000_000_000 })).toString('base64url');
    expect((await fetch(`${base}/downloads/${forged}.${sig}`)).status).toBe(403);
    expect((await fetch(`${base}/downloads/${payload}.${sig.slice(0, -2)}xx`)).status).toBe(403);
    const expiredPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), e: Math.floor(Date.now() / 1000) - 1 })).toString('base64url');
    const expired = `${expiredPayload}.${app.runtime.deps.secrets.sign('download', expiredPayload)}`;
    expect((await fetch(`${base}/downloads/${expired}`)).status).toBe(403);
    // A valid token with anything after its signature is not the token that was signed.
    for (const trailing of ['.extra', '.', '%00', '%20', '%ZZ']) expect((await fetch(`${base}/downloads/${token}${trailing}`)).status, trailing).toBe(403);
    expect((await fetch(dl.url)).status).toBe(200);
  });

  it('refuses a bad lifetime and a variant the snapshot does not hold, with typed errors', async () => {
    const { snapshotId } = await takeSnapshot(app, key, env.id, { includes: ['DB'] });
    const short = await app.gql(SnapshotDownloadDocument, { id: snapshotId, ttlSeconds: 5 }, { key });
    expect(short.data?.snapshot?.download).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['ttlSeconds'] }] });
    const files = await app.gql(SnapshotDownloadDocument, { id: snapshotId, variant: 'FILES_ONLY' }, { key });
    expect(files.data?.snapshot?.download).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['variant'] }] });
  });
});

function downloadOf(d: { __typename: string } & Record<string, unknown>): { url: string; expiresAt: string; sizeBytes: string } {
  if (d.__typename !== 'Download') throw new Error(JSON.stringify(d));
  return d as never;
}

async function listTar(url: string, dir: string): Promise<string[]> {
  const file = path.join(dir, `l${Date.now()}.tar.zst`);
  await fs.writeFile(file, Buffer.from(await (await fetch(url)).arrayBuffer()));
  const { stdout } = await exec('sh', ['-c', `zstd -d -q -c '${file}' | tar -t`]);
  return stdout.trim().split('\n');
}

describe('lists', () => {
  it('filters by kind, pinned, label and environment type; newest first; cursors stay right while snapshots arrive', async () => {
    const { db } = app.runtime;
    const e = await makeEnvironment(db, app.runtime.deps.secrets, { id: env.projectId, organizationId: orgId }, { name: 'listing' });
    const make = (label: string, extra: Record<string, unknown> = {}) =>
      db.snapshot.create({ data: { organizationId: orgId, projectId: env.projectId, environmentId: e.id, includes: ['DB'], status: 'READY', label, ...extra } });
    for (let i = 1; i <= 5; i++) await make(`s${i}`);
    await make('deploy 9', { kind: 'PRE_DEPLOY' });
    await make('pinned one', { pinned: true, pinLabel: 'keep' });

    const page1 = await app.gql(EnvironmentSnapshotsDocument, { id: gid('Environment', e.id), first: 3 }, { key });
    const conn = page1.data!.environment!.snapshots;
    expect(conn.totalCount).toBe(7);
    expect(conn.edges.map((x) => x.node.label)).toEqual(['pinned one', 'deploy 9', 's5']);
    await make('arrived later');
    const page2 = await app.gql(EnvironmentSnapshotsDocument, { id: gid('Environment', e.id), first: 3, after: conn.pageInfo.endCursor }, { key });
    expect(page2.data!.environment!.snapshots.edges.map((x) => x.node.label)).toEqual(['s4', 's3', 's2']);

    const kind = await app.gql(EnvironmentSnapshotsDocument, { id: gid('Environment', e.id), filter: { kinds: ['PRE_DEPLOY'] } }, { key });
    expect(kind.data!.environment!.snapshots.edges.map((x) => x.node.label)).toEqual(['deploy 9']);
    const pinned = await app.gql(EnvironmentSnapshotsDocument, { id: gid('Environment', e.id), filter: { pinned: true } }, { key });
    expect(pinned.data!.environment!.snapshots.totalCount).toBe(1);
    const label = await app.gql(EnvironmentSnapshotsDocument, { id: gid('Environment', e.id), filter: { labelContains: 'DEPLOY' } }, { key });
    expect(label.data!.environment!.snapshots.edges.map((x) => x.node.label)).toEqual(['deploy 9']);
    const range = await app.gql(EnvironmentSnapshotsDocument, { id: gid('Environment', e.id), filter: { createdAfter: new Date(Date.now() + 60_000).toISOString() } }, { key });
    expect(range.data!.environment!.snapshots.totalCount).toBe(0);

    const project = await app.gql(ProjectSnapshotsDocument, { id: gid('Project', env.projectId), filter: { environmentTypes: ['DEVELOPMENT'], labelContains: 'arrived' } }, { key });
    expect(project.data!.project!.snapshots.edges.map((x) => x.node.label)).toEqual(['arrived later']);
  });
});

describe('progress over SSE', () => {
  it('streams the operation from QUEUED or RUNNING to SUCCEEDED', async () => {
    const { operationId } = await startSnapshot(app, key, env.id, { includes: ['DB'] });
    const res = await fetch(app.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: print(WatchOperationDocument), variables: { id: operationId } }),
    });
    const text = await res.text();
    const states = text.split('\n').filter((l) => l.startsWith('data:') && l.length > 6).map((l) => JSON.parse(l.slice(5)).data?.operation?.status);
    expect(states.at(-1)).toBe('SUCCEEDED');
    expect(text).toContain('event: complete');
  });
});

describe('bad input: a typed error, and nothing changes', () => {
  it.each([
    ['includes empty', { includes: [] }, 'ValidationError', ['input', 'includes']],
    ['label too long', { label: 'x'.repeat(201) }, 'ValidationError', ['input', 'label']],
    ['metadata value too long', { metadata: { appVersion: 'v'.repeat(501) } }, 'ValidationError', ['input', 'metadata', 'appVersion']],
    ['kind SAFETY', { kind: 'SAFETY' }, 'ValidationError', ['input', 'kind']],
    ['empty idempotency key', { idempotencyKey: '' }, 'ValidationError', ['input', 'idempotencyKey']],
  ])('createSnapshot: %s', async (_n, extra, typename, pathExpected) => {
    const before = await app.runtime.db.snapshot.count();
    const res = await app.gql(CreateSnapshotDocument, { input: { environmentId: gid('Environment', env.id), ...(extra as object) } }, { key });
    const r = res.data?.createSnapshot as { __typename: string; fields?: { path: string[] }[] };
    expect(r.__typename).toBe(typename);
    expect(r.fields?.[0].path).toEqual(pathExpected);
    expect(await app.runtime.db.snapshot.count()).toBe(before);
  });

  it('unknown, foreign and malformed ids', async () => {
    const other = await makeOrganization(app.runtime.db);
    const foreign = await makeLiveEnvironment(app, { organizationId: other.id, rows: 5 });
    const before = await app.runtime.db.snapshot.count();
    const cases: [string, string, string][] = [
      [gid('Environment', 'nope'), 'NotFoundError', 'ENVIRONMENT_NOT_FOUND'],
      [gid('Environment', foreign.id), 'NotFoundError', 'ENVIRONMENT_NOT_FOUND'],
      [gid('Project', env.projectId), 'ValidationError', 'VALIDATION_FAILED'],
      ['garbage', 'ValidationError', 'VALIDATION_FAILED'],
    ];
    for (const [id, typename, code] of cases) {
      const res = await app.gql(CreateSnapshotDocument, { input: { environmentId: id } }, { key });
      expect(res.data?.createSnapshot, id).toMatchObject({ __typename: typename, code });
    }
    const restore = await app.gql(RestoreSnapshotDocument, { input: { snapshotId: gid('Snapshot', 'missing') } }, { key });
    expect(restore.data?.restoreSnapshot).toMatchObject({ __typename: 'NotFoundError', code: 'SNAPSHOT_NOT_FOUND' });
    expect(await app.runtime.db.snapshot.count()).toBe(before);
  });

  it('a read-only key cannot start work', async () => {
    const reader = (await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:read'] })).secret;
    const res = await app.gql(CreateSnapshotDocument, { input: { environmentId: gid('Environment', env.id) } }, { key: reader });
    expect(res.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  });
});
