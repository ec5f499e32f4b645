import { afterAll, describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { LocalBackend } from '../../src/destinations/local.ts';
import { Repository, backup, check, forgetSnapshots, listSnapshots, prune, restore } from '../../src/engine/api.ts';
import { PASSWORD, TEST_KDF, cleanupTempDirs, describeTree, makeFixtureTree, newRepo, restic, seededBytes, tempDir } from './helpers.ts';

afterAll(cleanupTempDirs);

describe('restic reads what we write', () => {
  it('passes restic check --read-data and restores byte-identically with our tags', async () => {
    const { repo, dir } = await newRepo();
    const files = await tempDir();
    await makeFixtureTree(files);
    const dump = seededBytes('dump', 300 * 1024);
    const result = await backup(repo, { '/db/app.dump': Readable.from([dump.subarray(0, 1000), dump.subarray(1000)]), '/files': files }, {
      tags: ['backplane', 'env:e1', 'kind:manual'],
    });
    expect(result.files).toBeGreaterThan(10);
    expect(result.packsAdded).toBeGreaterThan(1);

    await restic(dir, ['check', '--read-data']);
    const snaps = JSON.parse(await restic(dir, ['snapshots', '--json'])) as { id: string; tags: string[] }[];
    expect(snaps).toHaveLength(1);
    expect(snaps[0].id).toBe(result.snapshotId);
    expect(snaps[0].tags).toEqual(['backplane', 'env:e1', 'kind:manual']);

    const target = await tempDir();
    await restic(dir, ['restore', 'latest', '--target', target]);
    expect(await describeTree(join(target, 'files'))).toEqual(await describeTree(files));
    expect((await readFile(join(target, 'db', 'app.dump'))).equals(dump)).toBe(true);
  });
});

describe('maintenance across tools', () => {
  it('restic forget --prune on our repository leaves data we still read; our prune leaves data restic reads', async () => {
    const { repo, dir } = await newRepo();
    const a = await tempDir();
    const b = await tempDir();
    await writeFile(join(a, 'a.bin'), seededBytes('ma', 400 * 1024));
    await writeFile(join(b, 'b.bin'), seededBytes('mb', 400 * 1024));
    await makeFixtureTree(join(b, 'tree'));
    const sa = await backup(repo, { '/files': a });
    const sb = await backup(repo, { '/files': b });
    await restic(dir, ['forget', '--prune', sa.snapshotId]);
    // Our Repository object still holds the old index: backup and restore must notice the
    // prune, or this backup would reference a.bin's pruned blobs.
    const sa2 = await backup(repo, { '/files': a });
    expect(sa2.dataBlobsAdded).toBeGreaterThan(0);
    await restic(dir, ['check', '--read-data']);
    const target = await tempDir();
    await restore(repo, sb.snapshotId, target, { path: '/files' });
    expect(await describeTree(target)).toEqual(await describeTree(b));
    expect((await check(repo, { readData: true })).errors).toEqual([]);

    const sc = await backup(repo, { '/files': a });
    await forgetSnapshots(repo, [sb.snapshotId]);
    await prune(repo);
    await restic(dir, ['check', '--read-data']);
    const t2 = await tempDir();
    await restic(dir, ['restore', sc.snapshotId, '--target', t2]);
    expect(await describeTree(join(t2, 'files'))).toEqual(await describeTree(a));
  });
});

describe('default parameters', () => {
  it('restic accepts 512K/1M/8M chunks in 16 MiB packs and we restore restic-checked data', async () => {
    const dir = join(await tempDir(), 'repo');
    const repo = await Repository.init(new LocalBackend(dir, { fsync: false }), PASSWORD, { kdf: TEST_KDF });
    expect(repo.config.backplane_chunker).toBe('fastcdc-v1-512k-1m-8m');
    const big = Buffer.concat([seededBytes('big', 24 * 1024 * 1024), Buffer.alloc(12 * 1024 * 1024, 7)]);
    async function* pieces() {
      for (let off = 0; off < big.length; off += 300_000) yield big.subarray(off, off + 300_000);
    }
    const r = await backup(repo, { '/db/big.dump': Readable.from(pieces()) }, { tags: ['default-params'] });
    expect(r.dataBlobsAdded).toBeGreaterThan(20);
    await restic(dir, ['check', '--read-data']);
    const target = await tempDir();
    await restic(dir, ['restore', 'latest', '--target', target]);
    expect((await readFile(join(target, 'db', 'big.dump'))).equals(big)).toBe(true);
  });
});

describe('we read what restic writes', () => {
  it('lists and restores a repository made by restic init + backup', async () => {
    const base = await tempDir();
    const dir = join(base, 'repo');
    const files = join(base, 'src');
    await makeFixtureTree(files);
    await restic(dir, ['init', '--repository-version', '2']);
    await restic(dir, ['backup', '--tag', 'from-restic', '--compression', 'auto', files]);

    const repo = await Repository.open(new LocalBackend(dir), PASSWORD);
    const snaps = await listSnapshots(repo);
    expect(snaps).toHaveLength(1);
    expect(snaps[0].tags).toEqual(['from-restic']);
    const target = await tempDir();
    await restore(repo, 'latest', target, { path: files });
    expect(await describeTree(target)).toEqual(await describeTree(files));
    const res = await check(repo, { readData: true });
    expect(res.errors).toEqual([]);
    expect(res.packsRead).toBeGreaterThan(0);
  });

  it('backs up into a restic version 1 repository without compression', async () => {
    const base = await tempDir();
    const dir = join(base, 'repo');
    const files = join(base, 'src');
    await makeFixtureTree(files);
    await restic(dir, ['init', '--repository-version', '1']);
    const repo = await Repository.open(new LocalBackend(dir), PASSWORD);
    expect(repo.config.version).toBe(1);
    await backup(repo, { '/files': files }, { codecThreads: 1 });
    await restic(dir, ['check', '--read-data']);
    const target = await tempDir();
    await restic(dir, ['restore', 'latest', '--target', target]);
    expect(await describeTree(join(target, 'files'))).toEqual(await describeTree(files));
  });
});

describe('forced cut points', () => {
  // How the PITR streamer stores a WAL segment: its `.partial` copy at each upload (the bytes
  // written so far, then the pre-allocated zeros), cut where the earlier copies ended, then the
  // completed segment cut at all of them.
  it('stores a growing file again for only its new tail, and restic restores every copy byte-identically', async () => {
    const { repo, dir } = await newRepo();
    const files = await tempDir();
    const segment = seededBytes('segment', 2 * 1024 * 1024);
    const ends = [300_001, 700_003, 1_234_567];
    const copies: { snapshotId: string; name: string; bytes: Buffer }[] = [];
    const added: number[] = [];
    for (const [i, end] of [...ends, segment.length].entries()) {
      const complete = end === segment.length;
      const bytes = complete ? segment : Buffer.concat([segment.subarray(0, end), Buffer.alloc(segment.length - end)]);
      const name = complete ? 'SEG' : 'SEG.partial';
      const file = join(files, `copy-${i}`);
      await writeFile(file, bytes);
      const r = await backup(repo, { [`/wal/${name}`]: { path: file, cuts: ends.slice(0, i + 1) } });
      copies.push({ snapshotId: r.snapshotId, name, bytes });
      added.push(r.bytesAdded);
      // Random bytes do not compress: what a copy adds is its new bytes, the zeros after them
      // (compressed to almost nothing) and its tree, never again a stretch stored before.
      const fresh = end - (ends[i - 1] ?? 0);
      expect(r.bytesAdded).toBeGreaterThan(fresh);
      expect(r.bytesAdded).toBeLessThan(fresh + 4096);
    }
    await restic(dir, ['check', '--read-data']);
    for (const c of copies) {
      const target = await tempDir();
      await restic(dir, ['restore', c.snapshotId, '--target', target]);
      expect((await readFile(join(target, 'wal', c.name))).equals(c.bytes)).toBe(true);
    }
  });
});

describe('compression level', () => {
  it('stores blobs at the zstd level asked for, and restic reads them', async () => {
    const { repo } = await newRepo();
    const files = await tempDir();
    // Text with some repetition, as WAL or a dump holds: higher levels find more of it.
    const words = seededBytes('words', 64 * 1024).toString('hex').match(/.{1,7}/g)!;
    const text = Buffer.from(Array.from({ length: 60_000 }, (_, i) => `${i} ${words[(i * 7919) % words.length]} ${words[(i * 104_729) % 997]}\n`).join(''));
    await writeFile(join(files, 'a.txt'), text);
    const atDefault = await backup(repo, { '/a/a.txt': join(files, 'a.txt') });
    const other = await newRepo();
    const atNineteen = await backup(other.repo, { '/a/a.txt': join(files, 'a.txt') }, { compressionLevel: 19 });
    expect(atNineteen.bytesAdded).toBeLessThan(atDefault.bytesAdded * 0.95);
    await restic(other.dir, ['check', '--read-data']);
    const target = await tempDir();
    await restic(other.dir, ['restore', atNineteen.snapshotId, '--target', target]);
    expect((await readFile(join(target, 'a', 'a.txt'))).equals(text)).toBe(true);
    await expect(backup(repo, { '/a/a.txt': join(files, 'a.txt') }, { compressionLevel: 0 })).rejects.toThrow(RangeError);
  });
});
