import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations } from '../../src/db/migrate.ts';
import { adminUrl, createScratchDatabase } from '../harness/database.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');

/** Runs scripts/migration-new.ts against the test cluster (not a server of its own). */
function runScript(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      TSX,
      [path.join(ROOT, 'scripts', 'migration-new.ts'), ...args],
      { cwd: ROOT, env: { ...process.env, BACKPLANE_MIGRATION_ADMIN_URL: adminUrl() } },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const SCHEMA = `datasource db {
  provider = "postgresql"
}

model Gadget {
  id   String @id
  name String
  @@map("gadget")
}
`;

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-migration-new-'));
  await fs.writeFile(path.join(tmp, 'schema.prisma'), SCHEMA);
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('npm run migration:new', () => {
  it('--check passes on the committed schema and migrations', async () => {
    const r = await runScript(['--check']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/match/);
  });

  it('--check fails, showing the missing SQL, when the schema is ahead of the migrations', async () => {
    const r = await runScript(['--check', '--schema', path.join(tmp, 'schema.prisma'), '--migrations', path.join(tmp, 'migrations')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/CREATE TABLE "gadget"/);
  });

  it('writes the next migration, which applies and then satisfies --check; refuses an empty one', async () => {
    const migrations = path.join(tmp, 'migrations');
    const args = ['--schema', path.join(tmp, 'schema.prisma'), '--migrations', migrations];
    const written = await runScript(['Add Gadget!', ...args]);
    expect(written.code).toBe(0);

    const dirs = (await fs.readdir(migrations, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
    expect(dirs).toHaveLength(1);
    expect(dirs[0]).toMatch(/^\d{14}_add_gadget$/);
    expect(await fs.readFile(path.join(migrations, 'migration_lock.toml'), 'utf8')).toMatch(/provider = "postgresql"/);
    const sql = await fs.readFile(path.join(migrations, dirs[0], 'migration.sql'), 'utf8');
    expect(sql).toMatch(/CREATE TABLE "gadget"/);

    expect(await applyMigrations(await createScratchDatabase('gadget'), { migrationsDir: migrations })).toEqual(dirs);
    expect((await runScript(['--check', ...args])).code).toBe(0);

    const again = await runScript(['more', ...args]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/nothing to write/);
    expect((await fs.readdir(migrations)).filter((n) => n !== 'migration_lock.toml')).toEqual(dirs);
  });
});
