/**
 * Query limits with the default configuration: each refusal carries its own code (never a
 * "Syntax Error"), the cost model lets console-like queries through and still refuses lists
 * nested inside lists, and a batch is counted per operation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';

let app: TestApp;
let key: string;
let envId: string;

type Body = { data?: unknown; errors?: { message: string; extensions?: { code?: string; limit?: number } }[] };

beforeAll(async () => {
  app = await startTestApp();
  const db = app.runtime.db;
  const org = await makeOrganization(db);
  key = (await makeApiKey(db, org.id)).secret;
  for (let p = 0; p < 2; p++) {
    const project = await makeProject(db, org.id);
    const destination = await db.destination.create({ data: { organizationId: org.id, name: `local ${p}`, provider: 'LOCAL', config: { path: `/tmp/none-${p}` } } });
    for (let e = 0; e < 2; e++) {
      const env = await makeEnvironment(db, app.runtime.deps.secrets, project);
      await db.environmentDestination.create({ data: { environmentId: env.id, destinationId: destination.id } });
      envId = env.id;
    }
  }
});
afterAll(() => app?.stop());

const run = async (query: string, variables?: Record<string, unknown>) => (await (await app.post({ query, variables }, { key })).json()) as Body;
const codes = (body: Body) => (body.errors ?? []).map((e) => e.extensions?.code);

/** A console's project list: every project with its environments and where they go, default pages. */
const projectsEnvironmentsDestinations = `{
  projects { totalCount edges { node { id name description
    environments { totalCount edges { node { id name type databaseUrl filesPath createdAt
      project { id name }
      destinations { id name provider location status lastCheckedAt }
    } } }
  } } }
}`;

const environmentSnapshotsCopies = `query ($id: ID!) {
  environment(id: $id) { id name
    snapshots(first: 50) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node {
      id kind label status sizeBytes addedBytes fileCount createdAt pinned pinLabel
      copies { status sizeBytes addedBytes completedAt error destination { id name provider } }
    } } }
  }
}`;

const viewer = '{ viewer { scopes limitedToProjects organization { name } apiKey { name } } }';

/** Three lists, each in the one above, each asking for a thousand. */
const nestedLists = (n: string) => `query ${n.startsWith('$') ? '($n: Int)' : ''} {
  projects(first: ${n}) { edges { node { environments(first: ${n}) { edges { node { snapshots(first: ${n}) { edges { node { id copies { status } } } } } } } } } }
}`;

describe('ordinary queries', () => {
  it('pass the default limits', async () => {
    for (const [query, variables] of [[projectsEnvironmentsDestinations], [environmentSnapshotsCopies, { id: gid('Environment', envId) }], [viewer]] as const) {
      const body = await run(query, variables);
      expect(body.errors, query).toBeUndefined();
      expect(body.data, query).toBeTruthy();
    }
    const body = (await run(projectsEnvironmentsDestinations)) as { data: { projects: { totalCount: number; edges: { node: { environments: { edges: { node: { destinations: unknown[] } }[] } } }[] } } };
    expect(body.data.projects.totalCount).toBe(2);
    expect(body.data.projects.edges[0].node.environments.edges[0].node.destinations).toHaveLength(1);
  });

  it('are counted per operation in a batch', async () => {
    // Together these could return more than the limit; each alone is well under it.
    const res = await app.post([{ query: projectsEnvironmentsDestinations }, { query: projectsEnvironmentsDestinations }, { query: projectsEnvironmentsDestinations }], { key });
    const bodies = (await res.json()) as Body[];
    expect(bodies.map((b) => b.errors)).toEqual([undefined, undefined, undefined]);
  });

  it('weigh a page size given as a variable by its value', async () => {
    expect((await run(nestedLists('$n'), { n: 5 })).errors).toBeUndefined();
    expect(codes(await run(nestedLists('$n'), { n: 1000 }))).toEqual(['QUERY_TOO_COMPLEX']);
  });
});

describe('refusals', () => {
  it('refuse lists nested in lists as QUERY_TOO_COMPLEX', async () => {
    const body = await run(nestedLists('1000'));
    expect(body.data ?? null).toBeNull();
    expect(codes(body)).toEqual(['QUERY_TOO_COMPLEX']);
    expect(body.errors![0].extensions?.limit).toBe(10_000);
    expect(body.errors![0].message).toMatch(/^The query could return up to \d+ objects; the limit is 10000/);
  });

  it('refuse a query deeper than MAX_DEPTH as QUERY_TOO_DEEP', async () => {
    const deep = '{ project(id: "x") { environments(first: 1) { edges { node { project { environments(first: 1) { edges { node { project { environments(first: 1) { edges { node { id } } } } } } } } } } } } }';
    const body = await run(deep);
    expect(codes(body)).toEqual(['QUERY_TOO_DEEP']);
    expect(body.errors![0].message).toBe('The query is 13 levels deep; the limit is 12');
  });

  it('refuse more aliases than MAX_ALIASES as QUERY_TOO_MANY_ALIASES', async () => {
    const body = await run(`{ ${Array.from({ length: 31 }, (_, i) => `v${i}: viewer { scopes }`).join(' ')} }`);
    expect(codes(body)).toEqual(['QUERY_TOO_MANY_ALIASES']);
    expect(body.errors![0].message).toBe('The query uses 31 aliases; the limit is 30');
  });

  it('refuse more tokens than MAX_TOKENS as QUERY_TOO_LONG', async () => {
    const body = await run(`{ viewer { ${'scopes '.repeat(2100)}} }`);
    expect(codes(body)).toEqual(['QUERY_TOO_LONG']);
    expect(body.errors![0].message).toBe('The query has more than 2000 tokens');
  });

  it('refuse over graphql-ws with the same codes', async () => {
    const client = app.ws(key);
    await expect(client.iterate({ query: `{ viewer { ${'scopes '.repeat(2100)}} }` }).next()).rejects.toMatchObject([{ extensions: { code: 'QUERY_TOO_LONG' } }]);
    const complex = await client.iterate({ query: nestedLists('1000') }).next();
    expect(codes(complex.value as Body)).toEqual(['QUERY_TOO_COMPLEX']);
  });
});
