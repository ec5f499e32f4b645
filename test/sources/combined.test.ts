/**
 * A database and a directory restored together, the way the restore job combines the two-phase
 * handles: prepare both, commit the database, commit the files, and undo the database if the
 * files cannot be committed.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import pg from 'pg';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { prepareDirectory } from '../../src/sources/files.ts';
import { prepareDatabase, startDump } from '../../src/sources/postgres.ts';
import { adminUrl, createScratchDatabase } from '../harness/database.ts';

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'bp-combined-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

it('undoes the database when the files cannot be committed, leaving both as they were', async () => {
  const url = await createScratchDatabase('src_combined');
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  await query(url, `CREATE TABLE notes (body text); INSERT INTO notes VALUES ('snapshot')`);
  const dump = startDump(url);
  const chunks: Buffer[] = [];
  for await (const c of dump.stream) chunks.push(c as Buffer);
  await dump.done;
  await query(url, `UPDATE notes SET body = 'current'`);

  const files = path.join(root, 'files');
  await mkdir(files);
  await writeFile(path.join(files, 'note.txt'), 'current');

  const dir = await prepareDirectory(files, 'c1', (tmp) => writeFile(path.join(tmp, 'note.txt'), 'snapshot'));
  const db = await prepareDatabase(url, Readable.from([Buffer.concat(chunks)]), { restoreId: 'c1' });
  expect((await db.commit()).previousDatabaseName).toBe(`${name}__bp_pre_c1`);
  expect(await query(url, 'SELECT body FROM notes')).toEqual([{ body: 'snapshot' }]);

  // Something removed the prepared files (a full disk cleaner, an operator): the files commit fails.
  await rm(dir.tempPath, { recursive: true });
  await expect(dir.commit()).rejects.toMatchObject({ code: 'DIRECTORY_SWAP_FAILED' });
  await db.undo();

  expect(await readFile(path.join(files, 'note.txt'), 'utf8')).toBe('current');
  expect(await query(url, 'SELECT body FROM notes')).toEqual([{ body: 'current' }]);
  const left = await query<{ datname: string }>(adminUrl(), `SELECT datname FROM pg_database WHERE datname LIKE $1`, [`${name}__bp_%`]);
  expect(left).toEqual([]);
});
