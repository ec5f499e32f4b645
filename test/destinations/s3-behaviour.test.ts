/**
 * What the S3 backend does beyond the shared conformance suite: multipart uploads, paging,
 * retries through a deliberately flaky proxy, and telling apart the ways access can fail.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BackendAccessError, type Handle } from '../../src/destinations/backend.ts';
import { S3Backend, s3BackendFromLocation, type S3BackendOptions } from '../../src/destinations/s3.ts';
import { startFlakyProxy, type FlakyProxy, type ProxiedRequest } from '../harness/flaky-proxy.ts';
import { S3RVER_CREDENTIALS, startS3rver, type StartedS3rver } from '../harness/s3rver.ts';
import { fileId, listAll, sha256 } from './conformance.ts';

const BUCKET = 'behaviour';
const MiB = 1024 * 1024;
let s3: StartedS3rver;
const open: Array<S3Backend | FlakyProxy> = [];

beforeAll(async () => {
  s3 = await startS3rver({ buckets: [BUCKET] });
});
afterAll(() => s3?.stop());
afterEach(async () => {
  for (const x of open.splice(0)) await (x instanceof S3Backend ? x.close() : x.stop());
});

/** A backend on a fresh prefix; through `endpoint` (a proxy) when given. */
function backend(overrides: Partial<S3BackendOptions> = {}): S3Backend {
  const b = new S3Backend({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    bucket: BUCKET,
    prefix: `t-${randomBytes(6).toString('hex')}`,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    multipartThreshold: MiB,
    partSize: MiB,
    retry: { baseDelayMs: 1, maxDelayMs: 10 },
    ...overrides,
  });
  open.push(b);
  return b;
}

async function proxy(opts: Omit<Parameters<typeof startFlakyProxy>[0], 'target'>): Promise<FlakyProxy> {
  const p = await startFlakyProxy({ target: s3.endpoint, ...opts });
  open.push(p);
  return p;
}

const isCreateUpload = (r: { method: string; url: string }) => r.method === 'POST' && /[?&]uploads(=|&|$)/.test(r.url);
const isPart = (r: { method: string; url: string }) => r.method === 'PUT' && /[?&]partNumber=/.test(r.url);
const isComplete = (r: { method: string; url: string }) => r.method === 'POST' && /[?&]uploadId=/.test(r.url);
const isList = (r: { method: string; url: string }) => r.method === 'GET' && /[?&]list-type=2/.test(r.url);
const count = (rs: ProxiedRequest[], f: (r: ProxiedRequest) => boolean) => rs.filter(f).length;

