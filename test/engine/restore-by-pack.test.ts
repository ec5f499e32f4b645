/**
 * Restores plan by pack: each stretch of a pack is read once and every blob goes to all the
 * files that hold it. These trees make that plan meet its hard cases — one blob in many files,
 * the same blob twice in one file, a file whose blobs lie in many packs, empty files — and
 * check the result against the source, from a local repository (threads read the packs) and
 * from S3 (the main thread loads the stretches), with one thread and with several.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmod, chown, lstat, mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { BackendNotFoundError } from '../../src/destinations/backend.ts';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { S3Backend } from '../../src/destinations/s3.ts';
import { Repository, backup, restore } from '../../src/engine/api.ts';
import { findSnapshot } from '../../src/engine/snapshot.ts';
import { resolvePath } from '../../src/engine/walker.ts';
import { S3RVER_CREDENTIALS, startS3rver, type StartedS3rver } from '../harness/s3rver.ts';
import { PASSWORD, TEST_CHUNKER, TEST_KDF, cleanupTempDirs, describeTree, makeFixtureTree, newRepo, seededBytes, tempDir } from './helpers.ts';

const KiB = 1024;

/** The fixture tree plus files that share blobs in every way a plan must handle. */
async function makeSharingTree(root: string): Promise<void> {
  await makeFixtureTree(root);
  const block = seededBytes('shared block', 300 * KiB);
  await mkdir(join(root, 'copies', 'a'), { recursive: true });
  await mkdir(join(root, 'copies', 'b'), { recursive: true });
  // The same one-blob file in many places: one blob, many whole files.
  for (let i = 0; i < 12; i++) await writeFile(join(root, 'copies', i % 2 ? 'a' : 'b', `same-${i}.txt`), 'the same small content\n');
  // The same blocks over and over: content-defined chunks repeat, so blobs recur within a file.
  await writeFile(join(root, 'copies', 'repeated.bin'), Buffer.concat(Array.from({ length: 6 }, () => block)));
  // And in another file, between other bytes: a blob both shared and a part.
  await writeFile(join(root, 'copies', 'a', 'mixed.bin'), Buffer.concat([seededBytes('head', 90 * KiB), block, block, seededBytes('tail', 70 * KiB)]));
  // Many small files in one directory, some empty, with their own modes and times.
  const when = new Date('2020-02-02T02:02:02.5Z');
  for (let i = 0; i < 300; i++) {
    const p = join(root, 'many', `f${String(i).padStart(3, '0')}`);
    if (i === 0) await mkdir(join(root, 'many'));
    await writeFile(p, i % 50 === 0 ? '' : seededBytes(`small ${i}`, 100 + ((i * 977) % (20 * KiB))));
    await chmod(p, i % 3 === 0 ? 0o600 : 0o644);
    await utimes(p, when, new Date(when.getTime() + i * 1000));
  }
  await utimes(join(root, 'many'), when, when);
  await utimes(join(root, 'copies', 'a'), when, when);
}

afterAll(cleanupTempDirs);

/** Each file's mode (all 12 bits) and owner, by path below root. */
async function describeOwners(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const visit = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const st = await lstat(join(dir, name));
      if (st.isDirectory()) await visit(join(dir, name), `${rel}${name}/`);
      else out[`${rel}${name}`] = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
    }
  };
  await visit(root, '');
  return out;
}

