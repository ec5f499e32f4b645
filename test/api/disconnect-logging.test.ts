/**
 * A client that goes away (closed tab, Ctrl-C on curl, a dropped SSE stream) is routine, not a
 * server fault: one short line at info level, never an error with a stack.
 */
import net from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../src/app/build-app.ts';
import { loadConfig } from '../../src/app/config.ts';
import { createRuntime, type Runtime } from '../../src/app/runtime.ts';
import { SnapshotDownloadDocument } from '../generated/graphql.ts';
import { testEnv } from '../harness/app.ts';
import { freshDatabase } from '../harness/database.ts';
import { makeApiKey, makeOrganization } from '../harness/factories.ts';
import { until } from '../harness/process.ts';
import { startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

type Line = Record<string, unknown> & { level: number; msg: string };
const lines: Line[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Line);
    cb();
  },
});

let runtime: Runtime;
let app: App;
let port: number;
let key: string;

beforeAll(async () => {
  const databaseUrl = await freshDatabase('api');
  const config = loadConfig(testEnv(databaseUrl, '11'.repeat(32), { LOG_LEVEL: 'debug' }));
  const logger = pino({ level: 'debug' }, sink);
  runtime = await createRuntime(config, databaseUrl, logger);
  app = buildApp({ config, deps: runtime.deps, logger });
  port = await app.start(0);
  const org = await makeOrganization(runtime.db);
  key = (await makeApiKey(runtime.db, org.id, { scopes: ['admin'] })).secret;
});
afterAll(async () => {
  await app?.stop();
  await runtime?.close();
});

const errorsAndWarnings = () => lines.filter((l) => l.level >= 40);

describe('client disconnects', () => {
  it('an SSE subscription the client closes is logged in one info line, no error', async () => {
    const from = lines.length;
    const ac = new AbortController();
    const res = await fetch(`http://127.0.0.1:${port}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: 'subscription { alertCreated { id } }' }),
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await reader.read().catch(() => undefined);
    const line = await until(async () => lines.slice(from).find((l) => l.msg === 'client disconnected'), Boolean, 'the disconnect line');
    expect(line).toMatchObject({ level: 30, path: '/graphql' });
    expect(JSON.stringify(line).length).toBeLessThan(400);
    expect(errorsAndWarnings()).toEqual([]);
  });

  it('a request whose socket closes while its body is still arriving is logged in one info line, no error', async () => {
    const from = lines.length;
    // The server's handler starts reading the body as the request arrives: close after that.
    const received = new Promise((r) => app.server.once('request', r));
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.write(`POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${key}\r\nContent-Length: 1000\r\n\r\n{"query":`);
    await received;
    socket.destroy();
    const line = await until(async () => lines.slice(from).find((l) => l.msg === 'client disconnected'), Boolean, 'the disconnect line');
    expect(line).toMatchObject({ level: 30, method: 'POST', path: '/graphql' });
    expect(JSON.stringify(line).length).toBeLessThan(400);
    expect(errorsAndWarnings()).toEqual([]);
  });
});

describe('a download the client cancels', () => {
  let suite: Awaited<ReturnType<typeof startSnapshotSuite>>;
  const calls: Array<{ level: 'debug' | 'info' | 'error'; msg: string }> = [];

  beforeAll(async () => {
    suite = await startSnapshotSuite();
    // The app's own pino instance, watched: the level in tests is silent, the calls still happen.
    const logger = suite.app.runtime.deps.logger;
    for (const level of ['debug', 'info', 'error'] as const) {
      const original = logger[level].bind(logger);
      logger[level] = ((...args: unknown[]) => {
        calls.push({ level, msg: String(args.find((a) => typeof a === 'string') ?? '') });
        return (original as (...a: unknown[]) => void)(...args);
      }) as never;
    }
  }, 180_000);
  afterAll(() => suite?.app.stop());

  it('is one info line, not "download stream failed"', { timeout: 180_000 }, async () => {
    const { app, key, env } = suite;
    const { snapshotId } = await takeSnapshot(app, key, env.id);
    const res = await app.gql(SnapshotDownloadDocument, { id: snapshotId }, { key });
    const dl = res.data?.snapshot?.download;
    if (dl?.__typename !== 'Download') throw new Error(JSON.stringify(res));
    const ac = new AbortController();
    const body = await fetch(dl.url, { signal: ac.signal });
    expect(body.status).toBe(200);
    const reader = body.body!.getReader();
    await reader.read();
    ac.abort();
    await reader.read().catch(() => undefined);
    // The stream fails after the close, once its abort reaches the repository reads.
    await until(async () => calls.find((c) => c.msg === 'download cancelled by the client' || c.msg === 'download stream failed'), Boolean, 'the stream torn down');
    expect(calls.filter((c) => c.level === 'error')).toEqual([]);
    expect(calls.filter((c) => c.msg === 'client disconnected')).toEqual([{ level: 'info', msg: 'client disconnected' }]);
  });

  it('a real failure with the client still there stays an error', { timeout: 60_000 }, async () => {
    const { app } = suite;
    const from = calls.length;
    // A validly signed link to a snapshot that does not exist: the server fails, the client waits.
    const payload = Buffer.from(JSON.stringify({ s: '00000000-0000-7000-8000-000000000000', v: 'DATABASE_ONLY', e: Math.floor(Date.now() / 1000) + 600 })).toString('base64url');
    const res = await fetch(`${app.url.replace('/graphql', '')}/downloads/${payload}.${app.runtime.deps.secrets.sign('download', payload)}`);
    expect(res.status).toBe(500);
    expect(calls.slice(from).filter((c) => c.level === 'error').map((c) => c.msg)).toEqual(['request failed']);
    expect(calls.slice(from).some((c) => c.msg === 'client disconnected')).toBe(false);
  });
});
