/**
 * The control-plane commands a new user types: `backplane psql <environment>` and
 * `backplane api-key create`, run as separate processes against a real catalog.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateApiKeyDocument, ViewerDocument } from '../generated/graphql.ts';
import { startTestApp, testEnv, type TestApp } from '../harness/app.ts';
import { createScratchDatabase } from '../harness/database.ts';
import { gid, makeEnvironment, makeOrganization, makeProject, makeApiKey } from '../harness/factories.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const secretKey = randomBytes(32).toString('hex');
let app: TestApp;
let orgName: string;

beforeAll(async () => {
  app = await startTestApp({ secretKey });
  const org = await makeOrganization(app.runtime.db, { name: 'Acme' });
  orgName = org.name;
}, 120_000);
afterAll(() => app?.stop());

function backplane(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'bin/backplane.js'), ...args], { cwd: ROOT, env: testEnv(app.databaseUrl, secretKey), timeout: 90_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

// Each command is a fresh process (several seconds on a loaded machine): generous per-test limits.
describe('backplane psql', { timeout: 300_000 }, () => {
  let demoUrl: string;
  let envId: string;

  beforeAll(async () => {
    const { db, secrets } = app.runtime.deps;
    demoUrl = await createScratchDatabase('psql');
    const project = await makeProject(db, (await db.organization.findFirstOrThrow()).id, { name: 'shop' });
    envId = (await makeEnvironment(db, secrets, project, { name: 'demo', databaseUrl: demoUrl })).id;
    // The same name in two other projects: only project/name or the id tell them apart.
    for (const p of ['alpha', 'beta']) await makeEnvironment(db, secrets, await makeProject(db, project.organizationId, { name: p }), { name: 'twin', databaseUrl: demoUrl });
  });

  it("runs psql on the environment's database, found by name, with the arguments given", async () => {
    const res = await backplane('psql', 'demo', '-At', '-c', 'select current_database(), 40 + 2');
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout.trim()).toBe(`${new URL(demoUrl).pathname.slice(1)}|42`);
  });

  it('finds it by global id or row id as well, and passes on psql\'s exit code', async () => {
    for (const ref of [gid('Environment', envId), envId, 'shop/demo']) {
      const res = await backplane('psql', ref, '-At', '-c', 'select 1');
      expect([ref, res.code, res.stdout.trim()]).toEqual([ref, 0, '1']);
    }
    const failing = await backplane('psql', 'demo', '-At', '-v', 'ON_ERROR_STOP=1', '-c', 'select 1/0');
    expect(failing.code).not.toBe(0);
    expect(failing.stderr).toMatch(/division by zero/);
  });

  it('refuses an unknown or ambiguous name with the names it knows, and never opens psql', async () => {
    const unknown = await backplane('psql', 'nope', '-c', 'select 1');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/No environment "nope"; there are: .*shop\/demo/);
    const twin = await backplane('psql', 'twin', '-c', 'select 1');
    expect(twin.code).toBe(2);
    expect(twin.stderr).toMatch(/"twin" names 2 environments; say which: alpha\/twin .*beta\/twin/);
    expect((await backplane('psql', 'beta/twin', '-At', '-c', 'select 7')).stdout.trim()).toBe('7');
    expect((await backplane('psql')).code).toBe(2);
  });
});

describe('backplane api-key create', { timeout: 300_000 }, () => {
  it('refuses a name the API refuses, with the API\'s own message, and creates nothing', async () => {
    const before = await app.runtime.db.apiKey.count();
    const res = await backplane('api-key', 'create', '--name', 'ci/deploy', '--scope', 'backups:read');
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    // The API says the same about the same name.
    const admin = (await makeApiKey(app.runtime.db, (await app.runtime.db.organization.findFirstOrThrow()).id, { scopes: ['admin'] })).secret;
    const api = await app.gql(CreateApiKeyDocument, { input: { name: 'ci/deploy', scopes: ['BACKUPS_READ'] } }, { key: admin });
    if (api.data?.createApiKey.__typename !== 'ValidationError') throw new Error(JSON.stringify(api));
    expect(res.stderr).toContain(`--name "ci/deploy": ${api.data.createApiKey.fields[0].message}`);
    expect(await app.runtime.db.apiKey.count()).toBe(before + 1);
  });

  it('wants the scope said explicitly, and refuses an unknown one', async () => {
    const before = await app.runtime.db.apiKey.count();
    const none = await backplane('api-key', 'create', '--name', 'me');
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--scope \(backups:read, backups:write, admin\)/);
    const unknown = await backplane('api-key', 'create', '--name', 'me', '--scope', 'root');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--scope "root": unknown scope; one of backups:read, backups:write, admin');
    const typo = await backplane('api-key', 'create', '--name', 'me', '--scopes', 'admin');
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/^backplane: Unknown option '--scopes'/);
    expect(await app.runtime.db.apiKey.count()).toBe(before);
  });

  it('prints the key alone on stdout and says on stderr which scopes it holds; the key has exactly those', async () => {
    const read = await backplane('api-key', 'create', '--name', 'ci', '--scope', 'backups:read');
    expect(read.code).toBe(0);
    expect(read.stdout).toMatch(/^bp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\n$/);
    expect(read.stderr).toContain(`Created API key "ci" for organization "${orgName}" with scope:\n  backups:read  read-only`);
    const viewer = await app.gql(ViewerDocument, {}, { key: read.stdout.trim() });
    expect(viewer.data?.viewer.scopes).toEqual(['backups:read']);

    const admin = await backplane('api-key', 'create', '--name', 'me', '--scope', 'admin');
    expect(admin.code).toBe(0);
    expect(admin.stderr).toMatch(/admin {2}FULL ACCESS/);
    expect((await app.gql(ViewerDocument, {}, { key: admin.stdout.trim() })).data?.viewer.scopes).toEqual(['admin', 'backups:read', 'backups:write']);
  });
});
