import { afterAll, describe, expect, it } from 'vitest';
import { open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup, findSnapshot, forgetSnapshots, IntegrityError, prune, repairPacks, resolvePath, restore, type Repository } from '../../src/engine/api.ts';
import { cleanupTempDirs, describeTree, newRepo, restic, seededBytes, tempDir } from './helpers.ts';

afterAll(cleanupTempDirs);

/** Where the first data blob of a file in a snapshot is stored. */
async function blobOf(repo: Repository, snapshotId: string, path: string) {
  const node = await resolvePath(repo, await findSnapshot(repo, snapshotId), path);
  const id = node.content![0];
  return { id, ...repo.lookupBlob('data', id)! };
}

/** Flips one byte inside a stored blob: its MAC no longer matches. */
async function flipByte(repoDir: string, packId: string, at: number): Promise<void> {
  const file = join(repoDir, 'data', packId.slice(0, 2), packId);
  const fh = await open(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] ^= 0xff;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

describe('repairPacks', () => {
  it('drops a pack with one bad blob, salvages the rest, and a backup of the same data heals the snapshot', async () => {
    // One data pack per backup, so the bad blob shares its pack with good ones.
    const { repo, dir } = await newRepo({ packSize: 8 * 1024 * 1024 });
    const src = await tempDir();
    await writeFile(join(src, 'a.bin'), seededBytes('a', 300 * 1024));
    await writeFile(join(src, 'b.bin'), seededBytes('b', 200 * 1024));
    const sn = await backup(repo, { '/files': src });
    const bad = await blobOf(repo, sn.snapshotId, '/files/a.bin');
    await flipByte(dir, bad.packId, bad.offset + 20);
    await expect(restic(dir, ['check', '--read-data'])).rejects.toThrow();
    await expect(restore(repo, sn.snapshotId, await tempDir(), { path: '/files' })).rejects.toThrow(IntegrityError);

    const dry = await repairPacks(repo, { dryRun: true });
    expect(dry.damaged.map((d) => d.packId)).toEqual([bad.packId]);
    expect(dry.damagedSnapshots).toEqual([sn.snapshotId]);
    expect((await repo.listIds('data'))).toContain(bad.packId); // a dry run changes nothing

    const res = await repairPacks(repo);
    expect(res.damaged).toHaveLength(1);
    expect(res.damaged[0]).toMatchObject({ packId: bad.packId, lost: [{ type: 'data', id: bad.id }] });
    expect(res.damaged[0].salvaged).toBeGreaterThan(0);
    expect(res.damagedSnapshots).toEqual([sn.snapshotId]);
    expect(await repo.listIds('data')).not.toContain(bad.packId);
    expect(repo.lookupBlob('data', bad.id)).toBeUndefined();
    // Salvaged blobs stay readable: b.bin restores from its new pack.
    const partial = await tempDir();
    await restore(repo, sn.snapshotId, partial, { path: '/files/b.bin' });
    expect(await readFile(join(partial, 'b.bin'))).toEqual(await readFile(join(src, 'b.bin')));

    // The index no longer claims the blob, so the next backup stores it again and the old snapshot is whole.
    const again = await backup(repo, { '/files': src });
    expect(again.bytesAdded).toBeGreaterThan(0);
    await restic(dir, ['check', '--read-data']);
    const target = await tempDir();
    await restic(dir, ['restore', sn.snapshotId, '--target', target]);
    expect(await describeTree(join(target, 'files'))).toEqual(await describeTree(src));
    expect((await repairPacks(repo)).damaged).toEqual([]);
  });

  it('drops a truncated pack whole and names every snapshot that used it; forget and prune leave a clean repository', async () => {
    const { repo, dir } = await newRepo({ packSize: 8 * 1024 * 1024 });
    const one = await tempDir();
    const two = await tempDir();
    await writeFile(join(one, 'x.bin'), seededBytes('x', 300 * 1024));
    await writeFile(join(two, 'y.bin'), seededBytes('y', 300 * 1024));
    const s1 = await backup(repo, { '/files': one });
    const s2 = await backup(repo, { '/files': two });
    const pack = (await blobOf(repo, s1.snapshotId, '/files/x.bin')).packId;
    await truncate(join(dir, 'data', pack.slice(0, 2), pack), 100);

    // Only the packs a failed read touched need reading.
    const res = await repairPacks(repo, { packs: [pack] });
    expect(res.packsChecked).toBe(1);
    expect(res.damaged).toHaveLength(1);
    expect(res.damaged[0].salvaged).toBe(0);
    expect(res.damaged[0].lost.length).toBeGreaterThan(0);
    expect(res.damagedSnapshots).toEqual([s1.snapshotId]);
    await forgetSnapshots(repo, res.damagedSnapshots);
    await prune(repo);
    await restic(dir, ['check', '--read-data']);
    const target = await tempDir();
    await restic(dir, ['restore', s2.snapshotId, '--target', target]);
    expect(await describeTree(join(target, 'files'))).toEqual(await describeTree(two));
  });

  it('prune still works while snapshots whose trees were lost remain', async () => {
    const { repo, dir } = await newRepo({ packSize: 8 * 1024 * 1024 });
    const src = await tempDir();
    await writeFile(join(src, 'a.bin'), seededBytes('tree-a', 100 * 1024));
    const s1 = await backup(repo, { '/files': src }, { tags: ['one'] });
    const s2 = await backup(repo, { '/files': src }, { tags: ['two'] });
    const root = (await findSnapshot(repo, s1.snapshotId)).tree;
    const treePack = repo.lookupBlob('tree', root)!.packId;
    await truncate(join(dir, 'data', treePack.slice(0, 2), treePack), 10);
    const res = await repairPacks(repo);
    expect(res.damagedSnapshots.sort()).toEqual([s1.snapshotId, s2.snapshotId].sort());

    // Deleting one damaged snapshot prunes while the other, sharing the lost tree, remains.
    await forgetSnapshots(repo, [s1.snapshotId]);
    await prune(repo);
    await forgetSnapshots(repo, [s2.snapshotId]);
    await prune(repo);
    await restic(dir, ['check', '--read-data']);
  });
});
