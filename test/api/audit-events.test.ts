/**
 * auditEvents: the record of sensitive actions, readable by admin keys of the organization only.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditEventNodeDocument, AuditEventsDocument, RevealRepositoryPasswordDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeOrganization } from '../harness/factories.ts';

let app: TestApp;
let admin: string;
let writer: string;
let foreignAdmin: string;
let destinationId: string;

beforeAll(async () => {
  app = await startTestApp();
  const { db, secrets } = app.runtime.deps;
  const org = await makeOrganization(db);
  const other = await makeOrganization(db);
  admin = (await makeApiKey(db, org.id, { scopes: ['admin'], name: 'ops' })).secret;
  writer = (await makeApiKey(db, org.id, { scopes: ['backups:write'] })).secret;
  foreignAdmin = (await makeApiKey(db, other.id, { scopes: ['admin'] })).secret;
  // A destination whose repository exists (its password sealed as the first snapshot leaves it).
  const d = await db.destination.create({
    data: { organizationId: org.id, name: 'vault', provider: 'LOCAL', config: { path: '/nonexistent/vault' }, repositoryPasswordEncrypted: secrets.seal('hunter2'), repositoryId: 'r1' },
  });
  destinationId = d.id;
});
afterAll(() => app?.stop());

async function reveal() {
  const res = await app.gql(RevealRepositoryPasswordDocument, { input: { id: gid('Destination', destinationId) } }, { key: admin });
  expect(res.data?.revealRepositoryPassword).toMatchObject({ __typename: 'RepositoryPasswordPayload', password: 'hunter2' });
}

describe('auditEvents', () => {
  it('shows an admin the event that revealing a repository password wrote, newest first, filterable by action', async () => {
    await reveal();
    await reveal();
    const res = await app.gql(AuditEventsDocument, { first: 10 }, { key: admin });
    const conn = res.data!.auditEvents;
    expect(conn.totalCount).toBe(2);
    const nodes = conn.edges.map((e) => e.node);
    for (const n of nodes) {
      expect(n).toMatchObject({
        action: 'destination.reveal_repository_password',
        targetId: gid('Destination', destinationId),
        apiKey: { name: 'ops' },
        target: { __typename: 'Destination', id: gid('Destination', destinationId), name: 'vault' },
      });
    }
    expect(new Date(nodes[0].createdAt).getTime()).toBeGreaterThanOrEqual(new Date(nodes[1].createdAt).getTime());

    const page1 = await app.gql(AuditEventsDocument, { first: 1 }, { key: admin });
    const page2 = await app.gql(AuditEventsDocument, { first: 1, after: page1.data!.auditEvents.pageInfo.endCursor }, { key: admin });
    expect([page1.data!.auditEvents.edges[0].node.id, page2.data!.auditEvents.edges[0].node.id]).toEqual(nodes.map((n) => n.id));

    const filtered = await app.gql(AuditEventsDocument, { first: 10, actions: ['destination.reveal_repository_password'] }, { key: admin });
    expect(filtered.data!.auditEvents.totalCount).toBe(2);
    const none = await app.gql(AuditEventsDocument, { first: 10, actions: ['api_key.create'] }, { key: admin });
    expect(none.data!.auditEvents).toMatchObject({ totalCount: 0, edges: [] });

    const byNode = await app.gql(AuditEventNodeDocument, { id: nodes[0].id }, { key: admin });
    expect(byNode.data?.node).toMatchObject({ __typename: 'AuditEvent', action: 'destination.reveal_repository_password' });
  });

  it("the README's auditEvents block runs as written", async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const block = [...readme.matchAll(/```graphql\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) => b.includes('auditEvents'));
    expect(block).toBeDefined();
    const body = (await (await app.post({ query: block }, { key: admin })).json()) as { data?: { auditEvents: { totalCount: number } }; errors?: unknown };
    expect(body.errors).toBeUndefined();
    expect(body.data?.auditEvents.totalCount).toBe(2);
  });

  it('refuses a key without the admin scope with FORBIDDEN, and node() shows it nothing', async () => {
    const res = await app.gql(AuditEventsDocument, { first: 10 }, { key: writer });
    expect(res.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    expect(res.data ?? null).toBeNull();
    const ids = (await app.gql(AuditEventsDocument, { first: 10 }, { key: admin })).data!.auditEvents.edges.map((e) => e.node.id);
    expect(ids.length).toBeGreaterThan(0);
    expect((await app.gql(AuditEventNodeDocument, { id: ids[0] }, { key: writer })).data?.node).toBeNull();
  });

  it('shows an admin of another organization none of them', async () => {
    const res = await app.gql(AuditEventsDocument, { first: 10 }, { key: foreignAdmin });
    expect(res.data!.auditEvents).toMatchObject({ totalCount: 0, edges: [] });
    const ids = (await app.gql(AuditEventsDocument, { first: 10 }, { key: admin })).data!.auditEvents.edges.map((e) => e.node.id);
    expect((await app.gql(AuditEventNodeDocument, { id: ids[0] }, { key: foreignAdmin })).data?.node).toBeNull();
  });
});
