import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AbortedError } from '../../src/sources/errors.ts';
import { prepareDirectory, restoreDirectoryPaths, scanFiles, swapDirectory } from '../../src/sources/files.ts';

let root: string;
let target: string;

beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'bp-files-'));
  target = path.join(root, 'uploads');
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Every file under `dir` with its contents, and every directory, as a sorted map. */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const rel = path.relative(dir, path.join(entry.parentPath, entry.name));
    out[rel] = entry.isDirectory() ? '<dir>' : await readFile(path.join(dir, rel), 'utf8');
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

async function oldFiles(): Promise<void> {
  await mkdir(path.join(target, 'sub'), { recursive: true });
  await writeFile(path.join(target, 'a.txt'), 'old a');
  await writeFile(path.join(target, 'sub', 'b.txt'), 'old b');
  await chmod(target, 0o750);
}

const fillNew = async (dir: string) => {
  await mkdir(path.join(dir, 'img'));
  await writeFile(path.join(dir, 'img', 'logo.png'), 'new logo');
  await writeFile(path.join(dir, 'a.txt'), 'new a');
};

/** Names in `root` other than the target: temp or previous directories left behind. */
async function siblings(): Promise<string[]> {
  return (await readdir(root)).filter((n) => n !== 'uploads').sort();
}

describe('scanFiles', () => {
  it('counts regular files and their bytes, not directories or symlinks', async () => {
    await mkdir(path.join(target, 'deep', 'er'), { recursive: true });
    await writeFile(path.join(target, 'one'), 'x'.repeat(10));
    await writeFile(path.join(target, 'deep', 'two'), 'y'.repeat(1000));
    await writeFile(path.join(target, 'deep', 'er', 'three'), '');
    await symlink(path.join(target, 'one'), path.join(target, 'link-to-file'));
    // A symlink to a directory must not be walked into (nor loop).
    await symlink(target, path.join(target, 'deep', 'loop'));
    expect(await scanFiles(target)).toEqual({ bytes: 1010n, fileCount: 3 });
  });

  it('counts zero for a missing directory', async () => {
    expect(await scanFiles(path.join(root, 'nope'))).toEqual({ bytes: 0n, fileCount: 0 });
  });
});

