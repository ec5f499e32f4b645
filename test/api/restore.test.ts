import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { CancelOperationDocument, EnvironmentSnapshotsDocument, RestoreLogDocument, RestoreSnapshotDocument, SnapshotDocument } from '../generated/graphql.ts';
import { until } from '../harness/process.ts';
import type { TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeOrganization } from '../harness/factories.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, repositoryPassword, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { follow, restic, startRestore, takeSnapshot, startSnapshotSuite } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let orgId: string;
let prod: LiveEnvironment;

beforeAll(async () => {
  ({ app, key, orgId, env: prod } = await startSnapshotSuite({ envName: 'production' }));
});
afterAll(() => app?.stop());

/** Changes the environment after a snapshot: rows, a sequence, a new file, a changed file, a deleted file. */
async function mutate(env: LiveEnvironment) {
  await sql(env.databaseUrl, "UPDATE customers SET name = 'changed' WHERE id <= 10; DELETE FROM orders WHERE id > 900; INSERT INTO customers (name, email) VALUES ('new', 'new-' || gen_random_uuid() || '@example.com')");
  await fs.writeFile(path.join(env.filesPath, 'README.md'), 'overwritten\n');
  await fs.writeFile(path.join(env.filesPath, 'new-file.txt'), 'added after the snapshot\n');
  await fs.rm(path.join(env.filesPath, 'uploads', 'script.sh'));
}

describe('restoreSnapshot', () => {
  it('SWAP: after success the database and files equal the snapshot; a safety snapshot is linked; the old database is kept', async () => {
    const dbBefore = await databaseDigest(prod.databaseUrl);
    const filesBefore = await filesDigest(prod.filesPath);
    const { snapshotId } = await takeSnapshot(app, key, prod.id, { label: 'good state' });
    await mutate(prod);
    const mutated = await databaseDigest(prod.databaseUrl);
    expect(mutated).not.toEqual(dbBefore);

    const { operationId, restoreLogId } = await startRestore(app, key, { snapshotId });
    const states = await follow(app, key, operationId);
    expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
    expect(states.map((s) => s.phase)).toEqual(expect.arrayContaining(['swapping']));

    expect(await databaseDigest(prod.databaseUrl)).toEqual(dbBefore);
    expect(await filesDigest(prod.filesPath)).toEqual(filesBefore);

    const log = (await app.gql(RestoreLogDocument, { id: restoreLogId }, { key })).data?.node as Record<string, unknown> & { safetySnapshot: { kind: string; status: string }; previousDatabaseName: string };
    expect(log).toMatchObject({ status: 'SUCCEEDED', strategy: 'SWAP', includes: ['DB', 'FILES'], safetySnapshot: { kind: 'SAFETY', status: 'READY' } });
    expect(log.previousDatabaseName).toMatch(/__bp_pre_/);
    // The database kept aside is the mutated one.
    const kept = new URL(prod.databaseUrl);
    kept.pathname = `/${log.previousDatabaseName}`;
    expect(await databaseDigest(kept.toString())).toEqual(mutated);

    const password = await repositoryPassword(app, prod.destinationId);
    await restic(prod.repositoryPath, password, 'check');
  });

  it('a restore that fails midway leaves the target exactly as it was', async () => {
    const { snapshotId } = await takeSnapshot(app, key, prod.id);
    await mutate(prod);
    await sql(prod.databaseUrl, "INSERT INTO customers (name, email) VALUES ('only-after', 'after@example.com')");
    const dbBefore = await databaseDigest(prod.databaseUrl);
    const filesBefore = await filesDigest(prod.filesPath);
    // Break the repository under the restore: every data pack loses a byte in the middle.
    const dataDir = path.join(prod.repositoryPath, 'data');
    for (const sub of await fs.readdir(dataDir)) {
      for (const f of await fs.readdir(path.join(dataDir, sub))) {
        const p = path.join(dataDir, sub, f);
        const buf = await fs.readFile(p);
        buf[Math.floor(buf.length / 2)] ^= 0xff;
        await fs.writeFile(p, buf);
      }
    }
    const { operationId, restoreLogId } = await startRestore(app, key, { snapshotId, createSafetySnapshot: false });
    const states = await follow(app, key, operationId);
    expect(states.at(-1)).toMatchObject({ status: 'FAILED' });
    expect(states.at(-1)?.error).toBeTruthy();
    expect(await databaseDigest(prod.databaseUrl)).toEqual(dbBefore);
    expect(await filesDigest(prod.filesPath)).toEqual(filesBefore);
    const siblings = await fs.readdir(path.dirname(prod.filesPath));
    expect(siblings.filter((n) => n.includes('bp_restore'))).toEqual([]);
    const dbs = await sql(prod.databaseUrl, "SELECT datname FROM pg_database WHERE datname LIKE '%bp_restore%'");
    expect(dbs.rows).toEqual([]);
    const log = (await app.gql(RestoreLogDocument, { id: restoreLogId }, { key })).data?.node;
    expect(log).toMatchObject({ status: 'FAILED' });
    const alerts = await app.runtime.db.alert.findMany({ where: { environmentId: prod.id, type: 'RESTORE_FAILED' } });
    expect(alerts).toHaveLength(1);
  });
});

