import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/destinations/local.ts';
import { findSnapshot, repairPacks, Repository, resolvePath } from '../../src/engine/api.ts';
import { CopySnapshotDocument, DeleteSnapshotDocument, RestoreLogDocument, RestoreSnapshotDocument, SnapshotDocument, SnapshotDownloadDocument, VerifySnapshotDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, repositoryPassword, type LiveEnvironment } from '../harness/live-environment.ts';
import { gid, makeApiKey } from '../harness/factories.ts';
import { until } from '../harness/process.ts';
import { follow, restic, startRestore, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let orgId: string;

beforeAll(async () => {
  ({ app, key, orgId } = await startSnapshotSuite());
});
afterAll(() => app?.stop());

const PHOTO = '/files/uploads/photo ü.jpg';
const dbId = (globalId: string) => decodeGlobalID(globalId).id;

async function repoSnapshotOf(snapshotId: string): Promise<string> {
  const copy = await app.runtime.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId } });
  return copy.repoSnapshotId!;
}

/** Flips a byte inside the stored blob of a file of a snapshot: its MAC fails, the rest of its pack is fine. */
async function corruptFileBlob(env: LiveEnvironment, snapshotId: string, filePath: string): Promise<string> {
  const repo = await Repository.open(new LocalBackend(env.repositoryPath), await repositoryPassword(app, env.destinationId));
  try {
    const node = await resolvePath(repo, await findSnapshot(repo, await repoSnapshotOf(snapshotId)), filePath);
    const at = repo.lookupBlob('data', node.content![0])!;
    const file = path.join(env.repositoryPath, 'data', at.packId.slice(0, 2), at.packId);
    const buf = await fs.readFile(file);
    buf[at.offset + 20] ^= 0xff;
    await fs.writeFile(file, buf);
    return at.packId;
  } finally {
    await repo.close();
  }
}

async function snapshotStatus(globalId: string): Promise<string | undefined> {
  return (await app.gql(SnapshotDocument, { id: globalId }, { key })).data?.snapshot?.status;
}

