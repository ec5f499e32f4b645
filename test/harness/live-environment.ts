/**
 * A real environment for snapshot and restore tests: its own PostgreSQL database with a few
 * tables of data, its own files folder, and a LOCAL destination, all registered in the test
 * app's catalog. Digests compare databases and folders byte for byte.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestApp } from './app.ts';
import { createScratchDatabase } from './database.ts';
import { makeEnvironment, makeProject } from './factories.ts';

export interface LiveEnvironment {
  id: string;
  projectId: string;
  organizationId: string;
  databaseUrl: string;
  filesPath: string;
  destinationId: string;
  repositoryPath: string;
}

export async function sql(url: string, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text, params);
  } finally {
    await c.end();
  }
}

/** Fills a database with a few related tables, a sequence, a view and `rows` rows of varied data. */
export async function seedDatabase(url: string, rows = 500): Promise<void> {
  await sql(url, `
    CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, note text, avatar bytea);
    CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric(12,2), placed_at timestamptz);
    CREATE INDEX orders_customer ON orders(customer_id);
    CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 500;
    INSERT INTO customers (name, email, note, avatar)
      SELECT 'Cliente ' || g || ' ünïcødé', 'c' || g || '@example.com', repeat(md5(g::text), 3), decode(md5(g::text), 'hex')
      FROM generate_series(1, ${rows}) g;
    INSERT INTO orders (customer_id, total, placed_at)
      SELECT (g % ${rows}) + 1, (g * 7.31) % 1000, timestamptz '2026-01-01' + g * interval '1 hour'
      FROM generate_series(1, ${rows * 2}) g;
  `);
}

/** md5 of every table's rows in primary-key order, plus sequence positions. */
export async function databaseDigest(url: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const t of ['customers', 'orders']) {
    const r = await sql(url, `SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), '')) AS h, count(*) AS n FROM ${t} x`);
    out[t] = `${r.rows[0].n}:${r.rows[0].h}`;
  }
  const v = await sql(url, 'SELECT count(*) AS n FROM big_orders');
  out.big_orders = String(v.rows[0].n);
  const s = await sql(url, "SELECT last_value FROM customers_id_seq");
  out.customers_id_seq = String(s.rows[0].last_value);
  return out;
}

/** Relative path → sha256 (files), `->target` (symlinks) or `dir`, with modes. */
export async function filesDigest(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const visit = async (rel: string) => {
    for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const p = path.join(rel, e.name);
      const st = await fs.lstat(path.join(dir, p));
      const mode = (st.mode & 0o7777).toString(8);
      if (e.isSymbolicLink()) out[p] = `-> ${await fs.readlink(path.join(dir, p))}`;
      else if (e.isDirectory()) {
        out[p] = `dir ${mode}`;
        await visit(p);
      } else out[p] = `${mode} ${createHash('sha256').update(await fs.readFile(path.join(dir, p))).digest('hex')}`;
    }
  };
  await visit('');
  return out;
}

export async function seedFiles(dir: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'uploads', 'deep dir'), { recursive: true });
  await fs.writeFile(path.join(dir, 'README.md'), '# files of the environment\n');
  await fs.writeFile(path.join(dir, 'uploads', 'photo ü.jpg'), randomBytes(300_000));
  await fs.writeFile(path.join(dir, 'uploads', 'deep dir', 'empty.txt'), '');
  await fs.writeFile(path.join(dir, 'uploads', 'script.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  await fs.symlink('uploads/photo ü.jpg', path.join(dir, 'latest-photo'));
}

/** Creates database, files and a LOCAL destination, and registers the environment in the app's catalog. */
export async function makeLiveEnvironment(app: Pick<TestApp, 'runtime'>, opts: { organizationId: string; projectId?: string; name?: string; rows?: number; destinationId?: string }): Promise<LiveEnvironment> {
  const { db, secrets } = app.runtime.deps;
  const databaseUrl = await createScratchDatabase('env');
  await seedDatabase(databaseUrl, opts.rows ?? 500);
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-env-'));
  const filesPath = path.join(root, 'files');
  await fs.mkdir(filesPath);
  await seedFiles(filesPath);
  const project = opts.projectId ? await db.project.findUniqueOrThrow({ where: { id: opts.projectId } }) : await makeProject(db, opts.organizationId);
  const env = await makeEnvironment(db, secrets, project, { name: opts.name, databaseUrl, filesPath });
  let destinationId = opts.destinationId;
  let repositoryPath = '';
  if (!destinationId) {
    repositoryPath = path.join(root, 'repository');
    const d = await db.destination.create({ data: { organizationId: opts.organizationId, name: `local ${randomBytes(3).toString('hex')}`, provider: 'LOCAL', config: { path: repositoryPath } } });
    destinationId = d.id;
  } else {
    repositoryPath = String(((await db.destination.findUniqueOrThrow({ where: { id: destinationId } })).config as { path: string }).path);
  }
  await db.environmentDestination.create({ data: { environmentId: env.id, destinationId } });
  return { id: env.id, projectId: project.id, organizationId: opts.organizationId, databaseUrl, filesPath, destinationId, repositoryPath };
}

/** The repository password of a destination, for restic as the independent reader. */
export async function repositoryPassword(app: Pick<TestApp, 'runtime'>, destinationId: string): Promise<string> {
  const d = await app.runtime.db.destination.findUniqueOrThrow({ where: { id: destinationId } });
  return app.runtime.deps.secrets.open(d.repositoryPasswordEncrypted!);
}
