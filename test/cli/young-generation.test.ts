import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { YOUNG_GENERATION_CAP_BYTES } from '../../src/app/young-generation.ts';
import { CHURN } from '../harness/young-churn.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * A process that holds its young generation through start-up, releases it as a server does once
 * up, then allocates over many turns of the event loop, keeping much alive (as requests do):
 * prints the largest young generation it had, in bytes. In a process of its own: the setting is
 * process-wide.
 */
function churn(): number {
  const script = `
    import { holdYoungGeneration, releaseYoungGeneration, youngGenerationBytes as young } from ${JSON.stringify(path.join(ROOT, 'src/app/young-generation.ts'))};
    holdYoungGeneration();
    releaseYoungGeneration();
    ${CHURN}
    process.stdout.write(String(max));
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`churn failed (${r.status}): ${r.stderr}`);
  return Number(r.stdout);
}

describe('young generation', () => {
  it('grows after release, but not past the cap, however much survives', () => {
    const max = churn();
    // V8 would double it to 32 MiB here (two 16 MiB semi-spaces).
    expect(max).toBeGreaterThan(2 * 1024 * 1024);
    expect(max).toBeLessThanOrEqual(YOUNG_GENERATION_CAP_BYTES);
  });
});
