/**
 * How the S3 backend reacts to failures: which errors are worth another attempt, how long to
 * wait, and how what remains is told to the caller as a `BackendAccessError`.
 *
 * The SDK's own retries are switched off (maxAttempts 1) and this loop wraps whole operations
 * instead, because a GetObject can fail while its body streams in, after `send` has returned,
 * and because an unreachable endpoint should fail after a couple of quick tries rather than
 * the full backoff meant for a busy server.
 */
import { BackendAccessError } from './backend.ts';

/** Tunables of the retry loop. */
export interface RetryPolicy {
  /** Attempts for server errors, throttling and dropped connections (default 5). */
  maxAttempts: number;
  /** Attempts when no connection could be made at all (default 2). */
  unreachableAttempts: number;
  /** First backoff delay in ms; doubles per attempt, with jitter (default 100). */
  baseDelayMs: number;
  /** Upper bound of one backoff delay in ms (default 5000). */
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 5,
  unreachableAttempts: 2,
  baseDelayMs: 100,
  maxDelayMs: 5_000,
};

/** What a failure means for the next step. */
export type FailureClass = 'ABORTED' | 'UNREACHABLE' | 'TRANSIENT' | 'AUTH' | 'NO_BUCKET' | 'NOT_FOUND' | 'FATAL';

interface SdkLikeError {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  cause?: unknown;
}

// No connection was made, so nothing reached the server.
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN']);
// The connection broke while a request or response was under way.
const DROPPED_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE']);
const AUTH_CODES = new Set([
  'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'ExpiredToken', 'InvalidToken',
  'InvalidSecurity', 'TokenRefreshRequired', 'AuthorizationHeaderMalformed', 'Unauthorized',
]);
const TRANSIENT_CODES = new Set([
  'InternalError', 'ServiceUnavailable', 'SlowDown', 'RequestTimeout', 'RequestTimeTooSkewed',
  'Throttling', 'ThrottlingException', 'TooManyRequests',
]);

function errorCode(err: SdkLikeError): string | undefined {
  return err.Code ?? (err.name && err.name !== 'Error' ? err.name : undefined);
}

/** Sorts a failure from the SDK or the network into what the retry loop does with it. */
export function classifyFailure(err: unknown, signal?: AbortSignal): FailureClass {
  if (signal?.aborted) return 'ABORTED';
  const e = (err ?? {}) as SdkLikeError;
  if (e.name === 'AbortError') return 'ABORTED';
  const status = e.$metadata?.httpStatusCode;
  const code = errorCode(e);
  const sysCode = e.code ?? (e.cause as SdkLikeError | undefined)?.code;
  if (sysCode && CONNECT_CODES.has(sysCode)) return 'UNREACHABLE';
  if (e.name === 'TimeoutError' && /did not establish a connection/.test(e.message ?? '')) return 'UNREACHABLE';
  if (code === 'NoSuchBucket') return 'NO_BUCKET';
  if (code === 'NoSuchKey' || code === 'NotFound' || code === 'NoSuchUpload' || status === 404) return 'NOT_FOUND';
  if ((code && AUTH_CODES.has(code)) || status === 401 || status === 403) return 'AUTH';
  if (code && TRANSIENT_CODES.has(code)) return 'TRANSIENT';
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) return 'TRANSIENT';
  if (e.name === 'TimeoutError' || (sysCode && DROPPED_CODES.has(sysCode))) return 'TRANSIENT';
  // A response cut short mid-body surfaces from the parsers as plain errors without a status.
  if (status === undefined && /socket hang up|aborted|premature close|terminated|ECONNRESET/i.test(e.message ?? '')) {
    return 'TRANSIENT';
  }
  return 'FATAL';
}

/** Backoff delay before attempt number `attempt + 1` (attempt counts from 1); full jitter. */
export function backoffDelay(policy: RetryPolicy, attempt: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A short description of an SDK or network error, for messages. */
export function describeError(err: unknown): string {
  const e = (err ?? {}) as SdkLikeError;
  const parts = [errorCode(e), e.code, e.$metadata?.httpStatusCode && `HTTP ${e.$metadata.httpStatusCode}`]
    .filter(Boolean)
    .join(', ');
  const message = e.message && e.message !== 'UnknownError' ? e.message : '';
  return [parts && `(${parts})`, message].filter(Boolean).join(' ') || String(err);
}

/** What an operation is and where, for error messages: `load data/ab/abcd… at s3:http://…`. */
export interface RetryContext {
  what: string;
  location: string;
  bucket: string;
  policy: RetryPolicy;
  signal?: AbortSignal;
  /** Called before each retry; for tests and logs. */
  onRetry?: (info: { what: string; attempt: number; error: unknown }) => void;
}

/**
 * Runs `attempt` until it succeeds, a failure is not worth retrying, or attempts run out.
 * NOT_FOUND failures are rethrown as they are, for the caller to turn into its own answer;
 * an abort rethrows the signal's reason; everything else becomes a BackendAccessError.
 */
export async function withRetries<T>(ctx: RetryContext, attempt: (n: number) => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    ctx.signal?.throwIfAborted();
    try {
      return await attempt(n);
    } catch (err) {
      const kind = classifyFailure(err, ctx.signal);
      if (kind === 'ABORTED') throw ctx.signal?.aborted ? ctx.signal.reason : err;
      const limit = kind === 'UNREACHABLE' ? ctx.policy.unreachableAttempts : ctx.policy.maxAttempts;
      if ((kind === 'TRANSIENT' || kind === 'UNREACHABLE') && n < limit) {
        ctx.onRetry?.({ what: ctx.what, attempt: n, error: err });
        await sleep(backoffDelay(ctx.policy, n), ctx.signal);
        continue;
      }
      throw toAccessError(kind, err, ctx, n);
    }
  }
}

function toAccessError(kind: FailureClass, err: unknown, ctx: RetryContext, attempts: number): unknown {
  // The SDK keeps the whole raw HTTP response (sockets and all) on its errors; hidden from
  // enumeration so a logged cause stays readable.
  if (err && typeof err === 'object' && '$response' in err) {
    Object.defineProperty(err, '$response', { enumerable: false });
  }
  const detail = describeError(err);
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  switch (kind) {
    case 'NOT_FOUND':
      return err;
    case 'UNREACHABLE':
      return new BackendAccessError(
        'UNREACHABLE',
        `cannot reach the S3 endpoint of ${ctx.location} (${ctx.what}${tries}): ${detail}`,
        { cause: err },
      );
    case 'AUTH':
      return new BackendAccessError(
        'AUTH',
        `S3 refused the credentials for bucket "${ctx.bucket}" at ${ctx.location} (${ctx.what}): ${detail}`,
        { cause: err },
      );
    case 'NO_BUCKET':
      return new BackendAccessError(
        'NO_BUCKET',
        `bucket "${ctx.bucket}" does not exist at ${ctx.location}`,
        { cause: err },
      );
    default:
      return new BackendAccessError('IO', `${ctx.what} failed at ${ctx.location}${tries}: ${detail}`, { cause: err });
  }
}
