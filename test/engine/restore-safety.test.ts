import { afterAll, describe, expect, it } from 'vitest';
import { readdir, rm, symlink, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UnsafePathError, restore, type Node, type Repository } from '../../src/engine/api.ts';
import { BackendNotFoundError } from '../../src/destinations/backend.ts';
import { newSnapshotJson, saveSnapshot } from '../../src/engine/snapshot.ts';
import { goModeFromUnix } from '../../src/engine/tree.ts';
import { cleanupTempDirs, newRepo, tempDir } from './helpers.ts';

afterAll(cleanupTempDirs);

const T = '2024-01-01T00:00:00Z';
const base = { mtime: T, atime: T, ctime: T, uid: 0, gid: 0 };
const file = (name: string, content: string[]): Node => ({ ...base, name, type: 'file', mode: goModeFromUnix(0o100644), size: 4, content });
const dir = (name: string, subtree: string): Node => ({ ...base, name, type: 'dir', mode: goModeFromUnix(0o040755), content: null, subtree });
const link = (name: string, target: string): Node => ({ ...base, name, type: 'symlink', mode: goModeFromUnix(0o120777), linktarget: target, content: null });

/** Writes a snapshot whose root tree holds exactly these nodes (trees as an attacker would). */
async function snapshotOf(repo: Repository, nodes: Node[]): Promise<string> {
  const root = await repo.saveTree({ nodes });
  await repo.flush();
  return saveSnapshot(repo, newSnapshotJson(root, ['/'], { time: T }));
}

describe('restore never writes outside its target', () => {
  it('refuses a symlink followed by a directory of the same name', async () => {
    const { repo } = await newRepo();
    const outside = await tempDir();
    const blob = await repo.saveBlob('data', Buffer.from('evil'));
    const sub = await repo.saveTree({ nodes: [file('pwned', [blob.id])] });
    const sn = await snapshotOf(repo, [link('a', outside), dir('a', sub)]);
    const target = await tempDir();
    await expect(restore(repo, sn, target)).rejects.toBeInstanceOf(UnsafePathError);
    expect(await readdir(outside)).toEqual([]);
  });

  it('refuses names with .. or slashes', async () => {
    const { repo } = await newRepo();
    const blob = await repo.saveBlob('data', Buffer.from('evil'));
    for (const name of ['..', '../escape', 'a/b', '.']) {
      const sn = await snapshotOf(repo, [file(name, [blob.id])]);
      const parent = await tempDir();
      const target = join(parent, 'target');
      await expect(restore(repo, sn, target)).rejects.toBeInstanceOf(UnsafePathError);
      expect((await readdir(parent)).sort()).toEqual(['target']);
      expect(await readdir(target)).toEqual([]);
    }
  });

  it('does not write through a symlink already in the target', async () => {
    const { repo } = await newRepo();
    const outside = await tempDir();
    const blob = await repo.saveBlob('data', Buffer.from('evil'));
    const sub = await repo.saveTree({ nodes: [file('pwned', [blob.id])] });
    const sn = await snapshotOf(repo, [dir('d', sub), file('f', [blob.id])]);
    const target = await tempDir();
    await symlink(outside, join(target, 'd'));
    await expect(restore(repo, sn, target)).rejects.toBeInstanceOf(UnsafePathError);
    const target2 = await tempDir();
    await mkdir(join(target2, 'x'));
    await symlink(join(outside, 'f'), join(target2, 'f'));
    const sn2 = await snapshotOf(repo, [file('f', [blob.id])]);
    await expect(restore(repo, sn2, target2)).rejects.toBeInstanceOf(UnsafePathError);
    expect(await readdir(outside)).toEqual([]);
  });

  // Small files are read from a local pack by a codec thread; a pack that is gone is still
  // reported as the backend's missing file, naming the pack.
  it('reports a missing pack of a small file as the backend reports it', async () => {
    const { repo, dir: repoDir } = await newRepo();
    const blob = await repo.saveBlob('data', Buffer.from('small'));
    const sn = await snapshotOf(repo, [file('f', [blob.id])]);
    const packId = repo.lookupBlob('data', blob.id)!.packId;
    await rm(join(repoDir, 'data', packId.slice(0, 2), packId));
    const err = await restore(repo, sn, await tempDir()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendNotFoundError);
    expect((err as BackendNotFoundError).handle.name).toBe(packId);
  });
});
