/**
 * The web console's budget: its JavaScript under 300 kB gzipped (a size, not a timing). Built
 * here into a temporary folder from today's sources, so a stale dist/ proves nothing either way.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs build script, without types
import { buildConsole } from '../../scripts/build-console.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BUDGET = 300 * 1024;
let out: string | undefined;

afterAll(async () => {
  if (out) await fs.rm(out, { recursive: true, force: true });
});

it('the console bundle is under 300 kB of gzipped JavaScript, with hashed names that index.html uses', async () => {
  out = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-console-build-'));
  const files = (await buildConsole(ROOT, out)) as string[];
  const scripts = files.filter((f) => f.endsWith('.js'));
  expect(scripts.length).toBeGreaterThan(0);
  const index = await fs.readFile(path.join(out, 'index.html'), 'utf8');
  let gzipped = 0;
  for (const f of scripts) {
    expect(f).toMatch(/^\/assets\/[A-Za-z0-9_-]+-[A-Z0-9]{8}\.js$/);
    expect(index).toContain(`src="${f}"`);
    gzipped += gzipSync(await fs.readFile(path.join(out, f)), { level: 9 }).length;
  }
  console.log(`web console JavaScript: ${(gzipped / 1024).toFixed(1)} kB gzipped (budget ${BUDGET / 1024} kB)`);
  expect(gzipped).toBeLessThan(BUDGET);
  // Offline: nothing is fetched from another host.
  for (const f of scripts) expect(await fs.readFile(path.join(out, f), 'utf8')).not.toMatch(/https:\/\/(cdn|unpkg|fonts)\./);
}, 120_000);
