import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { sharedSubscriptionEvents } from './shared-events.ts';
import { sseStreams, writeEventStream, type SseSlot } from './sse-responses.ts';
import { createYoga, type Plugin } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import type { Db } from '../db/client.ts';
import { AppError, ValidationError } from '../domain/errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { Context } from '../schema/builder.ts';
import { schema } from '../schema/index.ts';
import { AuthenticationError, authenticate, bearerToken } from '../services/api-keys.ts';
import type { Deps } from '../services/deps.ts';
import type { UploadedDump } from '../services/imports.ts';
import type { Viewer } from '../services/viewer.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import { oneMutationPerIdempotencyHeader } from './idempotency-header.ts';
import { isMultipart, MultipartError, receiveMultipart, type ReceivedMultipart } from './multipart-upload.ts';
import { serveConsole } from './console-files.ts';
import { serveDownload } from './download-route.ts';
import { createMetrics } from './metrics.ts';
import { queryLimitPlugins } from './query-limits.ts';

export interface App {
  /** Listens on the port (0: any free one); resolves with the port. */
  start(port?: number, host?: string): Promise<number>;
  /** Stops accepting work, lets in-flight requests finish (up to the grace period), closes sockets. */
  stop(): Promise<void>;
  readonly server: http.Server;
}

type AppConfig = Pick<Config, 'PUBLIC_URL' | 'BODY_LIMIT_BYTES' | 'BATCH_LIMIT' | 'MAX_DEPTH' | 'MAX_ALIASES' | 'MAX_COST' | 'MAX_TOKENS' | 'SHUTDOWN_GRACE_MS' | 'METRICS_TOKEN'>;

class PayloadTooLargeError extends Error {}

const LISTEN_BACKLOG = 4096;

interface EnvelopedRoot {
  execute: (a: ExecutionArgs) => unknown;
  subscribe: (a: ExecutionArgs) => unknown;
}

/** Reads a request body, refusing more than `limit` bytes whatever the headers claim. */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > limit) return reject(new PayloadTooLargeError());
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new PayloadTooLargeError());
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * The Authorization value in a graphql-ws `connection_init` payload or a subscribe message's
 * `extensions.headers`: header names are case-insensitive, and some clients nest the headers
 * under `headers`. Undefined when none is given.
 */
function authorizationIn(params: unknown): string | undefined {
  if (!params || typeof params !== 'object') return undefined;
  for (const [k, v] of Object.entries(params)) if (k.toLowerCase() === 'authorization' && typeof v === 'string') return v;
  return 'headers' in params ? authorizationIn(params.headers) : undefined;
}

/**
 * True when the client went away under the request (its socket closed, or reset): whatever the
 * handler then failed on, there is no one to answer and nothing the server did wrong. Not
 * `req.destroyed`: a request is destroyed as soon as its body has been read.
 */
function clientGone(res: http.ServerResponse, err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return res.destroyed || code === 'ECONNRESET' || code === 'EPIPE';
}

/** Tags GraphQL validation and variable errors with a code, so clients can tell them from server faults. */
const codeRequestErrors: Plugin = {
  onValidate: () => ({ result, setResult }) => {
    if (result.length) {
      setResult(result.map((e) => (e.extensions?.code ? e : new GraphQLError(e.message, { nodes: e.nodes, source: e.source, positions: e.positions, path: e.path, originalError: e.originalError, extensions: { ...e.extensions, code: 'GRAPHQL_VALIDATION_FAILED' } }))));
    }
  },
  onExecute: () => ({
    onExecuteDone: ({ result, setResult }) => {
      if (!('errors' in result) || !result.errors?.length || 'next' in result) return;
      const errors = result.errors.map((e) =>
        !e.path && !e.extensions?.code && /^Variable "\$/.test(e.message)
          ? new GraphQLError(e.message, { nodes: e.nodes, positions: e.positions, extensions: { code: 'BAD_USER_INPUT' } })
          : e,
      );
      setResult({ ...result, errors });
    },
  }),
};

