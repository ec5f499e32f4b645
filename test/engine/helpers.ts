/**
 * Shared fixtures for engine tests: temporary directories, a file tree with every kind of
 * entry the engine must carry, a tree comparison, and a runner for the real restic binary.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, utimes, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { LocalBackend } from '../../src/destinations/local.ts';
import { Repository } from '../../src/engine/api.ts';

const run = promisify(execFile);

export const PASSWORD = 'correct horse battery staple';
/** Cheap scrypt so tests are fast; the format stores the parameters. */
export const TEST_KDF = { N: 1024, r: 8, p: 1 };
/** Small chunks so modest test files span many blobs. */
export const TEST_CHUNKER = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

const dirs: string[] = [];

/** A fresh temporary directory, removed by cleanupTempDirs(). */
export async function tempDir(prefix = 'bp-engine-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** Removes every directory made by tempDir(). */
export async function cleanupTempDirs(): Promise<void> {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** A new repository in a fresh directory, with test parameters. */
export async function newRepo(opts: { packSize?: number } = {}): Promise<{ repo: Repository; dir: string }> {
  const dir = join(await tempDir('bp-repo-'), 'repo');
  const repo = await Repository.init(new LocalBackend(dir, { fsync: false }), PASSWORD, {
    kdf: TEST_KDF,
    chunker: TEST_CHUNKER,
    open: { packSize: opts.packSize ?? 512 * 1024 },
  });
  return { repo, dir };
}

/** Deterministic pseudo-random bytes (so failures reproduce). */
export function seededBytes(seed: string, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let off = 0;
  let counter = 0;
  while (off < n) {
    const block = createHash('sha256').update(`${seed}:${counter++}`).digest();
    off += block.copy(out, off);
  }
  return out;
}

/**
 * Writes a tree with regular, empty, large, compressible and incompressible files, nested
 * directories, symlinks (relative, absolute, dangling), odd names and explicit modes/mtimes.
 */
export async function makeFixtureTree(root: string): Promise<void> {
  await mkdir(join(root, 'sub dir', 'deeper'), { recursive: true });
  await mkdir(join(root, 'empty-dir'), { recursive: true });
  await mkdir(join(root, 'ünïcødé ✓'), { recursive: true });
  await writeFile(join(root, 'hello.txt'), 'hello world\n');
  await writeFile(join(root, 'empty'), '');
  await writeFile(join(root, 'random.bin'), seededBytes('random', 700 * 1024 + 13));
  await writeFile(join(root, 'text.log'), Buffer.from('line of very compressible text\n'.repeat(40000)));
  await writeFile(join(root, 'sub dir', 'file with spaces.txt'), 'spaces\n');
  await writeFile(join(root, 'sub dir', 'deeper', 'deep.bin'), seededBytes('deep', 200 * 1024));
  await writeFile(join(root, 'ünïcødé ✓', 'ファイル.txt'), 'non-ascii\n');
  await writeFile(join(root, 'quote"and\\backslash'), 'odd name\n');
  await writeFile(join(root, 'x'.repeat(120) + '.long'), 'long name\n');
  await writeFile(join(root, 'script.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(root, 'script.sh'), 0o750);
  await writeFile(join(root, 'readonly.txt'), 'ro\n');
  await chmod(join(root, 'readonly.txt'), 0o444);
  await symlink('hello.txt', join(root, 'link-to-hello'));
  await symlink('/etc/passwd', join(root, 'abs-link'));
  await symlink('does/not/exist', join(root, 'dangling'));
  const when = new Date('2021-03-04T05:06:07.123Z');
  for (const p of ['hello.txt', 'empty', 'sub dir/deeper/deep.bin', 'script.sh']) await utimes(join(root, p), when, when);
  await utimes(join(root, 'sub dir'), when, when);
}

/** A comparable description of a tree: type, mode, mtime (ms), size, content hash, link target. */
export async function describeTree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const visit = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(p);
      if (st.isSymbolicLink()) out[r] = `link ${await readlink(p)}`;
      else if (st.isDirectory()) {
        await visit(p, r);
        out[r] = `dir ${(st.mode & 0o7777).toString(8)} ${Math.floor(st.mtimeMs)}`;
      } else {
        const h = createHash('sha256').update(await readFile(p)).digest('hex').slice(0, 16);
        out[r] = `file ${(st.mode & 0o7777).toString(8)} ${Math.floor(st.mtimeMs)} ${st.size} ${h}`;
      }
    }
  };
  await visit(root, '');
  return out;
}

/** Runs restic against a repository directory; returns stdout. */
export async function restic(repoDir: string, args: string[]): Promise<string> {
  const { stdout } = await run('restic', ['-r', repoDir, '--no-cache', ...args], {
    env: { ...process.env, RESTIC_PASSWORD: PASSWORD },
    maxBuffer: 64 * 1024 * 1024,
    timeout: 90_000, // fail rather than hang if restic ever blocks
  });
  return stdout;
}

export { randomBytes };
