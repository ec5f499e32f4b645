/**
 * Resuming a download: `/downloads/<token>` answers `Range` with 206 and the part asked for, a
 * range past the end with 416, and keeps a range under `If-Range` only for its own validators.
 * The archive is made as it is sent, so every part must come from the same bytes: each part is
 * compared with the whole archive, and curl's own resume (`-C -`) must give the whole file.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SnapshotDownloadDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

const exec = promisify(execFile);

let app: TestApp;
let key: string;
let snapshotId: string;
let dir: string;
let env: LiveEnvironment;

beforeAll(async () => {
  ({ app, key, env } = await startSnapshotSuite());
  // Some hundreds of KB of archive that compresses little: parts well inside it.
  await sql(env.databaseUrl, "CREATE TABLE noise (id int PRIMARY KEY, data bytea); INSERT INTO noise SELECT g, decode(string_agg(md5(g::text || h::text), ''), 'hex') FROM generate_series(1, 50) g, generate_series(1, 400) h GROUP BY g");
  ({ snapshotId } = await takeSnapshot(app, key, env.id));
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-download-range-'));
});
afterAll(async () => {
  await app?.stop();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

async function downloadUrl(variant: string, id = snapshotId): Promise<string> {
  const d = (await app.gql(SnapshotDownloadDocument, { id, variant: variant as never }, { key })).data!.snapshot!.download;
  if (d.__typename !== 'Download') throw new Error(JSON.stringify(d));
  return d.url;
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

describe('download ranges', () => {
  it('a range asked for first (the length not yet known here) is the same bytes as the whole archive', async () => {
    const url = await downloadUrl('DATABASE_ONLY');
    const part = await get(url, { range: 'bytes=1000-' });
    const whole = await get(url);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    expect(whole.body.length).toBeGreaterThan(100_000);
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-${whole.body.length - 1}/${whole.body.length}`);
    expect(part.headers.get('etag')).toBe(whole.headers.get('etag'));
    expect(Buffer.concat([whole.body.subarray(0, 1000), part.body]).equals(whole.body)).toBe(true);
  });

  it('answers N-M, a suffix, a range past the end, and If-Range', async () => {
    const url = await downloadUrl('DATABASE_AND_FILES');
    const whole = await get(url);
    const n = whole.body.length;
    // Once made whole, the length goes with the full answer too.
    expect((await get(url)).headers.get('content-length')).toBe(String(n));

    const middle = await get(url, { range: 'bytes=5000-70000' });
    expect(middle.status).toBe(206);
    expect(middle.headers.get('content-range')).toBe(`bytes 5000-70000/${n}`);
    expect(middle.body.equals(whole.body.subarray(5000, 70001))).toBe(true);

    const last = await get(url, { range: 'bytes=-300' });
    expect(last.headers.get('content-range')).toBe(`bytes ${n - 300}-${n - 1}/${n}`);
    expect(last.body.equals(whole.body.subarray(n - 300))).toBe(true);

    // An end past the archive's is cut to it.
    const tail = await get(url, { range: `bytes=${n - 10}-${n + 1000}` });
    expect(tail.headers.get('content-range')).toBe(`bytes ${n - 10}-${n - 1}/${n}`);
    expect(tail.body.equals(whole.body.subarray(n - 10))).toBe(true);

    const past = await get(url, { range: `bytes=${n}-` });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${n}`);
    expect(past.body.length).toBe(0);

    // Several ranges, or a syntax we do not serve: the whole archive.
    for (const range of ['bytes=0-10,20-30', 'items=0-10', 'bytes=10-5']) {
      const r = await get(url, { range });
      expect(r.status, range).toBe(200);
      expect(r.body.equals(whole.body), range).toBe(true);
    }

    const etag = whole.headers.get('etag')!;
    const lastModified = whole.headers.get('last-modified')!;
    expect(etag).toMatch(/^"[^"]+"$/);
    expect((await get(url, { range: 'bytes=100-', 'if-range': etag })).status).toBe(206);
    expect((await get(url, { range: 'bytes=100-', 'if-range': lastModified })).status).toBe(206);
    // Validators of other bytes: the range is dropped, the whole archive comes.
    const other = await get(url, { range: 'bytes=100-', 'if-range': '"another-archive"' });
    expect(other.status).toBe(200);
    expect(other.body.equals(whole.body)).toBe(true);
  });

  it('curl -C - resumes a partial file into the whole archive', async () => {
    const url = await downloadUrl('FILES_ONLY');
    const whole = await get(url);
    const file = path.join(dir, 'files.tar.zst');
    await fs.writeFile(file, whole.body.subarray(0, Math.floor(whole.body.length / 3)));
    const { stderr } = await exec('curl', ['-sS', '--fail', '-C', '-', '-o', file, url]);
    expect(stderr).toBe('');
    expect((await fs.readFile(file)).equals(whole.body)).toBe(true);
  });

  it('HEAD answers as GET would, without the body: the length measured when not yet known, a range, its validators', async () => {
    // A snapshot of its own: no download of it has run in this process, so its length is unknown.
    const { snapshotId: fresh } = await takeSnapshot(app, key, env.id);
    const url = await downloadUrl('DATABASE_AND_FILES', fresh);
    const head = await fetch(url, { method: 'HEAD' });
    const whole = await get(url);
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(whole.body.length));
    for (const name of ['content-length', 'etag', 'accept-ranges', 'last-modified', 'content-type', 'content-disposition']) {
      expect(head.headers.get(name), name).toBe(whole.headers.get(name));
    }
    expect((await head.arrayBuffer()).byteLength).toBe(0);

    const n = whole.body.length;
    const part = await fetch(url, { method: 'HEAD', headers: { range: 'bytes=100-199', 'if-range': whole.headers.get('etag')! } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-199/${n}`);
    expect(part.headers.get('content-length')).toBe('100');
    expect((await fetch(url, { method: 'HEAD', headers: { range: `bytes=${n}-` } })).status).toBe(416);

    // A bad link is refused alike; a method a link does not answer says which ones it does.
    expect((await fetch(`${url}x`, { method: 'HEAD' })).status).toBe(403);
    const post = await fetch(url, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });
});
