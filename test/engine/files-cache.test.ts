import { afterAll, describe, expect, it } from 'vitest';
import { chmod, open, readFile, readdir, rename, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup, forgetSnapshots, prune, restore, type Repository } from '../../src/engine/api.ts';
import { cleanupTempDirs, describeTree, makeFixtureTree, newRepo, restic, seededBytes, tempDir } from './helpers.ts';

afterAll(cleanupTempDirs);

/** A clock later than every file's times, so no file is racy (files-cache.ts). */
const later = () => Date.now() + 10_000;

/** The one cache file a backup of one source leaves under the cache directory. */
async function cacheFileOf(cacheDir: string, repo: Repository): Promise<string> {
  const dir = join(cacheDir, repo.config.id, 'files');
  const names = (await readdir(dir)).filter((n) => !n.includes('.tmp-'));
  expect(names).toHaveLength(1);
  return join(dir, names[0]);
}

/** Restores a snapshot's /files and says whether it equals the folder on disk. */
async function expectSnapshotEqualsDisk(repo: Repository, snapshotId: string, files: string): Promise<void> {
  const target = await tempDir();
  await restore(repo, snapshotId, target, { path: '/files' });
  expect(await describeTree(target)).toEqual(await describeTree(files));
  await rm(target, { recursive: true, force: true });
}

/** Every regular file under root, sorted. */
async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await visit(join(d, e.name));
      else if (e.isFile()) out.push(join(d, e.name));
    }
  };
  await visit(root);
  return out.sort();
}

/**
 * The fixture tree with every file's times on a whole second, so that putting a time back
 * through utimes (milliseconds) restores it to the nanosecond.
 */
async function fixtureWithWholeSecondTimes(root: string): Promise<void> {
  await makeFixtureTree(root);
  const when = new Date('2022-02-02T02:02:02Z');
  for (const f of await listFiles(root)) await utimes(f, when, when);
}

/** Overwrites a file in place with other bytes of the same size and puts its mtime back. */
async function rewriteKeepingTimes(path: string, seed: string): Promise<void> {
  const st = await stat(path);
  const fh = await open(path, 'r+');
  await fh.write(seededBytes(seed, st.size), 0, st.size, 0);
  await fh.close();
  await utimes(path, st.atime, st.mtime);
}

