/**
 * One temporary folder per test run, made the TMPDIR of the test processes and of everything
 * they start, and removed when the run ends. Test fixtures make their environments, repositories
 * and clusters with `os.tmpdir()`; a test that fails half-way, or a fixture that forgets its
 * cleanup, used to leave them in /tmp for good (3.2 GB of `bp-env-*` on one machine). The folder
 * is named after the run's process, so a run that was killed is found and removed by the next.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { processAlive } from '../../src/db/pg-server.ts';

const PREFIX = 'bp-test-run-';

/**
 * Each project's globalSetup calls useRunTempDir in the run's one process, possibly through two
 * module instances: the folder is shared through globalThis and removed by the last teardown.
 */
interface RunTemp {
  dir: string;
  previous: string | undefined;
  users: number;
}
const KEY = Symbol.for('backplane.test.runTemp');
const registry = globalThis as { [KEY]?: RunTemp };

/** Removes run folders whose process is gone (a run killed before its teardown). */
async function sweep(parent: string): Promise<void> {
  for (const name of await fs.readdir(parent).catch(() => [] as string[])) {
    const pid = Number(name.startsWith(PREFIX) ? name.slice(PREFIX.length).split('-')[0] : NaN);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid)) {
      await fs.rm(path.join(parent, name), { recursive: true, force: true });
    }
  }
}

/** Points TMPDIR at this run's folder; the returned function removes it and restores TMPDIR. */
export async function useRunTempDir(): Promise<() => Promise<void>> {
  let run = registry[KEY];
  if (!run) {
    const parent = os.tmpdir();
    await sweep(parent);
    const dir = await fs.mkdtemp(path.join(parent, `${PREFIX}${process.pid}-`));
    // Like /tmp itself: clusters run as the postgres user make their folders in here too.
    await fs.chmod(dir, 0o1777);
    run = registry[KEY] = { dir, previous: process.env.TMPDIR, users: 0 };
    process.env.TMPDIR = dir;
  }
  run.users++;
  const mine = run;
  let done = false;
  return async () => {
    if (done) return;
    done = true;
    if (--mine.users > 0) return;
    if (mine.previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = mine.previous;
    delete registry[KEY];
    await fs.rm(mine.dir, { recursive: true, force: true });
  };
}

/** vitest globalSetup for projects that need nothing else. */
export default async function setup(): Promise<() => Promise<void>> {
  return useRunTempDir();
}
