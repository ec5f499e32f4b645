/**
 * Data for the snapshot benchmark (bench/snapshot.ts): an environment database of realistic
 * rows and a files folder, both generated quickly and both far less compressible than pgbench.
 *
 * Database: four tables (customers, orders, events, documents) with names, emails, addresses,
 * timestamps, numerics, JSON and text blobs, primary keys, a unique index, foreign-key columns
 * and secondary indexes. Values come from md5() and random() inside PostgreSQL, so generating a
 * GiB costs one INSERT … SELECT per batch and no client round trips per row.
 *
 * Files: a few hundred files in nested folders, sizes spread log-uniformly from 1 KiB to a few
 * MiB; about half random bytes (photos, archives: incompressible), half word text (logs, CSV,
 * JSON: compresses about 3x).
 */
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';

const MiB = 1024 * 1024;

export async function sql(url: string, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text, params);
  } finally {
    await c.end();
  }
}

export async function databaseBytes(url: string): Promise<number> {
  return Number((await sql(url, 'SELECT pg_database_size(current_database()) AS n')).rows[0].n);
}

const SCHEMA = `
  CREATE TABLE customers (
    id bigint PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL, email text NOT NULL,
    phone text, street text, city text, postcode text, country char(2), created_at timestamptz NOT NULL,
    updated_at timestamptz, balance numeric(12,2) NOT NULL DEFAULT 0, prefs jsonb);
  CREATE TABLE orders (
    id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL,
    currency char(3) NOT NULL, placed_at timestamptz NOT NULL, shipped_at timestamptz, items jsonb NOT NULL);
  CREATE TABLE events (
    id bigint PRIMARY KEY, customer_id bigint, kind text NOT NULL, occurred_at timestamptz NOT NULL,
    ip inet, user_agent text, payload jsonb);
  CREATE TABLE documents (
    id bigint PRIMARY KEY, customer_id bigint, title text NOT NULL, body text NOT NULL, created_at timestamptz NOT NULL);
`;

/** Built after loading: faster than maintaining them row by row, and they are part of the size. */
const INDEXES = `
  CREATE UNIQUE INDEX customers_email ON customers (email);
  CREATE INDEX customers_name ON customers (last_name, first_name);
  CREATE INDEX orders_customer ON orders (customer_id);
  CREATE INDEX orders_placed ON orders (placed_at);
  CREATE INDEX events_customer_time ON events (customer_id, occurred_at);
  CREATE INDEX documents_customer ON documents (customer_id);
  CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 500;
`;

const pick = (words: string[]) => `(ARRAY[${words.map((w) => `'${w}'`).join(',')}])[1 + floor(random() * ${words.length})::int]`;
const FIRST = pick(['Anna', 'Ben', 'Chloé', 'David', 'Emma', 'Felix', 'Grace', 'Hugo', 'Ines', 'Jonas', 'Kai', 'Lena', 'Mia', 'Noah', 'Olga', 'Paul', 'Quinn', 'Rosa', 'Sven', 'Tara', 'Ugo', 'Vera', 'Wim', 'Yara', 'Zoë']);
const LAST = pick(['Müller', 'Smith', 'García', 'Rossi', 'Dubois', 'Nowak', 'Jensen', 'Silva', 'Kowalski', 'Novak', 'Brown', 'Tanaka', 'Kim', 'Nguyen', 'Popescu', 'Horvat', 'Costa', 'Larsen', 'Schmidt', 'Martin']);
const CITY = pick(['Berlin', 'Lisbon', 'Lyon', 'Gdańsk', 'Aarhus', 'Porto', 'Turin', 'Leeds', 'Brno', 'Graz', 'Ghent', 'Cork', 'Malmö', 'Tartu', 'Split']);
const COUNTRY = pick(['DE', 'PT', 'FR', 'PL', 'DK', 'IT', 'GB', 'CZ', 'AT', 'BE', 'IE', 'SE', 'EE', 'HR']);
const STATUS = pick(['pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded']);
const KIND = pick(['login', 'logout', 'view', 'search', 'add_to_cart', 'checkout', 'password_reset', 'api_call']);
const UA = pick(['Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0', 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Safari/605.1.15', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0', 'curl/8.5.0', 'okhttp/4.12.0']);
const WORD = pick(['invoice', 'report', 'contract', 'offer', 'minutes', 'notes', 'draft', 'summary', 'review', 'plan']);

/** Rows per table in a full batch; a batch is about 50 MiB on disk with these shapes. */
const FULL_BATCH = { customers: 20_000, orders: 60_000, events: 60_000, documents: 5_000 };
let BATCH = FULL_BATCH;

