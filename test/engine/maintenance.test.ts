import { afterAll, describe, expect, it, vi } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import {
  Lock,
  REFRESH_LOCK_MS,
  isStale,
  processAlive,
  RepositoryLockedError,
  removeStaleLocks,
  backup,
  check,
  copySnapshot,
  forgetSnapshots,
  listSnapshots,
  prune,
  restore,
  tarStream,
} from '../../src/engine/api.ts';
import { formatTime, parseTime } from '../../src/engine/tree.ts';
import { cleanupTempDirs, describeTree, makeFixtureTree, newRepo, restic, seededBytes, tempDir } from './helpers.ts';

const run = promisify(execFile);
afterAll(cleanupTempDirs);

describe('forget and prune', () => {
  it('removes what only forgotten snapshots used, repacking shared packs', async () => {
    // Packs larger than any one backup: each backup writes exactly one data pack, whatever order its
    // files finish in, so which blobs share a pack is fixed (a's pack mixes kept and forgotten data).
    const { repo, dir } = await newRepo({ packSize: 8 * 1024 * 1024 });
    const a = await tempDir();
    const a2 = await tempDir();
    const b = await tempDir();
    await writeFile(join(a, 'only-a.bin'), seededBytes('a', 600 * 1024));
    await writeFile(join(a, 'shared.bin'), seededBytes('shared', 300 * 1024));
    await writeFile(join(a2, 'only-a2.bin'), seededBytes('a2', 200 * 1024));
    await writeFile(join(b, 'only-b.bin'), seededBytes('b', 400 * 1024));
    await writeFile(join(b, 'shared.bin'), seededBytes('shared', 300 * 1024));
    const sa = await backup(repo, { '/files': a });
    const sa2 = await backup(repo, { '/files': a2 });
    const sb = await backup(repo, { '/files': b });
    const before = (await repo.listIds('data')).length;

    await forgetSnapshots(repo, [sa.snapshotId, sa2.snapshotId]);
    const res = await prune(repo);
    expect(res.blobsRemoved).toBeGreaterThan(0);
    expect(res.packsRepacked).toBeGreaterThan(0);
    expect(res.bytesFreed).toBeGreaterThan(500 * 1024);
    expect((await repo.listIds('data')).length).toBeLessThan(before);

    const c = await check(repo, { readData: true });
    expect(c.errors).toEqual([]);
    expect(c.warnings).toEqual([]);
    await restic(dir, ['check', '--read-data']);
    const target = await tempDir();
    await restore(repo, sb.snapshotId, target, { path: '/files' });
    expect(await describeTree(target)).toEqual(await describeTree(b));
    expect((await listSnapshots(repo)).map((s) => s.id)).toEqual([sb.snapshotId]);
  });
});

describe('check', () => {
  it('with readData reports a flipped byte naming the pack and the blob', async () => {
    const { repo, dir } = await newRepo();
    const src = await tempDir();
    await writeFile(join(src, 'data.bin'), seededBytes('flip', 200 * 1024));
    await backup(repo, { '/files': src });
    expect((await check(repo, { readData: true })).ok).toBe(true);

    const entry = [...repo.index.entries()].find((e) => e.type === 'data')!;
    const packPath = join(dir, 'data', entry.packId.slice(0, 2), entry.packId);
    const bytes = await readFile(packPath);
    bytes[entry.offset + 40] ^= 0x01;
    await writeFile(packPath, bytes);

    const structure = await check(repo);
    expect(structure.ok).toBe(true); // structure alone cannot see a flipped data byte
    const res = await check(repo, { readData: true });
    expect(res.ok).toBe(false);
    const blobErr = res.errors.find((e) => e.kind === 'blob-corrupt');
    expect(blobErr).toMatchObject({ packId: entry.packId, blobId: entry.id });
    expect(blobErr!.message).toContain(entry.packId);
    expect(res.errors.some((e) => e.kind === 'pack-hash' && e.packId === entry.packId)).toBe(true);
  });

  it('reports an indexed pack that is missing', async () => {
    const { repo, dir } = await newRepo();
    const src = await tempDir();
    await writeFile(join(src, 'x.bin'), seededBytes('missing', 100 * 1024));
    await backup(repo, { '/files': src });
    const packId = [...repo.index.entries()].find((e) => e.type === 'data')!.packId;
    await run('rm', [join(dir, 'data', packId.slice(0, 2), packId)]);
    const res = await check(repo);
    expect(res.errors).toContainEqual(expect.objectContaining({ kind: 'pack-missing', packId }));
  });
});

describe('locks', () => {
  it('an exclusive lock blocks backups, ours and restic’s; stale locks are ignored', async () => {
    const { repo, dir } = await newRepo();
    const src = await tempDir();
    await writeFile(join(src, 'f'), 'x');
    const lock = await Lock.acquire(repo, true);
    await expect(backup(repo, { '/files': src })).rejects.toBeInstanceOf(RepositoryLockedError);
    await expect(restic(dir, ['backup', src])).rejects.toThrow(/locked/);
    await lock.release();
    expect(await repo.listIds('locks')).toEqual([]);

    // A lock from another host not refreshed for over 30 minutes no longer counts.
    const old = formatTime(BigInt(Date.now() - 31 * 60 * 1000) * 1_000_000n);
    await repo.saveJson('locks', { time: old, exclusive: true, hostname: 'elsewhere', username: 'x', pid: 1 });
    const r = await backup(repo, { '/files': src });
    expect(r.files).toBe(1);
    // restic reads our lock files too.
    const locks = await restic(dir, ['list', 'locks']);
    expect(locks.trim().split('\n')).toHaveLength(1);
  });
});

