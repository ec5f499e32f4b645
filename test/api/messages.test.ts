/**
 * Messages built from a variable noun take the article its sound needs ("an Environment",
 * "a Project"), both in the helper and as callers see them through the API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { articleFor, withArticleCapitalized } from '../../src/domain/text.ts';
import { CreateEnvironmentDocument, CreateProjectDocument, CreateSnapshotDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeOrganization, makeProject } from '../harness/factories.ts';

describe('articleFor', () => {
  it.each([
    ['Environment', 'an'],
    ['Project', 'a'],
    ['ApiKey', 'an'],
    ['AuditEvent', 'an'],
    ['Operation', 'an'],
    ['Snapshot', 'a'],
    ['unknown type', 'an'],
    ['environment in this project', 'an'],
    ['destination', 'a'],
    ['irregular', 'an'],
    ['dir', 'a'],
    ['region', 'a'],
    ['Cloudflare account id', 'a'],
    ['S3 bucket', 'an'],
    ['URL', 'a'],
    ['API key', 'an'],
    ['user', 'a'],
    ['hour', 'an'],
  ])('%s takes "%s"', (noun, article) => {
    expect(articleFor(noun)).toBe(article);
  });

  it('capitalises the article to open a sentence', () => {
    expect(withArticleCapitalized('environment in this project')).toBe('An environment in this project');
  });
});

describe('messages through the API', () => {
  let app: TestApp;
  let key: string;
  let projectId: string;

  beforeAll(async () => {
    app = await startTestApp();
    const org = await makeOrganization(app.runtime.db);
    key = (await makeApiKey(app.runtime.db, org.id)).secret;
    projectId = gid('Project', (await makeProject(app.runtime.db, org.id, { name: 'shop' })).id);
  });
  afterAll(() => app?.stop());

  it('a duplicate environment name: "An environment in this project with this name already exists"', async () => {
    const input = { projectId, name: 'staging', databaseUrl: 'postgres://h/db' };
    expect((await app.gql(CreateEnvironmentDocument, { input }, { key })).data?.createEnvironment.__typename).toBe('EnvironmentPayload');
    const again = await app.gql(CreateEnvironmentDocument, { input }, { key });
    expect(again.data?.createEnvironment).toMatchObject({ __typename: 'ConflictError', code: 'NAME_TAKEN', message: 'An environment in this project with this name already exists' });
    const project = await app.gql(CreateProjectDocument, { input: { name: 'shop' } }, { key });
    expect(project.data?.createProject).toMatchObject({ code: 'NAME_TAKEN', message: 'A project with this name already exists' });
  });

  it('an id of the wrong type: "must be the id of an Environment, not of a Project"', async () => {
    const res = await app.gql(CreateSnapshotDocument, { input: { environmentId: projectId } }, { key });
    expect(res.data?.createSnapshot).toMatchObject({
      __typename: 'ValidationError',
      fields: [{ path: ['input', 'environmentId'], message: 'must be the id of an Environment, not of a Project' }],
    });
  });
});
