/**
 * restic as the outside witness of the S3 layout: what restic writes into s3rver, the S3
 * backend finds at the same keys; what the S3 backend writes, restic reads and verifies.
 *
 * s3rver serves HTTPS here: over plain HTTP restic (minio-go) sends `aws-chunked` bodies,
 * which s3rver would store with their chunk signatures inside.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FILE_TYPES, type FileType } from '../../src/destinations/backend.ts';
import { S3Backend } from '../../src/destinations/s3.ts';
import { S3RVER_CREDENTIALS, startS3rver, type StartedS3rver } from '../harness/s3rver.ts';
import { listAll } from './conformance.ts';
import { requireTool } from '../harness/prerequisites.ts';

const run = promisify(execFile);
await requireTool('restic', ['version'], 'apt-get install restic');

const BUCKET = 'restic-layout';
const RESTIC_LIST: Record<Exclude<FileType, 'config'>, string> = {
  keys: 'keys',
  data: 'packs',
  index: 'index',
  snapshots: 'snapshots',
  locks: 'locks',
};

describe('restic and the S3 backend share one layout', () => {
  let s3: StartedS3rver;
  let work: string;
  let caFile: string;

  beforeAll(async () => {
    s3 = await startS3rver({ buckets: [BUCKET], tls: true });
    work = await mkdtemp(join(tmpdir(), 'bp-restic-s3-'));
    caFile = join(work, 'ca.pem');
    await writeFile(caFile, s3.ca!);
    const src = join(work, 'src');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'big.bin'), randomBytes(6 * 1024 * 1024));
    for (let i = 0; i < 20; i++) await writeFile(join(src, 'sub', `f${i}.txt`), `file ${i}\n`.repeat(i + 1));
    await restic('by-restic/repo', 'init');
    await restic('by-restic/repo', 'backup', src);
  });
  afterAll(async () => {
    await s3?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const restic = async (prefix: string, ...args: string[]) => {
    const { stdout } = await run('restic', ['-r', `s3:${s3.endpoint}/${BUCKET}/${prefix}`, '--cacert', caFile, '--no-cache', ...args], {
      env: {
        ...process.env,
        AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
        RESTIC_PASSWORD: 'backplane-test',
      },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  };
  const ids = (out: string) => new Set(out.split('\n').filter(Boolean));

  const backend = (prefix: string) =>
    new S3Backend({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      bucket: BUCKET,
      prefix,
      forcePathStyle: true,
      credentials: S3RVER_CREDENTIALS,
      ca: s3.ca,
      // Small, so restic's packs travel as multipart uploads when we copy them.
      multipartThreshold: 512 * 1024,
      partSize: 512 * 1024,
    });

  it('finds what restic wrote, at the keys restic used', async () => {
    const b = backend('by-restic/repo');
    try {
      expect([...(await listAll(b, 'config')).keys()]).toEqual(['config']);
      for (const type of Object.keys(RESTIC_LIST) as Array<keyof typeof RESTIC_LIST>) {
        const ours = await listAll(b, type);
        expect(new Set(ours.keys()), type).toEqual(ids(await restic('by-restic/repo', 'list', RESTIC_LIST[type])));
        // Sizes from the S3 listing match the objects s3rver holds on disk at our keys.
        for (const [name, size] of ours) {
          const onDisk = join(s3.directory, BUCKET, `${b.key({ type, name })}._S3rver_object`);
          expect((await stat(onDisk)).size).toBe(size);
        }
      }
      expect((await listAll(b, 'data')).size).toBeGreaterThan(0);
      expect((await listAll(b, 'snapshots')).size).toBe(1);
    } finally {
      await b.close();
    }
  });

  it('writes a copy that restic reads and verifies', async () => {
    const from = backend('by-restic/repo');
    const to = backend('by-backplane/copy');
    try {
      for (const type of FILE_TYPES) {
        for (const { name } of await listAll(from, type).then((m) => [...m.keys()].map((n) => ({ name: n })))) {
          const h = { type, name };
          await to.save(h, await from.load(h));
        }
      }
    } finally {
      await from.close();
      await to.close();
    }
    // Multipart copies are whole objects, not aws-chunked or part files.
    const packsDir = join(s3.directory, BUCKET, 'by-backplane/copy/data');
    expect((await readdir(packsDir)).every((d) => /^[0-9a-f]{2}$/.test(d))).toBe(true);
    expect(await restic('by-backplane/copy', 'check', '--read-data')).toMatch(/no errors were found/);
    const snapshots = JSON.parse(await restic('by-backplane/copy', 'snapshots', '--json')) as Array<{ paths: string[] }>;
    expect(snapshots.map((s) => s.paths)).toEqual([[join(work, 'src')]]);
  });
});
