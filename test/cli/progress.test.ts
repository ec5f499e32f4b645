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
import { BIN, ok, PASSWORD, repoCli, TEST_KDF } from './helpers.ts';

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

  it.skipIf(!hasScript)('backup on a terminal redraws one line in place, then erases it', async () => {
    const command = [process.execPath, BIN, 'repo', 'backup', src].map(sh).join(' ');
    const { stdout } = await run('script', ['-qec', command, '/dev/null'], { env: { ...process.env, ...env, BACKPLANE_REPO_KDF: TEST_KDF } });
    expect(stdout).toMatch(/\r\x1b\[2K\[0:\d\d\] [\d.]+% [\d.]+ \S+ \/ 8\.00 MiB/);
    // The line is erased before the result, so the summary starts on a clean line.
    expect(stdout).toMatch(/\r\x1b\[2Ksnapshot [0-9a-f]{8} saved/);
  });

  it('backup with stderr piped prints no control characters', async () => {
    const r = ok(await repoCli(['backup', src], { env }));
    expect(r.stderr).toBe('');
    expect(r.text).toMatch(/^snapshot [0-9a-f]{8} saved/);
  });
});