describe('swapDirectory', () => {
  it('replaces the directory, keeps the old one beside it and the target\'s mode', async () => {
    await oldFiles();
    const before = await tree(target);
    const mtime = new Date('2024-05-06T07:08:09Z');
    const result = await swapDirectory(target, 'r1', async (dir) => {
      await fillNew(dir);
      await utimes(dir, mtime, mtime);
    });
    expect(result.previousPath).toBe(`${target}.bp_pre_r1`);
    expect(await tree(target)).toEqual({ 'a.txt': 'new a', img: '<dir>', 'img/logo.png': 'new logo' });
    expect(await tree(result.previousPath!)).toEqual(before);
    const st = await stat(target);
    expect(st.mode & 0o7777).toBe(0o750);
    expect(st.mtime.toISOString()).toBe(mtime.toISOString());
    expect(await siblings()).toEqual(['uploads.bp_pre_r1']);
  });

  it('removes the old directory with keepPrevious: false', async () => {
    await oldFiles();
    const result = await swapDirectory(target, 'r2', fillNew, { keepPrevious: false });
    expect(result.previousPath).toBeNull();
    expect(await tree(target)).toEqual({ 'a.txt': 'new a', img: '<dir>', 'img/logo.png': 'new logo' });
    expect(await siblings()).toEqual([]);
  });

  it('leaves the target untouched and no temp dir when fill throws', async () => {
    await oldFiles();
    const before = await tree(target);
    let tempSeen = '';
    const err = await swapDirectory(target, 'r3', async (dir) => {
      tempSeen = dir;
      await fillNew(dir);
      throw new Error('repository read failed');
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('repository read failed');
    expect(tempSeen).toBe(`${target}.bp_restore_r3`);
    expect(await tree(target)).toEqual(before);
    expect((await stat(target)).mode & 0o7777).toBe(0o750);
    expect(await siblings()).toEqual([]);
  });

  it('leaves the target untouched when aborted during fill', async () => {
    await oldFiles();
    const before = await tree(target);
    const controller = new AbortController();
    await expect(
      swapDirectory(
        target,
        'r4',
        async (dir) => {
          await fillNew(dir);
          controller.abort();
        },
        { signal: controller.signal },
      ),
    ).rejects.toBeInstanceOf(AbortedError);
    expect(await tree(target)).toEqual(before);
    expect(await siblings()).toEqual([]);
  });

  it('creates the target when it did not exist', async () => {
    const result = await swapDirectory(target, 'r5', fillNew);
    expect(result.previousPath).toBeNull();
    expect(await tree(target)).toEqual({ 'a.txt': 'new a', img: '<dir>', 'img/logo.png': 'new logo' });
    // Not left with the private mode the temp dir is filled under.
    expect((await stat(target)).mode & 0o777).toBe(0o755);
    expect(await siblings()).toEqual([]);
  });

  it('swaps the directory a symlinked target points to and keeps the link', async () => {
    const real = path.join(root, 'data', 'files');
    await mkdir(real, { recursive: true });
    await writeFile(path.join(real, 'a.txt'), 'old a');
    await symlink(real, target);
    const result = await swapDirectory(target, 'r7', fillNew);
    expect((await lstat(target)).isSymbolicLink()).toBe(true);
    expect(await tree(target)).toEqual({ 'a.txt': 'new a', img: '<dir>', 'img/logo.png': 'new logo' });
    expect(result.previousPath).toBe(`${real}.bp_pre_r7`);
    expect(await tree(result.previousPath!)).toEqual({ 'a.txt': 'old a' });
  });

  it('keeps the temp dir private while it is being filled', async () => {
    await oldFiles();
    let modeDuringFill = 0;
    await swapDirectory(target, 'r6', async (dir) => {
      modeDuringFill = (await stat(dir)).mode & 0o777;
    });
    expect(modeDuringFill).toBe(0o700);
  });
});

describe('prepareDirectory', () => {
  it('changes nothing until commit, and undo() puts the old directory back', async () => {
    await oldFiles();
    const before = await tree(target);
    const prepared = await prepareDirectory(target, 'p1', fillNew);
    expect(prepared.tempPath).toBe(restoreDirectoryPaths(target, 'p1').temp);
    expect(await tree(target)).toEqual(before);
    expect(await prepared.commit()).toEqual({ previousPath: `${target}.bp_pre_p1` });
    expect(await tree(target)).toEqual({ 'a.txt': 'new a', img: '<dir>', 'img/logo.png': 'new logo' });
    await prepared.undo();
    expect(await tree(target)).toEqual(before);
    expect(await siblings()).toEqual([]);
  });

  it('rollback() removes the temp dir; a second commit is refused', async () => {
    await oldFiles();
    const before = await tree(target);
    const prepared = await prepareDirectory(target, 'p2', fillNew);
    await prepared.rollback();
    await prepared.rollback();
    expect(await tree(target)).toEqual(before);
    expect(await siblings()).toEqual([]);
    await expect(prepared.commit()).rejects.toMatchObject({ code: 'INVALID_HANDLE_STATE' });
  });

  it('undo() after a restore into a missing target removes it again', async () => {
    const prepared = await prepareDirectory(target, 'p3', fillNew);
    expect(await prepared.commit()).toEqual({ previousPath: null });
    await prepared.undo();
    expect(await readdir(root)).toEqual([]);
  });

  it('refuses a restore id that was already committed, before filling anything', async () => {
    await oldFiles();
    await swapDirectory(target, 'p4', fillNew);
    let filled = false;
    await expect(prepareDirectory(target, 'p4', async () => void (filled = true))).rejects.toMatchObject({ code: 'RESTORE_ALREADY_COMMITTED' });
    expect(filled).toBe(false);
  });
});
