/**
 * The "done when" for imports, exactly: from a fresh start (`backplane start` with no
 * configuration: the embedded PostgreSQL and the demo environment), `backplane import` of a plain
 * .sql.gz and of a custom-format dump both work on the demo environment, run as a user runs them.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { createScratchDatabase } from '../harness/database.ts';
import { startFresh, type FreshStart } from '../harness/fresh-start.ts';
import { seedDatabase, sql } from '../harness/live-environment.ts';

const exec = promisify(execFile);
let bp: FreshStart | undefined;
afterAll(() => bp?.dispose());

/** What the tables hold, the same query on both sides. */
const DIGEST = `SELECT (SELECT count(*) FROM customers) || ':' || (SELECT md5(string_agg(c::text, '|' ORDER BY c.id)) FROM customers c) || ':' || (SELECT md5(string_agg(o::text, '|' ORDER BY o.id)) FROM orders o) || ':' || (SELECT string_agg(note, ',') FROM imported_marker)`;

describe('backplane import on the demo environment, from a fresh start', () => {
  it('imports a plain .sql.gz and a custom-format dump with --wait; each leaves an IMPORT snapshot', { timeout: 420_000 }, async () => {
    bp = await startFresh('bp-import-cli-');
    const { home, banner, adminKey: key } = bp;
    expect(key, banner).toMatch(/^bp_\S+$/);
    // What a user's shell holds to reach the server as a client.
    const client = { BACKPLANE_URL: bp.url, BACKPLANE_TOKEN: key };

    // Two dumps of another server's database, as a user would bring them.
    const dumps = [
      { name: 'plain', file: path.join(home, 'shop.sql.gz'), marker: 'from the plain dump', format: 'plain' },
      { name: 'custom', file: path.join(home, 'shop.dump'), marker: 'from the custom dump', format: 'custom' },
    ];
    const digests: string[] = [];
    for (const d of dumps) {
      const url = await createScratchDatabase('import-cli');
      await seedDatabase(url, d.name === 'plain' ? 80 : 150);
      await sql(url, `CREATE TABLE imported_marker (note text); INSERT INTO imported_marker VALUES ('${d.marker}')`);
      const { stdout } = await exec('pg_dump', [`--format=${d.format}`, '--no-owner', '--no-privileges', '--dbname', url], { encoding: 'buffer', maxBuffer: 256 << 20 });
      await fs.writeFile(d.file, d.format === 'plain' ? gzipSync(stdout as unknown as Buffer) : (stdout as unknown as Buffer));
      digests.push(String((await sql(url, DIGEST)).rows[0]['?column?']));
    }

    for (const [i, d] of dumps.entries()) {
      const r = await bp.run(['import', d.file, '--env', 'Demo/demo', '--wait', '--json'], client);
      expect(r.code, `${d.name}: ${r.stderr}`).toBe(0);
      const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { status?: string; phase?: string });
      expect(events.at(-1)).toMatchObject({ status: 'SUCCEEDED' });
      // The phases an import goes through, as the subscription reported them (a late watcher may miss early ones).
      expect(events.map((e) => e.phase)).toContain('done');

      const inDemo = await bp.run(['psql', 'demo', '-At', '-c', DIGEST]);
      expect(inDemo.code, inDemo.stderr).toBe(0);
      expect(inDemo.stdout.trim()).toBe(digests[i]);

      const list = await bp.run(['snapshot', 'list', '--env', 'Demo/demo', '--kind', 'IMPORT', '--json'], client);
      expect(list.code, list.stderr).toBe(0);
      const imports = JSON.parse(list.stdout) as { kind: string; status: string; includes: string[] }[];
      expect(imports).toHaveLength(i + 1);
      expect(imports.every((s) => s.kind === 'IMPORT' && s.status === 'READY')).toBe(true);
      const safety = await bp.run(['snapshot', 'list', '--env', 'Demo/demo', '--kind', 'SAFETY', '--json'], client);
      expect(JSON.parse(safety.stdout)).toHaveLength(i + 1);
    }

    // A file that is no dump: refused with its code, exit 1, the demo as the last import left it.
    const noise = path.join(home, 'photo.sql');
    await fs.writeFile(noise, Buffer.from('\x89PNG\r\n\x1a\n\0\0\0\rIHDR', 'latin1'));
    const refused = await bp.run(['import', noise, '--env', 'Demo/demo', '--wait'], client);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('IMPORT_FORMAT_UNKNOWN');
    expect((await bp.run(['psql', 'demo', '-At', '-c', DIGEST])).stdout.trim()).toBe(digests[1]);
  });
});
