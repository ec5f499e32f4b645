/**
 * Subscriptions as GraphiQL runs them. The GraphiQL that @graphql-yoga/render-graphiql serves
 * builds its fetcher with @graphql-tools/url-loader (`getExecutorAsync`, subscriptions over
 * graphql-ws through @graphql-tools/executor-graphql-ws): its `connection_init` payload is empty
 * and the headers tab travels in every subscribe message as `payload.extensions.headers`. The
 * tests below use that same library and call shape (see `graphiqlFetcher`).
 */
import { UrlLoader } from '@graphql-tools/url-loader';
import { parse, print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WatchOperationDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';

let app: TestApp;
let key: string;
let foreignKey: string;
let runningOpId: string;
let doneOpId: string;

/**
 * GraphiQL's fetcher, as in render-graphiql's bundle: one executor for the endpoint with the
 * `subscriptionsProtocol` Backplane configures ('WS'), called per run with the headers tab's
 * object in `extensions.headers`. The executor makes a graphql-ws client per subscription
 * whose `connectionParams` are GraphiQL's (none), on isows' WebSocket (`ws` in Node).
 */
function graphiqlFetcher(url: string) {
  const executor = new UrlLoader().getExecutorAsync(url, {
    subscriptionsProtocol: 'WS' as never,
    subscriptionsEndpoint: url,
    credentials: 'same-origin',
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    inputValueDeprecation: true,
    headers: {},
  });
  return (params: { query: string; variables?: Record<string, unknown> }, opts?: { headers?: Record<string, string> }) =>
    executor({ document: parse(params.query), variables: params.variables, extensions: { headers: opts?.headers } }) as Promise<AsyncIterableIterator<{ data?: unknown; errors?: unknown }>>;
}

const watch = (id: string) => ({ query: print(WatchOperationDocument), variables: { id: gid('Operation', id) } });

beforeAll(async () => {
  app = await startTestApp();
  const db = app.runtime.db;
  const org = await makeOrganization(db);
  const project = await makeProject(db, org.id);
  const env = await makeEnvironment(db, app.runtime.deps.secrets, project);
  key = (await makeApiKey(db, org.id, { scopes: ['backups:read'] })).secret;
  foreignKey = (await makeApiKey(db, (await makeOrganization(db)).id, { scopes: ['admin'] })).secret;
  runningOpId = (await db.operation.create({ data: { organizationId: org.id, environmentId: env.id, type: 'SNAPSHOT', status: 'RUNNING', phase: 'dump' } })).id;
  doneOpId = (await db.operation.create({ data: { organizationId: org.id, environmentId: env.id, type: 'SNAPSHOT', status: 'SUCCEEDED' } })).id;
});
afterAll(() => app?.stop());

describe('subscriptions from GraphiQL', () => {
  it('authenticate with the key of the headers tab, sent with the subscribe message', async () => {
    const fetcher = graphiqlFetcher(app.url);
    const events = await fetcher(watch(doneOpId), { headers: { Authorization: `Bearer ${key}` } });
    expect((await events.next()).value).toEqual({ data: { operation: expect.objectContaining({ id: gid('Operation', doneOpId), status: 'SUCCEEDED' }) } });
    expect((await events.next()).done).toBe(true);
    // Header names are case-insensitive, as over HTTP.
    const lower = await fetcher(watch(doneOpId), { headers: { authorization: `Bearer ${key}` } });
    expect((await lower.next()).value).toMatchObject({ data: { operation: { status: 'SUCCEEDED' } } });
  });

  it('answer UNAUTHENTICATED without a key or with a bad one, and another organization sees nothing', async () => {
    const fetcher = graphiqlFetcher(app.url);
    // A refusal reaches the client either as a graphql-ws error message (a key that fails to
    // authenticate) or as a result carrying errors (scope-auth refusing a caller with no key):
    // GraphiQL shows both the same way, with no data.
    const firstErrors = async (events: AsyncIterator<unknown>) => {
      try {
        const { value } = await events.next();
        expect(value).not.toHaveProperty('data.operation');
        return (value as { errors?: unknown[] }).errors;
      } catch (errors) {
        return errors;
      }
    };
    expect(await firstErrors(await fetcher(watch(doneOpId)))).toMatchObject([{ extensions: { code: 'UNAUTHENTICATED' } }]);
    const bad = await fetcher(watch(doneOpId), { headers: { Authorization: `Bearer bp_nope_${'x'.repeat(32)}` } });
    expect(await firstErrors(bad)).toMatchObject([{ extensions: { code: 'UNAUTHENTICATED' } }]);
    const foreign = await fetcher(watch(doneOpId), { headers: { Authorization: `Bearer ${foreignKey}` } });
    expect(await firstErrors(foreign)).toMatchObject([{ extensions: { code: 'OPERATION_NOT_FOUND' } }]);
  });
});

describe('subscriptions from graphql-ws clients that authenticate at connection_init', () => {
  it('keep working', async () => {
    const events = app.ws(key).iterate(watch(doneOpId));
    expect((await events.next()).value).toMatchObject({ data: { operation: { status: 'SUCCEEDED' } } });
  });

  it('answer UNAUTHENTICATED to a bad key at connection_init', async () => {
    const events = app.ws(`bp_nope_${'x'.repeat(32)}`).iterate(watch(doneOpId));
    await expect(events.next()).rejects.toMatchObject([{ extensions: { code: 'UNAUTHENTICATED' } }]);
  });

  it('take a key in a subscribe message for that operation only, on the same connection', async () => {
    const client = app.ws(key);
    // Held open (the operation still runs), so the next subscriptions share its socket.
    const mine = client.iterate(watch(runningOpId));
    expect((await mine.next()).value).toMatchObject({ data: { operation: { status: 'RUNNING' } } });
    const foreign = client.iterate({ ...watch(runningOpId), extensions: { headers: { Authorization: `Bearer ${foreignKey}` } } });
    await expect(foreign.next()).rejects.toMatchObject([{ extensions: { code: 'OPERATION_NOT_FOUND' } }]);
    const again = client.iterate(watch(doneOpId));
    expect((await again.next()).value).toMatchObject({ data: { operation: { status: 'SUCCEEDED' } } });
    await mine.return?.();
  });

  it('answer UNAUTHENTICATED to a bad key in a subscribe message, whatever connection_init said', async () => {
    const client = app.ws(key);
    const events = client.iterate({ ...watch(doneOpId), extensions: { headers: { Authorization: 'Bearer bp_revoked_or_made_up' } } });
    await expect(events.next()).rejects.toMatchObject([{ extensions: { code: 'UNAUTHENTICATED' } }]);
  });
});

describe('subscriptions over SSE', () => {
  it('authenticate with the Authorization header, as before', async () => {
    const sse = (authorization?: string) =>
      fetch(app.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...(authorization ? { authorization } : {}) },
        body: JSON.stringify(watch(doneOpId)),
      }).then((r) => r.text());
    expect(await sse(`Bearer ${key}`)).toContain('"status":"SUCCEEDED"');
    expect(await sse()).toContain('UNAUTHENTICATED');
  });
});
