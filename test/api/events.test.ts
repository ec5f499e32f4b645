import { randomBytes } from 'node:crypto';
import { print } from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvironmentActivityDocument, UpdateEnvironmentDocument } from '../generated/graphql.ts';
import { testEnv } from '../harness/app.ts';
import { freshDatabase } from '../harness/database.ts';
import { createSecretBox, gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { startServerProcess, until, type ServerProcess } from '../harness/process.ts';
import { createDb, type Db } from '../../src/db/client.ts';
import { publishInTransaction } from '../../src/events/bus.ts';

let a: ServerProcess;
let b: ServerProcess;
let db: Db;
let key: string;
let envId: string;
let foreignKey: string;

beforeAll(async () => {
  const url = await freshDatabase('events');
  const secret = randomBytes(32).toString('hex');
  db = createDb(url, { max: 2 });
  const org = await makeOrganization(db);
  const project = await makeProject(db, org.id);
  envId = (await makeEnvironment(db, createSecretBox(Buffer.from(secret, 'hex')), project)).id;
  key = (await makeApiKey(db, org.id, { scopes: ['admin'] })).secret;
  foreignKey = (await makeApiKey(db, (await makeOrganization(db)).id, { scopes: ['admin'] })).secret;
  [a, b] = await Promise.all([startServerProcess(testEnv(url, secret)), startServerProcess(testEnv(url, secret))]);
  idle = await a.metric('backplane_event_subscribers');
});

/** Subscribers of `a` when no test subscribes (the process's own, if any). */
let idle: number;

/**
 * Waits until a's only subscription beyond its own is the one just made: an earlier test's
 * subscription may still be ending, so "at least one" could count that one instead.
 */
async function subscribed(what: string) {
  await until(() => a.metric('backplane_event_subscribers'), (n) => n === idle + 1, what);
}

/** Waits until every subscription of the test has ended, so the next test counts only its own. */
async function unsubscribed() {
  await until(() => a.metric('backplane_event_subscribers'), (n) => n === idle, 'the subscriptions to end');
}
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await db?.$disconnect();
});

async function rename(name: string) {
  const res = await fetch(b.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query: print(UpdateEnvironmentDocument), variables: { input: { id: gid('Environment', envId), name } } }),
  });
  expect(res.status).toBe(200);
}

describe('a revoked key', () => {
  it('ends its open subscriptions with UNAUTHENTICATED and hears no event after the revocation', async () => {
    const watcher = await makeApiKey(db, (await db.environment.findUniqueOrThrow({ where: { id: envId } })).organizationId, { scopes: ['backups:read'] });
    const client = createClient({ url: a.url.replace('http', 'ws'), webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${watcher.secret}` }, retryAttempts: 0 });
    // Settles with the error that ends the subscription, or with what it heard after the revocation.
    const ended = new Promise<unknown>((resolve) => {
      const next = (v: unknown) => JSON.stringify(v).includes('renamed-after-revocation') && resolve({ heard: v });
      client.subscribe({ query: print(EnvironmentActivityDocument), variables: { environmentId: gid('Environment', envId) } }, { next, error: resolve, complete: () => resolve('completed') });
    });
    await subscribed('the subscription of the key to revoke');
    // Revoked through the other process: its answer waits until every process has forgotten the key.
    const res = await fetch(b.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: 'mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { __typename } }', variables: { i: { id: gid('ApiKey', watcher.id) } } }),
    });
    expect(((await res.json()) as { data: { revokeApiKey: { __typename: string } } }).data.revokeApiKey.__typename).toBe('RevokeApiKeyPayload');
    await rename('renamed-after-revocation');
    expect(await ended).toMatchObject([{ extensions: { code: 'UNAUTHENTICATED' } }]);
    await client.dispose();
    await unsubscribed();
  });
});

describe('one read per event, one rule per subscriber', () => {
  it('shows an OPERATION event\'s operation to the keys whose rule lets them see it, and null to a key limited to another project', async () => {
    const env = await db.environment.findUniqueOrThrow({ where: { id: envId } });
    const elsewhere = await makeEnvironment(db, createSecretBox(randomBytes(32)), await makeProject(db, env.organizationId));
    const limited = (await makeApiKey(db, env.organizationId, { scopes: ['backups:read'], projectIds: [env.projectId] })).secret;
    const own = await db.operation.create({ data: { organizationId: env.organizationId, environmentId: envId, type: 'SNAPSHOT' } });
    // Published to this environment's watchers, about an operation of another project's environment.
    const foreign = await db.operation.create({ data: { organizationId: env.organizationId, environmentId: elsewhere.id, type: 'SNAPSHOT' } });
    const query = 'subscription($id: ID!) { environmentActivity(environmentId: $id) { operation { id } } }';
    const watch = (k: string) => {
      const client = createClient({ url: a.url.replace('http', 'ws'), webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${k}` }, retryAttempts: 0 });
      return { client, events: client.iterate({ query, variables: { id: gid('Environment', envId) } }) };
    };
    const [admin, mine] = [watch(key), watch(limited)];
    const firsts = [admin.events.next(), mine.events.next()];
    await until(() => a.metric('backplane_event_subscribers'), (n) => n === idle + 2, 'both subscriptions');
    for (const op of [foreign, own]) await publishInTransaction(db, 'environmentActivity', envId, { kind: 'OPERATION', environmentId: envId, subjectId: op.id });
    const seconds = [admin.events.next(), mine.events.next()];
    const op = (r: IteratorResult<unknown>) => (r.value as { data: { environmentActivity: { operation: { id: string } | null } } }).data.environmentActivity.operation;
    expect((await Promise.all(firsts)).map(op)).toEqual([{ id: gid('Operation', foreign.id) }, null]);
    expect((await Promise.all(seconds)).map(op)).toEqual([{ id: gid('Operation', own.id) }, { id: gid('Operation', own.id) }]);
    for (const w of [admin, mine]) await w.client.dispose();
    await unsubscribed();
  });
});

