import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { S3Backend } from '../../src/destinations/s3.ts';
import { S3RVER_CREDENTIALS, startS3rver, type StartedS3rver } from '../harness/s3rver.ts';
import { describeBackendConformance } from './conformance.ts';

const BUCKET = 'conformance';
let s3: StartedS3rver;
beforeAll(async () => {
  s3 = await startS3rver({ buckets: [BUCKET] });
});
afterAll(() => s3?.stop());

describeBackendConformance(
  's3 (s3rver)',
  async () => ({
    // A fresh prefix per test is a fresh, empty repository.
    backend: new S3Backend({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      bucket: BUCKET,
      prefix: `repo-${randomBytes(6).toString('hex')}/nested`,
      forcePathStyle: true,
      credentials: S3RVER_CREDENTIALS,
      multipartThreshold: 1024 * 1024,
      partSize: 1024 * 1024,
    }),
  }),
  // Above the threshold: multipart, 5 parts with a short last one.
  { largeFileSize: 4 * 1024 * 1024 + 12345 },
);
