import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
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

describe('scratch PostgreSQL', () => {
  it('is shut down and deleted when the process that started it dies without stopping it', async () => {
    const root = path.resolve(import.meta.dirname, '..', '..');
    const script = path.join(tmp, 'scratch-child.mts');
    await fs.writeFile(
      script,
      `import { startScratchPostgres } from ${JSON.stringify(path.join(root, 'src', 'db', 'pg-server.ts'))};
const s = await startScratchPostgres();
console.log(JSON.stringify({ dataDir: s.dataDir }));
setInterval(() => {}, 1000);
`,
    );
    // node itself, not the tsx wrapper: the process we kill must be the one that started the server.
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]);
      });
      child.once('exit', (code) => reject(new Error(`child exited (${code}) before starting PostgreSQL`)));
    });
    const { dataDir } = JSON.parse(line) as { dataDir: string };
    const postmaster = Number((await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);

    child.kill('SIGKILL');
    await exited;
    // Nothing signals us when an unrelated process ends, so poll.
    await vi.waitFor(
      () => {
        expect(existsSync(path.dirname(dataDir))).toBe(false);
        expect(isRunning(postmaster)).toBe(false);
      },
      { timeout: 30_000, interval: 200 },
    );
  });
});

/** Whether `pid` runs; a zombie nobody reaped (no init in a container) does not. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
}