describe('environmentActivity across processes', () => {
  it('delivers an update made through one server to a graphql-ws subscriber on another', async () => {
    const client = createClient({ url: a.url.replace('http', 'ws'), webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${key}` }, retryAttempts: 0 });
    const events = client.iterate({ query: print(EnvironmentActivityDocument), variables: { environmentId: gid('Environment', envId) } });
    const first = events.next();
    await subscribed('the subscription to be in place');
    await rename('renamed-over-ws');
    const { value } = await first;
    expect(value).toEqual({ data: { environmentActivity: { kind: 'ENVIRONMENT_UPDATED', environmentId: gid('Environment', envId), environment: { id: gid('Environment', envId), name: 'renamed-over-ws' } } } });
    await events.return?.();
    await client.dispose();
    await unsubscribed();
  });

  it('delivers the same event over SSE', async () => {
    const ac = new AbortController();
    const res = await fetch(a.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: print(EnvironmentActivityDocument), variables: { environmentId: gid('Environment', envId) } }),
      signal: ac.signal,
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    await subscribed('the SSE subscription to be in place');
    await rename('renamed-over-sse');
    let text = '';
    while (!text.includes('renamed-over-sse')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    ac.abort();
    const data = text.split('\n').find((l) => l.startsWith('data:') && l.includes('renamed-over-sse'));
    expect(JSON.parse(data!.slice(5))).toMatchObject({ data: { environmentActivity: { kind: 'ENVIRONMENT_UPDATED', environment: { name: 'renamed-over-sse' } } } });
  });

  it('refuses a subscriber without a key at connection_init, and one from another organization', async () => {
    const anon = createClient({ url: a.url.replace('http', 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
    // Refused when it starts (scope-auth's authorizeOnSubscribe), before the subscription listens or reads anything.
    const refused = await anon.iterate({ query: print(EnvironmentActivityDocument), variables: { environmentId: gid('Environment', envId) } }).next();
    expect(refused.value).toMatchObject({ errors: [{ extensions: { code: 'UNAUTHENTICATED' } }] });
    expect(refused.value).not.toHaveProperty('data.environmentActivity');
    await anon.dispose();

    const foreign = createClient({ url: a.url.replace('http', 'ws'), webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${foreignKey}` }, retryAttempts: 0 });
    const it = foreign.iterate({ query: print(EnvironmentActivityDocument), variables: { environmentId: gid('Environment', envId) } });
    await expect(it.next()).rejects.toMatchObject([{ extensions: { code: 'ENVIRONMENT_NOT_FOUND' } }]);
    await foreign.dispose();
  });
});

