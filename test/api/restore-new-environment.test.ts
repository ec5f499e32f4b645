/**
 * Restore into a new environment (`restoreSnapshot(input: { newEnvironment: { name } })`): the
 * environment is made in the snapshot's project, PROVISIONING until the restore succeeds, with a
 * database of its own on the source's server and a folder beside the source's.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inputHash } from '../../src/services/idempotency.ts';
import { fireSchedule } from '../../src/services/schedules.ts';
import { CreateSnapshotDocument, RestoreLogDocument, RestoreSnapshotDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { adminUrl } from '../harness/database.ts';
import { gid } from '../harness/factories.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { follow, startRestore, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let prod: LiveEnvironment;
let snapshotId: string;

beforeAll(async () => {
  ({ app, key, env: prod } = await startSnapshotSuite({ envName: 'production' }));
  ({ snapshotId } = await takeSnapshot(app, key, prod.id));
});
afterAll(() => app?.stop());

const sourceDb = () => decodeURIComponent(new URL(prod.databaseUrl).pathname.slice(1));
const onServer = (name: string) => {
  const u = new URL(prod.databaseUrl);
  u.pathname = `/${name}`;
  return u.toString();
};
const databasesLike = async (pattern: string) => (await sql(adminUrl(), 'SELECT datname FROM pg_database WHERE datname LIKE $1', [pattern])).rows.map((r) => String(r.datname));
const restoreLog = async (id: string) =>
  (await app.gql(RestoreLogDocument, { id }, { key })).data?.node as { status: string; error: string | null; safetySnapshot: unknown; targetEnvironment: { id: string; name: string; type: string; status: string; databaseName: string; filesPath: string | null } };

describe('restoreSnapshot into a new environment', () => {
  it('creates the environment in the snapshot’s project with its own database and folder equal to the snapshot; the source is untouched', async () => {
    const dbAtSnapshot = await databaseDigest(prod.databaseUrl);
    const filesAtSnapshot = await filesDigest(prod.filesPath);
    // The source moves on after the snapshot: the new environment gets the snapshot, and the source keeps its own state.
    await sql(prod.databaseUrl, "UPDATE customers SET name = 'after the snapshot' WHERE id <= 5");
    await fs.writeFile(path.join(prod.filesPath, 'later.txt'), 'written after the snapshot\n');
    const sourceDbBefore = await databaseDigest(prod.databaseUrl);
    const sourceFilesBefore = await filesDigest(prod.filesPath);

    // createSafetySnapshot: true is ignored (there is nothing to protect in a new environment).
    const input = { snapshotId, newEnvironment: { name: 'QA copy', type: 'STAGING' }, createSafetySnapshot: true, idempotencyKey: 'qa-copy-1' };
    const { operationId, restoreLogId } = await startRestore(app, key, input);
    const pending = await restoreLog(restoreLogId);
    expect(pending.targetEnvironment).toMatchObject({ name: 'QA copy', type: 'STAGING', databaseName: `${sourceDb()}_qa_copy`, filesPath: `${prod.filesPath}-qa_copy` });
    expect(['PROVISIONING', 'READY']).toContain(pending.targetEnvironment.status);

    const states = await follow(app, key, operationId);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    const log = await restoreLog(restoreLogId);
    expect(log).toMatchObject({ status: 'SUCCEEDED', safetySnapshot: null, targetEnvironment: { status: 'READY' } });
    // The same key and input again: the same restore, not a taken name.
    expect(await startRestore(app, key, input)).toEqual({ operationId, restoreLogId });
    const env = log.targetEnvironment;
    const row = await app.runtime.db.environment.findUniqueOrThrow({ where: { id: Buffer.from(env.id, 'base64').toString().split(':')[1] } });
    expect(row.projectId).toBe(prod.projectId);

    expect(await databaseDigest(onServer(env.databaseName))).toEqual(dbAtSnapshot);
    expect(await filesDigest(env.filesPath!)).toEqual(filesAtSnapshot);
    expect(await databaseDigest(prod.databaseUrl)).toEqual(sourceDbBefore);
    expect(await filesDigest(prod.filesPath)).toEqual(sourceFilesBefore);
    // Its temporary database (`<new db>__bp_restore_<id>`) is gone; other files' restores on this
    // shared server keep `__bp_pre_` databases of their own, so only this one's names count.
    expect(await databasesLike(`${sourceDb()}\\_qa\\_copy\\_\\_bp\\_%`)).toEqual([]);
    expect((await fs.readdir(path.dirname(prod.filesPath))).filter((n) => n.includes('.bp_'))).toEqual([]);

    // Usable now: it snapshots like any other (into its source's destinations).
    const snap = await app.gql(CreateSnapshotDocument, { input: { environmentId: env.id } }, { key });
    expect(snap.data?.createSnapshot.__typename).toBe('SnapshotOperationPayload');
  });

  it('a name taken in the project is NAME_TAKEN, and nothing is created', async () => {
    const envsBefore = await app.runtime.db.environment.count();
    const opsBefore = await app.runtime.db.operation.count();
    const res = await app.gql(RestoreSnapshotDocument, { input: { snapshotId, newEnvironment: { name: 'production' } } }, { key });
    expect(res.data?.restoreSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'NAME_TAKEN' });
    expect(await app.runtime.db.environment.count()).toBe(envsBefore);
    expect(await app.runtime.db.operation.count()).toBe(opsBefore);
    expect(await databasesLike(`${sourceDb()}\\_production%`)).toEqual([]);
  });

  it('a database of that name already on the server is NAME_TAKEN too, and it is left alone', async () => {
    await sql(adminUrl(), `CREATE DATABASE "${sourceDb()}_squatter"`);
    const envsBefore = await app.runtime.db.environment.count();
    const res = await app.gql(RestoreSnapshotDocument, { input: { snapshotId, newEnvironment: { name: 'squatter' } } }, { key });
    expect(res.data?.restoreSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'NAME_TAKEN' });
    expect(await app.runtime.db.environment.count()).toBe(envsBefore);
    expect(await databasesLike(`${sourceDb()}\\_squatter`)).toHaveLength(1);
  });

  it('a source role without CREATEDB is DATABASE_CREATE_FORBIDDEN, and nothing is created', async () => {
    const role = `bp_nocreatedb_${process.pid}`;
    await sql(adminUrl(), `CREATE ROLE ${role} LOGIN NOCREATEDB PASSWORD 'pw'`);
    const restricted = new URL(prod.databaseUrl);
    restricted.username = role;
    restricted.password = 'pw';
    const { db, secrets } = app.runtime.deps;
    const original = await db.environment.findUniqueOrThrow({ where: { id: prod.id } });
    await db.environment.update({ where: { id: prod.id }, data: { databaseUrlEncrypted: secrets.seal(restricted.toString()) } });
    try {
      const envsBefore = await db.environment.count();
      const res = await app.gql(RestoreSnapshotDocument, { input: { snapshotId, newEnvironment: { name: 'forbidden' } } }, { key });
      expect(res.data?.restoreSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'DATABASE_CREATE_FORBIDDEN' });
      expect(await db.environment.count()).toBe(envsBefore);
      expect(await databasesLike(`${sourceDb()}\\_forbidden%`)).toEqual([]);
      await expect(fs.stat(`${prod.filesPath}-forbidden`)).rejects.toThrow(/ENOENT/);
    } finally {
      await db.environment.update({ where: { id: prod.id }, data: { databaseUrlEncrypted: original.databaseUrlEncrypted } });
    }
  });

  it('an idempotency key stored before newEnvironment existed still replays its restore', async () => {
    const { db } = app.runtime.deps;
    const raw = Buffer.from(snapshotId, 'base64').toString().split(':')[1];
    const op = await db.operation.create({ data: { organizationId: prod.organizationId, environmentId: prod.id, type: 'RESTORE', snapshotId: raw, status: 'SUCCEEDED' } });
    const log = await db.restoreLog.create({ data: { organizationId: prod.organizationId, snapshotId: raw, sourceEnvironmentId: prod.id, targetEnvironmentId: prod.id, operationId: op.id, includes: ['DB', 'FILES'], status: 'SUCCEEDED' } });
    // The hash as the release before newEnvironment computed it for { snapshotId, idempotencyKey }.
    const requestHash = inputHash({ snapshotId: raw, targetEnvironmentId: prod.id, includes: ['DB', 'FILES'], createSafetySnapshot: true, strategy: 'SWAP' });
    await db.idempotencyKey.create({ data: { organizationId: prod.organizationId, key: 'before-upgrade', mutation: 'restoreSnapshot', requestHash, operationId: op.id, expiresAt: new Date(Date.now() + 3_600_000) } });
    const res = await app.gql(RestoreSnapshotDocument, { input: { snapshotId, idempotencyKey: 'before-upgrade' } }, { key });
    expect(res.data?.restoreSnapshot).toMatchObject({ __typename: 'RestorePayload', restoreLog: { id: gid('RestoreLog', log.id) } });
  });

  it('a schedule of an environment whose restore failed: the run is refused with an alert, and the plan goes on', async () => {
    const { db } = app.runtime.deps;
    const failed = await makeLiveEnvironment(app, { organizationId: prod.organizationId, projectId: prod.projectId, name: 'failed-provisioning', rows: 10 });
    await db.environment.update({ where: { id: failed.id }, data: { status: 'FAILED' } });
    const planned = new Date(Date.now() - 60_000);
    const schedule = await db.schedule.create({ data: { environmentId: failed.id, dbCron: '0 3 * * *', dbRetention: {}, fullRetention: {}, nextDbRunAt: planned } });
    await fireSchedule(app.runtime.deps, schedule.id, 'DB');
    const alert = await db.alert.findFirstOrThrow({ where: { environmentId: failed.id, type: 'SNAPSHOT_FAILED' } });
    expect(alert.message).toMatch(/could not start: This environment is failed/);
    expect((await db.schedule.findUniqueOrThrow({ where: { id: schedule.id } })).lastDbRunAt).toEqual(planned);
    expect(await db.snapshot.count({ where: { environmentId: failed.id } })).toBe(0);
  });

  it('newEnvironment with targetEnvironmentId is a ValidationError', async () => {
    const res = await app.gql(RestoreSnapshotDocument, { input: { snapshotId, targetEnvironmentId: gid('Environment', prod.id), newEnvironment: { name: 'both' } } }, { key });
    expect(res.data?.restoreSnapshot).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'newEnvironment'] }] });
  });
});
