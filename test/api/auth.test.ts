import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateEnvironmentDocument,
  CreateProjectDocument,
  EnvironmentDocument,
  EnvironmentsDocument,
  NodeDocument,
  NodesDocument,
  ProjectDocument,
  ProjectsDocument,
  UpdateEnvironmentDocument,
  ViewerDocument,
} from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';

let app: TestApp;
let org: { id: string };
let other: { id: string };
let admin: string;
let reader: string;
let limited: string;
let foreignAdmin: string;
let p1: { id: string; organizationId: string };
let p2: { id: string; organizationId: string };
let e1: { id: string };
let e2: { id: string };
let foreignEnv: { id: string };

beforeAll(async () => {
  app = await startTestApp();
  const { db, secrets } = app.runtime.deps;
  org = await makeOrganization(db);
  other = await makeOrganization(db);
  p1 = await makeProject(db, org.id, { name: 'alpha' });
  p2 = await makeProject(db, org.id, { name: 'beta' });
  e1 = await makeEnvironment(db, secrets, p1);
  e2 = await makeEnvironment(db, secrets, p2);
  const fp = await makeProject(db, other.id, { name: 'foreign' });
  foreignEnv = await makeEnvironment(db, secrets, fp);
  admin = (await makeApiKey(db, org.id, { scopes: ['admin'] })).secret;
  reader = (await makeApiKey(db, org.id, { scopes: ['backups:read'] })).secret;
  limited = (await makeApiKey(db, org.id, { scopes: ['admin'], projectIds: [p1.id] })).secret;
  foreignAdmin = (await makeApiKey(db, other.id, { scopes: ['admin'] })).secret;
});
afterAll(() => app?.stop());

describe('authentication', () => {
  it('rejects a request without a key as UNAUTHENTICATED', async () => {
    const res = await app.gql(ProjectsDocument, {});
    expect(res.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    expect(res.data ?? null).toBeNull();
  });

  it('rejects an unknown, malformed or revoked key as UNAUTHENTICATED', async () => {
    const { db } = app.runtime.deps;
    const revoked = await makeApiKey(db, org.id);
    await db.apiKey.update({ where: { id: revoked.id }, data: { revokedAt: new Date() } });
    for (const key of ['nonsense', `bp_000000000000_${'A'.repeat(43)}`, revoked.secret, admin.slice(0, -1) + (admin.endsWith('A') ? 'B' : 'A')]) {
      const res = await app.gql(ViewerDocument, {}, { key });
      expect(res.errors?.[0].extensions?.code, key).toBe('UNAUTHENTICATED');
    }
  });

  it('accepts a valid key and reports its scopes', async () => {
    const res = await app.gql(ViewerDocument, {}, { key: reader });
    expect(res.errors).toBeUndefined();
    expect(res.data?.viewer.scopes).toEqual(['backups:read']);
    expect(res.data?.viewer.organization.id).toBe(gid('Organization', org.id));
    const adminView = await app.gql(ViewerDocument, {}, { key: admin });
    expect(adminView.data?.viewer.scopes).toEqual(['admin', 'backups:read', 'backups:write']);
  });

  it('stores keys hashed: the secret appears nowhere in the database', async () => {
    const rows = await app.runtime.db.apiKey.findMany();
    const secretPart = admin.slice('bp_'.length + 12 + 1);
    expect(secretPart).toHaveLength(43);
    expect(JSON.stringify(rows, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))).not.toContain(secretPart);
  });
});

describe('authorization', () => {
  it('answers FORBIDDEN to a key without the needed scope, and changes nothing', async () => {
    const res = await app.gql(CreateProjectDocument, { input: { name: 'nope' } }, { key: reader });
    expect(res.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    // The refusal names what is missing, for people and for programs.
    expect(res.errors?.[0].message).toBe('This API key lacks the scope admin needed by createProject');
    expect(res.errors?.[0].extensions?.requiredScope).toBe('admin');
    expect(await app.runtime.db.project.count({ where: { name: 'nope' } })).toBe(0);
  });

  it('limits a project-restricted key to its projects in lists, counts, node and direct reads', async () => {
    const list = await app.gql(ProjectsDocument, { first: 10 }, { key: limited });
    expect(list.data?.projects.totalCount).toBe(1);
    expect(list.data?.projects.edges.map((e) => e.node.id)).toEqual([gid('Project', p1.id)]);

    const envs = await app.gql(EnvironmentsDocument, {}, { key: limited });
    expect(envs.data?.environments.totalCount).toBe(1);
    expect(envs.data?.environments.edges[0].node.id).toBe(gid('Environment', e1.id));

    expect((await app.gql(ProjectDocument, { id: gid('Project', p2.id) }, { key: limited })).data?.project).toBeNull();
    expect((await app.gql(EnvironmentDocument, { id: gid('Environment', e2.id) }, { key: limited })).data?.environment).toBeNull();
    expect((await app.gql(NodeDocument, { id: gid('Environment', e2.id) }, { key: limited })).data?.node).toBeNull();
    expect((await app.gql(NodeDocument, { id: gid('Project', p1.id) }, { key: limited })).data?.node).toMatchObject({ __typename: 'Project', name: 'alpha' });
  });

  it('a key limited to one project cannot act on another project, and gets the same answer as for a missing one', async () => {
    const res = await app.gql(UpdateEnvironmentDocument, { input: { id: gid('Environment', e2.id), name: 'renamed' } }, { key: limited });
    expect(res.data?.updateEnvironment).toMatchObject({ __typename: 'NotFoundError', code: 'ENVIRONMENT_NOT_FOUND' });
    const create = await app.gql(CreateEnvironmentDocument, { input: { projectId: gid('Project', p2.id), name: 'x', databaseUrl: 'postgres://h/db' } }, { key: limited });
    expect(create.data?.createEnvironment).toMatchObject({ __typename: 'NotFoundError', code: 'PROJECT_NOT_FOUND' });
    expect(await app.runtime.db.environment.count({ where: { name: { in: ['renamed', 'x'] } } })).toBe(0);
  });

  it('nothing of another organization leaks through node, nodes, lists or counts', async () => {
    const node = await app.gql(NodeDocument, { id: gid('Environment', foreignEnv.id) }, { key: admin });
    expect(node.errors).toBeUndefined();
    expect(node.data?.node).toBeNull();
    const nodes = await app.gql(NodesDocument, { ids: [gid('Environment', foreignEnv.id), gid('Environment', e1.id)] }, { key: admin });
    expect(nodes.data?.nodes).toEqual([null, { __typename: 'Environment', id: gid('Environment', e1.id) }]);
    const mine = await app.gql(ProjectsDocument, { first: 50 }, { key: admin });
    expect(mine.data?.projects.totalCount).toBe(2);
    const theirs = await app.gql(ProjectsDocument, { first: 50 }, { key: foreignAdmin });
    expect(theirs.data?.projects.totalCount).toBe(1);
    expect(theirs.data?.projects.edges.map((e) => e.node.name)).toEqual(['foreign']);
  });
});
