import { afterAll, describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { mkdir, readFile, stat, utimes, writeFile, open } from 'node:fs/promises';
import { LocalBackend } from '../../src/destinations/local.ts';
import {
  AbortedError,
  CodecPool,
  InvalidSourceError,
  Repository,
  WrongPasswordError,
  RepositoryNotFoundError,
  backup,
  check,
  fileStream,
  listSnapshots,
  prune,
  resolvePath,
  restore,
  walk,
} from '../../src/engine/api.ts';
import { PASSWORD, cleanupTempDirs, describeTree, makeFixtureTree, newRepo, restic, seededBytes, tempDir } from './helpers.ts';

afterAll(cleanupTempDirs);

const execFileAsync = promisify(execFile);

/** Backup options that abort the backup once it has processed more than `bytes`. */
function abortingAfter(bytes: number): { signal: AbortSignal; onProgress: (p: { bytesDone: number }) => void } {
  const ac = new AbortController();
  return {
    signal: ac.signal,
    onProgress: (p) => {
      if (p.bytesDone > bytes) ac.abort();
    },
  };
}

async function countFiles(repo: Repository, type: 'data' | 'index' | 'snapshots' | 'locks'): Promise<number> {
  return (await repo.listIds(type)).length;
}

describe('backup', () => {
  it('builds the virtual root, deduplicates, and restores with our own reader', async () => {
    const { repo } = await newRepo();
    const files = await tempDir();
    await makeFixtureTree(files);
    const dump = seededBytes('dump', 500 * 1024);
    const progress: number[] = [];
    const r1 = await backup(repo, { '/db/app.dump': Readable.from([dump]), '/files': files }, {
      tags: ['backplane'],
      onProgress: (p) => progress.push(p.bytesDone),
    });
    expect(progress.length).toBeGreaterThan(3);
    expect(progress[progress.length - 1]).toBe(r1.bytesProcessed);
    expect(r1.bytesAdded).toBeGreaterThan(0);

    const sn = (await listSnapshots(repo))[0];
    const names: string[] = [];
    for await (const e of walk(repo, sn.tree)) names.push(e.path);
    expect(names).toContain('db/app.dump');
    expect(names).toContain('files/sub dir/deeper/deep.bin');
    expect(names).toContain('files/ünïcødé ✓/ファイル.txt');

    const dumpNode = await resolvePath(repo, sn, '/db/app.dump');
    const chunks: Buffer[] = [];
    for await (const c of fileStream(repo, dumpNode)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(dump)).toBe(true);

    // Same data again, no parent: every blob is known, so no data pack is written.
    const packsBefore = await countFiles(repo, 'data');
    const r2 = await backup(repo, { '/db/app.dump': Readable.from([dump]), '/files': files });
    expect(r2.dataBlobsAdded).toBe(0);
    // Only trees may change (the synthetic /db directory carries the backup time, atimes move).
    expect(r2.bytesAdded).toBeLessThan(16 * 1024);
    expect(await countFiles(repo, 'data')).toBeLessThanOrEqual(packsBefore + 1);

    const target = await tempDir();
    await restore(repo, r1.snapshotId, target, { path: '/files' });
    expect(await describeTree(target)).toEqual(await describeTree(files));
    const target2 = await tempDir();
    const seen: { bytesDone: number; bytesTotal?: number }[] = [];
    await restore(repo, 'latest', target2, { path: '/db/app.dump', onProgress: (p) => seen.push(p) });
    expect(seen[seen.length - 1]).toMatchObject({ bytesDone: dump.length, bytesTotal: dump.length });
    expect((await readFile(join(target2, 'app.dump'))).equals(dump)).toBe(true);
    expect(await countFiles(repo, 'locks')).toBe(0);
  });

  it('reports as bytesStored what the repository grew by: packs with their headers, index and snapshot files', async () => {
    const { repo, dir } = await newRepo();
    const files = await tempDir();
    await makeFixtureTree(files);
    const sizes = async () => {
      let n = 0;
      for (const type of ['data', 'index', 'snapshots'] as const) {
        for (const id of await repo.listIds(type)) n += (await stat(join(dir, type, ...(type === 'data' ? [id.slice(0, 2)] : []), id))).size;
      }
      return n;
    };
    const r1 = await backup(repo, { '/db/app.dump': Readable.from([seededBytes('stored-1', 700 * 1024)]), '/files': files });
    expect(r1.bytesStored).toBe(await sizes());
    // Pack headers (one entry per blob, encrypted), the index and the snapshot come on top of the blobs.
    expect(r1.bytesStored).toBeGreaterThan(r1.bytesAdded + r1.blobsAdded * 37);
    const before = await sizes();
    const r2 = await backup(repo, { '/db/app.dump': Readable.from([seededBytes('stored-2', 300 * 1024)]), '/files': files }, { parent: r1.snapshotId });
    expect(r2.bytesStored).toBe((await sizes()) - before);
  });

  it('cuts a tar stream at its entries: a changed small file costs itself, not its neighbours', async () => {
    const { repo } = await newRepo();
    const dir = await tempDir();
    const tarOf = async () => {
      const tarFile = join(dir, `${Math.random()}.tar`);
      await execFileAsync('tar', ['-cf', tarFile, '-C', join(dir, 'data'), 'a.bin', 'b.bin', 'c.bin']);
      return readFile(tarFile);
    };
    // Odd pieces, so that headers arrive split across reads.
    const pieces = (b: Buffer, n: number) => Readable.from(Array.from({ length: Math.ceil(b.length / n) }, (_, i) => b.subarray(i * n, (i + 1) * n)));
    await mkdir(join(dir, 'data'));
    await writeFile(join(dir, 'data', 'a.bin'), seededBytes('tar-a', 10 * 1024));
    await writeFile(join(dir, 'data', 'b.bin'), seededBytes('tar-b', 300 * 1024));
    await writeFile(join(dir, 'data', 'c.bin'), seededBytes('tar-c', 5 * 1024));
    const r1 = await backup(repo, { '/base.tar': { stream: pieces(await tarOf(), 777), tar: true } });
    // Content-defined chunking alone (16 KiB minimum in tests) would put a.bin and the start of b.bin in one chunk.
    await writeFile(join(dir, 'data', 'a.bin'), seededBytes('tar-a2', 10 * 1024));
    const second = await tarOf();
    const r2 = await backup(repo, { '/base.tar': { stream: pieces(second, 777), tar: true } }, { parent: r1.snapshotId });
    expect(r2.dataBlobsAdded).toBe(1);
    expect(r2.bytesAdded).toBeLessThan(14 * 1024);
    // The same archive in other pieces is the same chunks.
    const r3 = await backup(repo, { '/base.tar': { stream: pieces(second, 65536), tar: true } }, { parent: r2.snapshotId });
    expect(r3.dataBlobsAdded).toBe(0);
    const target = await tempDir();
    await restore(repo, r3.snapshotId, target, { path: '/base.tar' });
    expect((await readFile(join(target, 'base.tar'))).equals(second)).toBe(true);
  });

  it('stores a stream declared a tar that is not one by its content alone', async () => {
    const { repo } = await newRepo();
    const bytes = seededBytes('not-a-tar', 200 * 1024);
    const r = await backup(repo, { '/x.tar': { stream: Readable.from([bytes]), tar: true } });
    const target = await tempDir();
    await restore(repo, r.snapshotId, target, { path: '/x.tar' });
    expect((await readFile(join(target, 'x.tar'))).equals(bytes)).toBe(true);
  });

  it("reports each stream's real size, and the total stops relying on a declared size once the stream ended", async () => {
    const { repo } = await newRepo();
    const files = await tempDir();
    await writeFile(join(files, 'a.bin'), seededBytes('a', 64 * 1024));
    for (const declared of [10 * 1024 * 1024, 1024]) {
      const dump = seededBytes(`dump-${declared}`, 300 * 1024);
      const seen: { bytesDone: number; bytesTotal?: number }[] = [];
      const r = await backup(repo, { '/db/app.dump': { stream: Readable.from([dump]), size: declared }, '/files': files }, { onProgress: (p) => seen.push({ ...p }) });
      expect(r.streamBytes).toEqual({ '/db/app.dump': dump.length });
      const last = seen.at(-1)!;
      expect(last).toMatchObject({ bytesDone: dump.length + 64 * 1024, bytesTotal: dump.length + 64 * 1024 });
    }
  });

  it('with a parent, reads a file whose content changed under the same size, mtime and inode (its ctime moved), and skips unchanged ones', async () => {
    const { repo } = await newRepo();
    const files = await tempDir();
    await makeFixtureTree(files);
    // Whole seconds, so that putting the mtime back below restores it exactly.
    const when = new Date('2022-01-01T00:00:00Z');
    await utimes(join(files, 'random.bin'), when, when);
    const first = await backup(repo, { '/files': files });
    // Rewrite content in place (same inode, same size) and put the mtime back.
    const p = join(files, 'random.bin');
    const st = await stat(p);
    const fh = await open(p, 'r+');
    await fh.write(Buffer.alloc(st.size, 0x41), 0, st.size, 0);
    await fh.close();
    await utimes(p, when, when);

    // The clock reads later than the files' times, so they are not racy (see files-cache.ts).
    const later = () => Date.now() + 10_000;
    const withParent = await backup(repo, { '/files': files }, { parent: first.snapshotId, clock: later });
    expect(withParent.parent).toBe(first.snapshotId);
    const t1 = await tempDir();
    await restore(repo, withParent.snapshotId, t1, { path: '/files' });
    expect((await readFile(join(t1, 'random.bin'))).equals(Buffer.alloc(st.size, 0x41))).toBe(true);

    const again = await backup(repo, { '/files': files }, { parent: withParent.snapshotId, clock: later });
    expect(again.filesUnmodified).toBe(again.files);
    expect(again.treeId).toBe(withParent.treeId);
  });

  it('an aborted backup leaves a valid repository without a snapshot; prune cleans up', async () => {
    const { repo, dir } = await newRepo({ packSize: 128 * 1024 });
    async function* endless() {
      for (let i = 0; ; i++) yield seededBytes(`s${i}`, 64 * 1024);
    }
    const err = await backup(repo, { '/db/big.dump': Readable.from(endless()) }, abortingAfter(3 * 1024 * 1024)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortedError);
    expect(await countFiles(repo, 'snapshots')).toBe(0);
    expect(await countFiles(repo, 'locks')).toBe(0);
    expect(await countFiles(repo, 'data')).toBeGreaterThan(0);
    await restic(dir, ["check"]);
    const res = await check(repo);
    expect(res.ok).toBe(true);
    const pr = await prune(repo);
    expect(pr.packsUnindexedDeleted + pr.packsDeleted).toBeGreaterThan(0);
    expect(await countFiles(repo, 'data')).toBe(0);
    await restic(dir, ['check', '--read-data']);
  });

  it('concurrent backups through one Repository take turns; an abort does not hurt the other', async () => {
    const { repo, dir } = await newRepo({ packSize: 128 * 1024 });
    async function* endless() {
      for (let i = 0; ; i++) yield seededBytes(`c${i}`, 64 * 1024);
    }
    const doomed = backup(repo, { '/db/x.dump': Readable.from(endless()) }, abortingAfter(2 * 1024 * 1024));
    const good = backup(repo, { '/db/y.dump': Readable.from([seededBytes('good', 900 * 1024)]) });
    await expect(doomed).rejects.toBeInstanceOf(AbortedError);
    const r = await good;
    expect((await listSnapshots(repo)).map((s) => s.id)).toEqual([r.snapshotId]);
    expect((await check(repo, { readData: true })).errors).toEqual([]);
    await restic(dir, ['check', '--read-data']);
  });

  it('refuses a wrong password and a missing repository with typed errors', async () => {
    const { dir } = await newRepo();
    await expect(Repository.open(new LocalBackend(dir), 'not the password')).rejects.toBeInstanceOf(WrongPasswordError);
    const empty = await tempDir();
    await expect(Repository.open(new LocalBackend(empty), PASSWORD)).rejects.toBeInstanceOf(RepositoryNotFoundError);
    const repo = await Repository.open(new LocalBackend(dir), PASSWORD);
    expect(repo.config.version).toBe(2);
    expect(repo.config.backplane_chunker).toBe('fastcdc-v1-16k-64k-256k');
  });

  it('rejects a source path that does not exist and bad virtual paths', async () => {
    const { repo } = await newRepo();
    await expect(backup(repo, { '/files': '/does/not/exist' })).rejects.toBeInstanceOf(InvalidSourceError);
    await expect(backup(repo, { 'relative': '/tmp' })).rejects.toBeInstanceOf(InvalidSourceError);
    await expect(backup(repo, { '/a/../b': '/tmp' })).rejects.toBeInstanceOf(InvalidSourceError);
    expect(await countFiles(repo, 'snapshots')).toBe(0);
  });

  it('cuts a file on disk exactly as the same bytes piped in, however the reads fall', async () => {
    const { repo, dir } = await newRepo();
    const files = await tempDir();
    // Several times the scan threads' read buffer (two maximum chunks of the test chunker).
    const content = seededBytes('both ways', 5 * 1024 * 1024 + 321);
    await writeFile(join(files, 'big.bin'), content);
    const r = await backup(repo, { '/files': files, '/db/big.dump': Readable.from([content]) });
    expect(r.dataBlobsAdded).toBeGreaterThan(10);
    const sn = (await listSnapshots(repo))[0];
    const fromDisk = await resolvePath(repo, sn, '/files/big.bin');
    const fromStream = await resolvePath(repo, sn, '/db/big.dump');
    expect(fromDisk.content).toEqual(fromStream.content);
    expect(fromDisk.size).toBe(content.length);
    await restic(dir, ['check', '--read-data']);
  });

  it('an aborted backup of a directory tree leaves a valid repository without a snapshot', async () => {
    const { repo, dir } = await newRepo({ packSize: 128 * 1024 });
    const files = await tempDir();
    for (let d = 0; d < 8; d++) {
      await mkdir(join(files, `d${d}`));
      for (let f = 0; f < 40; f++) await writeFile(join(files, `d${d}`, `f${f}`), seededBytes(`abort ${d} ${f}`, 40 * 1024));
    }
    const err = await backup(repo, { '/files': files }, abortingAfter(2 * 1024 * 1024)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortedError);
    expect(await countFiles(repo, 'snapshots')).toBe(0);
    expect(await countFiles(repo, 'locks')).toBe(0);
    await restic(dir, ['check', '--read-data']);
    // Nothing reserved by the aborted run keeps the next one from storing its blobs.
    const r = await backup(repo, { '/files': files });
    const target = await tempDir();
    await restore(repo, r.snapshotId, target);
    expect((await readFile(join(target, 'files', 'd7', 'f39'))).equals(seededBytes('abort 7 39', 40 * 1024))).toBe(true);
    await restic(dir, ['check', '--read-data']);
  });

  it('spreads a folder of large files over several scan batches and stores every file whole and in its place', async () => {
    const { repo, dir } = await newRepo({ packSize: 4 * 1024 * 1024 });
    const files = await tempDir();
    // Past one batch's read budget (8 MiB): large and small files interleaved in name order.
    for (let i = 0; i < 6; i++) {
      await writeFile(join(files, `big-${i}.bin`), seededBytes(`big ${i}`, 3 * 1024 * 1024 + i));
      await writeFile(join(files, `big-${i}.txt`), `small ${i}\n`.repeat(100 * i + 1));
    }
    const r = await backup(repo, { '/files': files });
    expect(r.files).toBe(12);
    const target = await tempDir();
    await restore(repo, r.snapshotId, target);
    expect(await describeTree(join(target, 'files'))).toEqual(await describeTree(files));
    await restic(dir, ['check', '--read-data']);
  });

  it('stores empty files and empty streams', async () => {
    const { repo, dir } = await newRepo();
    const files = await tempDir();
    await writeFile(join(files, 'empty'), '');
    const r = await backup(repo, { '/files': files, '/db/empty.dump': Readable.from([]) });
    await restic(dir, ['check', '--read-data']);
    const target = await tempDir();
    await restore(repo, r.snapshotId, target);
    expect((await stat(join(target, 'files', 'empty'))).size).toBe(0);
    expect((await stat(join(target, 'db', 'empty.dump'))).size).toBe(0);
  });
  it('restores several snapshots through one pool the caller keeps open, and only the caller closes it', async () => {
    const { repo } = await newRepo();
    const src = await tempDir();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      await writeFile(join(src, `seg${i}`), seededBytes(`pool ${i}`, 300 * 1024));
      ids.push((await backup(repo, { '/wal': src })).snapshotId);
    }
    const pool = new CodecPool(repo.key, 2);
    try {
      for (const [i, id] of ids.entries()) {
        const target = await tempDir();
        await restore(repo, id, target, { path: '/wal', pool });
        for (let j = 0; j <= i; j++) expect((await readFile(join(target, `seg${j}`))).equals(seededBytes(`pool ${j}`, 300 * 1024))).toBe(true);
      }
    } finally {
      await pool.close();
    }
  });
});
