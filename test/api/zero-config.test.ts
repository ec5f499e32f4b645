/**
 * The zero-configuration path as a new user takes it: `backplane start` with no DATABASE_URL and
 * no secret key, from a fresh home: the embedded PostgreSQL, the demo project, the admin key
 * printed once. The printed key is then used as a user would: it sees the demo project and
 * snapshots the demo environment. `backplane api-key create` and `backplane migrate` run as
 * commands beside the running server (they share its embedded PostgreSQL).
 */
import fs from 'node:fs/promises';
import { print } from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import { decompress } from 'zstd-napi';
import { CreateSnapshotDocument, ProjectDocument, ProjectsDocument, SnapshotDownloadDocument, WatchOperationDocument } from '../generated/graphql.ts';
import { startFresh, type FreshStart } from '../harness/fresh-start.ts';

let bp: FreshStart | undefined;
afterAll(() => bp?.dispose());

async function gql<R>(url: string, key: string, doc: Parameters<typeof print>[0], variables: unknown = {}): Promise<R> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ query: print(doc), variables }) });
  const body = (await res.json()) as { data?: R; errors?: unknown };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data!;
}

/** The operation's last state, followed over graphql-ws until it ends. */
async function finalState(wsUrl: string, key: string, operationId: string) {
  const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams: { Authorization: `Bearer ${key}` }, retryAttempts: 0 });
  try {
    for await (const r of client.iterate({ query: print(WatchOperationDocument), variables: { id: operationId } })) {
      if (r.errors) throw new Error(JSON.stringify(r.errors));
      const op = (r.data as { operation: { status: string; error?: string | null } }).operation;
      if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status)) return op;
    }
    throw new Error('the subscription ended before the operation did');
  } finally {
    await client.dispose();
  }
}

describe('backplane start without configuration', () => {
  it('starts from a fresh home, prints an admin key that works, snapshots the demo; api-key create and migrate work beside it', { timeout: 300_000 }, async () => {
    bp = await startFresh('bp-zero-');
    const { backplaneHome, banner, url } = bp;
    const key = bp.adminKey;
    expect(key, banner).toMatch(/^bp_\S+$/);
    expect(banner).toContain(`GraphiQL:  ${url}`);
    // The embedded cluster, the demo's files and its local repository all live in the home.
    expect((await fs.readdir(backplaneHome)).sort()).toEqual(expect.arrayContaining(['pg', 'repository', 'demo']));

    const projects = await gql<{ projects: { totalCount: number; edges: { node: { id: string; name: string } }[] } }>(url, key, ProjectsDocument);
    expect(projects.projects.edges.map((e) => e.node.name)).toEqual(['Demo']);
    const demo = await gql<{ project: { environments: { edges: { node: { id: string; name: string } }[] } } }>(url, key, ProjectDocument, { id: projects.projects.edges[0].node.id });
    const environments = demo.project.environments.edges.map((e) => e.node);
    expect(environments.map((e) => e.name)).toEqual(['demo']);

    const created = await gql<{ createSnapshot: { __typename: string; operation: { id: string }; snapshot: { id: string } } }>(url, key, CreateSnapshotDocument, { input: { environmentId: environments[0].id } });
    expect(created.createSnapshot.__typename).toBe('SnapshotOperationPayload');
    const end = await finalState(url.replace('http', 'ws'), key, created.createSnapshot.operation.id);
    expect(end, end.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    // In the local repository under the home: its download, read back from there, holds the demo's
    // pg_dump. (Counting the repository's snapshots would race the demo's PITR base backup and WAL.)
    const link = await gql<{ snapshot: { download: { __typename: string; url?: string } } }>(url, key, SnapshotDownloadDocument, { id: created.createSnapshot.snapshot.id, variant: 'DATABASE_ONLY' });
    expect(link.snapshot.download.__typename).toBe('Download');
    const tar = decompress(Buffer.from(await (await fetch(link.snapshot.download.url!)).arrayBuffer()));
    expect(tar.includes('PGDMP')).toBe(true);

    // A second key, made by the command while the server runs, works against it with its scope.
    const made = await bp.run(['api-key', 'create', '--name', 'reader', '--scope', 'backups:read']);
    expect(made.code, made.stderr).toBe(0);
    const readerKey = made.stdout.trim();
    expect(readerKey).toMatch(/^bp_\S+$/);
    expect((await gql<{ projects: { totalCount: number } }>(url, readerKey, ProjectsDocument)).projects.totalCount).toBe(1);
    const refused = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${readerKey}` }, body: JSON.stringify({ query: print(CreateSnapshotDocument), variables: { input: { environmentId: environments[0].id } } }) });
    expect(((await refused.json()) as { errors?: { extensions?: { code?: string } }[] }).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');

    const migrated = await bp.run(['migrate']);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.stdout).toMatch(/database is up to date/);

    expect(await bp.stop()).toBe(0);
  });
});
