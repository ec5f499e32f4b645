/**
 * Ctrl-C during a backup: the command stops with exit code 130, writes no snapshot and leaves
 * no lock behind, even when its stdin producer has gone quiet.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { watch } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, seededBytes, tempDir } from '../engine/helpers.ts';
import { ok, PASSWORD, REPO_ARGV, repoCli, ROOT, TEST_KDF } from './helpers.ts';

afterAll(cleanupTempDirs);

const isId = (name: string) => /^[0-9a-f]{64}$/.test(name);

describe('interrupting a backup', () => {
  let repoDir: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    repoDir = join(await tempDir('bp-cli-int-'), 'repo');
    env = { BACKPLANE_REPO: repoDir, BACKPLANE_REPO_PASSWORD: PASSWORD };
    ok(await repoCli(['init'], { env }));
  });

  it('SIGINT while stdin is open and idle: exit 130, one line, no snapshot, no lock', async () => {
    const locks = join(repoDir, 'locks');
    // The lock file appearing is the sign that the backup is under way.
    const watcher = watch(locks);
    const locked = new Promise<void>((resolve) => {
      watcher.on('change', async () => {
        if ((await readdir(locks)).some(isId)) resolve();
      });
    });
    const [program, ...prefix] = REPO_ARGV;
    const child = spawn(program, [...prefix, 'backup', '--stdin-filename', 'db/app.dump'], {
      cwd: ROOT,
      env: { ...process.env, ...env, BACKPLANE_REPO_KDF: TEST_KDF },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const closed = once(child, 'close');
    // The child stops reading once interrupted; what it leaves unread is of no interest.
    child.stdin.on('error', () => undefined);
    // Less than a pipe buffer: the child has read it all soon after taking its lock, and then
    // waits on a producer that sends nothing more (as pg_dump does while waiting on a lock).
    child.stdin.write(seededBytes('partial', 16 * 1024));
    try {
      await locked;
    } finally {
      watcher.close();
    }
    child.kill('SIGINT');
    const [code] = await closed;
    child.stdin.destroy();
    expect(code).toBe(130);
    expect(stderr).toBe('backplane: interrupted\n');
    expect((await readdir(locks)).filter(isId)).toEqual([]);
    expect((await readdir(join(repoDir, 'snapshots'))).filter(isId)).toEqual([]);
    // The packs it had written are unreferenced: check warns, prune removes them.
    ok(await repoCli(['prune'], { env }));
    const c = ok(await repoCli(['check', '--json'], { env })).json();
    expect(c).toMatchObject({ ok: true, warnings: [] });
  });
});
