import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RestoreLogDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { follow, startRestore, takeSnapshot, startSnapshotSuite } from '../harness/snapshot-helpers.ts';

/**
 * The safety snapshot is the way back from a restore someone regrets: it must hold the target
 * exactly as it was just before the restore, and a restore whose safety snapshot failed must not
 * touch the target. Each case restores the safety snapshot itself to prove what it holds.
 */

let app: TestApp;
let key: string;
let orgId: string;
let prod: LiveEnvironment;

beforeAll(async () => {
  ({ app, key, orgId, env: prod } = await startSnapshotSuite({ envName: 'production' }));
});
afterAll(() => app?.stop());

async function state(env: LiveEnvironment) {
  return { db: await databaseDigest(env.databaseUrl), files: await filesDigest(env.filesPath) };
}

/** Runs a restore to its end and returns the log as the API shows it. */
async function restoreAndLog(input: Record<string, unknown>) {
  const { operationId, restoreLogId } = await startRestore(app, key, input);
  const states = await follow(app, key, operationId);
  const log = (await app.gql(RestoreLogDocument, { id: restoreLogId }, { key })).data?.node as { status: string; error?: string | null; safetySnapshot: { id: string; kind: string; status: string } | null } | undefined;
  return { last: states.at(-1)!, log: log! };
}

/** Restores the safety snapshot of a restore back into its target, without another safety snapshot. */
async function restoreSafety(safetySnapshotId: string, target: LiveEnvironment) {
  const { last } = await restoreAndLog({ snapshotId: safetySnapshotId, targetEnvironmentId: gid('Environment', target.id), createSafetySnapshot: false });
  expect(last, last.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
}

describe('the safety snapshot of a restore', () => {
  it('into another environment: is of the target, and restores it to exactly its state before the restore', async () => {
    const staging = await makeLiveEnvironment(app, { organizationId: orgId, name: 'staging', rows: 40 });
    await sql(staging.databaseUrl, "UPDATE customers SET name = 'staging only' WHERE id <= 5");
    await fs.writeFile(path.join(staging.filesPath, 'staging-only.txt'), 'lives in staging\n');
    const stagingBefore = await state(staging);
    expect(stagingBefore).not.toEqual(await state(prod));

    const { snapshotId } = await takeSnapshot(app, key, prod.id);
    const { last, log } = await restoreAndLog({ snapshotId, targetEnvironmentId: gid('Environment', staging.id) });
    expect(last, last.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect(await state(staging)).toEqual(await state(prod));
    expect(log.safetySnapshot).toMatchObject({ kind: 'SAFETY', status: 'READY' });
    const safety = await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: decodeId(log.safetySnapshot!.id) } });
    expect(safety.environmentId).toBe(staging.id);
    expect(safety.includes.sort()).toEqual(['DB', 'FILES']);

    await restoreSafety(log.safetySnapshot!.id, staging);
    expect(await state(staging)).toEqual(stagingBefore);
  });

  it('in place: holds the state the restore replaced, not the state it brought', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, name: 'in-place' });
    const { snapshotId } = await takeSnapshot(app, key, env.id);
    const atSnapshot = await state(env);
    await sql(env.databaseUrl, "UPDATE customers SET name = 'changed after' WHERE id <= 10; INSERT INTO customers (name, email) VALUES ('late', 'late@example.com')");
    await fs.writeFile(path.join(env.filesPath, 'README.md'), 'changed after the snapshot\n');
    const beforeRestore = await state(env);
    expect(beforeRestore).not.toEqual(atSnapshot);

    const { last, log } = await restoreAndLog({ snapshotId });
    expect(last, last.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect(await state(env)).toEqual(atSnapshot);
    expect(log.safetySnapshot).toMatchObject({ kind: 'SAFETY', status: 'READY' });

    await restoreSafety(log.safetySnapshot!.id, env);
    expect(await state(env)).toEqual(beforeRestore);
  });

  it('when it fails, the restore fails before anything of the target changed', async () => {
    // The target's only destination cannot hold a repository (its path lies under a regular
    // file), so its safety snapshot fails; the source's repository is fine.
    const staging = await makeLiveEnvironment(app, { organizationId: orgId, name: 'no-safety', rows: 30 });
    const blocker = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'bp-blocked-')), 'a-file');
    await fs.writeFile(blocker, 'a file where a directory is expected\n');
    await app.runtime.db.destination.update({ where: { id: staging.destinationId }, data: { config: { path: path.join(blocker, 'repository') } } });
    const before = await state(staging);
    const databasesBefore = await databases(staging.databaseUrl);

    const { snapshotId } = await takeSnapshot(app, key, prod.id);
    const { last, log } = await restoreAndLog({ snapshotId, targetEnvironmentId: gid('Environment', staging.id) });
    expect(last).toMatchObject({ status: 'FAILED' });
    expect(last.error ?? '').toMatch(/safety snapshot/i);
    expect(log).toMatchObject({ status: 'FAILED' });
    expect(log.safetySnapshot).toBeNull();

    expect(await state(staging)).toEqual(before);
    expect(await databases(staging.databaseUrl)).toEqual(databasesBefore);
    const siblings = await fs.readdir(path.dirname(staging.filesPath));
    expect(siblings.filter((n) => n.includes('bp_'))).toEqual([]);
    const safety = await app.runtime.db.snapshot.findMany({ where: { environmentId: staging.id, kind: 'SAFETY' } });
    expect(safety.map((s) => s.status)).toEqual(['FAILED']);
  });
});

/** Every database of the cluster: a restore leaves no `__bp_restore_` or `__bp_pre_` database behind when it did nothing. */
async function databases(url: string): Promise<string[]> {
  const r = await sql(url, 'SELECT datname FROM pg_database ORDER BY datname');
  return r.rows.map((x: { datname: string }) => x.datname).filter((n: string) => n.includes('__bp_'));
}

function decodeId(globalId: string): string {
  return Buffer.from(globalId, 'base64').toString('utf8').split(':').slice(1).join(':');
}
