import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { AbortedError } from '../../src/sources/errors.ts';
import { prepareMove, restoreDatabaseNames } from '../../src/sources/postgres.ts';
import { createScratchDatabase } from '../harness/database.ts';
import { sql } from '../harness/live-environment.ts';
import { waitFor } from '../harness/schedule-helpers.ts';

const query = async (url: string, text: string, params: unknown[] = []) => (await sql(url, text, params)).rows;

const nameOf = (url: string) => decodeURIComponent(new URL(url).pathname.slice(1));

/**
 * Several tables large enough to be cut into chunks at a small chunk size (a quoted name in a
 * quoted schema, generated and dropped columns, partitions), next to what pg_dump's data section
 * must still carry: sequence values, a large object, small tables.
 */
const SEED = `
  CREATE SCHEMA "Sch ""ema";
  CREATE TABLE "Sch ""ema"."odd ""name"" tbl" (id serial PRIMARY KEY, label text, payload bytea, at timestamptz, f float8, span interval);
  INSERT INTO "Sch ""ema"."odd ""name"" tbl" (label, payload, at, f, span)
    SELECT 'row ' || g || E' tab\\there ' || repeat('ü', g % 7), decode(md5(g::text), 'hex'), '2024-01-01 00:00+00'::timestamptz + g * interval '1 minute', 1.0 / g, g * interval '1 second'
      FROM generate_series(1, 3000) g;
  CREATE TABLE accounts (aid int PRIMARY KEY, bid int NOT NULL, filler char(84), gen int GENERATED ALWAYS AS (aid * 2) STORED, dropped int);
  INSERT INTO accounts (aid, bid, filler, dropped) SELECT g, g % 10, 'x', g FROM generate_series(1, 5000) g;
  ALTER TABLE accounts DROP COLUMN dropped;
  DELETE FROM accounts WHERE aid % 5 = 0;
  CREATE TABLE branches (bid int PRIMARY KEY, name text);
  INSERT INTO branches SELECT g, 'b' || g FROM generate_series(0, 9) g;
  ALTER TABLE accounts ADD FOREIGN KEY (bid) REFERENCES branches (bid);
  CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, day date NOT NULL, body text) PARTITION BY RANGE (day);
  CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
  CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
  INSERT INTO events (day, body) SELECT '2024-01-01'::date + (g % 700), repeat('e', 50) FROM generate_series(1, 4000) g;
  CREATE SEQUENCE invoice_seq START 1000;
  SELECT setval('invoice_seq', 1234);
  SELECT lo_from_bytea(424242, 'a large object');
  CREATE ROLE move_reader NOLOGIN;
  GRANT SELECT ON accounts TO move_reader;
  COMMENT ON TABLE accounts IS 'moved in chunks';
`;

const TABLES = ['"Sch ""ema"."odd ""name"" tbl"', 'accounts', 'branches', 'events', 'events_2024', 'events_2025'];

/** What must arrive: each table's rows, sequence values, the large object, and the schema as pg_dump prints it. */
async function contents(url: string) {
  const rows: Record<string, unknown> = {};
  for (const t of TABLES) {
    rows[t] = (await query(url, `SELECT count(*)::int AS n, md5(string_agg(x::text, '|' ORDER BY x::text)) AS h FROM ONLY ${t} x`))[0];
  }
  const sequences = await query(url, `SELECT sequencename, last_value::text FROM pg_sequences ORDER BY sequencename`);
  const lo = await query(url, `SELECT convert_from(lo_get(424242), 'UTF8') AS v`);
  const env = { ...process.env, PGDATABASE: undefined };
  const schema = execFileSync('pg_dump', ['--schema-only', '--no-comments', `--dbname=${url}`], { env }).toString().replace(/^\\(un)?restrict .*$/gm, ''); // a random key per run
  const comment = await query(url, `SELECT obj_description('accounts'::regclass) AS c`);
  return { rows, sequences, lo, schema, comment };
}

describe('prepareMove (SWAP: a database moved in parallel streams)', () => {
  it('moves tables cut into chunks, sequences, a large object, grants and constraints exactly', async () => {
    const source = await createScratchDatabase('move_src');
    const target = await createScratchDatabase('move_dst');
    await query(source, SEED);
    await query(target, 'CREATE TABLE stale (v int)');
    const want = await contents(source);
    // 64 KiB chunks: every seeded table but branches is cut into several.
    const move = prepareMove(target, source, { restoreId: 'mv1', streams: 2, chunkBytes: 64 * 1024 });
    const prepared = await move.prepared;
    await move.sourceDone;
    await prepared.commit();
    expect(await contents(target)).toEqual(want);
    expect(want.rows['accounts']).toMatchObject({ n: 4000 });
    await prepared.discardPrevious();
  });

  it('an abort while chunks are copied leaves no temp database and no session behind', async () => {
    const source = await createScratchDatabase('move_src');
    const target = await createScratchDatabase('move_dst');
    // Enough rows that the chunks take a while: one chunk's COPY is caught running.
    await query(source, `CREATE TABLE big (id int PRIMARY KEY, filler text); INSERT INTO big SELECT g, repeat('f', 200) FROM generate_series(1, 300000) g`);
    const ac = new AbortController();
    const move = prepareMove(target, source, { restoreId: 'mv2', streams: 2, chunkBytes: 256 * 1024, signal: ac.signal });
    const outcome = move.prepared.then(() => null, (err: unknown) => err);
    await waitFor(() => query(target, `SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY "public"."big"%FROM STDIN'`), (r) => r.length > 0, 'a chunk of big being copied', 60_000);
    ac.abort(new Error('cancelled'));
    expect(await outcome).toBeInstanceOf(AbortedError);
    await move.sourceDone;
    const { temp } = restoreDatabaseNames(nameOf(target), 'mv2');
    expect(await query(target, 'SELECT 1 FROM pg_database WHERE datname = $1', [temp])).toEqual([]);
    await waitFor(() => query(target, `SELECT 1 FROM pg_stat_activity WHERE application_name IN ('backplane-dump', 'backplane-restore')`), (r) => r.length === 0, "the move's sessions to end");
  });
});
