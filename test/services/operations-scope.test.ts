/**
 * What failing or cancelling one operation may touch: only its own snapshot, copies and restore
 * log, and for a restore whose worker died only its own target's leftovers, named in its alert.
 * Each case has a decoy of the same kind beside it, so a filter that widened would be seen.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/services/schedules.ts';
import type { Runtime } from '../../src/app/runtime.ts';
import type { Deps } from '../../src/services/deps.ts';
import { enqueueJob, operationJobKey } from '../../src/services/jobs.ts';
import { cancelOperation, recoverStaleOperations } from '../../src/services/operations.ts';
import { restoreIdOf } from '../../src/services/restore-leftovers.ts';
import { createSecretBox, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { startServiceRuntime, viewerOf } from '../harness/service-runtime.ts';

let rt: Runtime;
let deps: Deps;
const NOW = new Date('2026-06-15T12:00:00Z');
const old = new Date(NOW.getTime() - 3_600_000);
const secrets = createSecretBox(Buffer.alloc(32, 6));

beforeAll(async () => {
  rt = await startServiceRuntime('operations_scope');
  deps = { ...rt.deps, clock: { now: () => NOW } };
});
afterAll(() => rt?.close());

async function world() {
  const org = await makeOrganization(rt.db);
  const project = await makeProject(rt.db, org.id);
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-scope-'));
  const [source, target, decoyTarget] = [
    await makeEnvironment(rt.db, secrets, project, { filesPath: path.join(root, 'source') }),
    await makeEnvironment(rt.db, secrets, project, { filesPath: path.join(root, 'target') }),
    await makeEnvironment(rt.db, secrets, project, { filesPath: path.join(root, 'decoy') }),
  ];
  const destination = await rt.db.destination.create({ data: { organizationId: org.id, name: `d-${source.id}`, provider: 'LOCAL', config: { path: '/nonexistent' } } });
  const snap = async () => {
    const s = await rt.db.snapshot.create({ data: { organizationId: org.id, projectId: project.id, environmentId: source.id, kind: 'MANUAL', includes: ['FILES'], status: 'CREATING' } });
    await rt.db.snapshotCopy.create({ data: { snapshotId: s.id, destinationId: destination.id, status: 'UPLOADING', repoSnapshotId: `r-${s.id}` } });
    return s;
  };
  return { org, project, source, target, decoyTarget, snap, root };
}

async function restoreOp(w: Awaited<ReturnType<typeof world>>, target: { id: string }, snapshotId: string, status: 'QUEUED' | 'RUNNING') {
  const op = await rt.db.operation.create({ data: { organizationId: w.org.id, environmentId: target.id, type: 'RESTORE', snapshotId, status, heartbeatAt: status === 'RUNNING' ? old : null, phase: 'restoring' } });
  await enqueueJob(rt.db, 'snapshot_restore', { operationId: op.id }, { queueName: target.id, jobKey: operationJobKey(op.id), maxAttempts: 1 });
  const log = await rt.db.restoreLog.create({ data: { organizationId: w.org.id, snapshotId, sourceEnvironmentId: w.source.id, targetEnvironmentId: target.id, operationId: op.id, includes: ['FILES'], status: status === 'RUNNING' ? 'RUNNING' : 'QUEUED' } });
  return { op, log };
}

describe('cancelling one operation touches only its own rows', () => {
  it("a queued snapshot's cancel fails its snapshot and copies, not another snapshot's", async () => {
    const w = await world();
    const [mine, decoy] = [await w.snap(), await w.snap()];
    const op = await rt.db.operation.create({ data: { organizationId: w.org.id, environmentId: w.source.id, type: 'SNAPSHOT', snapshotId: mine.id } });
    await cancelOperation(deps, viewerOf(w.org.id), op.id);
    expect((await rt.db.snapshot.findUniqueOrThrow({ where: { id: mine.id } })).status).toBe('FAILED');
    expect(await rt.db.snapshot.findUniqueOrThrow({ where: { id: decoy.id }, include: { copies: true } })).toMatchObject({ status: 'CREATING', error: null, copies: [{ status: 'UPLOADING', repoSnapshotId: `r-${decoy.id}`, error: null }] });
  });

  it("a queued restore's cancel fails its log, not another restore's", async () => {
    const w = await world();
    const s = await w.snap();
    const decoy = await restoreOp(w, w.decoyTarget, s.id, 'QUEUED');
    const mine = await restoreOp(w, w.target, s.id, 'QUEUED');
    await cancelOperation(deps, viewerOf(w.org.id), mine.op.id);
    expect((await rt.db.restoreLog.findUniqueOrThrow({ where: { id: mine.log.id } })).status).toBe('FAILED');
    expect(await rt.db.restoreLog.findUniqueOrThrow({ where: { id: decoy.log.id } })).toMatchObject({ status: 'QUEUED', error: null });
  });
});

describe('a restore whose worker died', () => {
  it("clears its own target's staging folder, fails its own log, and alerts on its own target; another restore is untouched", async () => {
    const w = await world();
    const s = await w.snap();
    // Another restore, recorded first and still running with a live worker, of another target.
    const decoy = await restoreOp(w, w.decoyTarget, s.id, 'RUNNING');
    await rt.db.operation.update({ where: { id: decoy.op.id }, data: { heartbeatAt: NOW } });
    const mine = await restoreOp(w, w.target, s.id, 'RUNNING');
    await rt.db.$queryRawUnsafe('UPDATE graphile_worker._private_jobs SET attempts = 1 WHERE key = $1', operationJobKey(mine.op.id));
    for (const e of [w.target, w.decoyTarget]) await fs.mkdir(e.filesPath!, { recursive: true });
    const staging = `${w.target.filesPath}.bp_restore_${restoreIdOf(mine.log.id)}`;
    const decoyStaging = `${w.decoyTarget.filesPath}.bp_restore_${restoreIdOf(decoy.log.id)}`;
    for (const d of [staging, decoyStaging]) {
      await fs.mkdir(d);
      await fs.writeFile(path.join(d, 'half.txt'), 'half restored');
    }

    expect((await recoverStaleOperations(deps, 60_000)).failed).toEqual([mine.op.id]);
    await expect(fs.access(staging)).rejects.toThrow();
    await expect(fs.access(decoyStaging)).resolves.toBeUndefined();
    expect((await rt.db.restoreLog.findUniqueOrThrow({ where: { id: mine.log.id } })).status).toBe('FAILED');
    expect(await rt.db.restoreLog.findUniqueOrThrow({ where: { id: decoy.log.id } })).toMatchObject({ status: 'RUNNING', error: null });
    expect((await rt.db.operation.findUniqueOrThrow({ where: { id: decoy.op.id } })).status).toBe('RUNNING');
    const alerts = await rt.db.alert.findMany({ where: { organizationId: w.org.id } });
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ environmentId: w.target.id, operationId: mine.op.id, type: 'RESTORE_FAILED' });
    expect(alerts[0].message).toBe(
      `Restore into ${w.target.name} failed: The worker running this stopped responding while restoring the database (pg_restore) and files beside the live ones (phase restoring); removed what it left: staging folder`,
    );
  });
});
