import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, DEFAULT_MIGRATIONS_DIR, diffToSchema, migrationStatus, readMigrationsDir } from '../../src/db/migrate.ts';
import { createScratchDatabase, freshDatabase } from '../harness/database.ts';

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** A small migrations folder of our own, so these tests do not depend on the data model. */
let tmp: string;
const FIRST = `-- CreateTable
CREATE TABLE "widget" ("id" TEXT NOT NULL, "label" TEXT, CONSTRAINT "widget_pkey" PRIMARY KEY ("id"));
`;
// A function body and a literal with semicolons: the script must reach PostgreSQL whole.
const SECOND = `CREATE FUNCTION widget_touch() RETURNS trigger AS $$
BEGIN
  NEW.label := coalesce(NEW.label, 'a;b');
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER widget_touch BEFORE INSERT ON "widget" FOR EACH ROW EXECUTE FUNCTION widget_touch();
`;
const SCHEMA = `datasource db {
  provider = "postgresql"
}

model Widget {
  id    String  @id
  label String?
  @@map("widget")
}
`;

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-migrate-test-'));
  const dir = path.join(tmp, 'migrations');
  await fs.mkdir(path.join(dir, '20250101000000_widget'), { recursive: true });
  await fs.mkdir(path.join(dir, '20250102000000_touch'), { recursive: true });
  await fs.writeFile(path.join(dir, '20250101000000_widget', 'migration.sql'), FIRST);
  await fs.writeFile(path.join(dir, '20250102000000_touch', 'migration.sql'), SECOND);
  await fs.writeFile(path.join(dir, 'migration_lock.toml'), 'provider = "postgresql"\n');
  await fs.writeFile(path.join(tmp, 'schema.prisma'), SCHEMA);
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('applyMigrations', () => {
  it('applies every migration to an empty database and records it as prisma migrate deploy does', async () => {
    const url = await createScratchDatabase('migrate');
    const applied = await applyMigrations(url, { migrationsDir: path.join(tmp, 'migrations') });
    expect(applied).toEqual(['20250101000000_widget', '20250102000000_touch']);

    const rows = await query<{ migration_name: string; checksum: string; finished_at: Date | null; applied_steps_count: number; rolled_back_at: Date | null }>(
      url,
      'SELECT migration_name, checksum, finished_at, applied_steps_count, rolled_back_at FROM _prisma_migrations ORDER BY migration_name',
    );
    expect(rows.map((r) => r.migration_name)).toEqual(['20250101000000_widget', '20250102000000_touch']);
    // Prisma's checksum is the hex SHA-256 of the script file.
    expect(rows.map((r) => r.checksum)).toEqual([sha256(SECOND), sha256(FIRST)].reverse());
    for (const r of rows) {
      expect(r.finished_at).toBeInstanceOf(Date);
      expect(r.rolled_back_at).toBeNull();
      expect(r.applied_steps_count).toBe(1);
    }

    await query(url, `INSERT INTO widget (id) VALUES ('w1')`);
    expect(await query(url, 'SELECT id, label FROM widget')).toEqual([{ id: 'w1', label: 'a;b' }]);
  });

  it('is a no-op the second time', async () => {
    const url = await createScratchDatabase('migrate_twice');
    const dir = path.join(tmp, 'migrations');
    await applyMigrations(url, { migrationsDir: dir });
    const before = await query(url, 'SELECT * FROM _prisma_migrations ORDER BY migration_name');
    expect(await applyMigrations(url, { migrationsDir: dir })).toEqual([]);
    expect(await query(url, 'SELECT * FROM _prisma_migrations ORDER BY migration_name')).toEqual(before);
  });

  it('applies only the migrations added since the last run', async () => {
    const url = await createScratchDatabase('migrate_more');
    const dir = path.join(tmp, 'partial');
    await fs.mkdir(path.join(dir, '20250101000000_widget'), { recursive: true });
    await fs.writeFile(path.join(dir, '20250101000000_widget', 'migration.sql'), FIRST);
    expect(await applyMigrations(url, { migrationsDir: dir })).toEqual(['20250101000000_widget']);
    await fs.cp(path.join(tmp, 'migrations', '20250102000000_touch'), path.join(dir, '20250102000000_touch'), { recursive: true });
    expect(await applyMigrations(url, { migrationsDir: dir })).toEqual(['20250102000000_touch']);
  });

  it('applies each migration once when several processes deploy at the same time', async () => {
    const url = await createScratchDatabase('migrate_race');
    const dir = path.join(tmp, 'migrations');
    const results = await Promise.all([1, 2, 3, 4].map(() => applyMigrations(url, { migrationsDir: dir })));
    expect(results.flat().sort()).toEqual(['20250101000000_widget', '20250102000000_touch']);
    const rows = await query(url, 'SELECT migration_name FROM _prisma_migrations');
    expect(rows).toHaveLength(2);
  });

  it('fails with context, recording the failed migration, when a script does not apply', async () => {
    const url = await createScratchDatabase('migrate_bad');
    const dir = path.join(tmp, 'bad');
    await fs.mkdir(path.join(dir, '20250101000000_bad'), { recursive: true });
    await fs.writeFile(path.join(dir, '20250101000000_bad', 'migration.sql'), 'CREATE TABLE ok (id int);\nCREATE TABLE broken (id nosuchtype);\n');
    await expect(applyMigrations(url, { migrationsDir: dir })).rejects.toThrow(/applying migrations from .*bad.*failed: .*nosuchtype/s);
    // The script ran as one transaction: nothing of it stays behind.
    expect(await query(url, `SELECT to_regclass('ok') AS t`)).toEqual([{ t: null }]);
    const rows = await query<{ finished_at: Date | null }>(url, 'SELECT finished_at FROM _prisma_migrations');
    expect(rows).toHaveLength(1);
    expect(rows[0].finished_at).toBeNull();
    // A failed migration blocks further deploys, as with prisma migrate deploy.
    await expect(applyMigrations(url, { migrationsDir: dir })).rejects.toThrow(/failed/);
  });

  it('reports a database that does not exist with its redacted url', async () => {
    const url = new URL(await createScratchDatabase('exists'));
    url.pathname = '/no_such_database';
    await expect(applyMigrations(url.toString(), { migrationsDir: path.join(tmp, 'migrations') })).rejects.toThrow(
      /:\*\*\*@.*no_such_database.*does not exist/,
    );
  });
});