function batchStatements(b: number): string[] {
  const c0 = b * BATCH.customers;
  const o0 = b * BATCH.orders;
  const e0 = b * BATCH.events;
  const d0 = b * BATCH.documents;
  const cust = `1 + floor(random() * ${c0 + BATCH.customers})::bigint`;
  return [
    `INSERT INTO customers SELECT g, f, l, lower(l) || '.' || lower(f) || g || '@' || (ARRAY['example.com','mail.test','shop.invalid'])[1 + g % 3],
        '+49 ' || (100000000 + floor(random() * 899999999)::bigint), (1 + floor(random() * 240))::int || ' ' || initcap(substr(md5(g::text), 1, 8)) || 'straße',
        ${CITY}, lpad(floor(random() * 99999)::int::text, 5, '0'), ${COUNTRY},
        timestamptz '2020-01-01' + random() * interval '5 years', CASE WHEN random() < 0.5 THEN timestamptz '2025-01-01' + random() * interval '300 days' END,
        round((random() * 10000)::numeric, 2),
        jsonb_build_object('newsletter', random() < 0.3, 'locale', (ARRAY['de-DE','en-GB','fr-FR','pt-PT'])[1 + g % 4], 'tags', jsonb_build_array(substr(md5(random()::text), 1, 6), substr(md5(random()::text), 1, 6)), 'score', floor(random() * 1000))
      FROM (SELECT g, ${FIRST} AS f, ${LAST} AS l FROM generate_series(${c0 + 1}, ${c0 + BATCH.customers}) g) s`,
    `INSERT INTO orders SELECT g, ${cust}, ${STATUS}, round((random() * 1000)::numeric, 2), (ARRAY['EUR','GBP','DKK','PLN'])[1 + g % 4],
        timestamptz '2023-01-01' + random() * interval '3 years', CASE WHEN random() < 0.7 THEN timestamptz '2023-01-05' + random() * interval '3 years' END,
        (SELECT jsonb_agg(jsonb_build_object('sku', upper(substr(md5(g::text || i), 1, 10)), 'qty', 1 + floor(random() * 5), 'price', round((random() * 200)::numeric, 2))) FROM generate_series(1, 1 + g % 4) i)
      FROM generate_series(${o0 + 1}, ${o0 + BATCH.orders}) g`,
    `INSERT INTO events SELECT g, ${cust}, ${KIND}, timestamptz '2024-01-01' + random() * interval '2 years',
        ('10.' || floor(random() * 255) || '.' || floor(random() * 255) || '.' || floor(random() * 255))::inet, ${UA},
        jsonb_build_object('path', '/' || substr(md5(random()::text), 1, 12), 'ms', floor(random() * 2000), 'trace', md5(random()::text))
      FROM generate_series(${e0 + 1}, ${e0 + BATCH.events}) g`,
    // Bodies: md5 hex mixed with repeated phrases, 1-6 KiB, so some compress and some do not.
    `INSERT INTO documents SELECT g, ${cust}, initcap(${WORD}) || ' ' || substr(md5(g::text), 1, 8),
        (SELECT string_agg(CASE WHEN random() < 0.5 THEN md5(random()::text) ELSE ${WORD} || ' of ' || ${CITY} || ' no. ' || floor(random() * 1000) END, ' ') FROM generate_series(1, 30 + (g * 7919) % 170) i),
        timestamptz '2021-01-01' + random() * interval '5 years'
      FROM generate_series(${d0 + 1}, ${d0 + BATCH.documents}) g`,
  ];
}

/**
 * Fills the (empty) database at `url` to about `targetMB` MiB. Loads batches until the heap is
 * about 85% of the target (the indexes make up the rest), then builds the indexes.
 */