describe('one side of a restore failing', () => {
  // Files and database are prepared at the same time: when the files side cannot even start
  // (its target lies under a regular file), the database side is stopped and dropped again.
  it('stops and drops the other side; the target database is as before', async () => {
    const env = await makeLiveEnvironment(app, { organizationId: orgId, name: 'half-fails' });
    const { snapshotId } = await takeSnapshot(app, key, env.id);
    await sql(env.databaseUrl, "INSERT INTO customers (name, email) VALUES ('after', 'after-half@example.com')");
    const dbBefore = await databaseDigest(env.databaseUrl);
    const blocker = path.join(path.dirname(env.filesPath), 'not-a-directory');
    await fs.writeFile(blocker, 'a file where a directory is expected\n');
    await app.runtime.db.environment.update({ where: { id: env.id }, data: { filesPath: path.join(blocker, 'files') } });

    const { operationId } = await startRestore(app, key, { snapshotId, createSafetySnapshot: false });
    const states = await follow(app, key, operationId);
    expect(states.at(-1)).toMatchObject({ status: 'FAILED' });
    // The cause is reported, not the abort it caused on the database side.
    expect(states.at(-1)?.error ?? '').toMatch(/not-a-directory|ENOTDIR|not a directory/i);
    expect(await databaseDigest(env.databaseUrl)).toEqual(dbBefore);
    const dbs = await sql(env.databaseUrl, "SELECT datname FROM pg_database WHERE datname LIKE '%bp_restore%'");
    expect(dbs.rows).toEqual([]);
  });
});

describe('cancelling a restore', () => {
  it('while the safety snapshot runs, and while pg_restore runs: CANCELLED, the target exactly as before', async () => {
    // Its own environment: the failure test above corrupts the shared one's repository.
    const prod = await makeLiveEnvironment(app, { organizationId: orgId, name: 'cancel-me' });
    const { snapshotId } = await takeSnapshot(app, key, prod.id);
    await mutate(prod);
    const dbBefore = await databaseDigest(prod.databaseUrl);
    const filesBefore = await filesDigest(prod.filesPath);
    for (const [input, phase] of [
      [{ snapshotId }, 'safety-snapshot'],
      [{ snapshotId, createSafetySnapshot: false, strategy: 'IN_PLACE' }, 'restoring'],
    ] as const) {
      // A held lock makes pg_dump (safety snapshot) or pg_restore --clean (IN_PLACE) wait.
      const lock = new pg.Client({ connectionString: prod.databaseUrl });
      await lock.connect();
      await lock.query('BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE');
      let released = false;
      const release = async () => {
        if (released) return;
        released = true;
        await lock.query('ROLLBACK');
        await lock.end();
      };
      try {
        const r = await startRestore(app, key, input);
        await follow(app, key, r.operationId, (st) => st.phase === phase);
        await until(() => busyTools(prod.databaseUrl), (n) => n > 0, `${phase} to reach the database`);
        const res = await app.gql(CancelOperationDocument, { input: { id: r.operationId } }, { key });
        expect(res.data?.cancelOperation.__typename).toBe('OperationPayload');
        // A backend waiting for a lock notices its client is gone only once it gets the lock.
        await release();
        expect((await follow(app, key, r.operationId)).at(-1)?.status, phase).toBe('CANCELLED');
        const log = (await app.gql(RestoreLogDocument, { id: r.restoreLogId }, { key })).data?.node;
        expect(log).toMatchObject({ status: 'CANCELLED' });
      } finally {
        await release();
      }
      expect(await busyTools(prod.databaseUrl)).toBe(0);
      expect(await databaseDigest(prod.databaseUrl)).toEqual(dbBefore);
      expect(await filesDigest(prod.filesPath)).toEqual(filesBefore);
    }
  });
});