describe('migrationStatus', () => {
  it('lists pending, then nothing, then an edited migration, without changing the database', async () => {
    const url = await createScratchDatabase('status');
    const dir = path.join(tmp, 'status');
    await fs.cp(path.join(tmp, 'migrations'), dir, { recursive: true });
    const none = { pending: [], failed: [], edited: [], unknown: [] };
    expect(await migrationStatus(url, { migrationsDir: dir })).toEqual({ ...none, pending: ['20250101000000_widget', '20250102000000_touch'] });
    expect(await query(url, `SELECT to_regclass('widget') AS t`)).toEqual([{ t: null }]);

    await applyMigrations(url, { migrationsDir: dir });
    expect(await migrationStatus(url, { migrationsDir: dir })).toEqual(none);

    await fs.appendFile(path.join(dir, '20250101000000_widget', 'migration.sql'), '-- edited afterwards\n');
    expect(await migrationStatus(url, { migrationsDir: dir })).toEqual({ ...none, edited: ['20250101000000_widget'] });
  });
});

describe('diffToSchema', () => {
  it('is empty when the database matches the schema, and the SQL of the change otherwise', async () => {
    const url = await createScratchDatabase('diff');
    await applyMigrations(url, { migrationsDir: path.join(tmp, 'migrations') });
    expect(await diffToSchema(url, path.join(tmp, 'schema.prisma'))).toBe('');

    const changed = path.join(tmp, 'changed.prisma');
    await fs.writeFile(changed, SCHEMA.replace('label String?', 'label String?\n  size  Int     @default(0)'));
    const sql = await diffToSchema(url, changed);
    expect(sql).toMatch(/ALTER TABLE "widget" ADD COLUMN\s+"size" INTEGER NOT NULL DEFAULT 0/);
  });
});

describe('the committed migrations', () => {
  it('read as a migration list in name order', async () => {
    const list = await readMigrationsDir(DEFAULT_MIGRATIONS_DIR);
    const names = list.migrationDirectories.map((d) => d.path);
    expect(names).toEqual([...names].sort());
  });

  it('are applied to the template that freshDatabase copies', async () => {
    const url = await freshDatabase('committed');
    const list = await readMigrationsDir(DEFAULT_MIGRATIONS_DIR);
    const rows = await query<{ migration_name: string }>(url, 'SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL ORDER BY migration_name').catch(() => []);
    expect(rows.map((r) => r.migration_name)).toEqual(list.migrationDirectories.map((d) => d.path));
    expect(await applyMigrations(url)).toEqual([]);
  });
});