describe('a restore that meets a damaged pack', () => {
  it('fails with the target unchanged, heals the repository, and leaves a safety snapshot stock restic restores', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, name: 'damaged-restore' });
    const { snapshotId } = await takeSnapshot(app, key, env.id, { label: 'before damage' });
    const pack = await corruptFileBlob(env, dbId(snapshotId), PHOTO);
    const password = await repositoryPassword(app, env.destinationId);
    await expect(restic(env.repositoryPath, password, 'check', '--read-data')).rejects.toThrow();
    const dbBefore = await databaseDigest(env.databaseUrl);
    const filesBefore = await filesDigest(env.filesPath);

    const { operationId, restoreLogId } = await startRestore(app, key, { snapshotId });
    const states = await follow(app, key, operationId);
    expect(states.at(-1)).toMatchObject({ status: 'FAILED' });
    expect(states.at(-1)?.error).toMatch(/damaged pack.*safety snapshot used damaged data and was taken again/);
    expect(await databaseDigest(env.databaseUrl)).toEqual(dbBefore);
    expect(await filesDigest(env.filesPath)).toEqual(filesBefore);

    // Two safety snapshots: the first deduplicated against the damaged blob, the second was taken after the heal.
    const safety = await app.runtime.db.snapshot.findMany({ where: { environmentId: env.id, kind: 'SAFETY' }, orderBy: { createdAt: 'asc' } });
    expect(safety).toHaveLength(2);
    const log = (await app.gql(RestoreLogDocument, { id: restoreLogId }, { key })).data?.node as { status: string; safetySnapshot: { id: string; kind: string; status: string } };
    expect(log).toMatchObject({ status: 'FAILED', safetySnapshot: { kind: 'SAFETY', status: 'READY' } });
    expect(dbId(log.safetySnapshot.id)).toBe(safety[1].id);

    const [damaged] = await app.runtime.db.alert.findMany({ where: { environmentId: env.id, type: 'PACK_DAMAGED' } });
    expect(damaged.message).toContain(pack.slice(0, 12));
    expect(damaged.message).toContain(dbId(snapshotId));
    expect(damaged.message).toContain(safety[0].id);
    expect(await app.runtime.db.alert.count({ where: { environmentId: env.id, type: 'RESTORE_FAILED' } })).toBe(1);

    // Stock restic: the repository is sound again, and the safety snapshot restores to the target as it is.
    await restic(env.repositoryPath, password, 'check', '--read-data');
    const out = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-safety-'));
    await restic(env.repositoryPath, password, 'restore', await repoSnapshotOf(safety[1].id), '--target', out);
    expect(await filesDigest(path.join(out, 'files'))).toEqual(filesBefore);
    expect((await fs.readdir(path.join(out, 'db'))).some((n) => n.endsWith('.dump'))).toBe(true);

    // The second safety snapshot wrote the lost blob again (same file): the older snapshots are whole, READY, and restore.
    expect(await snapshotStatus(snapshotId)).toBe('READY');
    const again = await startRestore(app, key, { snapshotId, createSafetySnapshot: false });
    expect((await follow(app, key, again.operationId)).at(-1), 'restore after the heal').toMatchObject({ status: 'SUCCEEDED' });
  });

  it('also reads the safety snapshot’s own packs: damage the failed read never reached is healed and the safety snapshot taken again', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, name: 'damaged-safety', rows: 50 });
    const { snapshotId } = await takeSnapshot(app, key, env.id, { includes: ['FILES'] });
    await fs.writeFile(path.join(env.filesPath, 'uploads', 'photo ü.jpg'), randomBytes(300_000));
    // A later snapshot stores the new photo in a pack of its own; the safety snapshot will deduplicate against it.
    const later = await takeSnapshot(app, key, env.id, { includes: ['FILES'] });
    await corruptFileBlob(env, dbId(snapshotId), PHOTO);
    const laterPack = await corruptFileBlob(env, dbId(later.snapshotId), PHOTO);
    const filesBefore = await filesDigest(env.filesPath);

    const { operationId, restoreLogId } = await startRestore(app, key, { snapshotId });
    const states = await follow(app, key, operationId);
    expect(states.at(-1)?.error).toMatch(/safety snapshot used damaged data and was taken again/);
    expect(await filesDigest(env.filesPath)).toEqual(filesBefore);
    const log = (await app.gql(RestoreLogDocument, { id: restoreLogId }, { key })).data?.node as { safetySnapshot: { id: string; status: string } };
    expect(log.safetySnapshot.status).toBe('READY');
    const [alert] = await app.runtime.db.alert.findMany({ where: { environmentId: env.id, type: 'PACK_DAMAGED' } });
    expect(alert.message).toContain(laterPack.slice(0, 12));

    const password = await repositoryPassword(app, env.destinationId);
    const out = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-safety-'));
    await restic(env.repositoryPath, password, 'restore', await repoSnapshotOf(dbId(log.safetySnapshot.id)), '--target', out);
    expect(await filesDigest(path.join(out, 'files'))).toEqual(filesBefore);
    // The old photo is gone for good; the new one was written again, so the later snapshot is whole.
    expect(await snapshotStatus(snapshotId)).toBe('DAMAGED');
    expect(await snapshotStatus(later.snapshotId)).toBe('READY');
  });

  it('a heal that stopped after rewriting the index (or repo repair by hand): the next failed read brings the catalog up to date', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, name: 'half-healed', rows: 20 });
    const { snapshotId } = await takeSnapshot(app, key, env.id, { includes: ['FILES'] });
    await corruptFileBlob(env, dbId(snapshotId), PHOTO);
    await fs.writeFile(path.join(env.filesPath, 'uploads', 'photo ü.jpg'), randomBytes(1000));
    const repo = await Repository.open(new LocalBackend(env.repositoryPath), await repositoryPassword(app, env.destinationId));
    try {
      expect((await repairPacks(repo)).damagedSnapshots).toEqual([await repoSnapshotOf(dbId(snapshotId))]);
    } finally {
      await repo.close();
    }
    expect(await snapshotStatus(snapshotId)).toBe('READY');

    const { operationId } = await startRestore(app, key, { snapshotId, createSafetySnapshot: false });
    expect((await follow(app, key, operationId)).at(-1)).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/not in the index/) });
    expect(await snapshotStatus(snapshotId)).toBe('DAMAGED');
    const [alert] = await app.runtime.db.alert.findMany({ where: { environmentId: env.id, type: 'PACK_DAMAGED' } });
    expect(alert.message).toMatch(/blobs missing from the index/);
    expect(alert.message).toContain(dbId(snapshotId));
  });
});

