/**
 * The use the stdin mode exists for: `pg_dump -Fc | backplane repo backup --stdin-filename …`
 * and back with `backplane repo dump … | pg_restore`, with the real pg_dump, pg_restore and a
 * scratch PostgreSQL, nothing written to disk in between.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, startScratchPostgres, type ScratchPostgres } from '../../src/db/pg-server.ts';
import { cleanupTempDirs, tempDir } from '../engine/helpers.ts';
import { ok, PASSWORD, REPO_ARGV, repoCli, ROOT, TEST_KDF } from './helpers.ts';
import { requireTool } from '../harness/prerequisites.ts';

const run = promisify(execFile);
await requireTool('pg_dump', ['--version'], 'apt-get install postgresql-client-15');

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('pg_dump piped through backplane repo', () => {
  let server: ScratchPostgres;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    server = await startScratchPostgres();
    await createDatabase(server.adminUrl, 'app');
    await query(
      server.url('app'),
      `CREATE TABLE items (id int PRIMARY KEY, name text, blob bytea);
       INSERT INTO items SELECT i, 'item ' || i, decode(md5(i::text), 'hex') FROM generate_series(1, 50000) i;`,
    );
    const repoDir = join(await tempDir('bp-cli-pg-'), 'repo');
    env = { ...process.env, BACKPLANE_REPO: repoDir, BACKPLANE_REPO_PASSWORD: PASSWORD, BACKPLANE_REPO_KDF: TEST_KDF };
    ok(await repoCli(['init'], { env }));
  });
  afterAll(async () => {
    await server?.stop();
    await cleanupTempDirs();
  });

  it('backs up pg_dump -Fc from a pipe and restores it with pg_restore', async () => {
    const cli = REPO_ARGV.map((a) => JSON.stringify(a)).join(' ');
    const sh = (script: string, extra: NodeJS.ProcessEnv) => run('bash', ['-o', 'pipefail', '-c', script], { cwd: ROOT, env: { ...env, ...extra }, maxBuffer: 16 * 1024 * 1024 });

    const backedUp = await sh(`pg_dump -Fc -Z0 "$SRC" | ${cli} backup --stdin-filename db/app.dump --tag db --json`, { SRC: server.url('app') });
    expect(JSON.parse(backedUp.stdout)).toMatchObject({ files: 1, paths: ['/db/app.dump'] });

    await createDatabase(server.adminUrl, 'copy');
    await sh(`${cli} dump latest /db/app.dump | pg_restore --no-owner -d "$DST"`, { DST: server.url('copy') });
    const [src] = await query<{ n: string; sum: string }>(server.url('app'), `SELECT count(*) n, md5(string_agg(id || name || encode(blob, 'hex'), ',' ORDER BY id)) sum FROM items`);
    const [copy] = await query<{ n: string; sum: string }>(server.url('copy'), `SELECT count(*) n, md5(string_agg(id || name || encode(blob, 'hex'), ',' ORDER BY id)) sum FROM items`);
    expect(copy).toEqual(src);
    expect(src.n).toBe('50000');
  });
});
