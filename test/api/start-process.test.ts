/**
 * `backplane start`: API and worker in one process, the jobs on a thread of their own. A snapshot
 * asked of the process's API runs on its job thread, its end reaches a subscriber of that same
 * API, so do its job figures (/metrics), and SIGTERM stops both parts.
 */
import { randomBytes } from 'node:crypto';
import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateSnapshotDocument, WatchOperationDocument } from '../generated/graphql.ts';
import { testEnv, type TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { repositoryPassword, type LiveEnvironment } from '../harness/live-environment.ts';
import { startServerProcess, until, type ServerProcess } from '../harness/process.ts';
import { restic, startSnapshotSuite } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;
let server: ServerProcess | undefined;
const secretKey = randomBytes(32).toString('hex');

beforeAll(async () => {
  // The in-process app only sets the catalog up; it runs no worker, so every job here is the process's.
  ({ app, key, env } = await startSnapshotSuite({ secretKey, worker: false }));
});
afterAll(async () => {
  await server?.stop();
  await app?.stop();
});

async function post(url: string, query: string, variables: unknown, accept = 'application/json') {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept, authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
}

/** The operation's states over SSE from the process's own API, until a terminal one. */
async function watch(url: string, operationId: string): Promise<Array<{ status: string; phase: string | null }>> {
  const res = await post(url, print(WatchOperationDocument), { id: operationId }, 'text/event-stream');
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const states: Array<{ status: string; phase: string | null }> = [];
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return states;
    buffered += decoder.decode(value, { stream: true });
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines.filter((l) => l.startsWith('data:'))) {
      const op = (JSON.parse(line.slice(5)) as { data: { operation: { status: string; phase: string | null } } }).data.operation;
      states.push(op);
      if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status)) {
        await reader.cancel();
        return states;
      }
    }
  }
}

describe('backplane start', () => {
  it('runs jobs on its job thread, reports their end through its API, and stops on SIGTERM', async () => {
    server = await startServerProcess(testEnv(app.databaseUrl, secretKey), 'start');
    const started = server.logs.filter((l) => l.msg === 'worker started');
    expect(started).toHaveLength(1);
    expect(started[0]).toMatchObject({ thread: 'jobs' });

    const res = await post(server.url, print(CreateSnapshotDocument), { input: { environmentId: gid('Environment', env.id) } });
    const body = (await res.json()) as { data: { createSnapshot: { __typename: string; operation: { id: string } } } };
    expect(body.data.createSnapshot.__typename).toBe('SnapshotOperationPayload');
    const states = await watch(server.url, body.data.createSnapshot.operation.id);
    expect(states.at(-1)?.status).toBe('SUCCEEDED');

    const snapshot = await app.runtime.db.snapshot.findFirstOrThrow({ where: { environmentId: env.id } });
    expect(snapshot.status).toBe('READY');
    const password = await repositoryPassword(app, env.destinationId);
    expect(JSON.parse(await restic(env.repositoryPath, password, 'snapshots', '--json'))).toHaveLength(1);

    // The job's figures cross from the job thread to the API's /metrics (over the event bus).
    const jobRuns = async () => {
      const text = await (await fetch(server!.url.replace('/graphql', '/metrics'))).text();
      return Number(/^backplane_job_duration_seconds_count\{(?=[^}]*task="snapshot_create")(?=[^}]*outcome="success")[^}]*\} (\S+)$/m.exec(text)?.[1] ?? 0);
    };
    expect(await until(jobRuns, (n) => n === 1, 'the job figures on the API thread')).toBe(1);

    expect(await server.stop()).toBe(0);
    expect(server.logs.some((l) => l.msg === 'shutting down')).toBe(true);
  });
});