/**
 * The API process: one HTTP port serving /graphql (POST, GET, GraphiQL, SSE, graphql-ws on the
 * same path), /healthz, /readyz, /metrics and the web console's files at / and /assets/.
 */
export function buildApp(opts: { config: AppConfig; deps: Deps; logger: Logger }): App {
  const { config, deps, logger } = opts;
  const metrics = createMetrics(deps, logger);

  async function viewerFor(authorization: string | null | undefined): Promise<Viewer | null> {
    const token = bearerToken(authorization);
    if (!token) return null;
    try {
      const now = deps.clock.now();
      return await (deps.viewerCache ? deps.viewerCache.authenticate(deps.db, token, now) : authenticate(deps.db, token, now));
    } catch (err) {
      if (err instanceof AuthenticationError) throw new GraphQLError(err.message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });
      throw err;
    }
  }

  const yoga = createYoga<{ requestId: string; viewer?: Viewer | null; uploads?: Map<string, UploadedDump>; sse?: SseSlot }, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    landingPage: false,
    // GraphiQL served from this process, not a CDN: a self-hosted control plane must work offline.
    // Loaded on the first visit: its bundle is a 9 MB string literal, which costs a process that
    // never shows GraphiQL about 28 MiB of heap (the module's source and the string).
    renderGraphiQL: async (options) => (await import('@graphql-yoga/render-graphiql')).renderGraphiQL(options),
    graphiql: { title: 'Backplane', defaultQuery: '# Add the header  Authorization: Bearer <your key>  below, then:\n{ viewer { scopes organization { name } } projects(first: 10) { totalCount edges { node { id name } } } }\n', subscriptionsProtocol: 'WS' },
    batching: { limit: config.BATCH_LIMIT },
    logging: false,
    maskedErrors: {
      maskError(error, message) {
        // An error that carries a code was raised on purpose (auth, limits, input): show it as is.
        const e = error as { extensions?: { code?: unknown }; originalError?: unknown };
        if (e.extensions?.code) return error as Error;
        if (e.originalError === undefined && error instanceof Error && error.name === 'GraphQLError') return error;
        // A domain error on a field without a typed result still reaches the caller with its code.
        if (e.originalError instanceof AppError) {
          const fields = e.originalError instanceof ValidationError ? { fields: e.originalError.fields } : {};
          return new GraphQLError(e.originalError.message, { extensions: { code: e.originalError.code, ...fields } });
        }
        logger.error({ err: e.originalError ?? error }, 'unexpected error in a resolver');
        return new GraphQLError(message, { extensions: { code: 'INTERNAL_SERVER_ERROR' } });
      },
    },
    plugins: [
      ...queryLimitPlugins({ maxDepth: config.MAX_DEPTH, maxAliases: config.MAX_ALIASES, maxCost: config.MAX_COST, maxTokens: config.MAX_TOKENS }),
      codeRequestErrors,
      oneMutationPerIdempotencyHeader(schema),
      metrics.graphqlPlugin,
      sharedSubscriptionEvents,
      sseStreams,
    ],
    context: async ({ request, requestId, viewer, uploads }) => ({
      deps,
      uploads,
      requestId: requestId ?? randomUUID(),
      // graphql-ws operations come without a fetch Request: no headers, no origin of their own.
      idempotencyKey: request?.headers.get('idempotency-key') ?? undefined,
      baseUrl: config.PUBLIC_URL?.replace(/\/$/, '') ?? (request ? new URL(request.url).origin : undefined),
      // graphql-ws authenticates once at connection_init and passes the viewer in.
      viewer: viewer !== undefined ? viewer : await viewerFor(request?.headers.get('authorization')),
    }),
  });

  const inflight = new Set<AbortController>();
  const streams = new Set<AbortController>();
  let stopping = false;

  async function handleGraphql(req: http.IncomingMessage, res: http.ServerResponse, requestId: string) {
    let body: Buffer | undefined;
    let received: ReceivedMultipart | undefined;
    if (isMultipart(req) && deps.imports) {
      try {
        received = await receiveMultipart(req, { dir: deps.imports.dir, fieldLimit: config.BODY_LIMIT_BYTES, maxFileBytes: deps.imports.maxBytes });
      } catch (err) {
        if (!(err instanceof MultipartError)) throw err;
        res.writeHead(err.status, { 'content-type': 'application/json', ...(err.status === 413 ? { connection: 'close' } : {}) });
        res.end(JSON.stringify({ errors: [{ message: err.message, extensions: { code: err.code } }] }));
        return;
      }
      body = Buffer.from(JSON.stringify(received.body));
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      try {
        body = await readBody(req, config.BODY_LIMIT_BYTES);
      } catch (err) {
        if (!(err instanceof PayloadTooLargeError)) throw err;
        res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
        res.end(JSON.stringify({ errors: [{ message: `Request body larger than ${config.BODY_LIMIT_BYTES} bytes`, extensions: { code: 'PAYLOAD_TOO_LARGE' } }] }));
        return;
      }
    }
    const ac = new AbortController();
    inflight.add(ac);
    res.on('close', () => ac.abort());
    try {
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
      if (received) {
        headers.set('content-type', 'application/json');
        headers.delete('content-length');
      }
      const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
      const init: RequestInit = { method: req.method, headers, body: body ? new Uint8Array(body) : undefined, signal: ac.signal };
      const sse: SseSlot = {};
      const response = await yoga.fetch(url, init, { requestId, uploads: received?.uploads, sse });
      // Before the answer goes out: a client that reads it may look for the file at once.
      await received?.cleanup();
      const out: Record<string, string> = { 'x-request-id': requestId };
      response.headers.forEach((v, k) => (out[k] = v));
      res.writeHead(response.status, out);
      if (out['content-type']?.startsWith('text/event-stream')) streams.add(ac);
      if (sse.results) await writeEventStream(res, sse.results, ac.signal);
      else if (response.body) {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
        }
      }
      res.end();
    } finally {
      inflight.delete(ac);
      streams.delete(ac);
      await received?.cleanup();
    }
  }

  /** Streams a signed download; an altered or expired link gets 403 and reveals nothing. */
  // Compared as SHA-256 digests: equal lengths for timingSafeEqual, whatever the header holds.
  const metricsDigest = config.METRICS_TOKEN ? createHash('sha256').update(config.METRICS_TOKEN).digest() : null;
  function metricsAllowed(req: http.IncomingMessage): boolean {
    if (!metricsDigest) return true;
    const given = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    return given !== undefined && timingSafeEqual(createHash('sha256').update(given).digest(), metricsDigest);
  }

  async function ready(db: Db): Promise<boolean> {
    try {
      await db.$queryRawUnsafe('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  const server = http.createServer((req, res) => {
    const requestId = (req.headers['x-request-id'] as string | undefined)?.slice(0, 100) || randomUUID();
    const started = process.hrtime.bigint();
    const path = (req.url ?? '/').split('?')[0];
    const elapsed = () => Math.round(Number(process.hrtime.bigint() - started) / 1e5) / 10;
    res.on('finish', () => {
      const ms = elapsed();
      metrics.observeHttp(path === '/graphql' ? '/graphql' : path === '/metrics' ? '/metrics' : path.startsWith('/downloads/') ? '/downloads' : 'other', res.statusCode, ms);
      logger.info({ requestId, method: req.method, path, status: res.statusCode, ms }, 'request');
    });
    // A client that leaves before the answer is complete (closed tab, Ctrl-C, an SSE stream
    // dropped) is routine: one line, whatever the handler then throws on the dead socket.
    res.on('close', () => {
      if (!res.writableFinished) logger.info({ requestId, method: req.method, path, ms: elapsed() }, 'client disconnected');
    });
    const fail = (err: unknown) => {
      if (clientGone(res, err)) {
        logger.debug({ requestId, reason: (err as Error)?.message }, 'request ended by the client');
        return;
      }
      logger.error({ err, requestId }, 'request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end();
    };
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok' }));
    } else if (path === '/readyz') {
      void ready(deps.db).then((ok) => {
        const up = ok && !stopping;
        res.writeHead(up ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: up ? 'ready' : 'unavailable', database: ok ? 'up' : 'down' }));
      }, fail);
    } else if (path === '/metrics') {
      if (!metricsAllowed(req)) {
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="metrics"' }).end(JSON.stringify({ error: 'METRICS_TOKEN is set: send it as Authorization: Bearer <token>' }));
        return;
      }
      metrics.render().then((text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text), fail);
    } else if (path.startsWith('/downloads/')) {
      serveDownload(deps, logger, req, res, path.slice('/downloads/'.length)).catch(fail);
    } else if (path === '/graphql') {
      handleGraphql(req, res, requestId).catch(fail);
    } else if (path === '/' || path === '/index.html' || path.startsWith('/assets/')) {
      serveConsole(req, res, path, config.PUBLIC_URL).catch(fail);
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }));
    }
  });

  const wss = new WebSocketServer({ server, path: '/graphql' });
  const wsCleanup = useServer<Record<string, unknown>, { viewer?: Viewer | null; authError?: GraphQLError }>(
    {
      // The envelop-wrapped execute/subscribe travel in rootValue from onSubscribe below.
      execute: (args: ExecutionArgs) => (args.rootValue as EnvelopedRoot).execute(args) as never,
      subscribe: (args: ExecutionArgs) => (args.rootValue as EnvelopedRoot).subscribe(args) as never,
      onConnect: async (ctx) => {
        if (stopping) return false;
        // A bad key here is not fatal to the socket: each operation that brings no key of its own
        // is answered UNAUTHENTICATED, as over HTTP, instead of a bare close the client cannot explain.
        const auth = authorizationIn(ctx.connectionParams);
        try {
          ctx.extra.viewer = await viewerFor(auth);
        } catch (err) {
          if (!(err instanceof GraphQLError)) throw err;
          ctx.extra.authError = err;
        }
        return true;
      },
      onSubscribe: async (ctx, _id, payload) => {
        // GraphiQL (and @graphql-tools' executor) sends an empty connection_init and the headers
        // tab with every subscribe message: a key there authenticates this one operation.
        const own = authorizationIn(payload.extensions?.headers);
        let viewer: Viewer | null;
        try {
          if (own !== undefined) viewer = await viewerFor(own);
          else if (ctx.extra.authError) return [ctx.extra.authError];
          else viewer = ctx.extra.viewer ?? null;
        } catch (err) {
          if (err instanceof GraphQLError) return [err];
          throw err;
        }
        const { schema: s, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params: payload,
          requestId: randomUUID(),
          viewer,
        });
        let document: ReturnType<typeof parse>;
        try {
          document = parse(payload.query);
        } catch (err) {
          if (err instanceof GraphQLError) return [err];
          throw err;
        }
        const errors = validate(s, document);
        if (errors.length) return errors;
        return {
          schema: s,
          operationName: payload.operationName,
          document,
          variableValues: payload.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe },
        };
      },
    },
    wss,
  );

  return {
    server,
    start(port = 0, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        // The kernel's queue of connections not yet accepted: Node's default of 511 overflows when
        // more clients connect at once than the event loop accepts meanwhile (1,000 SSE clients
        // are 2,000 connections), and Linux then drops the handshakes beyond it: those clients
        // wait for SYN retries and fail with ETIMEDOUT or ECONNRESET when the queue stays full.
        // Capped by net.core.somaxconn (4096 by default since Linux 5.4).
        server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          resolve((server.address() as AddressInfo).port);
        });
      });
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      // Live streams never finish on their own: end subscriptions, let ordinary requests complete.
      await wsCleanup.dispose();
      for (const c of wss.clients) c.terminate();
      wss.close();
      for (const ac of streams) ac.abort();
      const grace = setTimeout(() => {
        for (const ac of inflight) ac.abort();
        server.closeAllConnections();
      }, config.SHUTDOWN_GRACE_MS);
      grace.unref();
      await closed;
      clearTimeout(grace);
      metrics.close();
    },
  };
}

export type { EventBus };