export async function generateDatabase(url: string, targetMB: number, log: (msg: string) => void): Promise<{ bytes: number; rows: Record<string, number> }> {
  await sql(url, SCHEMA);
  // Small targets get smaller batches, so they land near the size asked for.
  const scale = Math.min(1, Math.max(0.02, targetMB / 800));
  BATCH = Object.fromEntries(Object.entries(FULL_BATCH).map(([k, v]) => [k, Math.round(v * scale)])) as typeof FULL_BATCH;
  const target = targetMB * MiB;
  const base = await databaseBytes(url);
  // Two connections: the machine may have only two cores, and PostgreSQL uses one per backend.
  const clients = [new pg.Client({ connectionString: url }), new pg.Client({ connectionString: url })];
  await Promise.all(clients.map((c) => c.connect()));
  try {
    let batches = 0;
    for (;;) {
      const [a, b, c, d] = batchStatements(batches);
      await Promise.all([
        clients[0].query(a).then(() => clients[0].query(d)),
        clients[1].query(b).then(() => clients[1].query(c)),
      ]);
      batches++;
      const size = await databaseBytes(url);
      if (batches % 5 === 0) log(`  database: ${(size / MiB).toFixed(0)} MiB of heap after ${batches} batches`);
      if (size - base >= target * 0.85) break;
    }
    await Promise.all([clients[0].query(INDEXES), clients[1].query('SELECT 1')]);
    await clients[0].query('VACUUM ANALYZE');
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
  const rows: Record<string, number> = {};
  for (const t of ['customers', 'orders', 'events', 'documents']) rows[t] = Number((await sql(url, `SELECT count(*) AS n FROM ${t}`)).rows[0].n);
  return { bytes: await databaseBytes(url), rows };
}

/** Updates a random 1% of every table's rows, the way a day of traffic touches a database. */
export async function changeOnePercent(url: string): Promise<number> {
  const r = await sql(url, `
    WITH c AS (UPDATE customers SET balance = round((random() * 10000)::numeric, 2), updated_at = now() WHERE random() < 0.01 RETURNING 1),
         o AS (UPDATE orders SET status = 'delivered', shipped_at = now() WHERE random() < 0.01 RETURNING 1),
         e AS (UPDATE events SET payload = payload || jsonb_build_object('seen', true) WHERE random() < 0.01 RETURNING 1),
         d AS (UPDATE documents SET body = body || ' (revised ' || md5(random()::text) || ')' WHERE random() < 0.01 RETURNING 1)
    SELECT (SELECT count(*) FROM c) + (SELECT count(*) FROM o) + (SELECT count(*) FROM e) + (SELECT count(*) FROM d) AS n`);
  return Number(r.rows[0].n);
}

/** A fast byte source (AES-CTR keystream): randomBytes would cost more than the benchmark. */
function keystream(seed: string) {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return (n: number) => cipher.update(Buffer.alloc(n));
}

/** n bytes of word text: lines of words from a skewed vocabulary, numbers and punctuation. */
function textBytes(rnd: (n: number) => Buffer, n: number): Buffer {
  const letters = 'etaoinshrdlucmfwypvbgkjqxz';
  const r = rnd(n);
  const out = Buffer.allocUnsafe(n);
  let col = 0;
  for (let i = 0; i < n; i++) {
    const x = r[i];
    let ch: number;
    if (x < 40) ch = 0x20; // space
    else if (x < 44) ch = col > 60 ? 0x0a : 0x2c; // newline or comma
    else if (x < 60) ch = 0x30 + (x % 10); // digit
    else ch = letters.charCodeAt(Math.floor((((x - 60) / 196) ** 2) * letters.length));
    out[i] = ch;
    col = ch === 0x0a ? 0 : col + 1;
  }
  return out;
}

/** Writes about `targetMB` MiB of files under `dir`; returns the file count and exact byte total. */
export async function generateFiles(dir: string, targetMB: number): Promise<{ files: number; bytes: number }> {
  const rnd = keystream(`files ${targetMB}`);
  const folders = ['uploads/2024', 'uploads/2025', 'uploads/2026/avatars', 'exports/csv', 'exports/json', 'logs', 'media/photos', 'media/video', 'docs', 'cache/thumbs'];
  for (const f of folders) await fs.mkdir(path.join(dir, f), { recursive: true });
  const target = targetMB * MiB;
  // Log-uniform sizes from 1 KiB to 4 MiB average about 600 KiB; the count follows from the target.
  let bytes = 0;
  let files = 0;
  while (bytes < target) {
    const u = rnd(4).readUInt32LE(0) / 2 ** 32;
    const size = Math.min(target - bytes, Math.max(1, Math.round(1024 * 4096 ** u)));
    const folder = folders[files % folders.length];
    const binary = folder.startsWith('media') || folder.startsWith('uploads') || folder.startsWith('cache');
    const name = `${binary ? 'blob' : 'text'}-${files}.${binary ? 'bin' : folder.includes('csv') ? 'csv' : 'log'}`;
    await fs.writeFile(path.join(dir, folder, name), binary ? rnd(size) : textBytes(rnd, size));
    bytes += size;
    files++;
  }
  return { files, bytes };
}

/** Total size of regular files under `dir`. */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await fs.stat(path.join(e.parentPath, e.name))).size;
  }
  return total;
}
