/**
 * The S3 backend: a restic repository in an S3-compatible bucket (AWS S3, Cloudflare R2,
 * Backblaze B2, MinIO, …), under a key prefix, laid out exactly as restic lays it out:
 * `<prefix>/config`, `<prefix>/keys/<id>`, `<prefix>/data/<2 hex>/<id>`, `<prefix>/index/<id>`,
 * `<prefix>/snapshots/<id>`, `<prefix>/locks/<id>`; so `restic -r s3:<endpoint>/<bucket>/<prefix>`
 * reads it directly.
 *
 * Atomicity comes from S3 itself: an object becomes visible only when its PutObject or its
 * CompleteMultipartUpload succeeds. Files above `multipartThreshold` go up in parts, and the
 * upload is completed only once every part is in; on any error or abort it is aborted.
 */
import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import {
  BackendAccessError,
  BackendNotFoundError,
  type Backend,
  type CallOptions,
  type FileInfo,
  type FileType,
  type Handle,
  type LoadOptions,
  objectKeyProblem,
} from './backend.ts';
import { formatS3Location, normalizePrefix, parseS3Location, type S3Connection } from './s3-config.ts';
import { classifyFailure, DEFAULT_RETRY_POLICY, withRetries, type RetryContext, type RetryPolicy } from './s3-retry.ts';

export { parseS3Location, s3ConnectionFor, r2Endpoint, b2Endpoint, awsEndpoint } from './s3-config.ts';
export type { S3Connection, S3Provider, S3ProviderSettings, R2Jurisdiction } from './s3-config.ts';

const MiB = 1024 * 1024;

/** Options of the S3 backend; `S3Connection` comes from `s3ConnectionFor` or `parseS3Location`. */
export interface S3BackendOptions extends Omit<S3Connection, 'prefix' | 'forcePathStyle'> {
  prefix?: string;
  forcePathStyle?: boolean;
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Files larger than this go up as a multipart upload (default 8 MiB). */
  multipartThreshold?: number;
  /** Size of each part but the last (default 8 MiB; S3 wants at least 5 MiB). */
  partSize?: number;
  /** Parts of one file uploaded at once (default 4). */
  partConcurrency?: number;
  /** Give up connecting after this long (default 5 s): an unreachable endpoint fails fast. */
  connectTimeoutMs?: number;
  /** Give up on a socket idle for this long (default 60 s). */
  socketTimeoutMs?: number;
  /** Parallel connections to the endpoint (default 16). */
  maxSockets?: number;
  /** Extra CA certificates (PEM) to trust, for self-hosted endpoints with a private CA. */
  ca?: string | Buffer;
  /**
   * `WHEN_SUPPORTED` sends the SDK's CRC checksums (AWS); `WHEN_REQUIRED` sends Content-MD5
   * instead, which every S3-compatible server checks. Default: WHEN_SUPPORTED for AWS
   * endpoints, WHEN_REQUIRED elsewhere.
   */
  checksums?: 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';
  retry?: Partial<RetryPolicy>;
  /** Called before each retry, e.g. to log it. */
  onRetry?: RetryContext['onRetry'];
}

function isAwsEndpoint(endpoint: string | undefined): boolean {
  return !endpoint || /\.amazonaws\.com(\.cn)?$/.test(new URL(endpoint).hostname);
}

function view(data: Uint8Array, start = 0, end = data.byteLength): Buffer {
  return Buffer.from(data.buffer, data.byteOffset + start, end - start);
}

/** A Backend on an S3-compatible bucket. */
export class S3Backend implements Backend {
  readonly location: string;
  readonly bucket: string;
  readonly prefix: string;
  /** The SDK client, for callers that need an operation this interface lacks (tests, setup). */
  readonly client: S3Client;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly partConcurrency: number;
  private readonly sendMd5: boolean;
  private readonly policy: RetryPolicy;
  private readonly onRetry?: RetryContext['onRetry'];
  private bucketChecked = false;

