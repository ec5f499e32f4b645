import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedPackageDir, embeddedPgBinaries } from '../../src/db/pg-binaries.ts';
import { startScratchPostgres } from '../../src/db/pg-server.ts';

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pg-server-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('embedded PostgreSQL binaries', () => {
  it('run from a fresh install whose postinstall (hydrate-symlinks) never ran', async () => {
    // A copy of the package without the library symlinks its install script would create.
    const pkg = path.join(tmp, 'linux-pkg');
    await fs.cp(embeddedPackageDir(), pkg, {
      recursive: true,
      filter: async (src) => !(await fs.lstat(src)).isSymbolicLink(),
    });
    const links = JSON.parse(await fs.readFile(path.join(pkg, 'native', 'pg-symlinks.json'), 'utf8')) as { target: string }[];
    expect(links.length).toBeGreaterThan(0);
    await expect(fs.lstat(path.join(pkg, links[0].target))).rejects.toThrow(/ENOENT/);

    const binaries = await embeddedPgBinaries({ packageDir: pkg });
    const server = await startScratchPostgres({ binaries });
    try {
      const client = new pg.Client({ connectionString: server.adminUrl });
      await client.connect();
      const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version') AS v");
      await client.end();
      expect(rows[0].v).toMatch(/^15\./);
    } finally {
      await server.stop();
    }
    await expect(fs.stat(path.dirname(server.dataDir))).rejects.toThrow(/ENOENT/);
  });
});