describe('files cache', () => {
  it('skips unchanged files and reuses unchanged trees; the snapshot is the same as without it', async () => {
    const { repo, dir } = await newRepo();
    const files = await tempDir();
    const cacheDir = await tempDir();
    await makeFixtureTree(files);
    const first = await backup(repo, { '/files': files }, { filesCache: { dir: cacheDir }, clock: later });
    expect(first.filesUnmodified).toBe(0);
    const second = await backup(repo, { '/files': files }, { filesCache: { dir: cacheDir }, clock: later });
    expect(second.filesUnmodified).toBe(second.files);
    // Every directory on disk: the root, 'sub dir', 'deeper', 'empty-dir' and the unicode one.
    expect(second.treesReused).toBe(5);
    expect(second.dataBlobsAdded).toBe(0);
    expect(second.treeId).toBe(first.treeId);
    const without = await backup(repo, { '/files': files }, { clock: later });
    expect(without.treeId).toBe(first.treeId);
    await expectSnapshotEqualsDisk(repo, second.snapshotId, files);
    await restic(dir, ['check']);
  });

  // A cache written after some directories changed holds their records re-encoded beside the
  // others' kept as they were stored: the next backup must read that mix as well as a fresh one.
  it('after a change in one directory, the cache it writes serves every directory of the next backup', async () => {
    const { repo, dir } = await newRepo();
    const files = await tempDir();
    const cacheDir = await tempDir();
    await makeFixtureTree(files);
    const opts = { filesCache: { dir: cacheDir }, clock: later };
    await backup(repo, { '/files': files }, opts);
    await backup(repo, { '/files': files }, opts);
    await writeFile(join(files, 'sub dir', 'deeper', 'new.txt'), 'new\n');
    const changed = await backup(repo, { '/files': files }, opts);
    // 'sub dir/deeper' and its two ancestors changed; the empty and the unicode folder did not.
    expect(changed.treesReused).toBe(2);
    expect(changed.filesUnmodified).toBe(changed.files - 1);
    const next = await backup(repo, { '/files': files }, opts);
    expect(next.treesReused).toBe(5);
    expect(next.filesUnmodified).toBe(next.files);
    expect(next.dataBlobsAdded).toBe(0);
    expect(next.treeId).toBe(changed.treeId);
    await expectSnapshotEqualsDisk(repo, next.snapshotId, files);
    await restic(dir, ['check', '--read-data']);
  });

  // A folder the cache recorded is scanned in batches of up to 512 names: changes in each of
  // them, and on both sides of the boundary, are found.
  it('finds changed files throughout a large folder the cache recorded', async () => {
    const { repo } = await newRepo();
    const files = await tempDir();
    const cacheDir = await tempDir();
    const when = new Date('2022-02-02T02:02:02Z');
    const names = Array.from({ length: 1100 }, (_, i) => `f${String(i).padStart(4, '0')}.txt`);
    for (const n of names) {
      await writeFile(join(files, n), seededBytes(n, 100));
      await utimes(join(files, n), when, when);
    }
    const opts = { filesCache: { dir: cacheDir }, clock: later };
    await backup(repo, { '/files': files }, opts);
    const changed = [3, 511, 512, 700, 1023, 1024, 1099].map((i) => names[i]);
    for (const n of changed) await rewriteKeepingTimes(join(files, n), `changed ${n}`);
    const r = await backup(repo, { '/files': files }, opts);
    expect(r.files).toBe(names.length);
    expect(r.filesUnmodified).toBe(names.length - changed.length);
    await expectSnapshotEqualsDisk(repo, r.snapshotId, files);
  });

  it('reads a file whose content changed under the same size and mtime, in place (new ctime) or replaced (new inode)', async () => {
    const { repo } = await newRepo();
    const files = await tempDir();
    const cacheDir = await tempDir();
    await fixtureWithWholeSecondTimes(files);
    const opts = { filesCache: { dir: cacheDir }, clock: later };
    await backup(repo, { '/files': files }, opts);

    // In place: same inode, size and mtime; only the ctime tells.
    await rewriteKeepingTimes(join(files, 'random.bin'), 'changed in place');
    // Replaced by another file (another inode) with the same size and mtime.
    const deep = join(files, 'sub dir', 'deeper', 'deep.bin');
    const st = await stat(deep);
    await writeFile(`${deep}.new`, seededBytes('replacement', st.size));
    await utimes(`${deep}.new`, st.atime, st.mtime);
    await rename(`${deep}.new`, deep);

    const r = await backup(repo, { '/files': files }, opts);
    expect(r.filesUnmodified).toBe(r.files - 2);
    expect((await readFile(join(files, 'random.bin'))).equals(seededBytes('changed in place', (await stat(join(files, 'random.bin'))).size))).toBe(true);
    await expectSnapshotEqualsDisk(repo, r.snapshotId, files);
  });

  it('reads files again whose times are not older than the start of the backup that recorded them (racy)', async () => {
    const { repo } = await newRepo();
    const files = await tempDir();
    const cacheDir = await tempDir();
    await makeFixtureTree(files);
    // A backup whose start (by its clock) was not later than the files' times: none is trusted next time.
    const early = await backup(repo, { '/files': files }, { filesCache: { dir: cacheDir }, clock: () => Date.now() - 10_000 });
    const next = await backup(repo, { '/files': files }, { filesCache: { dir: cacheDir }, clock: later });
    expect(next.filesUnmodified).toBe(0);
    expect(next.treeId).toBe(early.treeId);
    // This backup's clock read later than every file's times: the next one trusts them all.
    const third = await backup(repo, { '/files': files }, { filesCache: { dir: cacheDir }, clock: later });
    expect(third.filesUnmodified).toBe(third.files);
  });

  it('falls back to reading every file when the cache is missing, corrupt, or of no use, and writes a good one again', async () => {
    const { repo } = await newRepo();
    const files = await tempDir();
    const cacheDir = await tempDir();
    await makeFixtureTree(files);
    const opts = { filesCache: { dir: cacheDir }, clock: later };
    await backup(repo, { '/files': files }, opts);
    const file = await cacheFileOf(cacheDir, repo);
    const good = await readFile(file);

    const damages: [string, () => Promise<void>][] = [
      ['missing', () => rm(file)],
      ['empty', () => writeFile(file, '')],
      ['truncated', () => writeFile(file, good.subarray(0, Math.floor(good.length * 0.7)))],
      ['one byte of the body changed', async () => {
        const bad = Buffer.from(good);
        // A content id's hex digit: still valid JSON, but no longer what was stored.
        const at = bad.lastIndexOf(Buffer.from('"', 'latin1')) - 5;
        bad[at] = bad[at] === 0x30 ? 0x31 : 0x30;
        await writeFile(file, bad);
      }],
      ['not JSON', () => writeFile(file, 'garbage\nmore garbage')],
    ];
    for (const [what, damage] of damages) {
      await damage();
      await rewriteKeepingTimes(join(files, 'random.bin'), `changed while the cache was ${what}`);
      const r = await backup(repo, { '/files': files }, opts);
      expect(r.filesUnmodified, what).toBe(0);
      await expectSnapshotEqualsDisk(repo, r.snapshotId, files);
      const again = await backup(repo, { '/files': files }, opts);
      expect(again.filesUnmodified, `after ${what}`).toBe(again.files);
    }

    // With `use: false` (--force) every file is read, and the cache is written all the same.
    const forced = await backup(repo, { '/files': files }, { filesCache: { dir: cacheDir, use: false }, clock: later });
    expect(forced.filesUnmodified).toBe(0);
    expect((await backup(repo, { '/files': files }, opts)).filesUnmodified).toBeGreaterThan(0);
  });

  it('does not take blobs from the cache that a prune removed', async () => {
    const { repo, dir } = await newRepo();
    const files = await tempDir();
    const cacheDir = await tempDir();
    await makeFixtureTree(files);
    const opts = { filesCache: { dir: cacheDir }, clock: later };
    const first = await backup(repo, { '/files': files }, opts);
    await forgetSnapshots(repo, [first.snapshotId]);
    await prune(repo);
    const r = await backup(repo, { '/files': files }, opts);
    // Only the empty file, which has no blob to lose.
    expect(r.filesUnmodified).toBe(1);
    expect(r.dataBlobsAdded).toBeGreaterThan(0);
    await expectSnapshotEqualsDisk(repo, r.snapshotId, files);
    await restic(dir, ['check', '--read-data']);
  });

  it('never skips a changed file: random changes between backups, each snapshot restored and compared with the disk', async () => {
    const { repo, dir } = await newRepo();
    const files = await tempDir();
    const cacheDir = await tempDir();
    await fixtureWithWholeSecondTimes(files);
    // Deterministic choices, so a failure repeats.
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const opts = { filesCache: { dir: cacheDir }, clock: later };
    await backup(repo, { '/files': files }, opts);
    for (let round = 0; round < 8; round++) {
      const all = await listFiles(files);
      for (let k = 0; k < 3; k++) {
        const path = all[rand(all.length)];
        switch (rand(7)) {
          case 0: // same size and mtime, new content (only ctime moves)
            await rewriteKeepingTimes(path, `r${round}k${k}`);
            break;
          case 1: { // replaced: new inode, same size and mtime
            const st = await stat(path);
            await writeFile(`${path}.swap`, seededBytes(`s${round}k${k}`, st.size));
            await utimes(`${path}.swap`, st.atime, st.mtime);
            await rename(`${path}.swap`, path);
            break;
          }
          case 2: { // shorter, mtime put back
            const st = await stat(path);
            await truncate(path, Math.floor(st.size / 2));
            await utimes(path, st.atime, st.mtime);
            break;
          }
          case 3: { // longer, mtime put back
            const st = await stat(path);
            await writeFile(path, seededBytes(`a${round}k${k}`, 1000 + rand(5000)), { flag: 'a' });
            await utimes(path, st.atime, st.mtime);
            break;
          }
          case 4:
            await chmod(path, 0o600 + rand(0o100));
            break;
          case 5:
            await rm(path);
            await symlink(`target-${round}-${k}`, path);
            break;
          default:
            await writeFile(join(files, 'sub dir', `new-${round}-${k}.txt`), seededBytes(`n${round}k${k}`, rand(3000)));
        }
      }
      const r = await backup(repo, { '/files': files }, opts);
      await expectSnapshotEqualsDisk(repo, r.snapshotId, files);
    }
    await restic(dir, ['check', '--read-data']);
  });
});
