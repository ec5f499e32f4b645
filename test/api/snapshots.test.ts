import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateSnapshotDocument,
  EstimateSnapshotSizeDocument,
  OperationDocument,
  SnapshotActivityDocument,
  SnapshotDocument,
} from '../generated/graphql.ts';
import { print } from 'graphql';
import { until } from '../harness/process.ts';
import type { TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { repositoryPassword, type LiveEnvironment } from '../harness/live-environment.ts';
import { follow, restic, startSnapshotSuite } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;

beforeAll(async () => {
  ({ app, key, env } = await startSnapshotSuite());
});
afterAll(() => app?.stop());

describe('createSnapshot', () => {
  it('returns at once with a CREATING snapshot, streams progress, and ends READY with sizes; restic agrees', async () => {
    const res = await app.gql(CreateSnapshotDocument, { input: { environmentId: gid('Environment', env.id), label: 'first', metadata: { appVersion: '1.2.3', deploymentId: 'dep-42' } } }, { key });
    if (res.data?.createSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(res));
    const { operation, snapshot } = res.data.createSnapshot;
    expect(snapshot.status).toBe('CREATING');
    expect(['QUEUED', 'RUNNING']).toContain(operation.status);
    expect(snapshot.includes).toEqual(['DB', 'FILES']);

    const states = await follow(app, key, operation.id);
    expect(states.at(-1)).toMatchObject({ status: 'SUCCEEDED', percent: 100 });
    expect(states.some((s) => s.status === 'RUNNING')).toBe(true);

    const after = (await app.gql(SnapshotDocument, { id: snapshot.id }, { key })).data!.snapshot!;
    expect(after).toMatchObject({ status: 'READY', label: 'first', metadata: { appVersion: '1.2.3', deploymentId: 'dep-42' } });
    expect(Number(after.sizeBytes)).toBeGreaterThan(300_000);
    expect(Number(after.addedBytes)).toBeGreaterThan(0);
    expect(after.fileCount).toBeGreaterThanOrEqual(5);
    expect(Number(after.databaseSizeBytes)).toBeGreaterThan(0);
    expect(after.copies).toEqual([expect.objectContaining({ status: 'READY' })]);

    const password = await repositoryPassword(app, env.destinationId);
    const listed = JSON.parse(await restic(env.repositoryPath, password, 'snapshots', '--json')) as { tags: string[]; paths: string[] }[];
    expect(listed).toHaveLength(1);
    expect(listed[0].tags).toEqual(expect.arrayContaining(['backplane', `env:${env.id}`, 'kind:manual']));
    await restic(env.repositoryPath, password, 'check', '--read-data');
    const ls = await restic(env.repositoryPath, password, 'ls', 'latest');
    expect(ls).toMatch(/\/db\/env_\w+\.dump/);
    expect(ls).toContain('/files/uploads/photo ü.jpg');
  });

  it('estimates the size without taking a snapshot', async () => {
    const before = await app.runtime.db.snapshot.count();
    const res = await app.gql(EstimateSnapshotSizeDocument, { environmentId: gid('Environment', env.id) }, { key });
    expect(res.data?.estimateSnapshotSize).toMatchObject({ __typename: 'SnapshotSizeEstimate', fileCount: 4 });
    if (res.data?.estimateSnapshotSize.__typename === 'SnapshotSizeEstimate') {
      expect(Number(res.data.estimateSnapshotSize.databaseBytes)).toBeGreaterThan(1000);
      expect(Number(res.data.estimateSnapshotSize.filesBytes)).toBeGreaterThan(300_000);
    }
    expect(await app.runtime.db.snapshot.count()).toBe(before);
  });

  it('a late subscriber gets the current state first', async () => {
    const res = await app.gql(CreateSnapshotDocument, { input: { environmentId: gid('Environment', env.id), includes: ['DB'] } }, { key });
    if (res.data?.createSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(res));
    const opId = res.data.createSnapshot.operation.id;
    await follow(app, key, opId);
    const late = await follow(app, key, opId);
    expect(late).toHaveLength(1);
    expect(late[0].status).toBe('SUCCEEDED');
    const op = await app.gql(OperationDocument, { id: opId }, { key });
    expect(op.data?.operation?.status).toBe('SUCCEEDED');
  });

  it('environmentActivity carries the snapshot and its operation as they progress', async () => {
    const client = app.ws(key);
    const events = client.iterate({ query: print(SnapshotActivityDocument), variables: { environmentId: gid('Environment', env.id) } });
    const seen: { kind: string; snapshot?: { status: string } | null; operation?: { status: string } | null }[] = [];
    const collected = (async () => {
      for await (const r of events) {
        const e = (r.data as { environmentActivity: (typeof seen)[number] }).environmentActivity;
        seen.push(e);
        if (e.kind === 'SNAPSHOT' && e.snapshot?.status === 'READY') return;
      }
    })();
    await until(async () => app.runtime.events.subscriberCount('environmentActivity'), (n) => n >= 1, 'the activity subscription');
    const res = await app.gql(CreateSnapshotDocument, { input: { environmentId: gid('Environment', env.id), includes: ['DB'] } }, { key });
    expect(res.data?.createSnapshot.__typename).toBe('SnapshotOperationPayload');
    await collected;
    expect(seen[0]).toMatchObject({ kind: 'SNAPSHOT', snapshot: { status: expect.stringMatching(/CREATING|READY/) } });
    expect(seen.some((e) => e.kind === 'OPERATION' && e.operation?.status === 'RUNNING')).toBe(true);
    expect(seen.at(-1)).toMatchObject({ kind: 'SNAPSHOT', snapshot: { status: 'READY' } });
  });
});