describe('lock refresh and stale locks', () => {
  it('a held lock is rewritten every 5 minutes, so restic never sees it stale; only stale locks are removed', async () => {
    const { repo, dir } = await newRepo();
    // Only the refresh timer is faked: file I/O runs for real.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const lock = await Lock.acquire(repo, false);
      const [first] = await repo.listIds('locks');
      const before = (await repo.loadJson<{ time: string }>('locks', first)).time;
      // The refresh must carry a later time than the lock's, which has millisecond resolution.
      for (const t = Date.now(); Date.now() <= t; );
      vi.advanceTimersByTime(REFRESH_LOCK_MS);
      let ids = await repo.listIds('locks');
      for (let i = 0; i < 1000 && (ids.length !== 1 || ids[0] === first); i++) ids = await repo.listIds('locks');
      expect(ids).toHaveLength(1);
      expect(ids[0]).not.toBe(first);
      // Compared as times: the text trims trailing zeros ('05.5Z' is later than '05.53Z' as text).
      expect(parseTime((await repo.loadJson<{ time: string }>('locks', ids[0])).time) > parseTime(before)).toBe(true);
      // A live lock of this process stays; one of this host's process that is gone, and one too old, go.
      await repo.saveJson('locks', { time: formatTime(BigInt(Date.now()) * 1_000_000n), exclusive: false, hostname: (await import('node:os')).hostname(), username: 'x', pid: 2 ** 22 + 12345 });
      await repo.saveJson('locks', { time: formatTime(BigInt(Date.now() - 31 * 60 * 1000) * 1_000_000n), exclusive: false, hostname: 'elsewhere', username: 'x', pid: 1 });
      expect(await removeStaleLocks(repo, false, { keepUnreadable: true })).toBe(2);
      expect(await repo.listIds('locks')).toEqual(ids);
      expect((await restic(dir, ['list', 'locks'])).trim()).toBe(ids[0]);
      await lock.release();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('a lock held by a zombie', () => {
  it('is stale: an exited process of this host that no one reaped answers kill 0, but is gone', () => {
    // Our own child, which this thread's event loop would reap: everything below runs in one
    // synchronous stretch, so it cannot until the test returns (then it does, leaving nothing).
    const child = spawn('true', { stdio: 'ignore' });
    const pid = child.pid!;
    const state = () => /^State:\s*(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    for (const deadline = Date.now() + 10_000; state() !== 'Z'; ) if (Date.now() > deadline) throw new Error('the child never exited');
    expect(() => process.kill(pid, 0)).not.toThrow();
    expect(processAlive(pid)).toBe(false);
    expect(isStale({ time: formatTime(BigInt(Date.now()) * 1_000_000n), exclusive: true, hostname: hostname(), username: 'x', pid })).toBe(true);
    // A live process of this host (this one) is not.
    expect(processAlive(process.pid)).toBe(true);
    expect(isStale({ time: formatTime(BigInt(Date.now()) * 1_000_000n), exclusive: true, hostname: hostname(), username: 'x', pid: process.pid })).toBe(false);
  });
});

describe('copy', () => {
  it('copies one snapshot into another repository, sending only missing blobs', async () => {
    const { repo: src } = await newRepo();
    const { repo: dst, dir: dstDir } = await newRepo();
    const files = await tempDir();
    await makeFixtureTree(files);
    const s = await backup(src, { '/files': files }, { tags: ['t1'] });
    const c1 = await copySnapshot(src, dst, s.snapshotId);
    expect(c1.blobsCopied).toBeGreaterThan(5);
    await restic(dstDir, ['check', '--read-data']);
    const target = await tempDir();
    await restore(dst, c1.snapshotId, target, { path: '/files' });
    expect(await describeTree(target)).toEqual(await describeTree(files));
    const copied = (await listSnapshots(dst))[0];
    expect(copied.tags).toEqual(['t1']);
    expect(copied.original).toBe(s.snapshotId);

    const c2 = await copySnapshot(src, dst, s.snapshotId);
    expect(c2.blobsCopied).toBe(0);
  });
});

describe('tar', () => {
  it('streams a snapshot path as a tar that GNU tar extracts identically', async () => {
    const { repo } = await newRepo();
    const files = await tempDir();
    await makeFixtureTree(files);
    const s = await backup(repo, { '/files': files });
    const out = join(await tempDir(), 'snap.tar');
    await pipeline(tarStream(repo, s.snapshotId, '/files'), createWriteStream(out));
    const target = await tempDir();
    await run('tar', ['-xpf', out, '-C', target]);
    expect(await describeTree(target)).toEqual(await describeTree(files));
    const { stdout } = await run('tar', ['-tf', out]);
    expect(stdout).toContain('x'.repeat(120) + '.long');
    expect(stdout).toContain('ünïcødé ✓/ファイル.txt');

    const one = join(await tempDir(), 'one.tar');
    await pipeline(tarStream(repo, s.snapshotId, '/files/sub dir/deeper/deep.bin'), createWriteStream(one));
    const t2 = await tempDir();
    await run('tar', ['-xpf', one, '-C', t2]);
    expect(await describeTree(t2)).toEqual({ 'deep.bin': (await describeTree(join(files, 'sub dir', 'deeper')))['deep.bin'] });
  });
});