describe('S3 layout and uploads', () => {
  it('keeps restic keys under the prefix', () => {
    const b = backend({ prefix: '/some/prefix/' });
    const id = 'ab'.padEnd(64, '0');
    expect(b.key({ type: 'config', name: '' })).toBe('some/prefix/config');
    expect(b.key({ type: 'data', name: id })).toBe(`some/prefix/data/ab/${id}`);
    expect(b.key({ type: 'keys', name: id })).toBe(`some/prefix/keys/${id}`);
    expect(backend({ prefix: '' }).key({ type: 'index', name: id })).toBe(`index/${id}`);
    expect(b.location).toBe(`s3:${s3.endpoint}/${BUCKET}/some/prefix`);
  });

  it('opens a restic-style location with credentials from restic\'s environment variables', async () => {
    const location = `s3:${s3.endpoint}/${BUCKET}/from-location/${randomBytes(4).toString('hex')}`;
    expect(() => s3BackendFromLocation(location, {})).toThrow(/AWS_ACCESS_KEY_ID/);
    const b = s3BackendFromLocation(location, {
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    });
    open.push(b);
    expect(b.location).toBe(location);
    const h = { type: 'keys' as const, name: fileId() };
    await b.save(h, Buffer.from('key file'));
    expect((await b.load(h)).toString()).toBe('key file');
    expect(b.key(h)).toBe(`${location.split(`/${BUCKET}/`)[1]}/keys/${h.name}`);
  });

  it('saves small files with one PutObject and large ones in parts, completed once', async () => {
    const p = await proxy({ every: 0 });
    const b = backend({ endpoint: p.endpoint });
    await b.save({ type: 'index', name: fileId() }, randomBytes(MiB));
    expect(p.requests.map((r) => r.method)).toEqual(['PUT']);

    const big = randomBytes(4 * MiB + 1);
    const h = { type: 'data' as const, name: fileId() };
    await b.save(h, big);
    expect(count(p.requests, isCreateUpload)).toBe(1);
    expect(count(p.requests, isPart)).toBe(5);
    expect(count(p.requests, isComplete)).toBe(1);
    expect(sha256(await b.load(h))).toBe(sha256(big));
  });

  it('sends a Content-MD5 that S3 would accept with every upload to a non-AWS endpoint', async () => {
    const p = await proxy({ every: 0, checkContentMd5: true });
    const b = backend({ endpoint: p.endpoint });
    await b.save({ type: 'keys', name: fileId() }, randomBytes(1000));
    await b.save({ type: 'data', name: fileId() }, randomBytes(3 * MiB));
    expect(p.digests).toEqual({ matched: 4, refused: 0 });
  });

  it('sends CRC32 checksums the AWS way when asked to', async () => {
    const p = await proxy({ every: 0 });
    const b = backend({ endpoint: p.endpoint, checksums: 'WHEN_SUPPORTED' });
    const small = randomBytes(1000);
    const big = randomBytes(2 * MiB + 5);
    const hs = { type: 'keys' as const, name: fileId() };
    const hb = { type: 'data' as const, name: fileId() };
    await b.save(hs, small);
    await b.save(hb, big);
    expect(sha256(await b.load(hs))).toBe(sha256(small));
    expect(sha256(await b.load(hb))).toBe(sha256(big));
    const uploads = p.requests.filter((r) => r.method === 'PUT');
    expect(uploads).toHaveLength(4);
    // Plain bodies with a CRC32 header: no aws-chunked encoding, which many servers store raw.
    for (const r of uploads) {
      expect(r.headers['x-amz-checksum-crc32']).toMatch(/^[A-Za-z0-9+/]{6}==$/);
      expect(r.headers['content-encoding'] ?? '').not.toMatch(/aws-chunked/);
      expect(r.headers['content-md5']).toBeUndefined();
    }
    expect(p.requests.find(isCreateUpload)?.headers['x-amz-checksum-algorithm']).toBe('CRC32');
  });

  it('does not retry an upload S3 refuses as corrupt', async () => {
    // A proxy that checks digests against bodies it corrupts on the way stands in for a
    // corrupting network; S3 answers that with 400 BadDigest, which no retry can fix.
    const p = await proxy({ every: 0, checkContentMd5: true, corruptBodies: true });
    const b = backend({ endpoint: p.endpoint });
    const h = { type: 'keys' as const, name: fileId() };
    const err = await b.save(h, randomBytes(1000)).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'IO', message: expect.stringMatching(/BadDigest/) });
    expect(p.digests).toEqual({ matched: 0, refused: 1 });
    expect(await backend({ prefix: b.prefix }).stat(h)).toBeNull();
  });

  it('cuts the range out itself when the server ignores Range', async () => {
    const p = await proxy({ every: 0, ignoreRange: true });
    const b = backend({ endpoint: p.endpoint });
    const data = randomBytes(5000);
    const h = { type: 'data' as const, name: fileId() };
    await b.save(h, data);
    expect(await b.load(h, { offset: 100, length: 50 })).toEqual(data.subarray(100, 150));
    expect(await b.load(h, { offset: 4990 })).toEqual(data.subarray(4990));
  });

  it('lists past 1,000 keys by paging', async () => {
    const p = await proxy({ every: 0 });
    const b = backend({ endpoint: p.endpoint });
    const names = Array.from({ length: 1234 }, () => fileId());
    for (let i = 0; i < names.length; i += 64) {
      await Promise.all(names.slice(i, i + 64).map((name) => b.save({ type: 'locks', name }, Buffer.from(name))));
    }
    const listed = await listAll(b, 'locks');
    expect([...listed.keys()].sort()).toEqual([...names].sort());
    expect([...listed.values()].every((size) => size === 64)).toBe(true);
    expect(count(p.requests, isList)).toBe(2);
  });
});