/** A raw SSE subscription on `a` (graphql-yoga's distinct-connections mode): its text as it arrives, and a way to close it. */
function sse(k: string, query: string, variables: Record<string, unknown>) {
  const ac = new AbortController();
  let text = '';
  const arrived: (() => void)[] = [];
  const done = (async () => {
    const res = await fetch(a.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${k}` },
      body: JSON.stringify({ query, variables }),
      signal: ac.signal,
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      arrived.splice(0).forEach((f) => f());
    }
  })().catch((err: unknown) => {
    if (!ac.signal.aborted) throw err;
  });
  /** The `event: next` data so far (the pings, `:` lines, left out). */
  const events = () => [...text.matchAll(/^event: next\ndata: (.*)\n\n/gm)].map((m) => JSON.parse(m[1]) as unknown);
  return {
    done,
    text: () => text,
    events,
    async until(n: number) {
      while (events().length < n) await new Promise<void>((r) => arrived.push(r));
      return events();
    },
    close: () => ac.abort(),
  };
}

describe('subscriptions over SSE', () => {
  it('keep yoga\'s event-stream format: a ping first, one `event: next` block per event, `event: complete` when the operation ends', async () => {
    const env = await db.environment.findUniqueOrThrow({ where: { id: envId } });
    const op = await db.operation.create({ data: { organizationId: env.organizationId, environmentId: envId, type: 'SNAPSHOT' } });
    const s = sse(key, 'subscription($id: ID!) { operation(id: $id) { id status } }', { id: gid('Operation', op.id) });
    await s.until(1);
    await subscribed('the operation subscription');
    await db.operation.update({ where: { id: op.id }, data: { status: 'RUNNING' } });
    await publishInTransaction(db, 'operation', op.id, { operationId: op.id, status: 'RUNNING' });
    await s.until(2);
    await db.operation.update({ where: { id: op.id }, data: { status: 'SUCCEEDED' } });
    await publishInTransaction(db, 'operation', op.id, { operationId: op.id, status: 'SUCCEEDED' });
    await s.done;
    const id = gid('Operation', op.id);
    expect(s.text().startsWith(':\n\n')).toBe(true);
    // Pings (`:` lines, every 300 ms under NODE_ENV=test) may fall between events, never inside one.
    expect(s.text().replace(/^:\n\n/gm, '')).toBe(
      ['QUEUED', 'RUNNING', 'SUCCEEDED'].map((status) => `event: next\ndata: ${JSON.stringify({ data: { operation: { id, status } } })}\n\n`).join('') + 'event: complete\ndata:\n\n',
    );
    await unsubscribed();
  });

  it('show each subscriber of one event what its own rule shows', async () => {
    const env = await db.environment.findUniqueOrThrow({ where: { id: envId } });
    const elsewhere = await makeEnvironment(db, createSecretBox(randomBytes(32)), await makeProject(db, env.organizationId));
    const limited = (await makeApiKey(db, env.organizationId, { scopes: ['backups:read'], projectIds: [env.projectId] })).secret;
    const foreign = await db.operation.create({ data: { organizationId: env.organizationId, environmentId: elsewhere.id, type: 'SNAPSHOT' } });
    const query = 'subscription($id: ID!) { environmentActivity(environmentId: $id) { operation { id } } }';
    // Two admin streams (one group: one execution, one encoding) and one limited to the environment's project.
    const streams = [key, key, limited].map((k) => sse(k, query, { id: gid('Environment', envId) }));
    await until(() => a.metric('backplane_event_subscribers'), (n) => n === idle + 3, 'the three subscriptions');
    await publishInTransaction(db, 'environmentActivity', envId, { kind: 'OPERATION', environmentId: envId, subjectId: foreign.id });
    const seen = await Promise.all(streams.map((s) => s.until(1)));
    const shown = { data: { environmentActivity: { operation: { id: gid('Operation', foreign.id) } } } };
    expect(seen).toEqual([[shown], [shown], [{ data: { environmentActivity: { operation: null } } }]]);
    for (const s of streams) s.close();
    await Promise.all(streams.map((s) => s.done));
    await unsubscribed();
  });

  it('end on the server when the client leaves', async () => {
    // The relay of yoga's web stream never cancelled it when the socket closed: the subscription
    // and its bus listeners stayed until the process stopped.
    const s = sse(key, 'subscription($id: ID!) { environmentActivity(environmentId: $id) { kind } }', { id: gid('Environment', envId) });
    await subscribed('the subscription');
    s.close();
    await s.done;
    await unsubscribed();
  });
});
