/**
 * Deleting a snapshot while a restore reads it. The restore runs on its target's queue and the
 * delete on the snapshot's environment's, so a restore into another environment and the delete
 * run at the same time. The delete's forget and prune wait for the restore's shared lock on the
 * repository, rather than taking the snapshot and its packs away while pg_restore is still
 * reading the dump. The restore is held halfway by a lock on a table of its target: pg_restore
 * --clean waits to drop it, with the dump not yet read.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteSnapshotDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid, rawId } from '../harness/factories.ts';
import { databaseDigest, makeLiveEnvironment, repositoryPassword, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { until } from '../harness/process.ts';
import { follow, restic, startRestore, startSnapshotSuite, takeSnapshot } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let orgId: string;
let source: LiveEnvironment;

beforeAll(async () => {
  ({ app, key, orgId, env: source } = await startSnapshotSuite());
});
afterAll(() => app?.stop());

/** md5 of the big table, which makes the dump many blobs long. */
const payloadDigest = async (url: string) => (await sql(url, "SELECT md5(string_agg(data, '' ORDER BY id)) AS h FROM payload")).rows[0].h as string;

describe('deleting a snapshot that a restore is reading', () => {
  it('waits for the restore, which gets every byte of the snapshot, then deletes it', async () => {
    // About 16 MB of dump: far more than the pipe into pg_restore and the reader's buffers hold.
    await sql(source.databaseUrl, "CREATE TABLE payload (id int PRIMARY KEY, data text); INSERT INTO payload SELECT g, string_agg(md5(g::text || ':' || h::text), '') FROM generate_series(1, 500) g, generate_series(1, 1000) h GROUP BY g");
    const expected = { ...(await databaseDigest(source.databaseUrl)), payload: await payloadDigest(source.databaseUrl) };
    const { snapshotId } = await takeSnapshot(app, key, source.id, { includes: ['DB'] });
    const repoSnapshotId = (await app.runtime.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: rawId(snapshotId) } })).repoSnapshotId!;
    const password = await repositoryPassword(app, source.destinationId);

    const target = await makeLiveEnvironment(app, { organizationId: orgId, name: 'target' });
    const holder = new pg.Client({ connectionString: target.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN; LOCK TABLE orders IN ACCESS SHARE MODE');
      const restore = await startRestore(app, key, { snapshotId, targetEnvironmentId: gid('Environment', target.id), includes: ['DB'], strategy: 'IN_PLACE', createSafetySnapshot: false });
      await until(
        async () => (await sql(target.databaseUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")).rows[0].n as number,
        (n) => n > 0,
        'pg_restore waiting for the table',
        60_000,
      );

      const del = await app.gql(DeleteSnapshotDocument, { input: { id: snapshotId } }, { key });
      if (del.data?.deleteSnapshot.__typename !== 'SnapshotOperationPayload') throw new Error(JSON.stringify(del));
      const deleteOp = del.data.deleteSnapshot.operation.id;
      const deleteOpId = rawId(deleteOp);
      // Either the delete ends while the restore is held (the harm), or it says it waits.
      const waiting = await until(
        () => app.runtime.db.operation.findUniqueOrThrow({ where: { id: deleteOpId } }),
        (op) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(op.status) || /Waiting for the repository lock/.test(op.message ?? ''),
        'the delete to end or wait',
        60_000,
      );
      // --no-lock: the waiting delete writes and removes its exclusive lock file at every try.
      const listedMeanwhile = await restic(source.repositoryPath, password, 'snapshots', '--no-lock', '--json');

      await holder.query('ROLLBACK');
      expect((await follow(app, key, restore.operationId)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
      expect({ ...(await databaseDigest(target.databaseUrl)), payload: await payloadDigest(target.databaseUrl) }).toEqual(expected);
      expect(waiting.status).toBe('RUNNING');
      // Still there for restic too, while the restore read it.
      expect(listedMeanwhile).toContain(repoSnapshotId);

      expect((await follow(app, key, deleteOp)).at(-1)).toMatchObject({ status: 'SUCCEEDED' });
      expect((await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: rawId(snapshotId) } })).status).toBe('DELETED');
      expect(await restic(source.repositoryPath, password, 'snapshots', '--json')).not.toContain(repoSnapshotId);
      await restic(source.repositoryPath, password, 'check', '--read-data');
    } finally {
      await holder.end();
    }
  });
});