  constructor(opts: S3BackendOptions) {
    this.bucket = opts.bucket;
    this.prefix = normalizePrefix(opts.prefix);
    this.location = formatS3Location({
      endpoint: opts.endpoint || `https://s3.${opts.region}.amazonaws.com`,
      bucket: this.bucket,
      prefix: this.prefix,
    });
    this.multipartThreshold = opts.multipartThreshold ?? 8 * MiB;
    this.partSize = opts.partSize ?? 8 * MiB;
    this.partConcurrency = opts.partConcurrency ?? 4;
    if (this.partSize < 1 || this.multipartThreshold < 1) throw new RangeError('part size and threshold must be positive');
    this.policy = { ...DEFAULT_RETRY_POLICY, ...opts.retry };
    this.onRetry = opts.onRetry;
    const checksums = opts.checksums ?? (isAwsEndpoint(opts.endpoint) ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED');
    this.sendMd5 = checksums === 'WHEN_REQUIRED';
    const agentOptions = { keepAlive: true, maxSockets: opts.maxSockets ?? 16 };
    this.client = new S3Client({
      endpoint: opts.endpoint || undefined,
      region: opts.region,
      forcePathStyle: opts.forcePathStyle ?? false,
      // AWS answers a wrong region with a redirect naming the right one; follow it.
      followRegionRedirects: true,
      credentials: opts.credentials,
      // Our retry loop (s3-retry.ts) owns retries; see why there.
      maxAttempts: 1,
      requestChecksumCalculation: checksums,
      responseChecksumValidation: checksums,
      requestHandler: {
        connectionTimeout: opts.connectTimeoutMs ?? 5_000,
        socketTimeout: opts.socketTimeoutMs ?? 60_000,
        httpAgent: new HttpAgent(agentOptions),
        // Node's `ca` replaces the system roots; keep them so a private CA is an addition.
        httpsAgent: new HttpsAgent({ ...agentOptions, ca: opts.ca ? [...rootCertificates, opts.ca] : undefined }),
      },
    });
  }

  /** The object key of a handle. */
  key(h: Handle): string {
    const p = this.prefix ? `${this.prefix}/` : '';
    if (h.type === 'config') return `${p}config`;
    if (!/^[0-9a-zA-Z._-]+$/.test(h.name) || h.name.startsWith('.')) {
      throw new BackendAccessError('IO', `invalid file name ${JSON.stringify(h.name)}`);
    }
    if (h.type === 'data') return `${p}data/${h.name.slice(0, 2)}/${h.name}`;
    return `${p}${h.type}/${h.name}`;
  }

  private ctx(what: string, signal?: AbortSignal): RetryContext {
    return { what, location: this.location, bucket: this.bucket, policy: this.policy, signal, onRetry: this.onRetry };
  }

  private md5(data: Buffer): string | undefined {
    return this.sendMd5 ? createHash('md5').update(data).digest('base64') : undefined;
  }

  async save(h: Handle, data: Uint8Array, opts?: CallOptions): Promise<void> {
    const key = this.key(h);
    const signal = opts?.signal;
    if (data.byteLength > this.multipartThreshold) {
      await this.saveMultipart(h, key, data, signal);
      return;
    }
    const body = view(data);
    const contentMd5 = this.md5(body);
    await withRetries(this.ctx(`save ${h.type}/${h.name}`, signal), () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: body.byteLength,
          ContentMD5: contentMd5,
          ContentType: 'application/octet-stream',
        }),
        { abortSignal: signal },
      ),
    ).catch((err) => this.rethrow(err, h));
  }

  private async saveMultipart(h: Handle, key: string, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    const name = `${h.type}/${h.name}`;
    // AWS's documented flow: an upload started with CRC32 gets each part's CRC32 (the SDK
    // computes it) and lists them again at completion. Elsewhere each part carries Content-MD5.
    const checksumAlgorithm = this.sendMd5 ? undefined : 'CRC32';
    const created = await withRetries(this.ctx(`start multipart upload of ${name}`, signal), () =>
      this.client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          ContentType: 'application/octet-stream',
          ChecksumAlgorithm: checksumAlgorithm,
        }),
        { abortSignal: signal },
      ),
    ).catch((err) => this.rethrow(err, h));
    const uploadId = created.UploadId;
    if (!uploadId) throw new BackendAccessError('IO', `no upload id for ${name} at ${this.location}`);

    // Parts fail together: the first error stops the others from starting.
    const failed = new AbortController();
    const partSignal = signal ? AbortSignal.any([signal, failed.signal]) : failed.signal;
    try {
      const count = Math.ceil(data.byteLength / this.partSize);
      const parts: CompletedPart[] = new Array(count);
      let next = 0;
      const worker = async () => {
        while (next < count && !partSignal.aborted) {
          const i = next++;
          const body = view(data, i * this.partSize, Math.min(data.byteLength, (i + 1) * this.partSize));
          const contentMd5 = this.md5(body);
          // Re-sending a part number replaces that part, so a retried part is never doubled.
          const res = await withRetries(this.ctx(`upload part ${i + 1}/${count} of ${name}`, partSignal), () =>
            this.client.send(
              new UploadPartCommand({
                Bucket: this.bucket,
                Key: key,
                UploadId: uploadId,
                PartNumber: i + 1,
                Body: body,
                ContentLength: body.byteLength,
                ContentMD5: contentMd5,
                ChecksumAlgorithm: checksumAlgorithm,
              }),
              { abortSignal: partSignal },
            ),
          );
          parts[i] = { PartNumber: i + 1, ETag: res.ETag, ChecksumCRC32: res.ChecksumCRC32 };
        }
      };
      const workers = Array.from({ length: Math.min(this.partConcurrency, count) }, () =>
        worker().catch((err) => {
          failed.abort(err);
          throw err;
        }),
      );
      const results = await Promise.allSettled(workers);
      signal?.throwIfAborted();
      const firstFailure = results.find((r) => r.status === 'rejected');
      if (firstFailure) throw (firstFailure as PromiseRejectedResult).reason;

      let completeTried = false;
      await withRetries(this.ctx(`complete multipart upload of ${name}`, signal), async () => {
        try {
          return await this.client.send(
            new CompleteMultipartUploadCommand({
              Bucket: this.bucket,
              Key: key,
              UploadId: uploadId,
              MultipartUpload: { Parts: parts },
            }),
            { abortSignal: signal },
          );
        } catch (err) {
          // A completion whose answer was lost leaves the upload gone and the object in place,
          // and the retry fails (S3: 404 NoSuchUpload; s3rver: 500). Ids name contents, so an
          // object of the right size under this key is ours.
          if (completeTried && classifyFailure(err, signal) !== 'ABORTED') {
            const st = await this.stat(h, { signal });
            if (st?.size === data.byteLength) return undefined;
          }
          completeTried = true;
          throw err;
        }
      });
    } catch (err) {
      await this.abortUpload(key, uploadId);
      this.rethrow(err, h);
    }
  }

  private async abortUpload(key: string, uploadId: string): Promise<void> {
    // Not under the caller's signal, which may be the reason we are here; bounded instead.
    // Best effort: a bucket lifecycle rule for incomplete uploads is the backstop.
    await this.client
      .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }), {
        abortSignal: AbortSignal.timeout(10_000),
      })
      .catch(() => {});
  }

  async load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    const key = this.key(h);
    const signal = opts?.signal;
    const offset = opts?.offset ?? 0;
    const length = opts?.length;
    if (offset < 0 || (length !== undefined && length < 0)) throw new RangeError('offset and length must be >= 0');
    if (length === 0) {
      if (!(await this.stat(h, { signal }))) throw new BackendNotFoundError(h);
      return Buffer.alloc(0);
    }
    const range =
      length !== undefined ? `bytes=${offset}-${offset + length - 1}` : offset > 0 ? `bytes=${offset}-` : undefined;
    return withRetries(this.ctx(`load ${h.type}/${h.name}`, signal), async () => {
      try {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range }), {
          abortSignal: signal,
        });
        const bytes = view(await res.Body!.transformToByteArray());
        // A server that ignores Range answers 200 with the whole object; cut the range out.
        if (range && !res.ContentRange) {
          return bytes.subarray(offset, length === undefined ? undefined : offset + length);
        }
        return bytes;
      } catch (err) {
        // Like a file read at or past its end: nothing there, not an error.
        if ((err as { name?: string }).name === 'InvalidRange') return Buffer.alloc(0);
        throw err;
      }
    }).catch((err) => this.rethrow(err, h));
  }

  async openObject(key: string, opts?: CallOptions): Promise<{ stream: Readable; size: number | null }> {
    const problem = objectKeyProblem(key);
    if (problem) throw new BackendAccessError('IO', `invalid key ${JSON.stringify(key)}: ${problem}`);
    const full = `${this.prefix ? `${this.prefix}/` : ''}${key}`;
    const h: Handle = { type: 'data', name: key };
    const res = await withRetries(this.ctx(`open ${key}`, opts?.signal), () =>
      this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: full }), { abortSignal: opts?.signal }),
    ).catch((err) => this.rethrow(err, h));
    return { stream: res.Body as Readable, size: res.ContentLength ?? null };
  }

  async stat(h: Handle, opts?: CallOptions): Promise<FileInfo | null> {
    const key = this.key(h);
    const signal = opts?.signal;
    try {
      const res = await withRetries(this.ctx(`stat ${h.type}/${h.name}`, signal), () =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal }),
      );
      return { name: h.name, size: res.ContentLength ?? 0 };
    } catch (err) {
      if (classifyFailure(err, signal) !== 'NOT_FOUND') throw err;
      // A HEAD answer has no body, so a missing bucket looks like a missing key; ask once.
      await this.checkBucket(signal);
      return null;
    }
  }

  private async checkBucket(signal?: AbortSignal): Promise<void> {
    if (this.bucketChecked) return;
    try {
      await withRetries(this.ctx('check bucket', signal), () =>
        this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal }),
      );
    } catch (err) {
      if (classifyFailure(err, signal) === 'NOT_FOUND') {
        throw new BackendAccessError('NO_BUCKET', `bucket "${this.bucket}" does not exist at ${this.location}`, {
          cause: err,
        });
      }
      // Keys limited to object operations may not HEAD the bucket; the object HEAD that led
      // here was allowed, so the credentials work and the answer stays "no such file".
      if (!(err instanceof BackendAccessError && err.kind === 'AUTH')) throw err;
    }
    this.bucketChecked = true;
  }

  /**
   * Checks that the endpoint answers, the bucket exists and the credentials may list it (which
   * restic needs too). Throws BackendAccessError UNREACHABLE, NO_BUCKET or AUTH otherwise.
   */
  async checkAccess(opts?: CallOptions): Promise<void> {
    const signal = opts?.signal;
    await withRetries(this.ctx('check access', signal), () =>
      this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix ? `${this.prefix}/` : undefined, MaxKeys: 1 }),
        { abortSignal: signal },
      ),
    ).catch((err) => this.rethrow(err, { type: 'config', name: 'config' }));
  }

  async *list(type: FileType, opts?: CallOptions): AsyncIterable<FileInfo> {
    const signal = opts?.signal;
    if (type === 'config') {
      const st = await this.stat({ type, name: 'config' }, opts);
      if (st) yield st;
      return;
    }
    const prefix = `${this.prefix ? `${this.prefix}/` : ''}${type}/`;
    let token: string | undefined;
    do {
      const page = await withRetries(this.ctx(`list ${type}`, signal), () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: 1000 }),
          { abortSignal: signal },
        ),
      ).catch((err) => this.rethrow(err, { type, name: '' }));
      for (const obj of page.Contents ?? []) {
        const rest = obj.Key!.slice(prefix.length);
        const name = rest.slice(rest.lastIndexOf('/') + 1);
        // Only restic's shapes: `data/<2 hex>/<name>`, or `<type>/<name>` for the others.
        const depthOk = type === 'data' ? /^[0-9a-f]{2}\/[^/]+$/.test(rest) : !rest.includes('/');
        if (depthOk && name) yield { name, size: obj.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async remove(h: Handle, opts?: CallOptions): Promise<void> {
    const key = this.key(h);
    const signal = opts?.signal;
    // S3 answers 204 for a missing key too, so a repeated delete is harmless.
    await withRetries(this.ctx(`remove ${h.type}/${h.name}`, signal), () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal }),
    ).catch((err) => this.rethrow(err, h));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** Turns what the retry loop let through (NOT_FOUND) into this interface's errors. */
  private rethrow(err: unknown, h: Handle): never {
    if (err instanceof BackendAccessError || err instanceof BackendNotFoundError) throw err;
    const kind = classifyFailure(err);
    if (kind === 'NOT_FOUND') {
      const code = (err as { name?: string }).name;
      if (code === 'NoSuchKey' || code === 'NotFound') throw new BackendNotFoundError(h, { cause: err });
      throw new BackendAccessError('IO', `${h.type}/${h.name} at ${this.location}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    throw err;
  }
}

/**
 * An S3Backend for a restic-style location (`s3:https://host/bucket/prefix`), with credentials
 * from the environment variables restic reads: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN, and AWS_DEFAULT_REGION (or AWS_REGION; default us-east-1).
 */
export function s3BackendFromLocation(
  location: string,
  env: Record<string, string | undefined> = process.env,
  extra: Partial<S3BackendOptions> = {},
): S3Backend {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw new TypeError(`${location} needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`);
  }
  const connection = parseS3Location(location, env.AWS_DEFAULT_REGION || env.AWS_REGION || 'us-east-1');
  return new S3Backend({
    ...connection,
    credentials: { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN || undefined },
    ...extra,
  });
}
