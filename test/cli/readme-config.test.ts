/**
 * The README's table of environment variables and the configuration the code reads are one list:
 * a setting added to src/app/config.ts without a row, or a row left for a setting no code reads, fails.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { configSchema } from '../../src/app/config.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

it("every setting config.ts reads has a row in the README's variables table, and every row is a setting", async () => {
  const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('| variable | default | meaning |'));
  const rows = table.slice(0, table.search(/\n(?!\|)/)).split('\n').slice(2);
  // A row may name several settings: `MAX_DEPTH` / `MAX_ALIASES` / …
  const documented = new Set(rows.flatMap((r) => [...r.split('|')[1].matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1])));
  const read = Object.keys(configSchema.shape);
  expect(read.filter((k) => !documented.has(k)), 'settings without a README row').toEqual([]);
  // A few are read outside config.ts on purpose (BACKPLANE_REPO_KDF, a test setting, in src/domain/test-kdf.ts).
  const sources = await Promise.all(
    (await fs.readdir(path.join(ROOT, 'src'), { recursive: true }))
      .filter((f) => f.endsWith('.ts') && !f.startsWith('generated'))
      .map((f) => fs.readFile(path.join(ROOT, 'src', f), 'utf8')),
  );
  const readElsewhere = (k: string) => sources.some((s) => s.includes(`'${k}'`));
  expect([...documented].filter((k) => !read.includes(k) && !readElsewhere(k)), 'README rows naming no setting').toEqual([]);
  expect(read.length).toBeGreaterThan(20);
});
