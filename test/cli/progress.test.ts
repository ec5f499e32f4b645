/**
 * The status line: drawn on a terminal (run under `script`, which gives the command a pty),
 * absent when stderr is a pipe.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, seededBytes, tempDir } from '../engine/helpers.ts';
import { ok, PASSWORD, REPO_ARGV, repoCli, TEST_KDF } from './helpers.ts';

const run = promisify(execFile);
const hasScript = await run('script', ['--version']).then(
  () => true,
  () => false,
);

/** Single-quotes a word for sh. */
const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

afterAll(cleanupTempDirs);

describe('progress line', () => {
  let env: NodeJS.ProcessEnv;
  let src: string;
  beforeAll(async () => {
    const work = await tempDir('bp-cli-progress-');
    src = join(work, 'src');
    await mkdir(src);
    await writeFile(join(src, 'big.bin'), seededBytes('progress', 8 * 1024 * 1024));
    env = { BACKPLANE_REPO: join(work, 'repo'), BACKPLANE_REPO_PASSWORD: PASSWORD };
    ok(await repoCli(['init'], { env }));
  });

  /** Runs `backplane repo <args>` on a pseudo-terminal; returns what the terminal showed. */
  const onTerminal = async (args: string[]) => {
    const command = [...REPO_ARGV, ...args].map(sh).join(' ');
    return (await run('script', ['-qec', command, '/dev/null'], { env: { ...process.env, ...env, BACKPLANE_REPO_KDF: TEST_KDF } })).stdout;
  };

  it.skipIf(!hasScript)('backup on a terminal redraws one line in place, then erases it', async () => {
    const stdout = await onTerminal(['backup', src]);
    // The total comes from a scan running beside the backup: on a busy machine the only redraw of
    // an 8 MiB backup may come before it, showing bytes without a percent. Either way the line is
    // redrawn in place, and a percent, when shown, is of the whole 8 MiB.
    expect(stdout).toMatch(/\r\x1b\[2K\[0:\d\d\] [\d.]+(% [\d.]+)? \S+ /);
    for (const [line] of stdout.matchAll(/\[0:\d\d\] [\d.]+% [^\r]*/g)) expect(line).toMatch(/^\[0:\d\d\] [\d.]+% [\d.]+ \S+ \/ 8\.00 MiB/);
    // The line is erased before the result, so the summary starts on a clean line.
    expect(stdout).toMatch(/\r\x1b\[2Ksnapshot [0-9a-f]{8} saved/);
  });

  it.skipIf(!hasScript)('restore and check --read-data show progress against a known total', async () => {
    const target = await tempDir('bp-cli-progress-restore-');
    const restored = await onTerminal(['restore', 'latest', '--target', target]);
    expect(restored).toMatch(/\r\x1b\[2K\[0:\d\d\] [\d.]+% [\d.]+ \S+ \/ 8\.00 MiB/);
    expect(restored).toMatch(/\r\x1b\[2Krestored snapshot [0-9a-f]{8}/);
    const checked = await onTerminal(['check', '--read-data']);
    expect(checked).toMatch(/\r\x1b\[2K\[0:\d\d\] read \d+\/\d+ packs/);
    expect(checked).toContain('no errors were found');
  });

  it('backup with stderr piped prints no control characters', async () => {
    const r = ok(await repoCli(['backup', src], { env }));
    expect(r.stderr).toBe('');
    expect(r.text).toMatch(/^snapshot [0-9a-f]{8} saved/);
  });
});
