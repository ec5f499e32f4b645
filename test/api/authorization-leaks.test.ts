/**
 * The three authorization leaks of issue 17, each reproduced as a caller would find it, plus the
 * mutation arguments that name destinations. Raw queries, so each test reads like the attack.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';

let app: TestApp;
let orgId: string;
let envA: { id: string; name: string; projectId: string };
let envB: { id: string; name: string; projectId: string };
let destA: { id: string; name: string };
let destB: { id: string; name: string };
let unused: { id: string; name: string };
let webhookId: string;
const keys: Record<string, string> = {};

async function gql(query: string, variables: Record<string, unknown>, key: string) {
  const res = await app.post({ query, variables }, { key });
  return (await res.json()) as { data?: Record<string, any> | null; errors?: { message: string; extensions?: Record<string, unknown> }[] };
}

beforeAll(async () => {
  app = await startTestApp();
  const { db, secrets } = app.runtime.deps;
  orgId = (await makeOrganization(db)).id;
  const pA = await makeProject(db, orgId, { name: 'proj-a' });
  const pB = await makeProject(db, orgId, { name: 'proj-b' });
  envA = await makeEnvironment(db, secrets, pA, { name: 'env-of-a' });
  envB = await makeEnvironment(db, secrets, pB, { name: 'env-of-b', filesPath: '/srv/secret-b-files' });
  destA = await db.destination.create({ data: { organizationId: orgId, name: 'dest-of-a', provider: 'LOCAL', config: { path: '/backups/a' } } });
  destB = await db.destination.create({ data: { organizationId: orgId, name: 'dest-of-b', provider: 'LOCAL', config: { path: '/backups/b' } } });
  unused = await db.destination.create({ data: { organizationId: orgId, name: 'dest-unused', provider: 'LOCAL', config: { path: '/backups/u' } } });
  await db.environmentDestination.create({ data: { environmentId: envA.id, destinationId: destA.id } });
  await db.environmentDestination.create({ data: { environmentId: envB.id, destinationId: destB.id } });
  const webhook = await db.webhook.create({ data: { organizationId: orgId, url: 'https://hooks.example/x', secretEncrypted: secrets.seal('s'.repeat(20)) } });
  webhookId = webhook.id;
  const alertB = await db.alert.create({ data: { organizationId: orgId, environmentId: envB.id, type: 'SNAPSHOT_FAILED', severity: 'CRITICAL', message: 'b failed' } });
  await db.webhookDelivery.create({ data: { webhookId, alertId: alertB.id } });
  const alertA = await db.alert.create({ data: { organizationId: orgId, environmentId: envA.id, type: 'SNAPSHOT_FAILED', severity: 'CRITICAL', message: 'a failed' } });
  await db.webhookDelivery.create({ data: { webhookId, alertId: alertA.id } });
  keys.readA = (await makeApiKey(db, orgId, { scopes: ['backups:read'], projectIds: [pA.id] })).secret;
  keys.writeA = (await makeApiKey(db, orgId, { scopes: ['backups:write'], projectIds: [pA.id] })).secret;
  keys.adminA = (await makeApiKey(db, orgId, { scopes: ['admin'], projectIds: [pA.id] })).secret;
  keys.read = (await makeApiKey(db, orgId, { scopes: ['backups:read'] })).secret;
  keys.write = (await makeApiKey(db, orgId, { scopes: ['backups:write'] })).secret;
  keys.admin = (await makeApiKey(db, orgId, { scopes: ['admin'] })).secret;
});
afterAll(() => app?.stop());

const WEBHOOK_WALK = `query ($id: ID!) {
  node(id: $id) { __typename ... on Webhook { url deliveries(first: 10) { edges { node { alert { message environment {
    name databaseUrl filesPath settings { maxPinned } destinations { name location } project { name } } } } } } } }
  nodes(ids: [$id]) { __typename ... on Webhook { url } }
}`;

describe('Webhook through node(id) and nodes(ids)', () => {
  for (const who of ['readA', 'writeA', 'read', 'write']) {
    it(`is not given to a ${who} key (webhooks answers FORBIDDEN for it)`, async () => {
      expect((await gql('{ webhooks { id } }', {}, keys[who])).errors?.[0].extensions?.code).toBe('FORBIDDEN');
      const res = await gql(WEBHOOK_WALK, { id: gid('Webhook', webhookId) }, keys[who]);
      expect(res.data?.node).toBeNull();
      expect(res.data?.nodes).toEqual([null]);
      expect(JSON.stringify(res)).not.toContain('hooks.example');
    });
  }

  it("an admin key limited to project A reaches the webhook but no delivery of project B's alerts", async () => {
    const res = await gql(WEBHOOK_WALK, { id: gid('Webhook', webhookId) }, keys.adminA);
    expect(res.errors).toBeUndefined();
    const text = JSON.stringify(res);
    expect(text).toContain('env-of-a');
    for (const foreign of ['env-of-b', 'proj-b', 'dest-of-b', '/backups/b', 'secret-b-files', 'b failed']) expect(text).not.toContain(foreign);
  });
});

const DESTINATION = `query ($id: ID!) {
  node(id: $id) { __typename ... on Destination { name location environments { name } } }
  destination(id: $id) { name location }
}`;

describe('Destination through node(id)', () => {
  it('node(id) and destination(id) agree for every key: one rule for the type', async () => {
    const cases: [string, { id: string; name: string }, boolean][] = [
      ['read', unused, false],
      ['write', unused, false],
      ['readA', destB, false],
      ['adminA', destB, false],
      ['readA', destA, true],
      ['read', destB, true],
      ['admin', unused, true],
    ];
    for (const [who, dest, visible] of cases) {
      const res = await gql(DESTINATION, { id: gid('Destination', dest.id) }, keys[who]);
      expect(res.errors, `${who} → ${dest.name}`).toBeUndefined();
      if (visible) {
        expect(res.data?.node?.name, `${who} → ${dest.name}`).toBe(dest.name);
        expect(res.data?.destination?.name, `${who} → ${dest.name}`).toBe(dest.name);
      } else {
        expect(res.data, `${who} → ${dest.name}`).toEqual({ node: null, destination: null });
      }
    }
  });
});

const UPSERT = `mutation ($input: UpsertScheduleInput!) {
  upsertSchedule(input: $input) {
    __typename
    ... on Error { code message }
    ... on SchedulePayload { schedule { destinations { id name } } }
  }
}`;

describe('mutation arguments naming destinations', () => {
  it("upsertSchedule refuses project B's destination to a write key limited to project A, without echoing it", async () => {
    const res = await gql(UPSERT, { input: { environmentId: gid('Environment', envA.id), dbCron: '0 3 * * *', destinationIds: [gid('Destination', destB.id)] } }, keys.writeA);
    expect(res.data?.upsertSchedule).toMatchObject({ __typename: 'NotFoundError', code: 'DESTINATION_NOT_FOUND' });
    expect(JSON.stringify(res)).not.toContain('dest-of-b');
    expect(await app.runtime.db.schedule.count({ where: { environmentId: envA.id } })).toBe(0);
  });

  it("upsertSchedule lets a non-admin key choose only among the environment's own destinations (changing them needs admin)", async () => {
    const refused = await gql(UPSERT, { input: { environmentId: gid('Environment', envA.id), dbCron: '0 3 * * *', destinationIds: [gid('Destination', destB.id)] } }, keys.write);
    expect(refused.data?.upsertSchedule).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED' });
    expect(await app.runtime.db.schedule.count({ where: { environmentId: envA.id } })).toBe(0);

    const own = await gql(UPSERT, { input: { environmentId: gid('Environment', envA.id), dbCron: '0 3 * * *', destinationIds: [gid('Destination', destA.id)] } }, keys.writeA);
    expect(own.data?.upsertSchedule).toEqual({ __typename: 'SchedulePayload', schedule: { destinations: [{ id: gid('Destination', destA.id), name: 'dest-of-a' }] } });

    const byAdmin = await gql(UPSERT, { input: { environmentId: gid('Environment', envA.id), destinationIds: [gid('Destination', unused.id)] } }, keys.admin);
    expect(byAdmin.data?.upsertSchedule).toMatchObject({ __typename: 'SchedulePayload', schedule: { destinations: [{ name: 'dest-unused' }] } });
  });

  it("updateEnvironmentSettings refuses project B's destination to an admin key limited to project A", async () => {
    const res = await gql(
      `mutation ($input: UpdateEnvironmentSettingsInput!) { updateEnvironmentSettings(input: $input) { __typename ... on Error { code } } }`,
      { input: { environmentId: gid('Environment', envA.id), defaultDestinationIds: [gid('Destination', destB.id)] } },
      keys.adminA,
    );
    expect(res.data?.updateEnvironmentSettings).toMatchObject({ __typename: 'NotFoundError', code: 'DESTINATION_NOT_FOUND' });
    expect(await app.runtime.db.environmentDestination.count({ where: { environmentId: envA.id, destinationId: destB.id } })).toBe(0);
  });
});

describe('a restore across projects', () => {
  it("shows the target's key the restore, but not the other project's snapshot or environment it came from", async () => {
    const { db } = app.runtime.deps;
    const snapshotB = await db.snapshot.create({ data: { organizationId: orgId, projectId: envB.projectId, environmentId: envB.id, kind: 'MANUAL', status: 'READY', includes: ['DB'], label: 'label-of-b' } });
    const op = await db.operation.create({ data: { organizationId: orgId, environmentId: envA.id, type: 'RESTORE', status: 'SUCCEEDED' } });
    const log = await db.restoreLog.create({ data: { organizationId: orgId, snapshotId: snapshotB.id, sourceEnvironmentId: envB.id, targetEnvironmentId: envA.id, operationId: op.id, includes: ['DB'] } });
    const query = `query ($id: ID!) { node(id: $id) { ... on RestoreLog { id status snapshot { id label } sourceEnvironment { id name } targetEnvironment { name } } } }`;
    const res = await gql(query, { id: gid('RestoreLog', log.id) }, keys.readA);
    expect(res).toEqual({ data: { node: { id: gid('RestoreLog', log.id), status: 'QUEUED', snapshot: null, sourceEnvironment: null, targetEnvironment: { name: 'env-of-a' } } } });
    const full = await gql(query, { id: gid('RestoreLog', log.id) }, keys.read);
    expect(full.data?.node).toMatchObject({ snapshot: { label: 'label-of-b' }, sourceEnvironment: { name: 'env-of-b' } });
  });
});

describe('a restore across projects watched live', () => {
  it("gives each watcher of one event its own key's answer: the other project's snapshot only to the key that may see it", async () => {
    const { db, events } = app.runtime.deps;
    const snapshotB = await db.snapshot.create({ data: { organizationId: orgId, projectId: envB.projectId, environmentId: envB.id, kind: 'MANUAL', status: 'READY', includes: ['DB'], label: 'label-of-b' } });
    const op = await db.operation.create({ data: { organizationId: orgId, environmentId: envA.id, type: 'RESTORE', status: 'QUEUED', snapshotId: snapshotB.id } });
    // One document for both keys: the server executes an event once per viewer, never once for all.
    const query = `subscription ($id: ID!) { operation(id: $id) { status snapshot { label } } }`;
    const watch = (key: string) => {
      const seen: unknown[] = [];
      let heard = () => {};
      const client = app.ws(key);
      client.subscribe({ query, variables: { id: gid('Operation', op.id) } }, { next: (m) => (seen.push(m), heard()), error: (e) => (seen.push({ error: e }), heard()), complete: () => undefined });
      return { seen, count: (n: number) => new Promise<void>((r) => (heard = () => seen.length >= n && r())()) };
    };
    const [limited, full] = [watch(keys.readA), watch(keys.read)];
    await Promise.all([limited.count(1), full.count(1)]);
    await db.operation.update({ where: { id: op.id }, data: { status: 'RUNNING' } });
    await events.publish('operation', op.id, { operationId: op.id, status: 'RUNNING' });
    await Promise.all([limited.count(2), full.count(2)]);
    // The event's answer is the one each key got on subscribing, whichever of the two was executed first.
    const status = (m: unknown) => (m as { data?: { operation?: { status?: string } } }).data?.operation?.status;
    expect(limited.seen.map(status)).toEqual(['QUEUED', 'RUNNING']);
    expect(full.seen.map(status)).toEqual(['QUEUED', 'RUNNING']);
    expect(JSON.stringify(limited.seen)).not.toContain('label-of-b');
    expect(full.seen).toEqual([
      { data: { operation: { status: 'QUEUED', snapshot: { label: 'label-of-b' } } } },
      { data: { operation: { status: 'RUNNING', snapshot: { label: 'label-of-b' } } } },
    ]);
  });
});

describe('a copy on a destination the environment no longer uses', () => {
  it("is shown with its destination to the snapshot's keys, and to no one else", async () => {
    const { db } = app.runtime.deps;
    const copyOnly = await db.destination.create({ data: { organizationId: orgId, name: 'dest-copy-only', provider: 'LOCAL', config: { path: '/backups/copy-only' } } });
    const snapshotA = await db.snapshot.create({ data: { organizationId: orgId, projectId: envA.projectId, environmentId: envA.id, kind: 'MANUAL', status: 'READY', includes: ['DB'] } });
    await db.snapshotCopy.create({ data: { snapshotId: snapshotA.id, destinationId: copyOnly.id, status: 'READY' } });
    const query = `query ($id: ID!) { snapshot(id: $id) { copies { status destination { name } } } }`;
    const res = await gql(query, { id: gid('Snapshot', snapshotA.id) }, keys.readA);
    expect(res).toEqual({ data: { snapshot: { copies: [{ status: 'READY', destination: { name: 'dest-copy-only' } }] } } });
    const projectBKey = (await makeApiKey(db, orgId, { scopes: ['backups:read'], projectIds: [envB.projectId] })).secret;
    expect((await gql('query ($id: ID!) { node(id: $id) { id } }', { id: gid('Destination', copyOnly.id) }, projectBKey)).data?.node).toBeNull();
  });
});
