/**
 * New environments get the organization's default destinations, so the first thing a new user
 * does with one (snapshot it, restore into it) works; an environment without any destination has
 * that work refused up front with NO_DESTINATION, recording nothing, instead of a job that fails.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateEnvironmentDocument, CreateSnapshotDocument, RestoreSnapshotDocument, UpsertScheduleDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { ensureDemo } from '../../src/app/bootstrap.ts';
import { createScratchDatabase, databaseUrl } from '../harness/database.ts';
import { gid } from '../harness/factories.ts';
import { databaseDigest, makeLiveEnvironment, type LiveEnvironment } from '../harness/live-environment.ts';
import { follow, startRestore, startWorkerSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let orgId: string;
let source: LiveEnvironment;
let snapshotId: string;
let tmp: string;

beforeAll(async () => {
  ({ app, key, orgId } = await startWorkerSuite());
  source = await makeLiveEnvironment(app, { organizationId: orgId });
  ({ snapshotId } = await takeSnapshot(app, key, source.id, { includes: ['DB'] }));
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-defaults-'));
}, 120_000);
afterAll(async () => {
  await app?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function gql(query: string, variables: Record<string, unknown>) {
  const res = (await (await app.post({ query, variables }, { key })).json()) as { data?: Record<string, Record<string, unknown>>; errors?: unknown };
  if (res.errors) throw new Error(JSON.stringify(res.errors));
  return res.data!;
}

async function createEnvironment(name: string) {
  const res = await app.gql(CreateEnvironmentDocument, { input: { projectId: gid('Project', source.projectId), name, databaseUrl: await createScratchDatabase('target') } }, { key });
  if (res.data?.createEnvironment.__typename !== 'EnvironmentPayload') throw new Error(JSON.stringify(res));
  return res.data.createEnvironment.environment;
}

async function counts() {
  const db = app.runtime.db;
  return { operations: await db.operation.count(), restoreLogs: await db.restoreLog.count(), snapshots: await db.snapshot.count(), alerts: await db.alert.count(), schedules: await db.schedule.count() };
}

describe('default destinations', () => {
  it('without defaults a new environment has no destination: snapshot and restore into it are refused up front, nothing recorded', async () => {
    const env = await createEnvironment('bare');
    const before = await counts();
    const restore = await app.gql(RestoreSnapshotDocument, { input: { snapshotId, targetEnvironmentId: env.id, includes: ['DB'] } }, { key });
    expect(restore.data?.restoreSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'NO_DESTINATION' });
    const snap = await app.gql(CreateSnapshotDocument, { input: { environmentId: env.id, includes: ['DB'] } }, { key });
    expect(snap.data?.createSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'NO_DESTINATION' });
    const schedule = await app.gql(UpsertScheduleDocument, { input: { environmentId: env.id, dbCron: '0 2 * * *' } }, { key });
    expect(schedule.data?.upsertSchedule).toMatchObject({ __typename: 'ConflictError', code: 'NO_DESTINATION' });
    expect(await app.runtime.db.schedule.count({ where: { environmentId: decodeGlobalID(env.id).id } })).toBe(0);
    expect(await counts()).toEqual(before);
  });

  it('new environments get the default destinations, oldest first; a restore into one runs to the end', async () => {
    const first = gid('Destination', source.destinationId);
    const setDefault = await gql('mutation ($input: UpdateDestinationInput!) { updateDestination(input: $input) { __typename ... on DestinationPayload { destination { isDefault } } } }', { input: { id: first, isDefault: true } });
    expect(setDefault.updateDestination).toEqual({ __typename: 'DestinationPayload', destination: { isDefault: true } });
    const created = async (name: string, isDefault: boolean) => {
      const r = await gql('mutation ($input: CreateDestinationInput!) { createDestination(input: $input) { __typename ... on DestinationPayload { destination { id isDefault } } } }', { input: { name, provider: 'LOCAL', path: path.join(tmp, name), isDefault } });
      return (r.createDestination.destination as { id: string }).id;
    };
    const second = await created('second-default', true);
    await created('not-default', false);

    const env = await createEnvironment('with-defaults');
    const read = await gql('query ($id: ID!) { environment(id: $id) { destinations { id } } }', { id: env.id });
    expect(read.environment.destinations).toEqual([{ id: first }, { id: second }]);

    const alertsBefore = await app.runtime.db.alert.count({ where: { severity: 'CRITICAL' } });
    const { operationId } = await startRestore(app, key, { snapshotId, targetEnvironmentId: env.id, includes: ['DB'] });
    const states = await follow(app, key, operationId);
    expect(states.at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    const target = await app.runtime.db.environment.findUniqueOrThrow({ where: { id: decodeGlobalID(env.id).id } });
    expect(await databaseDigest(app.runtime.deps.secrets.open(target.databaseUrlEncrypted))).toEqual(await databaseDigest(source.databaseUrl));
    // The safety snapshot of the target went to its first default destination.
    const safety = await app.runtime.db.snapshot.findFirstOrThrow({ where: { environmentId: target.id, kind: 'SAFETY' }, include: { copies: { orderBy: { createdAt: 'asc' } } } });
    expect(safety.status).toBe('READY');
    expect(safety.copies.map((c) => c.destinationId)).toEqual([source.destinationId, decodeGlobalID(second).id]);
    expect(await app.runtime.db.alert.count({ where: { severity: 'CRITICAL' } })).toBe(alertsBefore);
  }, 120_000);

  it("the embedded start's LOCAL destination is the default, so environments created next to the demo get it", async () => {
    const demo = await ensureDemo(app.runtime.deps, { home: path.join(tmp, 'home'), databaseUrlFor: (db) => databaseUrl(db) });
    const local = await app.runtime.db.destination.findFirstOrThrow({ where: { organizationId: orgId, name: 'local' } });
    expect(local).toMatchObject({ provider: 'LOCAL', isDefault: true });
    const env = await createEnvironment('next-to-demo');
    const read = await gql('query ($id: ID!) { environment(id: $id) { destinations { id } } }', { id: env.id });
    expect(read.environment.destinations).toContainEqual({ id: gid('Destination', local.id) });
    expect(demo.created).toBe(true);
  }, 120_000);
});
