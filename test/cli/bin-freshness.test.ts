/**
 * bin/backplane.js runs dist/ only while no source file bundled into what the command loads
 * changed since the build started (dist/BUILT, written by scripts/build.mjs), else the sources
 * through tsx. Checked on a checkout of its own: the real bin script, a dist/ and a src/ that
 * each say which of them ran, and modification times set explicitly.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT } from './helpers.ts';

const run = promisify(execFile);
const REPO_INPUTS = ['src/cli/main.ts', 'src/engine/a.ts'];
const ALL_INPUTS = [...REPO_INPUTS, 'src/app/b.ts'];

let root: string;
const started = Date.now();
const before = new Date(started - 60_000);
const after = new Date(started + 1_000);

async function which(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [join(root, 'bin', 'backplane.js'), ...args], { cwd: root });
  return stdout.trim();
}

async function setTimes(when: Date, files = ALL_INPUTS): Promise<void> {
  for (const f of files) await utimes(join(root, f), when, when);
}

async function writeStamp(content: string): Promise<void> {
  await writeFile(join(root, 'dist', 'BUILT'), content);
}

const stamp = () => JSON.stringify({ started, inputs: { repo: REPO_INPUTS, all: ALL_INPUTS } });

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'bp-bin-'));
  for (const d of ['bin', 'dist', 'src/cli', 'src/engine', 'src/app']) await mkdir(join(root, d), { recursive: true });
  await copyFile(BIN, join(root, 'bin', 'backplane.js'));
  await symlink(join(ROOT, 'node_modules'), join(root, 'node_modules'));
  await writeFile(join(root, 'package.json'), '{"type":"module"}\n');
  await writeFile(join(root, 'dist', 'backplane.mjs'), "process.stdout.write(`dist ${process.argv.slice(2).join(' ')}`);\n");
  // A type annotation: only tsx runs this file.
  await writeFile(join(root, 'src/cli/main.ts'), "const from: string = 'src';\nprocess.stdout.write(`${from} ${process.argv.slice(2).join(' ')}`);\n");
  await writeFile(join(root, 'src/engine/a.ts'), 'export const a: number = 1;\n');
  await writeFile(join(root, 'src/app/b.ts'), 'export const b: number = 2;\n');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('bin/backplane.js', { timeout: 60_000 }, () => {
  it('runs dist/ while every bundled source is older than the build', async () => {
    await writeStamp(stamp());
    await setTimes(before);
    expect(await which('repo', 'snapshots')).toBe('dist repo snapshots');
    expect(await which('serve')).toBe('dist serve');
  });

  it('runs the sources when a file bundled into the command changed; repo looks only at its own', async () => {
    await writeStamp(stamp());
    await setTimes(before);
    await setTimes(after, ['src/app/b.ts']);
    expect(await which('repo', 'snapshots')).toBe('dist repo snapshots');
    expect(await which('serve')).toBe('src serve');
    await setTimes(after, ['src/engine/a.ts']);
    expect(await which('repo', 'snapshots')).toBe('src repo snapshots');
  });

  it('counts a file changed while the build ran as newer than the build', async () => {
    // The stamp is written when the build ends, a minute after it started; the file changed between.
    await writeStamp(stamp());
    const ended = new Date(started + 60_000);
    await utimes(join(root, 'dist', 'BUILT'), ended, ended);
    await setTimes(before);
    await setTimes(after, ['src/cli/main.ts']);
    expect(await which('repo', '--help')).toBe('src repo --help');
  });

  it('runs the sources when a bundled file is gone, or the stamp is missing or of an older build', async () => {
    await setTimes(before);
    await writeStamp(new Date(started).toISOString() + '\n');
    expect(await which('repo', '--help')).toBe('src repo --help');
    await writeStamp('null\n');
    expect(await which('repo', '--help')).toBe('src repo --help');
    await unlink(join(root, 'dist', 'BUILT'));
    expect(await which('repo', '--help')).toBe('src repo --help');
    await writeStamp(JSON.stringify({ started, inputs: { repo: [...REPO_INPUTS, 'src/engine/gone.ts'], all: ALL_INPUTS } }));
    expect(await which('repo', '--help')).toBe('src repo --help');
    expect(await which('serve')).toBe('dist serve');
  });
});