describe('S3 retries through a flaky proxy', () => {
  it('loses and duplicates nothing when every third request fails', async () => {
    const p = await proxy({ every: 3 });
    const b = backend({ endpoint: p.endpoint });
    const files = [
      ...Array.from({ length: 30 }, (_, i) => ({ h: { type: 'data', name: fileId() } as Handle, data: randomBytes(100 + i) })),
      { h: { type: 'data', name: fileId() } as Handle, data: randomBytes(3 * MiB + 7) },
      { h: { type: 'index', name: fileId() } as Handle, data: randomBytes(2 * MiB) },
      { h: { type: 'config', name: 'config' } as Handle, data: randomBytes(200) },
    ];
    for (const f of files) await b.save(f.h, f.data);
    for (const f of files) expect(sha256(await b.load(f.h)), f.h.name).toBe(sha256(f.data));
    const data = await listAll(b, 'data');
    expect(data.size).toBe(31);
    await b.remove(files[0].h);
    expect(await b.stat(files[0].h)).toBeNull();

    // Every failure mode was met, and a direct look (no proxy) sees exactly what was saved.
    const modes = new Set(p.failed.map((r) => JSON.stringify(r.failure)));
    expect(modes.size).toBe(5);
    const direct = backend({ prefix: b.prefix });
    expect(await listAll(direct, 'data')).toEqual(
      new Map(files.slice(1).filter((f) => f.h.type === 'data').map((f) => [f.h.name, f.data.length])),
    );
    expect((await listAll(direct, 'index')).size).toBe(1);
  });

  it('retries a failed part without starting a second upload', async () => {
    const p = await proxy({ every: 2, match: isPart, failures: ['drop'] });
    const b = backend({ endpoint: p.endpoint, partConcurrency: 1 });
    const data = randomBytes(5 * MiB);
    const h = { type: 'data' as const, name: fileId() };
    await b.save(h, data);
    expect(p.failed.length).toBeGreaterThanOrEqual(2);
    expect(count(p.requests, isCreateUpload)).toBe(1);
    expect(count(p.requests, isComplete)).toBe(1);
    expect(sha256(await b.load(h))).toBe(sha256(data));
  });

  it('accepts a completion whose answer was lost', async () => {
    let completions = 0;
    const p = await proxy({ every: 1, match: (r) => isComplete(r) && ++completions === 1, failures: ['drop-after'] });
    const b = backend({ endpoint: p.endpoint });
    const data = randomBytes(2 * MiB + 3);
    const h = { type: 'data' as const, name: fileId() };
    await b.save(h, data);
    expect(p.failed.map((r) => r.failure)).toEqual(['drop-after']);
    expect(sha256(await b.load(h))).toBe(sha256(data));
  });

  it('retries a download cut off mid-body', async () => {
    let gets = 0;
    const p = await proxy({
      every: 1,
      match: (r) => r.method === 'GET' && !isList(r) && ++gets === 1,
      failures: ['truncate'],
    });
    const b = backend({ endpoint: p.endpoint });
    const data = randomBytes(300_000);
    const h = { type: 'data' as const, name: fileId() };
    await b.save(h, data);
    expect(sha256(await b.load(h))).toBe(sha256(data));
    expect(p.failed.length).toBe(1);
  });

  it('leaves no file when a part keeps failing, and never completes the upload', async () => {
    const p = await proxy({
      every: 1,
      match: (r) => isPart(r) && /[?&]partNumber=3(&|$)/.test(r.url),
      failures: [{ status: 500, code: 'InternalError' }],
    });
    const retries: number[] = [];
    const b = backend({ endpoint: p.endpoint, onRetry: ({ attempt }) => retries.push(attempt) });
    const h = { type: 'data' as const, name: fileId() };
    const err = await b.save(h, randomBytes(4 * MiB)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendAccessError);
    expect(err).toMatchObject({ kind: 'IO', message: expect.stringMatching(/part 3\/4.*after 5 attempts.*InternalError/) });
    expect(count(p.requests, (r) => isPart(r) && /partNumber=3(&|$)/.test(r.url))).toBe(5);
    expect(count(p.requests, isComplete)).toBe(0);
    expect(await b.stat(h)).toBeNull();
    expect((await listAll(b, 'data')).size).toBe(0);
  });

  it('aborts a multipart save under way and leaves no file', async () => {
    const ac = new AbortController();
    const p = await proxy({
      every: 0,
      onRequest: (r) => {
        if (isPart(r) && /[?&]partNumber=2(&|$)/.test(r.url)) ac.abort();
      },
    });
    const b = backend({ endpoint: p.endpoint, partConcurrency: 1 });
    const h = { type: 'data' as const, name: fileId() };
    await expect(b.save(h, randomBytes(4 * MiB), { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(count(p.requests, isPart)).toBe(2);
    expect(count(p.requests, isComplete)).toBe(0);
    expect(await b.stat(h)).toBeNull();
  });
});

describe('S3 access errors', () => {
  async function kindOf(p: Promise<unknown>): Promise<string> {
    const err = await p.then(
      () => 'no error',
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BackendAccessError);
    return (err as BackendAccessError).kind;
  }

  async function closedPort(): Promise<number> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    return port;
  }

  it('checks access up front: endpoint, bucket, credentials', async () => {
    await backend().checkAccess();
    expect(await kindOf(backend({ bucket: 'no-such-bucket' }).checkAccess())).toBe('NO_BUCKET');
    expect(await kindOf(backend({ credentials: { accessKeyId: 'x', secretAccessKey: 'y' } }).checkAccess())).toBe('AUTH');
    expect(await kindOf(backend({ endpoint: `http://127.0.0.1:${await closedPort()}` }).checkAccess())).toBe('UNREACHABLE');
  });

  it('reports an unknown access key as AUTH', async () => {
    const b = backend({ credentials: { accessKeyId: 'NOT-A-KEY', secretAccessKey: 'S3RVER' } });
    const h = { type: 'data' as const, name: fileId() };
    expect(await kindOf(b.save(h, randomBytes(10)))).toBe('AUTH');
    expect(await kindOf(b.load(h))).toBe('AUTH');
    expect(await kindOf(b.stat(h))).toBe('AUTH');
    expect(await kindOf(listAll(b, 'data'))).toBe('AUTH');
    await expect(b.save(h, randomBytes(10))).rejects.toThrow(
      /S3 refused the credentials for bucket "behaviour".*InvalidAccessKeyId/,
    );
  });

  it('reports a refused signature as AUTH', async () => {
    // s3rver does not verify SigV4 signatures, so a wrong secret passes there; this proxy
    // answers the way S3 answers a wrong secret.
    const p = await proxy({ every: 1, failures: [{ status: 403, code: 'SignatureDoesNotMatch' }] });
    const b = backend({ endpoint: p.endpoint });
    expect(await kindOf(b.save({ type: 'keys', name: fileId() }, randomBytes(10)))).toBe('AUTH');
    expect(await kindOf(b.stat({ type: 'keys', name: fileId() }))).toBe('AUTH');
    expect(p.requests.length).toBe(2);
  });

  it('reports a missing bucket as NO_BUCKET, also where S3 answers a bare 404', async () => {
    const b = backend({ bucket: 'no-such-bucket' });
    const h = { type: 'data' as const, name: fileId() };
    expect(await kindOf(b.save(h, randomBytes(10)))).toBe('NO_BUCKET');
    expect(await kindOf(b.save(h, randomBytes(2 * MiB)))).toBe('NO_BUCKET');
    expect(await kindOf(b.load(h))).toBe('NO_BUCKET');
    expect(await kindOf(b.stat(h))).toBe('NO_BUCKET');
    expect(await kindOf(listAll(b, 'snapshots'))).toBe('NO_BUCKET');
    expect(await kindOf(listAll(b, 'config'))).toBe('NO_BUCKET');
    await expect(b.load(h)).rejects.toThrow('bucket "no-such-bucket" does not exist');
  });

  it('reports a closed port as UNREACHABLE after one quick retry', async () => {
    const retries: unknown[] = [];
    const b = backend({ endpoint: `http://127.0.0.1:${await closedPort()}`, onRetry: (r) => retries.push(r) });
    const h = { type: 'data' as const, name: fileId() };
    const err = await b.load(h).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'UNREACHABLE', message: expect.stringMatching(/cannot reach.*ECONNREFUSED/) });
    expect(retries).toHaveLength(1);
    expect(await kindOf(b.save(h, randomBytes(10)))).toBe('UNREACHABLE');
    expect(await kindOf(b.stat(h))).toBe('UNREACHABLE');
    expect(await kindOf(listAll(b, 'data'))).toBe('UNREACHABLE');
  });

  it('reports a host that does not resolve as UNREACHABLE', async () => {
    const b = backend({ endpoint: 'http://backplane-test.invalid:9000' });
    expect(await kindOf(b.stat({ type: 'config', name: 'config' }))).toBe('UNREACHABLE');
  });
});
