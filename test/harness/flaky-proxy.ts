/**
 * An HTTP proxy on 127.0.0.1 that passes requests to a target (s3rver) and fails some of them
 * on purpose, deterministically: every `every`-th request that `match` accepts fails, by the
 * failure modes in turn. No randomness, so a failing run replays exactly.
 *
 * Failure modes:
 * - `drop`: close the connection before forwarding; the server never sees the request.
 * - `drop-after`: forward, let the server finish, then close without answering; the work is
 *   done but the client cannot know (a lost response).
 * - `truncate`: forward and send the headers and half the body, then close (an empty answer
 *   is lost whole).
 * - `{ status, code }`: answer with an S3 XML error, e.g. 503 SlowDown, without forwarding.
 *
 * With `checkContentMd5` it also does what S3 does and s3rver does not: a body whose
 * Content-MD5 header does not match is refused with 400 BadDigest.
 */
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FlakyFailure = 'drop' | 'drop-after' | 'truncate' | { status: number; code: string };

/** What the proxy saw of one request. */
export interface ProxiedRequest {
  /** 1-based, over all requests. */
  seq: number;
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  /** The failure injected into this request, if any. */
  failure?: FlakyFailure;
}

export interface FlakyProxyOptions {
  /** Base URL of the real server, e.g. s3rver's `http://127.0.0.1:PORT`. */
  target: string;
  /** Fail every n-th matching request (1 = all of them; 0 = none, only record). */
  every: number;
  /** Failure modes, used in turn (default: drop, 500 InternalError, 503 SlowDown, drop-after, truncate). */
  failures?: FlakyFailure[];
  /** Which requests count towards `every` (default: all). */
  match?: (req: { method: string; url: string }) => boolean;
  /** Called for each request before it is handled, e.g. to abort a client at a known point. */
  onRequest?: (req: ProxiedRequest) => void;
  /** Verify Content-MD5 headers against the bodies, as S3 does (default false). */
  checkContentMd5?: boolean;
  /** With `checkContentMd5`: flip a bit of every body first, as a faulty network might. */
  corruptBodies?: boolean;
  /** Drop `Range` headers, like servers that always answer with the whole object. */
  ignoreRange?: boolean;
}

export interface FlakyProxy {
  endpoint: string;
  /** Every request seen, in arrival order. */
  readonly requests: ProxiedRequest[];
  /** Requests that were failed on purpose. */
  readonly failed: ProxiedRequest[];
  /** With `checkContentMd5`: bodies whose Content-MD5 matched, and those refused. */
  readonly digests: { matched: number; refused: number };
  /** Changes how often requests fail from now on (the counter keeps running). */
  setEvery(every: number): void;
  stop(): Promise<void>;
}

export const DEFAULT_FAILURES: FlakyFailure[] = [
  'drop',
  { status: 500, code: 'InternalError' },
  { status: 503, code: 'SlowDown' },
  'drop-after',
  'truncate',
];

function withoutRange(headers: IncomingMessage['headers']): IncomingMessage['headers'] {
  const { range: _dropped, ...rest } = headers;
  return rest;
}

function s3ErrorXml(code: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by flaky-proxy</Message><RequestId>flaky</RequestId></Error>`;
}

/** Starts the proxy on a free port of 127.0.0.1. */
export async function startFlakyProxy(opts: FlakyProxyOptions): Promise<FlakyProxy> {
  const target = new URL(opts.target);
  const failures = opts.failures ?? DEFAULT_FAILURES;
  let every = opts.every;
  let matched = 0;
  const requests: ProxiedRequest[] = [];
  const failed: ProxiedRequest[] = [];
  const digests = { matched: 0, refused: 0 };

  const sendError = (res: ServerResponse, status: number, code: string) => {
    const body = s3ErrorXml(code);
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  const forward = (
    req: IncomingMessage,
    onResponse: (res: IncomingMessage) => void,
    onError: () => void,
    onBadDigest: () => void,
  ) => {
    const upstream = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: opts.ignoreRange ? withoutRange(req.headers) : req.headers,
      },
      onResponse,
    );
    upstream.on('error', onError);
    const md5 = req.headers['content-md5'];
    if (!opts.checkContentMd5 || typeof md5 !== 'string') {
      req.pipe(upstream);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (opts.corruptBodies && body.length > 0) body[0] ^= 0x01;
      if (createHash('md5').update(body).digest('base64') === md5) {
        digests.matched++;
        upstream.end(body);
      } else {
        digests.refused++;
        upstream.destroy();
        onBadDigest();
      }
    });
  };

  const server: Server = createServer((req, res) => {
    const info: ProxiedRequest = {
      seq: requests.length + 1,
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: req.headers,
    };
    requests.push(info);
    if (every > 0 && (opts.match?.(info) ?? true)) {
      matched++;
      if (matched % every === 0) {
        info.failure = failures[(matched / every - 1) % failures.length];
        failed.push(info);
      }
    }
    opts.onRequest?.(info);
    const failure = info.failure;
    const kill = () => req.socket.destroy();

    if (failure === 'drop') return kill();
    if (typeof failure === 'object') {
      // Read the body first so the client is not cut off mid-upload, which would be a drop.
      req.resume();
      req.on('end', () => sendError(res, failure.status, failure.code));
      return;
    }
    forward(
      req,
      (up) => {
        if (failure === 'drop-after') {
          up.resume();
          up.on('end', kill);
          return;
        }
        if (failure === 'truncate') {
          const chunks: Buffer[] = [];
          up.on('data', (c: Buffer) => chunks.push(c));
          up.on('end', () => {
            const body = Buffer.concat(chunks);
            // Nothing to cut in an empty answer: lose it whole instead.
            if (body.length < 2) return kill();
            res.writeHead(up.statusCode ?? 502, up.headers);
            res.write(body.subarray(0, Math.floor(body.length / 2)));
            // Let the written half reach the client before the connection goes.
            res.socket?.end(() => kill());
          });
          return;
        }
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
      kill,
      () => sendError(res, 400, 'BadDigest'),
    );
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    failed,
    digests,
    setEvery(n: number) {
      every = n;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
