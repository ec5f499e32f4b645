/**
 * A restore into a new environment, request and job called directly on real components: the
 * environment is made in the snapshot's project, PROVISIONING until its restore succeeds, with a
 * database of its own beside the source's and a folder beside the source's folder; the source is
 * never touched, and a restore that fails leaves the new environment FAILED.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/services/schedules.ts';
import type { Runtime } from '../../src/app/runtime.ts';
import type { Deps } from '../../src/services/deps.ts';
import { restoreSnapshot, runRestore } from '../../src/services/restores.ts';
import { createSnapshot, runSnapshot } from '../../src/services/snapshots.ts';
import type { Viewer } from '../../src/services/viewer.ts';
import { makeOrganization } from '../harness/factories.ts';
import { makeLiveEnvironment, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { envState, startServiceRuntime, viewerOf, type EnvState } from '../harness/service-runtime.ts';

let rt: Runtime;
let deps: Deps;
let viewer: Viewer;
let prod: LiveEnvironment;
let snapshotId: string;
let atSnapshot: State;
let prodNow: State;
const NOW = new Date();

type State = EnvState;
const state = envState;
const sourceDb = () => new URL(prod.databaseUrl).pathname.slice(1);
const onServer = (name: string) => Object.assign(new URL(prod.databaseUrl), { pathname: `/${name}` }).toString();

beforeAll(async () => {
  rt = await startServiceRuntime('restore_new_env');
  deps = { ...rt.deps, clock: { now: () => NOW } };
  const org = await makeOrganization(rt.db);
  viewer = viewerOf(org.id);
  prod = await makeLiveEnvironment({ runtime: rt }, { organizationId: org.id, name: 'production', rows: 40 });
  const s = await createSnapshot(deps, viewer, { environmentId: prod.id });
  await runSnapshot(deps, s.operationId);
  snapshotId = s.snapshotId;
  atSnapshot = await state(prod);
  await sql(prod.databaseUrl, "UPDATE customers SET name = 'after the snapshot' WHERE id <= 3");
  await fs.writeFile(path.join(prod.filesPath, 'later.txt'), 'after the snapshot');
  prodNow = await state(prod);
});
afterAll(() => rt?.close());

describe('restoreSnapshot into a new environment', () => {
  it("makes the environment in the snapshot's project, PROVISIONING, then READY with the snapshot's data; no safety snapshot; the source untouched; a replay answers the same", async () => {
    const input = { snapshotId, newEnvironment: { name: 'QA copy', type: 'STAGING' as const }, createSafetySnapshot: true, idempotencyKey: 'qa-copy' };
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, input);
    const log = await rt.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId }, include: { targetEnvironment: true } });
    const env = log.targetEnvironment;
    expect(env).toMatchObject({ projectId: prod.projectId, organizationId: prod.organizationId, name: 'QA copy', type: 'STAGING', status: 'PROVISIONING', databaseName: `${sourceDb()}_qa_copy`, filesPath: `${prod.filesPath}-qa_copy` });
    expect(env.id).not.toBe(prod.id);
    expect(log).toMatchObject({ sourceEnvironmentId: prod.id, newEnvironment: true, snapshotId });
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } })).toMatchObject({ environmentId: env.id, input: { createSafetySnapshot: false, newEnvironment: true } });
    // The same key and input again, before the job ran: the same restore, not a taken name.
    expect(await restoreSnapshot(deps, viewer, input)).toEqual({ operationId, restoreLogId });
    // The same key for another new environment (its name or its type) is another request: refused, nothing made.
    const environments = await rt.db.environment.count();
    await expect(restoreSnapshot(deps, viewer, { ...input, newEnvironment: { name: 'QA copy 2', type: 'STAGING' } })).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    await expect(restoreSnapshot(deps, viewer, { ...input, newEnvironment: { name: 'QA copy', type: 'DEVELOPMENT' } })).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    expect(await rt.db.environment.count()).toBe(environments);

    await runRestore(deps, operationId);
    expect(await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } })).toMatchObject({ status: 'SUCCEEDED', error: null });
    expect(await rt.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId } })).toMatchObject({ status: 'SUCCEEDED', safetySnapshotId: null });
    expect((await rt.db.environment.findUniqueOrThrow({ where: { id: env.id } })).status).toBe('READY');
    expect(await state({ databaseUrl: onServer(env.databaseName), filesPath: env.filesPath! })).toEqual(atSnapshot);
    expect(await state(prod)).toEqual(prodNow);
    expect(await rt.db.snapshot.count({ where: { kind: 'SAFETY' } })).toBe(0);
    expect(await restoreSnapshot(deps, viewer, input)).toEqual({ operationId, restoreLogId });
  });

  it('a restore into a new environment that fails leaves that environment FAILED and the source as it is', async () => {
    // A catalog snapshot that says it holds the database, over a repository snapshot without one.
    const filesOnly = await createSnapshot(deps, viewer, { environmentId: prod.id, includes: ['FILES'] });
    await runSnapshot(deps, filesOnly.operationId);
    const copy = await rt.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: filesOnly.snapshotId } });
    const liar = await rt.db.snapshot.create({
      data: { organizationId: prod.organizationId, projectId: prod.projectId, environmentId: prod.id, kind: 'MANUAL', includes: ['DB', 'FILES'], status: 'READY', copies: { create: [{ destinationId: copy.destinationId, status: 'READY', repoSnapshotId: copy.repoSnapshotId }] } },
    });
    const before = await state(prod);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId: liar.id, newEnvironment: { name: 'broken copy' } });
    await runRestore(deps, operationId);
    const log = await rt.db.restoreLog.findUniqueOrThrow({ where: { id: restoreLogId }, include: { targetEnvironment: true } });
    expect(log).toMatchObject({ status: 'FAILED', targetEnvironment: { name: 'broken copy', type: 'DEVELOPMENT', status: 'FAILED' } });
    expect((await rt.db.operation.findUniqueOrThrow({ where: { id: operationId } })).status).toBe('FAILED');
    expect(await state(prod)).toEqual(before);
    // Other environments keep their status.
    expect((await rt.db.environment.findUniqueOrThrow({ where: { id: prod.id } })).status).toBe('READY');
  });

  it('newEnvironment with targetEnvironmentId, or a target that is not READY, is refused and records nothing', async () => {
    const count = async () => ({ environments: await rt.db.environment.count(), operations: await rt.db.operation.count(), logs: await rt.db.restoreLog.count() });
    const before = await count();
    await expect(restoreSnapshot(deps, viewer, { snapshotId, targetEnvironmentId: prod.id, newEnvironment: { name: 'both' } })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', fields: [{ path: ['input', 'newEnvironment'] }] });
    await rt.db.environment.update({ where: { id: prod.id }, data: { status: 'FAILED' } });
    try {
      await expect(restoreSnapshot(deps, viewer, { snapshotId, createSafetySnapshot: false })).rejects.toMatchObject({ code: 'ENVIRONMENT_NOT_READY' });
      expect(await count()).toEqual(before);
      // Its snapshot still makes a new environment: nothing of the failed one is touched.
      const made = await restoreSnapshot(deps, viewer, { snapshotId, newEnvironment: { name: 'from failed' }, includes: ['DB'] });
      const log = await rt.db.restoreLog.findUniqueOrThrow({ where: { id: made.restoreLogId }, include: { targetEnvironment: true } });
      expect(log.targetEnvironment).toMatchObject({ name: 'from failed', status: 'PROVISIONING', filesPath: null });
      await rt.db.operation.update({ where: { id: made.operationId }, data: { status: 'CANCELLED' } });
    } finally {
      await rt.db.environment.update({ where: { id: prod.id }, data: { status: 'READY' } });
    }
  });
});
