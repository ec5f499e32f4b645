import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeysDocument, CreateApiKeyDocument, ProjectsDocument, RevokeApiKeyDocument, ViewerDocument } from '../generated/graphql.ts';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeOrganization, makeProject } from '../harness/factories.ts';
import { useManualClock } from '../harness/schedule-helpers.ts';
import { until } from '../harness/process.ts';
import { ViewerCache } from '../../src/services/api-keys.ts';
import { systemClock } from '../../src/services/deps.ts';

let app: TestApp;
let admin: string;
let orgId: string;
let projectA: string;
let projectB: string;

beforeAll(async () => {
  app = await startTestApp();
  const org = await makeOrganization(app.runtime.db);
  orgId = org.id;
  admin = (await makeApiKey(app.runtime.db, org.id)).secret;
  projectA = (await makeProject(app.runtime.db, org.id, { name: 'A' })).id;
  projectB = (await makeProject(app.runtime.db, org.id, { name: 'B' })).id;
});
afterAll(() => app?.stop());

describe('API keys', () => {
  it('creates a key whose secret is shown once and works, limited as asked', async () => {
    const res = await app.gql(CreateApiKeyDocument, { input: { name: 'ci', scopes: ['BACKUPS_READ'], projectIds: [gid('Project', projectA)] } }, { key: admin });
    if (res.data?.createApiKey.__typename !== 'CreateApiKeyPayload') throw new Error(JSON.stringify(res));
    const { secret, apiKey } = res.data.createApiKey;
    expect(secret).toMatch(/^bp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(apiKey).toMatchObject({ name: 'ci', scopes: ['BACKUPS_READ'], projects: [{ id: gid('Project', projectA) }] });
    const viewer = await app.gql(ViewerDocument, {}, { key: secret });
    expect(viewer.data?.viewer).toMatchObject({ scopes: ['backups:read'], limitedToProjects: true });
    const list = await app.gql(ProjectsDocument, {}, { key: secret });
    expect(list.data?.projects.edges.map((e) => e.node.name)).toEqual(['A']);
    // The listing never shows the secret again.
    const keys = await app.gql(ApiKeysDocument, {}, { key: admin });
    expect(JSON.stringify(keys)).not.toContain(secret.slice(16));
  });

  it('revokes a key: it stops working at once, and a second revoke is a conflict', async () => {
    const made = await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:read'] });
    expect((await app.gql(ViewerDocument, {}, { key: made.secret })).errors).toBeUndefined();
    const res = await app.gql(RevokeApiKeyDocument, { input: { id: gid('ApiKey', made.id) } }, { key: admin });
    expect(res.data?.revokeApiKey).toMatchObject({ __typename: 'RevokeApiKeyPayload', apiKey: { id: gid('ApiKey', made.id) } });
    expect((await app.gql(ViewerDocument, {}, { key: made.secret })).errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    const again = await app.gql(RevokeApiKeyDocument, { input: { id: gid('ApiKey', made.id) } }, { key: admin });
    expect(again.data?.revokeApiKey).toMatchObject({ __typename: 'ConflictError', code: 'API_KEY_REVOKED' });
  });

  it('a key revoked through another API process stops working in this one at once', async () => {
    // This process would trust a checked key for five minutes; only the revocation event can end it sooner.
    const other = await startTestApp({ databaseUrl: app.databaseUrl, env: { API_KEY_CACHE_MS: '300000' } });
    try {
      const code = async (key: string) => (await other.gql(ViewerDocument, {}, { key })).errors?.[0].extensions?.code ?? 'OK';
      const made = await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:read'] });
      expect(await code(made.secret)).toBe('OK');
      const res = await app.gql(RevokeApiKeyDocument, { input: { id: gid('ApiKey', made.id) } }, { key: admin });
      expect(res.data?.revokeApiKey.__typename).toBe('RevokeApiKeyPayload');
      expect(await until(() => code(made.secret), (c) => c !== 'OK', 'the other process to hear of the revocation', 10_000)).toBe('UNAUTHENTICATED');
    } finally {
      await other.stop();
    }
  });

  it('trusts a checked key for API_KEY_CACHE_MS at most, and never past its expiry', async () => {
    const clock = useManualClock(app, new Date());
    try {
      const code = async (key: string) => (await app.gql(ViewerDocument, {}, { key })).errors?.[0].extensions?.code ?? 'OK';
      // Revoked by another process (straight in the catalog): this process finds out once its memory of the key runs out.
      const elsewhere = await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:read'] });
      expect(await code(elsewhere.secret)).toBe('OK');
      await app.runtime.db.apiKey.update({ where: { id: elsewhere.id }, data: { revokedAt: new Date() } });
      expect(await code(elsewhere.secret)).toBe('OK');
      clock.advance(4_999);
      expect(await code(elsewhere.secret)).toBe('OK');
      clock.advance(1);
      expect(await code(elsewhere.secret)).toBe('UNAUTHENTICATED');
      // An expiry inside that time counts at once.
      const expiring = await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:read'], expiresAt: new Date(clock.now().getTime() + 2_000) });
      expect(await code(expiring.secret)).toBe('OK');
      clock.advance(1_999);
      expect(await code(expiring.secret)).toBe('OK');
      clock.advance(1);
      expect(await code(expiring.secret)).toBe('UNAUTHENTICATED');
    } finally {
      app.runtime.deps.clock = systemClock;
    }
  });

  it('does not keep a lookup that was under way while the key was revoked', async () => {
    const cache = new ViewerCache(60_000);
    const db = app.runtime.db;
    const made = await makeApiKey(db, orgId, { scopes: ['backups:read'] });
    // The lookup reads the key before the revocation lands; the forget comes while it waits.
    const racing = cache.authenticate(db, made.secret, new Date());
    cache.forget(made.id, new Date());
    expect((await racing).apiKeyId).toBe(made.id);
    await db.apiKey.update({ where: { id: made.id }, data: { revokedAt: new Date() } });
    await expect(cache.authenticate(db, made.secret, new Date())).rejects.toThrow(/revoked/);
  });

  it('never grants more than the creator holds', async () => {
    const limitedAdmin = (await makeApiKey(app.runtime.db, orgId, { scopes: ['admin'], projectIds: [projectA] })).secret;
    const writer = (await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:write'] })).secret;
    const before = await app.runtime.db.apiKey.count();
    const unlimited = await app.gql(CreateApiKeyDocument, { input: { name: 'wide', scopes: ['ADMIN'] } }, { key: limitedAdmin });
    expect(unlimited.data?.createApiKey).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED', fields: [{ path: ['input', 'projectIds'] }] });
    const otherProject = await app.gql(CreateApiKeyDocument, { input: { name: 'b', scopes: ['BACKUPS_READ'], projectIds: [gid('Project', projectB)] } }, { key: limitedAdmin });
    expect(otherProject.data?.createApiKey).toMatchObject({ __typename: 'NotFoundError', code: 'PROJECT_NOT_FOUND' });
    const noAdmin = await app.gql(CreateApiKeyDocument, { input: { name: 'x', scopes: ['BACKUPS_READ'] } }, { key: writer });
    expect(noAdmin.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    expect(await app.runtime.db.apiKey.count()).toBe(before);
  });

  it('rejects bad input with typed errors and creates nothing', async () => {
    const before = await app.runtime.db.apiKey.count();
    const cases = [
      [{ name: '', scopes: ['BACKUPS_READ'] }, ['input', 'name']],
      [{ name: 'k'.repeat(65), scopes: ['BACKUPS_READ'] }, ['input', 'name']],
      [{ name: 'k', scopes: [] }, ['input', 'scopes']],
      [{ name: 'k', scopes: ['BACKUPS_READ'], projectIds: ['garbage'] }, ['input', 'projectIds', '0']],
      [{ name: 'k', scopes: ['BACKUPS_READ'], expiresAt: '2001-01-01T00:00:00Z' }, ['input', 'expiresAt']],
    ] as const;
    for (const [input, path] of cases) {
      const res = await app.gql(CreateApiKeyDocument, { input: input as never }, { key: admin });
      const result = res.data?.createApiKey;
      expect(result?.__typename, JSON.stringify(input)).toBe('ValidationError');
      if (result?.__typename === 'ValidationError') expect(result.fields[0].path).toEqual(path);
    }
    const badRevoke = await app.gql(RevokeApiKeyDocument, { input: { id: gid('Project', projectA) } }, { key: admin });
    expect(badRevoke.data?.revokeApiKey).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'id'] }] });
    const unknown = await app.gql(RevokeApiKeyDocument, { input: { id: gid('ApiKey', 'missing') } }, { key: admin });
    expect(unknown.data?.revokeApiKey).toMatchObject({ __typename: 'NotFoundError', code: 'API_KEY_NOT_FOUND' });
    expect(await app.runtime.db.apiKey.count()).toBe(before);
  });
});