describe('a download or a verification that meets a damaged pack', () => {
  it('a download fails, the heal marks the snapshot DAMAGED, then downloads, verifies and restores get SNAPSHOT_DAMAGED', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, name: 'damaged-download', rows: 50 });
    const { snapshotId } = await takeSnapshot(app, key, env.id);
    const pack = await corruptFileBlob(env, dbId(snapshotId), PHOTO);
    // The file changes afterwards: no later backup brings the lost blob back.
    await fs.writeFile(path.join(env.filesPath, 'uploads', 'photo ü.jpg'), randomBytes(1000));

    const dl = (await app.gql(SnapshotDownloadDocument, { id: snapshotId }, { key })).data!.snapshot!.download as { __typename: string; url: string };
    expect(dl.__typename).toBe('Download');
    await expect(fetch(dl.url).then((r) => r.arrayBuffer())).rejects.toThrow();
    // The heal job raises the alert last.
    const [alert] = await until(() => app.runtime.db.alert.findMany({ where: { environmentId: env.id, type: 'PACK_DAMAGED' } }), (a) => a.length > 0, 'the heal job’s PACK_DAMAGED alert', 60_000);
    expect(await snapshotStatus(snapshotId)).toBe('DAMAGED');
    expect(alert.message).toContain(dbId(snapshotId));
    expect(alert.message).toContain(pack.slice(0, 12));
    const copy = await app.runtime.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: dbId(snapshotId) } });
    expect(copy.status).toBe('DAMAGED');

    const refused = await fetch(dl.url);
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ code: 'SNAPSHOT_DAMAGED' });
    expect((await app.gql(SnapshotDownloadDocument, { id: snapshotId }, { key })).data?.snapshot?.download).toMatchObject({ __typename: 'ConflictError', code: 'SNAPSHOT_DAMAGED' });
    expect((await app.gql(VerifySnapshotDocument, { input: { snapshotId, readData: true } }, { key })).data?.verifySnapshot).toMatchObject({ __typename: 'ConflictError', code: 'SNAPSHOT_DAMAGED' });
    expect((await app.gql(RestoreSnapshotDocument, { input: { snapshotId } }, { key })).data?.restoreSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'SNAPSHOT_DAMAGED' });

    // A new backup does not lean on the lost blob; deleting the damaged snapshot leaves a repository restic passes.
    const next = await takeSnapshot(app, key, env.id);
    expect(await snapshotStatus(next.snapshotId)).toBe('READY');
    const del = await app.gql(DeleteSnapshotDocument, { input: { id: snapshotId } }, { key });
    if (del.data?.deleteSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(del));
    expect((await follow(app, key, del.data.deleteSnapshot.operation.id)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    await restic(env.repositoryPath, await repositoryPassword(app, env.destinationId), 'check', '--read-data');
  });

  it('a verification reading the data fails, drops the pack and marks every snapshot that used it DAMAGED', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, name: 'damaged-verify', rows: 50 });
    const first = await takeSnapshot(app, key, env.id, { includes: ['FILES'] });
    const second = await takeSnapshot(app, key, env.id, { includes: ['FILES'] });
    await corruptFileBlob(env, dbId(first.snapshotId), PHOTO);
    const photo = path.join(env.filesPath, 'uploads', 'photo ü.jpg');
    const original = await fs.readFile(photo);
    await fs.writeFile(photo, randomBytes(1000));

    const res = await app.gql(VerifySnapshotDocument, { input: { snapshotId: second.snapshotId, readData: true } }, { key });
    if (res.data?.verifySnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(res));
    const states = await follow(app, key, res.data.verifySnapshot.operation.id);
    expect(states.at(-1)).toMatchObject({ status: 'FAILED' });
    // Both snapshots share the file, so both lost it.
    expect(await snapshotStatus(first.snapshotId)).toBe('DAMAGED');
    expect(await snapshotStatus(second.snapshotId)).toBe('DAMAGED');
    const [alert] = await app.runtime.db.alert.findMany({ where: { environmentId: env.id, type: 'PACK_DAMAGED' } });
    expect(alert.message).toContain(dbId(first.snapshotId));
    expect(alert.message).toContain(dbId(second.snapshotId));
    expect(await app.runtime.db.snapshotCopy.count({ where: { snapshotId: { in: [dbId(first.snapshotId), dbId(second.snapshotId)] }, status: 'DAMAGED' } })).toBe(2);

    // The index forgot the lost blob: once the file is back, the next snapshot stores it again and
    // the damaged snapshots are whole and READY again.
    await fs.writeFile(photo, original);
    await takeSnapshot(app, key, env.id, { includes: ['FILES'] });
    expect(await snapshotStatus(first.snapshotId)).toBe('READY');
    expect(await snapshotStatus(second.snapshotId)).toBe('READY');
    await restic(env.repositoryPath, await repositoryPassword(app, env.destinationId), 'check', '--read-data');
  });

  it('a copy whose source meets a damaged pack fails and heals the source: the snapshot is DAMAGED', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, name: 'damaged-copy', rows: 20 });
    const { snapshotId } = await takeSnapshot(app, key, env.id, { includes: ['FILES'] });
    await corruptFileBlob(env, dbId(snapshotId), PHOTO);
    await fs.writeFile(path.join(env.filesPath, 'uploads', 'photo ü.jpg'), randomBytes(1000));
    const elsewhere = await app.runtime.db.destination.create({
      data: { organizationId: orgId, name: 'copy target', provider: 'LOCAL', config: { path: path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'bp-copy-')), 'repository') } },
    });
    const admin = (await makeApiKey(app.runtime.db, orgId, { scopes: ['admin'] })).secret;

    const res = await app.gql(CopySnapshotDocument, { input: { snapshotId, destinationId: gid('Destination', elsewhere.id) } }, { key: admin });
    if (res.data?.copySnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(res));
    expect((await follow(app, key, res.data.copySnapshot.operation.id)).at(-1)).toMatchObject({ status: 'FAILED' });
    expect(await snapshotStatus(snapshotId)).toBe('DAMAGED');
    const source = await app.runtime.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: dbId(snapshotId), destinationId: env.destinationId } });
    expect(source.status).toBe('DAMAGED');
    const [alert] = await app.runtime.db.alert.findMany({ where: { environmentId: env.id, type: 'PACK_DAMAGED' } });
    expect(alert.message).toContain(dbId(snapshotId));
  });
});
