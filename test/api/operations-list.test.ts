/**
 * operations(filter) and environment.operations: every operation a key may see, newest first,
 * whoever started it — what a console lists on load to show the work under way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvironmentOperationsDocument, OperationsDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';

let app: TestApp;
let admin: string;
let limitedToA: string;
let foreignAdmin: string;
const ids: Record<string, string> = {};
let envA: string;
let envB: string;

beforeAll(async () => {
  app = await startTestApp();
  const { db, secrets } = app.runtime.deps;
  const org = await makeOrganization(db);
  const other = await makeOrganization(db);
  const projectA = await makeProject(db, org.id);
  const projectB = await makeProject(db, org.id);
  envA = (await makeEnvironment(db, secrets, projectA)).id;
  envB = (await makeEnvironment(db, secrets, projectB)).id;
  const envF = (await makeEnvironment(db, secrets, await makeProject(db, other.id))).id;
  admin = (await makeApiKey(db, org.id, { scopes: ['admin'] })).secret;
  limitedToA = (await makeApiKey(db, org.id, { scopes: ['backups:read'], projectIds: [projectA.id] })).secret;
  foreignAdmin = (await makeApiKey(db, other.id, { scopes: ['admin'] })).secret;
  // Rows as the jobs leave them, oldest first (ids are uuid v7: creation order).
  const rows = [
    ['aDone', org.id, envA, 'SNAPSHOT', 'SUCCEEDED'],
    ['aRunning', org.id, envA, 'SNAPSHOT', 'RUNNING'],
    ['bQueued', org.id, envB, 'RESTORE', 'QUEUED'],
    ['aQueued', org.id, envA, 'RESTORE', 'QUEUED'],
    ['fRunning', other.id, envF, 'SNAPSHOT', 'RUNNING'],
  ] as const;
  for (const [name, organizationId, environmentId, type, status] of rows) {
    const op = await db.operation.create({ data: { organizationId, environmentId, type, status, bytesDone: 50n, bytesTotal: 100n } });
    ids[name] = gid('Operation', op.id);
  }
});
afterAll(() => app?.stop());

const listed = async (key: string, filter?: object, first = 20) => {
  const res = await app.gql(OperationsDocument, { filter, first }, { key });
  expect(res.errors).toBeUndefined();
  return res.data!.operations;
};

describe('operations(filter)', () => {
  it('lists the organization’s operations newest first, filtered by status, type and environment', async () => {
    const all = await listed(admin);
    expect(all.edges.map((e) => e.node.id)).toEqual([ids.aQueued, ids.bQueued, ids.aRunning, ids.aDone]);
    expect(all.totalCount).toBe(4);
    expect(all.edges[2].node).toMatchObject({ status: 'RUNNING', percent: 50 });

    const underWay = await listed(admin, { statuses: ['QUEUED', 'RUNNING'] });
    expect(underWay.edges.map((e) => e.node.id)).toEqual([ids.aQueued, ids.bQueued, ids.aRunning]);
    expect((await listed(admin, { types: ['RESTORE'] })).edges.map((e) => e.node.id)).toEqual([ids.aQueued, ids.bQueued]);
    expect((await listed(admin, { environmentId: gid('Environment', envB) })).edges.map((e) => e.node.id)).toEqual([ids.bQueued]);
    // A malformed or unknown environment id filters to nothing rather than failing the list.
    expect((await listed(admin, { environmentId: 'nope' })).totalCount).toBe(0);

    const page1 = await listed(admin, { statuses: ['QUEUED', 'RUNNING'] }, 2);
    expect(page1.pageInfo.hasNextPage).toBe(true);
    const page2 = await app.gql(OperationsDocument, { filter: { statuses: ['QUEUED', 'RUNNING'] }, first: 2, after: page1.pageInfo.endCursor }, { key: admin });
    expect(page2.data!.operations.edges.map((e) => e.node.id)).toEqual([ids.aRunning]);
  });

  it('a key limited to a project sees only that project’s operations; another organization sees none of them', async () => {
    const mine = await listed(limitedToA);
    expect(mine.edges.map((e) => e.node.id)).toEqual([ids.aQueued, ids.aRunning, ids.aDone]);
    expect(mine.totalCount).toBe(3);
    expect((await listed(limitedToA, { environmentId: gid('Environment', envB) })).totalCount).toBe(0);
    expect((await listed(foreignAdmin)).edges.map((e) => e.node.id)).toEqual([ids.fRunning]);
  });

  it('environment.operations lists one environment’s, filtered by status', async () => {
    const res = await app.gql(EnvironmentOperationsDocument, { id: gid('Environment', envA), statuses: ['QUEUED', 'RUNNING'] }, { key: limitedToA });
    expect(res.errors).toBeUndefined();
    expect(res.data!.environment!.operations.edges.map((e) => e.node.id)).toEqual([ids.aQueued, ids.aRunning]);
    expect(res.data!.environment!.operations.totalCount).toBe(2);
  });
});
