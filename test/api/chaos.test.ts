import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runChaos } from '../../bench/chaos-run.ts';
import { generateDatabase, generateFiles } from '../../bench/snapshot-data.ts';
import { createScratchDatabase, freshDatabase } from '../harness/database.ts';

/**
 * The short form of `npm run chaos` (bench/chaos-run.ts): three SIGKILLs of `backplane start`,
 * aimed at a snapshot's finalizing phase, a restore's pg_restore and a snapshot's dump, on a small
 * database, each followed by a restart and the full round of checks.
 */
describe('chaos: backplane start killed at chosen moments', () => {
  it('every operation ends, nothing is left behind, restic check passes, every READY snapshot restores', async () => {
    const catalogUrl = await freshDatabase('chaos');
    const envUrl = await createScratchDatabase('chaos_env');
    await generateDatabase(envUrl, 24, () => undefined);
    const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-chaos-'));
    const filesPath = path.join(workDir, 'env', 'files');
    await fs.mkdir(filesPath, { recursive: true });
    await generateFiles(filesPath, 4);
    const lines: string[] = [];
    try {
      const result = await runChaos({
        catalogUrl,
        envUrl,
        filesPath,
        workDir,
        kills: 3,
        seed: 7,
        deadlineMs: 12 * 60_000,
        aims: ['snapshot:finalizing', 'restore:pg_restore', 'snapshot:dumping'],
        serverEnv: { BACKPLANE_REPO_KDF: 'fast' },
        log: (m) => lines.push(m),
      });
      expect(result.problems, lines.join('\n')).toEqual([]);
      expect(result.kills).toBe(3);
      // The finalizing and pg_restore aims hold their phase open (a held catalog row, pg_restore
      // connected), so they land there; a kill aimed at a small dump may land as it finalizes.
      expect(Object.keys(result.phasesHit)).toEqual(expect.arrayContaining(['restore:restoring', 'snapshot:finalizing']));
      for (const phase of Object.keys(result.phasesHit)) expect(phase).toMatch(/^(snapshot:(dumping|finalizing)|restore:restoring)$/);
      expect(result.leftovers.total).toBe(0);
      expect(result.unrestorableReadySnapshots).toBe(0);
      expect(result.readySnapshotsVerified).toBeGreaterThan(0);
      expect(result.resticCheckFailures).toBe(0);
    } finally {
      await fs.rm(workDir, { recursive: true, force: true });
    }
  }, 15 * 60_000);
});
