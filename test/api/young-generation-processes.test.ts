/**
 * The young-generation cap (src/app/young-generation.ts) is for the API's thread: `backplane
 * serve` holds it, `backplane worker` (its jobs on its main thread) grows as V8 would.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { YOUNG_GENERATION_CAP_BYTES } from '../../src/app/young-generation.ts';
import { startTestApp, testEnv } from '../harness/app.ts';
import { startServerProcess, until } from '../harness/process.ts';
import { CHURN } from '../harness/young-churn.ts';

/**
 * Loaded into a started `backplane` process (NODE_OPTIONS): on SIGUSR2 its main thread allocates
 * (CHURN) and logs the largest young generation it had, as a JSON line.
 */
const PROBE = `
import { isMainThread } from 'node:worker_threads';
import { getHeapSpaceStatistics } from 'node:v8';
const young = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
if (isMainThread) process.on('SIGUSR2', async () => {
  ${CHURN}
  process.stdout.write(JSON.stringify({ msg: 'young generation', max }) + '\\n');
});
`;

describe('young generation of the started commands', () => {
  it('serve holds the cap; a worker grows its young generation as V8 would', { timeout: 180_000 }, async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-young-'));
    const probe = path.join(dir, 'probe.mjs');
    await fs.writeFile(probe, PROBE);
    const app = await startTestApp();
    const largest = async (command: 'serve' | 'worker') => {
      const p = await startServerProcess(testEnv(app.databaseUrl, 'a'.repeat(64), { NODE_OPTIONS: `--import=${probe}` }), command);
      try {
        p.child.kill('SIGUSR2');
        const line = await until(async () => p.logs.find((l) => l.msg === 'young generation'), (l) => l !== undefined, `${command}'s probe`, 120_000);
        return line!.max as number;
      } finally {
        await p.stop();
      }
    };
    try {
      expect(await largest('serve')).toBeLessThanOrEqual(YOUNG_GENERATION_CAP_BYTES);
      // V8 doubles it to 32 MiB here (two 16 MiB semi-spaces).
      expect(await largest('worker')).toBeGreaterThan(YOUNG_GENERATION_CAP_BYTES);
    } finally {
      await app.stop();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
