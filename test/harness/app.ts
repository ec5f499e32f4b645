/**
 * A real Backplane API server for a test file: its own migrated database, listening on a random
 * port, reached over HTTP, SSE and graphql-ws exactly as clients reach it.
 *
 * ```ts
 * const app = await startTestApp();
 * const res = await app.gql(ProjectsDocument, {}, { key });
 * ```
 */
import type { RecoveryInstanceKeeperOptions } from '../../src/services/recovery-instance-keeper.ts';
import { randomBytes } from 'node:crypto';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type ExecutionResult } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { buildApp, type App } from '../../src/app/build-app.ts';
import { loadConfig } from '../../src/app/config.ts';
import { createLogger } from '../../src/app/logger.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import { startWorker, type Worker } from '../../src/app/worker.ts';
import type { PitrSupervisorOptions } from '../../src/services/pitr-streamer.ts';
import { freshDatabase } from './database.ts';

// Repositories made by tests use a cheap scrypt cost; restic reads them the same.
process.env.BACKPLANE_REPO_KDF ??= 'fast';

export interface TestApp {
  url: string;
  wsUrl: string;
  databaseUrl: string;
  runtime: Runtime;
  app: App;
  /** Sends one operation over HTTP POST; returns the parsed JSON body. */
  gql<R, V>(doc: TypedDocumentNode<R, V>, variables?: V, opts?: { key?: string; headers?: Record<string, string> }): Promise<ExecutionResult<R>>;
  /** Raw POST of any body, for batching, limits and malformed requests. */
  post(body: unknown, opts?: { key?: string; headers?: Record<string, string> }): Promise<Response>;
  /** A graphql-ws client authenticated with the key. */
  ws(key?: string): Client;
  /** Starts a job worker in this process on the app's database (stopped with the app). */
  startWorker(opts?: { staleAfterMs?: number; pitr?: PitrSupervisorOptions; instances?: Partial<RecoveryInstanceKeeperOptions> }): Promise<Worker>;
  stop(): Promise<void>;
}

/** Environment for a Backplane process pointed at `databaseUrl`. */
export function testEnv(databaseUrl: string, secretKey: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, BACKPLANE_REPO_KDF: 'fast', DATABASE_URL: databaseUrl, BACKPLANE_SECRET_KEY: secretKey, LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', ...extra };
}

export async function startTestApp(opts: { databaseUrl?: string; secretKey?: string; env?: Record<string, string> } = {}): Promise<TestApp> {
  const databaseUrl = opts.databaseUrl ?? (await freshDatabase('api'));
  const secretKey = opts.secretKey ?? randomBytes(32).toString('hex');
  const config = loadConfig(testEnv(databaseUrl, secretKey, opts.env));
  const logger = createLogger(config.LOG_LEVEL);
  const runtime = await createRuntime(config, databaseUrl, logger);
  const app = buildApp({ config, deps: runtime.deps, logger });
  const port = await app.start(0);
  const url = `http://127.0.0.1:${port}/graphql`;
  const wsUrl = `ws://127.0.0.1:${port}/graphql`;
  const clients: Client[] = [];
  const workers: Worker[] = [];

  const post = (body: unknown, o: { key?: string; headers?: Record<string, string> } = {}) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(o.key ? { authorization: `Bearer ${o.key}` } : {}), ...o.headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  return {
    url,
    wsUrl,
    databaseUrl,
    runtime,
    app,
    post,
    async gql(doc, variables, o) {
      const res = await post({ query: print(doc), variables }, o);
      return (await res.json()) as never;
    },
    ws(key) {
      const client = createClient({
        url: wsUrl,
        webSocketImpl: WebSocket,
        connectionParams: key ? { Authorization: `Bearer ${key}` } : {},
        retryAttempts: 0,
        lazy: true,
      });
      clients.push(client);
      return client;
    },
    async startWorker(o = {}) {
      const w = await startWorker({ deps: runtime.deps, databaseUrl, concurrency: 2, logger, staleAfterMs: o.staleAfterMs, pitr: o.pitr, instances: o.instances });
      // Once: a test that stops a worker itself leaves app.stop() nothing to stop twice.
      const stopOnce = w.stop.bind(w);
      let stopped: ReturnType<Worker['stop']> | null = null;
      w.stop = () => (stopped ??= stopOnce());
      workers.push(w);
      return w;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.dispose()));
      await Promise.all(workers.map((w) => w.stop()));
      await app.stop();
      await runtime.close();
    },
  };
}

/** The first value of a subscription after `ready` resolves; rejects on error or timeout-free completion. */
export function firstEvent<T>(client: Client, doc: TypedDocumentNode<T, unknown>, variables: unknown): { value: Promise<ExecutionResult<T>>; cancel: () => void } {
  let cancel = () => {};
  const value = new Promise<ExecutionResult<T>>((resolve, reject) => {
    cancel = client.subscribe<T>(
      { query: print(doc), variables: variables as Record<string, unknown> },
      {
        next: (v) => {
          resolve(v as ExecutionResult<T>);
          cancel();
        },
        error: reject,
        complete: () => reject(new Error('subscription completed without an event')),
      },
    );
  });
  return { value, cancel: () => cancel() };
}
