import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateEnvironmentDocument,
  CreateProjectDocument,
  DeleteEnvironmentDocument,
  DeleteProjectDocument,
  EnvironmentDocument,
  ProjectDocument,
  ProjectsDocument,
  UpdateEnvironmentDocument,
  UpdateProjectDocument,
} from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeOrganization } from '../harness/factories.ts';

let app: TestApp;
let key: string;
let orgId: string;

beforeAll(async () => {
  app = await startTestApp();
  const org = await makeOrganization(app.runtime.db);
  orgId = org.id;
  key = (await makeApiKey(app.runtime.db, org.id)).secret;
});
afterAll(() => app?.stop());

/** Row counts of everything these mutations touch: a failed mutation must leave them all unchanged. */
async function counts() {
  const db = app.runtime.db;
  return { projects: await db.project.count(), environments: await db.environment.count(), updatedAt: (await db.environment.aggregate({ _max: { updatedAt: true } }))._max.updatedAt?.getTime() ?? 0 };
}

async function createProject(name: string) {
  const res = await app.gql(CreateProjectDocument, { input: { name } }, { key });
  if (res.data?.createProject.__typename !== 'ProjectPayload') throw new Error(JSON.stringify(res));
  return res.data.createProject.project;
}

describe('projects', () => {
  it('creates, reads, renames and deletes a project', async () => {
    const p = await createProject('Shop');
    expect(p.name).toBe('Shop');
    const read = await app.gql(ProjectDocument, { id: p.id }, { key });
    expect(read.data?.project).toMatchObject({ id: p.id, name: 'Shop', environments: { totalCount: 0 } });
    const upd = await app.gql(UpdateProjectDocument, { input: { id: p.id, name: 'Shop 2', description: 'the store' } }, { key });
    expect(upd.data?.updateProject).toMatchObject({ __typename: 'ProjectPayload', project: { name: 'Shop 2', description: 'the store' } });
    const del = await app.gql(DeleteProjectDocument, { input: { id: p.id } }, { key });
    expect(del.data?.deleteProject).toEqual({ __typename: 'DeletePayload', deletedId: p.id });
    expect((await app.gql(ProjectDocument, { id: p.id }, { key })).data?.project).toBeNull();
  });

  it('paginates with cursors and a totalCount', async () => {
    for (const n of ['page a', 'page b', 'page c', 'page d', 'page e']) await createProject(n);
    const seen: string[] = [];
    let after: string | null | undefined;
    let total = 0;
    for (;;) {
      const res = await app.gql(ProjectsDocument, { first: 2, after }, { key });
      const conn = res.data!.projects;
      total = conn.totalCount;
      seen.push(...conn.edges.map((e) => e.node.name));
      if (!conn.pageInfo.hasNextPage) break;
      after = conn.pageInfo.endCursor;
    }
    expect(total).toBe(await app.runtime.db.project.count({ where: { organizationId: orgId } }));
    expect(seen.filter((n) => n.startsWith('page '))).toEqual(['page a', 'page b', 'page c', 'page d', 'page e']);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('refuses a duplicate name with NAME_TAKEN', async () => {
    await createProject('Unique');
    const before = await counts();
    const res = await app.gql(CreateProjectDocument, { input: { name: 'Unique' } }, { key });
    expect(res.data?.createProject).toMatchObject({ __typename: 'ConflictError', code: 'NAME_TAKEN' });
    expect(await counts()).toEqual(before);
  });

  it('refuses to delete a project that still has environments', async () => {
    const p = await createProject('Busy');
    await app.gql(CreateEnvironmentDocument, { input: { projectId: p.id, name: 'prod', databaseUrl: 'postgres://u:p@db/app' } }, { key });
    const res = await app.gql(DeleteProjectDocument, { input: { id: p.id } }, { key });
    expect(res.data?.deleteProject).toMatchObject({ __typename: 'ConflictError', code: 'PROJECT_NOT_EMPTY' });
  });
});

describe('environments', () => {
  it('stores the database URL encrypted and only ever returns it redacted', async () => {
    const p = await createProject('Secrets');
    const url = 'postgresql://appuser:Sup3r-Secret@db.internal:5432/shop?sslmode=require';
    const res = await app.gql(CreateEnvironmentDocument, { input: { projectId: p.id, name: 'production', type: 'PRODUCTION', databaseUrl: url, filesPath: '/srv/shop/files' } }, { key });
    expect(res.data?.createEnvironment.__typename).toBe('EnvironmentPayload');
    if (res.data?.createEnvironment.__typename !== 'EnvironmentPayload') return;
    const env = res.data.createEnvironment.environment;
    expect(env).toMatchObject({ name: 'production', type: 'PRODUCTION', databaseName: 'shop', filesPath: '/srv/shop/files' });
    expect(env.databaseUrl).toBe('postgresql://appuser:****@db.internal:5432/shop?sslmode=require');
    const row = await app.runtime.db.environment.findFirstOrThrow({ where: { name: 'production' } });
    expect(JSON.stringify(row)).not.toContain('Sup3r-Secret');
    expect(app.runtime.deps.secrets.open(row.databaseUrlEncrypted)).toBe(url);

    const upd = await app.gql(UpdateEnvironmentDocument, { input: { id: env.id, databaseUrl: 'postgres://other:NewPass@db2/shop2' } }, { key });
    expect(upd.data?.updateEnvironment).toMatchObject({ environment: { databaseUrl: 'postgres://other:****@db2/shop2', databaseName: 'shop2' } });
    expect(JSON.stringify(await app.runtime.db.environment.findFirstOrThrow({ where: { id: row.id } }))).not.toContain('NewPass');
  });

  it('deletes an environment', async () => {
    const p = await createProject('Temp');
    const c = await app.gql(CreateEnvironmentDocument, { input: { projectId: p.id, name: 'tmp', databaseUrl: 'postgres://h/db' } }, { key });
    const id = c.data?.createEnvironment.__typename === 'EnvironmentPayload' ? c.data.createEnvironment.environment.id : '';
    const del = await app.gql(DeleteEnvironmentDocument, { input: { id } }, { key });
    expect(del.data?.deleteEnvironment).toEqual({ __typename: 'DeletePayload', deletedId: id });
    expect((await app.gql(EnvironmentDocument, { id }, { key })).data?.environment).toBeNull();
  });
});

describe('bad input: a typed error, and nothing changes', () => {
  let projectId: string;
  let envId: string;
  beforeAll(async () => {
    projectId = (await createProject('Target')).id;
    const c = await app.gql(CreateEnvironmentDocument, { input: { projectId, name: 'staging', databaseUrl: 'postgres://h/db' } }, { key });
    envId = c.data?.createEnvironment.__typename === 'EnvironmentPayload' ? c.data.createEnvironment.environment.id : '';
  });

  const long = 'x'.repeat(65);
  const cases: [string, () => Promise<{ typename?: string; code?: string; path?: string[] }>, string, string, string[]?][] = [
    ['createProject: empty name', async () => first((await app.gql(CreateProjectDocument, { input: { name: '' } }, { key })).data?.createProject), 'ValidationError', 'VALIDATION_FAILED', ['input', 'name']],
    ['createProject: blank name', async () => first((await app.gql(CreateProjectDocument, { input: { name: '   ' } }, { key })).data?.createProject), 'ValidationError', 'VALIDATION_FAILED', ['input', 'name']],
    ['createProject: oversized name', async () => first((await app.gql(CreateProjectDocument, { input: { name: long } }, { key })).data?.createProject), 'ValidationError', 'VALIDATION_FAILED', ['input', 'name']],
    ['createProject: control characters', async () => first((await app.gql(CreateProjectDocument, { input: { name: 'a\u0000b' } }, { key })).data?.createProject), 'ValidationError', 'VALIDATION_FAILED', ['input', 'name']],
    ['createProject: oversized description', async () => first((await app.gql(CreateProjectDocument, { input: { name: 'ok', description: 'd'.repeat(501) } }, { key })).data?.createProject), 'ValidationError', 'VALIDATION_FAILED', ['input', 'description']],
    ['updateProject: malformed id', async () => first((await app.gql(UpdateProjectDocument, { input: { id: 'not-an-id', name: 'x' } }, { key })).data?.updateProject), 'ValidationError', 'VALIDATION_FAILED', ['input', 'id']],
    ['updateProject: id of another type', async () => first((await app.gql(UpdateProjectDocument, { input: { id: envId, name: 'x' } }, { key })).data?.updateProject), 'ValidationError', 'VALIDATION_FAILED', ['input', 'id']],
    ['updateProject: unknown id', async () => first((await app.gql(UpdateProjectDocument, { input: { id: gid('Project', '0190a0a0-0000-7000-8000-000000000000'), name: 'x' } }, { key })).data?.updateProject), 'NotFoundError', 'PROJECT_NOT_FOUND'],
    ['updateProject: nothing to update', async () => first((await app.gql(UpdateProjectDocument, { input: { id: projectId } }, { key })).data?.updateProject), 'ValidationError', 'VALIDATION_FAILED', ['input']],
    ['deleteProject: malformed id', async () => first((await app.gql(DeleteProjectDocument, { input: { id: '%%%' } }, { key })).data?.deleteProject), 'ValidationError', 'VALIDATION_FAILED', ['input', 'id']],
    ['createEnvironment: invalid URL', async () => first((await app.gql(CreateEnvironmentDocument, { input: { projectId, name: 'e1', databaseUrl: 'not a url' } }, { key })).data?.createEnvironment), 'ValidationError', 'VALIDATION_FAILED', ['input', 'databaseUrl']],
    ['createEnvironment: not postgres', async () => first((await app.gql(CreateEnvironmentDocument, { input: { projectId, name: 'e2', databaseUrl: 'mysql://u:p@h/db' } }, { key })).data?.createEnvironment), 'ValidationError', 'VALIDATION_FAILED', ['input', 'databaseUrl']],
    ['createEnvironment: no database name', async () => first((await app.gql(CreateEnvironmentDocument, { input: { projectId, name: 'e3', databaseUrl: 'postgres://u:p@h' } }, { key })).data?.createEnvironment), 'ValidationError', 'VALIDATION_FAILED', ['input', 'databaseUrl']],
    ['createEnvironment: relative files path', async () => first((await app.gql(CreateEnvironmentDocument, { input: { projectId, name: 'e4', databaseUrl: 'postgres://h/db', filesPath: 'files' } }, { key })).data?.createEnvironment), 'ValidationError', 'VALIDATION_FAILED', ['input', 'filesPath']],
    ['createEnvironment: files path with ..', async () => first((await app.gql(CreateEnvironmentDocument, { input: { projectId, name: 'e5', databaseUrl: 'postgres://h/db', filesPath: '/srv/../etc' } }, { key })).data?.createEnvironment), 'ValidationError', 'VALIDATION_FAILED', ['input', 'filesPath']],
    ['createEnvironment: project id of another type', async () => first((await app.gql(CreateEnvironmentDocument, { input: { projectId: envId, name: 'e6', databaseUrl: 'postgres://h/db' } }, { key })).data?.createEnvironment), 'ValidationError', 'VALIDATION_FAILED', ['input', 'projectId']],
    ['createEnvironment: duplicate name', async () => first((await app.gql(CreateEnvironmentDocument, { input: { projectId, name: 'staging', databaseUrl: 'postgres://h/db' } }, { key })).data?.createEnvironment), 'ConflictError', 'NAME_TAKEN'],
    ['updateEnvironment: empty name', async () => first((await app.gql(UpdateEnvironmentDocument, { input: { id: envId, name: '' } }, { key })).data?.updateEnvironment), 'ValidationError', 'VALIDATION_FAILED', ['input', 'name']],
    ['updateEnvironment: invalid URL', async () => first((await app.gql(UpdateEnvironmentDocument, { input: { id: envId, databaseUrl: 'http://x/y' } }, { key })).data?.updateEnvironment), 'ValidationError', 'VALIDATION_FAILED', ['input', 'databaseUrl']],
    ['deleteEnvironment: unknown id', async () => first((await app.gql(DeleteEnvironmentDocument, { input: { id: gid('Environment', 'nope') } }, { key })).data?.deleteEnvironment), 'NotFoundError', 'ENVIRONMENT_NOT_FOUND'],
  ];

  function first(r: unknown): { typename?: string; code?: string; path?: string[] } {
    const v = r as { __typename?: string; code?: string; fields?: { path: string[] }[] } | undefined;
    return { typename: v?.__typename, code: v?.code, path: v?.fields?.[0]?.path };
  }

  it.each(cases)('%s', async (_name, run, typename, code, path) => {
    const before = await counts();
    const got = await run();
    expect(got.typename).toBe(typename);
    expect(got.code).toBe(code);
    if (path) expect(got.path).toEqual(path);
    expect(await counts()).toEqual(before);
  });

  it('an unknown enum value is rejected before execution with a code, and nothing changes', async () => {
    const before = await counts();
    const inline = await app.post({ query: `mutation { createEnvironment(input: { projectId: "${projectId}", name: "e9", type: GALAXY, databaseUrl: "postgres://h/db" }) { __typename } }` }, { key });
    const body = (await inline.json()) as { errors: { extensions: { code: string } }[] };
    expect(body.errors[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    const viaVariables = await app.gql(CreateEnvironmentDocument, { input: { projectId, name: 'e9', type: 'GALAXY' as never, databaseUrl: 'postgres://h/db' } }, { key });
    expect(viaVariables.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    expect(await counts()).toEqual(before);
  });
});
