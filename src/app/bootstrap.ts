import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { issueApiKey } from '../services/api-keys.ts';
import type { Deps } from '../services/deps.ts';
import { applyPitrSettings, checkPitrSource } from '../services/pitr-settings.ts';
import { redactUrl } from './secrets.ts';

export const DEMO_DATABASE = 'backplane_demo';

/**
 * The embedded default's first-run setup: an organization, a demo project with one environment
 * (its own small database and files folder) and a LOCAL destination, all under `home`. Returns
 * the admin key only when it was just created; a later start finds everything and creates nothing.
 */
export async function ensureDemo(
  deps: Deps,
  opts: { home: string; databaseUrlFor: (db: string) => string; /** Tests on a shared cluster name their own. */ demoDatabase?: string },
): Promise<{ created: boolean; adminKey?: string; environmentId: string }> {
  const demoDatabase = opts.demoDatabase ?? DEMO_DATABASE;
  const existing = await deps.db.environment.findFirst({ where: { name: 'demo', project: { name: 'Demo' } } });
  if (existing) return { created: false, environmentId: existing.id };

  const demoUrl = opts.databaseUrlFor(demoDatabase);
  await createDemoDatabase(opts.databaseUrlFor('postgres'), demoUrl, demoDatabase);
  const filesPath = path.join(opts.home, 'demo', 'files');
  await createDemoFiles(filesPath);
  const destinationPath = path.join(opts.home, 'repository');
  await fs.mkdir(destinationPath, { recursive: true });

  const { org, env } = await deps.db.$transaction(async (tx) => {
    const org = (await tx.organization.findFirst({ orderBy: { createdAt: 'asc' } })) ?? (await tx.organization.create({ data: { name: 'Default organization' } }));
    const project = await tx.project.create({ data: { organizationId: org.id, name: 'Demo', description: 'Created by the embedded default' } });
    const destination = await tx.destination.create({
      // The default: environments created later store their snapshots here too.
      data: { organizationId: org.id, name: 'local', provider: 'LOCAL', config: { path: destinationPath }, isDefault: true },
    });
    const env = await tx.environment.create({
      data: {
        organizationId: org.id,
        projectId: project.id,
        name: 'demo',
        type: 'DEVELOPMENT',
        databaseUrlEncrypted: deps.secrets.seal(demoUrl),
        databaseUrlRedacted: redactUrl(demoUrl),
        databaseName: demoDatabase,
        filesPath,
        settings: { create: {} },
        destinations: { create: [{ destinationId: destination.id }] },
      },
    });
    return { org, env };
  });
  // PITR on out of the box: the embedded server streams (initdb's pg_hba allows replication from
  // 127.0.0.1, wal_level is replica). Checked like any server; a refusal leaves it off, with why.
  try {
    const facts = await checkPitrSource(deps, env);
    await deps.db.$transaction((tx) => applyPitrSettings(tx, env.id, { walEnabled: true }, facts));
  } catch (err) {
    deps.logger.warn({ err }, 'point-in-time recovery left off for the demo environment');
  }
  const key = await issueApiKey(deps.db, { organizationId: org.id, name: 'admin (embedded default)', scopes: ['admin'] });
  return { created: true, adminKey: key.secret, environmentId: env.id };
}

async function createDemoDatabase(adminUrl: string, demoUrl: string, name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await admin.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }
  const db = new pg.Client({ connectionString: demoUrl });
  await db.connect();
  try {
    await db.query(`
      CREATE TABLE IF NOT EXISTS customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now());
      CREATE TABLE IF NOT EXISTS products (id serial PRIMARY KEY, sku text NOT NULL UNIQUE, title text NOT NULL, price_cents int NOT NULL);
      CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), product_id int NOT NULL REFERENCES products(id), quantity int NOT NULL, ordered_at timestamptz NOT NULL);
      INSERT INTO customers (name, email) SELECT 'Customer ' || g, 'customer' || g || '@example.com' FROM generate_series(1, 200) g ON CONFLICT DO NOTHING;
      INSERT INTO products (sku, title, price_cents) SELECT 'SKU-' || lpad(g::text, 4, '0'), 'Product ' || g, (g * 137) % 10000 + 99 FROM generate_series(1, 50) g ON CONFLICT DO NOTHING;
      INSERT INTO orders (customer_id, product_id, quantity, ordered_at)
        SELECT (g % 200) + 1, (g % 50) + 1, (g % 5) + 1, timestamptz '2026-01-01' + g * interval '37 minutes'
        FROM generate_series(1, 2000) g WHERE NOT EXISTS (SELECT 1 FROM orders);
    `);
  } finally {
    await db.end();
  }
}

async function createDemoFiles(dir: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'uploads', '2026'), { recursive: true });
  await fs.writeFile(path.join(dir, 'README.txt'), 'Files of the Backplane demo environment. Snapshots capture this folder.\n');
  await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify({ theme: 'dark', features: ['exports', 'reports'] }, null, 2));
  await fs.writeFile(path.join(dir, 'uploads', '2026', 'invoice 0001.pdf'), randomBytes(64 * 1024));
  await fs.writeFile(path.join(dir, 'uploads', '2026', 'photo-ünïcode.jpg'), randomBytes(256 * 1024));
  await fs.writeFile(path.join(dir, 'uploads', '.keep'), '');
}