/** Connections our pg_dump / pg_restore hold to the database. */
async function busyTools(url: string): Promise<number> {
  const r = await sql(url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'backplane-%' AND datname = current_database()");
  return r.rows[0].n;
}

describe('restore into another environment', () => {
  it('restores production into staging; lists show the restore on both sides', async () => {
    const prodEnv = await makeLiveEnvironment(app, { organizationId: orgId, name: 'prod-2', rows: 300 });
    const staging = await makeLiveEnvironment(app, { organizationId: orgId, projectId: prodEnv.projectId, name: 'staging', rows: 20, destinationId: prodEnv.destinationId });
    const { snapshotId } = await takeSnapshot(app, key, prodEnv.id);
    const { operationId } = await startRestore(app, key, { snapshotId, targetEnvironmentId: gid('Environment', staging.id), strategy: 'IN_PLACE' });
    const states = await follow(app, key, operationId);
    expect(states.at(-1)).toMatchObject({ status: 'SUCCEEDED' });
    expect(await databaseDigest(staging.databaseUrl)).toEqual(await databaseDigest(prodEnv.databaseUrl));
    expect(await filesDigest(staging.filesPath)).toEqual(await filesDigest(prodEnv.filesPath));

    const stagingView = await app.gql(EnvironmentSnapshotsDocument, { id: gid('Environment', staging.id) }, { key });
    expect(stagingView.data?.environment?.restoreLogs.edges[0].node).toMatchObject({ status: 'SUCCEEDED', sourceEnvironment: { id: gid('Environment', prodEnv.id) } });
    const prodView = await app.gql(EnvironmentSnapshotsDocument, { id: gid('Environment', prodEnv.id) }, { key });
    expect(prodView.data?.environment?.restoreLogs.totalCount).toBe(1);
  });

  // A restore log belongs to its target's project (as node() has it): a key limited to the
  // source's project sees no log of a restore into another project, from either side.
  it('lists a restore across projects only to keys that may see its target', async () => {
    const source = await makeLiveEnvironment(app, { organizationId: orgId, name: 'prod-x', rows: 30 });
    const target = await makeLiveEnvironment(app, { organizationId: orgId, name: 'staging-x', rows: 5, destinationId: source.destinationId });
    expect(target.projectId).not.toBe(source.projectId);
    const { snapshotId } = await takeSnapshot(app, key, source.id);
    const { operationId, restoreLogId } = await startRestore(app, key, { snapshotId, targetEnvironmentId: gid('Environment', target.id), strategy: 'IN_PLACE', createSafetySnapshot: false });
    expect((await follow(app, key, operationId)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });

    const sourceOnly = (await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:read'], projectIds: [source.projectId] })).secret;
    const targetOnly = (await makeApiKey(app.runtime.db, orgId, { scopes: ['backups:read'], projectIds: [target.projectId] })).secret;
    const seen = async (k: string) => {
      const env = (await app.gql(EnvironmentSnapshotsDocument, { id: gid('Environment', source.id) }, { key: k })).data?.environment;
      const snap = (await app.gql(SnapshotDocument, { id: snapshotId }, { key: k })).data?.snapshot;
      const node = (await app.gql(RestoreLogDocument, { id: restoreLogId }, { key: k })).data?.node;
      return { envLogs: env?.restoreLogs.totalCount, envEdges: env?.restoreLogs.edges.length, snapLogs: snap?.restoreLogs.totalCount, snapEdges: snap?.restoreLogs.edges.length, node: node ? 'seen' : null };
    };
    expect(await seen(key)).toEqual({ envLogs: 1, envEdges: 1, snapLogs: 1, snapEdges: 1, node: 'seen' });
    expect(await seen(sourceOnly)).toEqual({ envLogs: 0, envEdges: 0, snapLogs: 0, snapEdges: 0, node: null });
    // The target's key cannot read the source environment or its snapshot at all.
    expect(await seen(targetOnly)).toMatchObject({ envLogs: undefined, snapLogs: undefined, node: 'seen' });
    const targetView = (await app.gql(EnvironmentSnapshotsDocument, { id: gid('Environment', target.id) }, { key: targetOnly })).data?.environment;
    expect(targetView?.restoreLogs.totalCount).toBe(1);
  });

  it('refuses an environment of another organization, and a second restore while one is queued', async () => {
    const other = await makeOrganization(app.runtime.db);
    const foreign = await makeLiveEnvironment(app, { organizationId: other.id, rows: 5 });
    const { snapshotId } = await takeSnapshot(app, key, prod.id, { includes: ['DB'] });
    const before = await app.runtime.db.restoreLog.count();
    const res = await app.gql(RestoreSnapshotDocument, { input: { snapshotId, targetEnvironmentId: gid('Environment', foreign.id) } }, { key });
    expect(res.data?.restoreSnapshot).toMatchObject({ __typename: 'NotFoundError', code: 'ENVIRONMENT_NOT_FOUND' });
    expect(await app.runtime.db.restoreLog.count()).toBe(before);

    const first = await startRestore(app, key, { snapshotId, createSafetySnapshot: false });
    const second = await app.gql(RestoreSnapshotDocument, { input: { snapshotId, createSafetySnapshot: false } }, { key });
    expect(second.data?.restoreSnapshot).toMatchObject({ __typename: 'ConflictError', code: 'RESTORE_RUNNING' });
    expect(await app.runtime.db.restoreLog.count()).toBe(before + 1);
    expect((await follow(app, key, first.operationId)).at(-1)?.status).toBe('SUCCEEDED');
  });
});
