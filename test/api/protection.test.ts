import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropTestDatabase, freshDatabase } from '../harness/database.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { makeApiKey, makeOrganization } from '../harness/factories.ts';

let app: TestApp;
let key: string;

beforeAll(async () => {
  app = await startTestApp({ env: { BATCH_LIMIT: '3', MAX_DEPTH: '6', MAX_ALIASES: '5', BODY_LIMIT_BYTES: '20000', MAX_COST: '300' } });
  const org = await makeOrganization(app.runtime.db);
  key = (await makeApiKey(app.runtime.db, org.id)).secret;
});
afterAll(() => app?.stop());

type Body = { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] };

describe('batching', () => {
  it('answers an array of operations with an array of results, in order', async () => {
    const res = await app.post([{ query: '{ viewer { scopes } }' }, { query: '{ projects { totalCount } }' }, { query: '{ organization { name } }' }], { key });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Body[];
    expect(body).toHaveLength(3);
    expect(body[0].data).toMatchObject({ viewer: { scopes: expect.any(Array) } });
    expect(body[1].data).toEqual({ projects: { totalCount: 0 } });
    expect(body[2].data).toMatchObject({ organization: { name: expect.any(String) } });
  });

  it('refuses a batch over the limit with a clear error', async () => {
    const res = await app.post(Array.from({ length: 4 }, () => ({ query: '{ viewer { scopes } }' })), { key });
    const body = (await res.json()) as Body;
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(body)).toMatch(/[Bb]atch/);
  });
});

describe('abusive queries', () => {
  it('rejects a query deeper than the limit', async () => {
    const deep = '{ projects { edges { node { environments { edges { node { project { environments { totalCount } } } } } } } } }';
    const body = (await (await app.post({ query: deep }, { key })).json()) as Body;
    expect(body.data ?? null).toBeNull();
    expect(body.errors?.[0].extensions?.code).toBe('QUERY_TOO_DEEP');
    expect(body.errors?.[0].message).toMatch(/deep; the limit is 6$/);
  });

  it('rejects too many aliases', async () => {
    const q = `{ ${Array.from({ length: 8 }, (_, i) => `a${i}: viewer { scopes }`).join(' ')} }`;
    const body = (await (await app.post({ query: q }, { key })).json()) as Body;
    expect(body.errors?.[0].extensions?.code).toBe('QUERY_TOO_MANY_ALIASES');
    expect(body.errors?.[0].message).toMatch(/aliases; the limit is 5$/);
  });

  it('rejects a query whose cost is over the limit', async () => {
    // 1 connection + 100 environments, each with up to 10 destinations: 1,101 against 300.
    const q = '{ environments(first: 100) { edges { node { id destinations { id } } } } }';
    const body = (await (await app.post({ query: q }, { key })).json()) as Body;
    expect(body.errors?.[0].extensions?.code).toBe('QUERY_TOO_COMPLEX');
    expect(body.errors?.[0].message).toMatch(/^The query could return up to 1101 objects; the limit is 300/);
  });

  it('refuses a body larger than the limit with 413, whether or not it declares its length', async () => {
    const big = JSON.stringify({ query: `{ viewer { scopes } } # ${'x'.repeat(30_000)}` });
    const res = await app.post(big, { key });
    expect(res.status).toBe(413);
    expect(((await res.json()) as Body).errors?.[0].extensions?.code).toBe('PAYLOAD_TOO_LARGE');

    const chunked = await rawRequest(app.url, ['POST /graphql HTTP/1.1', 'Host: x', 'Content-Type: application/json', 'Transfer-Encoding: chunked', '', ''].join('\r\n'), (sock) => {
      sock.write(`${(30_000).toString(16)}\r\n${'x'.repeat(30_000)}\r\n0\r\n\r\n`);
    });
    expect(chunked).toMatch(/^HTTP\/1\.1 413/);
  });
});

describe('health and operations', () => {
  it('/healthz answers while /readyz reflects the database', async () => {
    const url = await freshDatabase('ready');
    const other = await startTestApp({ databaseUrl: url });
    try {
      const base = other.url.replace('/graphql', '');
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      await other.runtime.events.close();
      await dropTestDatabase(url);
      const res = await fetch(`${base}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ database: 'down' });
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      await other.app.stop();
      await other.runtime.db.$disconnect();
    }
  });

  it('echoes the request id it logs', async () => {
    const res = await app.post({ query: '{ viewer { scopes } }' }, { key, headers: { 'x-request-id': 'trace-123' } });
    expect(res.headers.get('x-request-id')).toBe('trace-123');
    const generated = await app.post({ query: '{ viewer { scopes } }' }, { key });
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('exposes metrics, event loop delay included', async () => {
    // The app shares this process's event loop: hold it for 80 ms, and the longest delay shows it.
    const until = performance.now() + 80;
    while (performance.now() < until);
    await new Promise((resolve) => setImmediate(resolve));
    const text = await (await fetch(app.url.replace('/graphql', '/metrics'))).text();
    expect(text).toContain('backplane_http_requests_total{route="/graphql"');
    const max = Number(/^backplane_event_loop_delay_seconds\{quantile="1"\} (\S+)$/m.exec(text)?.[1]);
    expect(max).toBeGreaterThanOrEqual(0.07);
    expect(max).toBeLessThan(60);
  });

  it('graceful shutdown lets an in-flight request finish', async () => {
    const other = await startTestApp({ databaseUrl: app.databaseUrl });
    const body = JSON.stringify({ query: '{ viewer { scopes } }' });
    const head = ['POST /graphql HTTP/1.1', 'Host: x', 'Content-Type: application/json', `Authorization: Bearer ${key}`, `Content-Length: ${body.length}`, 'Connection: close', '', ''].join('\r\n');
    let stopped: Promise<void> | undefined;
    const response = await rawRequest(other.url, head + body.slice(0, 10), async (sock) => {
      // The request is in flight (headers and part of the body sent) when shutdown begins.
      stopped = other.stop();
      await new Promise((r) => setImmediate(r));
      sock.write(body.slice(10));
    });
    await stopped;
    expect(response).toMatch(/^HTTP\/1\.1 200/);
    expect(response).toContain('"scopes":["admin","backups:read","backups:write"]');
    // And the server no longer accepts connections.
    await expect(fetch(other.url)).rejects.toThrow();
  });
});

/** Sends raw bytes over TCP, runs `then` once connected, and returns everything the server wrote. */
function rawRequest(url: string, first: string, then: (sock: net.Socket) => void | Promise<void>): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), '127.0.0.1', () => {
      sock.write(first);
      void Promise.resolve(then(sock)).catch(reject);
    });
    let out = '';
    sock.on('data', (d) => (out += d.toString()));
    sock.on('close', () => resolve(out));
    sock.on('error', (err) => (out ? resolve(out) : reject(err)));
    sock.setTimeout(20_000, () => sock.destroy());
  });
}

describe('GraphiQL', () => {
  it('is served by Backplane itself, with no assets from a CDN', async () => {
    const res = await fetch(app.url, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain('Backplane');
    expect(html).not.toMatch(/unpkg\.com|jsdelivr|cdnjs/);
  });
});