describe('restore by pack', () => {
  let src: string;
  let expected: Record<string, string>;

  beforeAll(async () => {
    src = join(await tempDir(), 'src');
    await mkdir(src);
    await makeSharingTree(src);
    expected = await describeTree(src);
  });

  it.each([1, 3])('restores every file whole, with modes and times, from packs of a local repository (%i threads)', async (threads) => {
    // Small packs: the large files' blobs lie in many of them, read by several jobs at once.
    const { repo } = await newRepo({ packSize: 128 * KiB });
    const r = await backup(repo, { '/files': src });
    // The cases the tree is made for are really there.
    const sn = await findSnapshot(repo, r.snapshotId);
    const repeated = (await resolvePath(repo, sn, '/files/copies/repeated.bin')).content!;
    const mixed = (await resolvePath(repo, sn, '/files/copies/a/mixed.bin')).content!;
    expect(new Set(repeated).size).toBeLessThan(repeated.length);
    expect(mixed.some((id) => repeated.includes(id))).toBe(true);
    expect(new Set(repeated.map((id) => repo.lookupBlob('data', id)!.packId)).size).toBeGreaterThan(1);
    const target = await tempDir();
    const seen: number[] = [];
    const result = await restore(repo, r.snapshotId, target, { path: '/files', codecThreads: threads, onProgress: (p) => seen.push(p.bytesDone) });
    expect(await describeTree(target)).toEqual(expected);
    const files = Object.values(expected).filter((d) => d.startsWith('file '));
    expect(result.files).toBe(files.length);
    expect(result.bytes).toBe(files.reduce((n, d) => n + Number(d.split(' ')[3]), 0));
    expect(seen.at(-1)).toBe(result.bytes);
  });

  // A file the restore creates gets its mode from open and, as root, keeps the owner it was made
  // with when that is the recorded one: the modes umask narrows, setuid/setgid/sticky bits,
  // other owners and folders whose new files take another group still need their calls.
  it('restores exact modes and owners into an empty target and over the files already there', async () => {
    const modes = [0o600, 0o644, 0o666, 0o777, 0o444, 0o4755, 0o2750, 0o1644, 0o000];
    const tree = join(await tempDir(), 'modes');
    await mkdir(join(tree, 'shared'), { recursive: true });
    for (const [i, mode] of modes.entries()) {
      for (const content of ['', `mode ${i}\n`]) {
        const p = join(tree, `${mode.toString(8)}${content ? '' : '-empty'}`);
        await writeFile(p, content);
        await chmod(p, mode);
      }
    }
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      await writeFile(join(tree, 'other-owner'), 'theirs\n');
      await chown(join(tree, 'other-owner'), 1234, 5678);
      await writeFile(join(tree, 'shared', 'ours'), 'ours\n');
      await writeFile(join(tree, 'shared', 'ours-empty'), '');
    }
    const want = await describeOwners(tree);
    const { repo } = await newRepo();
    const r = await backup(repo, { '/t': tree });
    const target = await tempDir();
    if (asRoot) {
      // New files in a setgid folder of another group take that group unless it is set.
      await mkdir(join(target, 'shared'));
      await chown(join(target, 'shared'), 0, 5678);
      await chmod(join(target, 'shared'), 0o2755);
    }
    await restore(repo, r.snapshotId, target, { path: '/t' });
    expect(await describeOwners(target)).toEqual(want);
    // Again over the restored files, now with other modes and owners than the snapshot's.
    for (const name of await readdir(target)) if (name !== 'shared') await chmod(join(target, name), 0o640);
    if (asRoot) await chown(join(target, '644'), 1234, 5678);
    await restore(repo, r.snapshotId, target, { path: '/t' });
    expect(await describeOwners(target)).toEqual(want);
  });

  it('restores one file of many blobs on its own', async () => {
    const { repo } = await newRepo({ packSize: 128 * KiB });
    const r = await backup(repo, { '/files': src });
    const target = await tempDir();
    await restore(repo, r.snapshotId, target, { path: '/files/copies/a/mixed.bin' });
    expect(await readdir(target)).toEqual(['mixed.bin']);
    expect((await describeTree(target))['mixed.bin']).toBe(expected['copies/a/mixed.bin']);
  });

  it('reports a missing pack of a large file as the backend reports it', async () => {
    const { repo, dir } = await newRepo({ packSize: 128 * KiB });
    const r = await backup(repo, { '/files': src });
    const sn = await findSnapshot(repo, r.snapshotId);
    const content = (await resolvePath(repo, sn, '/files/random.bin')).content!;
    const packId = repo.lookupBlob('data', content.at(-1)!)!.packId;
    await rm(join(dir, 'data', packId.slice(0, 2), packId));
    const target = await tempDir();
    const err = await restore(repo, r.snapshotId, target, { path: '/files' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendNotFoundError);
    expect((err as BackendNotFoundError).handle.name).toBe(packId);
  });

  describe('from S3, where the main thread loads each stretch', () => {
    let s3: StartedS3rver;
    beforeAll(async () => {
      s3 = await startS3rver({ buckets: ['restore'] });
    });
    afterAll(async () => {
      await s3?.stop();
    });

    it('restores the same tree', async () => {
      const backend = new S3Backend({
        endpoint: s3.endpoint,
        region: 'us-east-1',
        bucket: 'restore',
        prefix: `t-${randomBytes(6).toString('hex')}`,
        forcePathStyle: true,
        credentials: S3RVER_CREDENTIALS,
      });
      const repo = await Repository.init(backend, PASSWORD, { kdf: TEST_KDF, chunker: TEST_CHUNKER, open: { packSize: 128 * KiB } });
      const r = await backup(repo, { '/files': src });
      const target = await tempDir();
      await restore(repo, r.snapshotId, target, { path: '/files', codecThreads: 2 });
      expect(await describeTree(target)).toEqual(expected);
    });
  });
});
