import { describe, expect, it } from 'vitest';
import { BackendAccessError } from '../../src/destinations/backend.ts';
import { backoffDelay, classifyFailure, DEFAULT_RETRY_POLICY, withRetries } from '../../src/destinations/s3-retry.ts';

// Error shapes as the SDK and Node produce them (copied from real failures seen against s3rver).
const sdkError = (name: string, status?: number) =>
  Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
const sysError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:1`), { code });

describe('classifyFailure', () => {
  it('sorts S3 answers and network failures', () => {
    expect(classifyFailure(sdkError('InvalidAccessKeyId', 403))).toBe('AUTH');
    expect(classifyFailure(sdkError('SignatureDoesNotMatch', 403))).toBe('AUTH');
    expect(classifyFailure(sdkError('Unknown', 403))).toBe('AUTH');
    expect(classifyFailure(sdkError('NoSuchBucket', 404))).toBe('NO_BUCKET');
    expect(classifyFailure(sdkError('NoSuchKey', 404))).toBe('NOT_FOUND');
    expect(classifyFailure(sdkError('NotFound', 404))).toBe('NOT_FOUND');
    expect(classifyFailure(sdkError('InternalError', 500))).toBe('TRANSIENT');
    expect(classifyFailure(sdkError('SlowDown', 503))).toBe('TRANSIENT');
    expect(classifyFailure(sdkError('Whatever', 502))).toBe('TRANSIENT');
    expect(classifyFailure(sdkError('InvalidArgument', 400))).toBe('FATAL');
    expect(classifyFailure(sysError('ECONNREFUSED'))).toBe('UNREACHABLE');
    expect(classifyFailure(sysError('ENOTFOUND'))).toBe('UNREACHABLE');
    expect(classifyFailure(sysError('ECONNRESET'))).toBe('TRANSIENT');
    expect(classifyFailure(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toBe('TRANSIENT');
    // @smithy/node-http-handler's connect timeout.
    const connectTimeout = Object.assign(
      new Error('@smithy/node-http-handler - the request socket did not establish a connection with the server within the configured timeout of 5000 ms.'),
      { name: 'TimeoutError' },
    );
    expect(classifyFailure(connectTimeout)).toBe('UNREACHABLE');
  });

  it('calls anything aborted ABORTED', () => {
    expect(classifyFailure(sdkError('InternalError', 500), AbortSignal.abort())).toBe('ABORTED');
    expect(classifyFailure(Object.assign(new Error('x'), { name: 'AbortError' }))).toBe('ABORTED');
  });
});

describe('withRetries', () => {
  const ctx = (over: Partial<Parameters<typeof withRetries>[0]> = {}) => ({
    what: 'load x',
    location: 's3:http://h/b',
    bucket: 'b',
    policy: { ...DEFAULT_RETRY_POLICY, baseDelayMs: 1, maxDelayMs: 2 },
    ...over,
  });

  it('retries transient failures, then succeeds', async () => {
    let n = 0;
    const result = await withRetries(ctx(), async () => {
      if (++n < 3) throw sdkError('SlowDown', 503);
      return 'ok';
    });
    expect([result, n]).toEqual(['ok', 3]);
  });

  it('gives up after maxAttempts with an IO error naming the attempts', async () => {
    let n = 0;
    const err = await withRetries(ctx(), async () => {
      n++;
      throw sdkError('InternalError', 500);
    }).catch((e: unknown) => e);
    expect(n).toBe(5);
    expect(err).toBeInstanceOf(BackendAccessError);
    expect(err).toMatchObject({ kind: 'IO', message: expect.stringMatching(/load x failed at s3:http:\/\/h\/b after 5 attempts/) });
  });

  it('does not retry what a retry cannot fix', async () => {
    let n = 0;
    const err = await withRetries(ctx(), async () => {
      n++;
      throw sdkError('InvalidAccessKeyId', 403);
    }).catch((e: unknown) => e);
    expect([n, (err as BackendAccessError).kind]).toEqual([1, 'AUTH']);
  });

  it('stops waiting between attempts when aborted', async () => {
    const ac = new AbortController();
    const slow = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 60_000, maxDelayMs: 60_000 };
    const err = await withRetries(ctx({ policy: slow, signal: ac.signal, onRetry: () => ac.abort() }), async () => {
      throw sdkError('InternalError', 500);
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'AbortError' });
  });

  it('keeps backoff within its bounds', () => {
    const policy = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 100, maxDelayMs: 1000 };
    for (let attempt = 1; attempt < 10; attempt++) {
      const ceiling = Math.min(1000, 100 * 2 ** (attempt - 1));
      const d = backoffDelay(policy, attempt);
      expect(d).toBeGreaterThanOrEqual(ceiling / 2);
      expect(d).toBeLessThanOrEqual(ceiling);
    }
  });
});
