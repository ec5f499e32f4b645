/**
 * The probe's steps on an S3 backend (probe.ts), apart so that the AWS SDK is loaded only when
 * an S3 destination is probed.
 */
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { Backend } from './backend.ts';
import type { ProbeOps } from './probe.ts';
import { S3Backend } from './s3.ts';
import { DEFAULT_RETRY_POLICY, withRetries } from './s3-retry.ts';

/** The probe's operations on `backend` when it is an S3 backend, else null. */
export function s3ProbeOps(backend: Backend, probePrefix: string, signal?: AbortSignal): ProbeOps | null {
  return backend instanceof S3Backend ? s3Ops(backend, probePrefix, signal) : null;
}

function s3Ops(b: S3Backend, probePrefix: string, signal?: AbortSignal): ProbeOps {
  const key = (name: string) => `${b.prefix ? `${b.prefix}/` : ''}${name}`;
  const ctx = (what: string) => ({ what, location: b.location, bucket: b.bucket, policy: DEFAULT_RETRY_POLICY, signal });
  const opt = { abortSignal: signal };
  return {
    write: async (name, body) => {
      await withRetries(ctx(`write ${name}`), () => b.client.send(new PutObjectCommand({ Bucket: b.bucket, Key: key(name), Body: body, ContentLength: body.length }), opt));
    },
    read: (name) =>
      withRetries(ctx(`read ${name}`), async () => {
        const res = await b.client.send(new GetObjectCommand({ Bucket: b.bucket, Key: key(name) }), opt);
        return Buffer.from(await res.Body!.transformToByteArray());
      }),
    list: async () => {
      const res = await withRetries(ctx('list'), () => b.client.send(new ListObjectsV2Command({ Bucket: b.bucket, Prefix: key(probePrefix) }), opt));
      return (res.Contents ?? []).map((o) => o.Key!.slice(key('').length));
    },
    remove: async (name) => {
      await withRetries(ctx(`delete ${name}`), () => b.client.send(new DeleteObjectCommand({ Bucket: b.bucket, Key: key(name) }), opt));
    },
  };
}
