/**
 * A restore to a point in time cancelled while its recovery instance starts (pg_ctl start has
 * launched the postmaster, which replays towards a consistent state), under a home deep enough
 * that the instance's socket folder is a short one of /tmp: the operation ends CANCELLED and
 * nothing is left: no postgres process, no work folder, no socket folder, no database, and the
 * target as it was. (test/sources/pitr-instance.test.ts holds pg_ctl start waiting on purpose.)
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PITR_WORK_PREFIX } from '../../src/sources/pitr-instance.ts';
import { CancelOperationDocument, RestoreToPointInTimeDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { sql } from '../harness/live-environment.ts';
import { archiveStampedRows, startPitrRestoreSuite, type PitrCluster, type PitrRestoreSuite } from '../harness/pitr-fixture.ts';
import { alive, processesNaming as running, until } from '../harness/process.ts';
import { follow } from '../harness/snapshot-helpers.ts';
import { openRepository } from '../../src/services/repositories.ts';

let suite: PitrRestoreSuite;
let app: TestApp;
let key: string;
let cluster: PitrCluster;
let tmp: string;
let home: string;
let envId: string;
let target: { t: Date; expected: number };

const shop = () => cluster.url('shop');

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-cancel-'));
  // Too deep for a socket under the work folder (Linux binds at most 107 bytes).
  home = path.join(tmp, 'a-home-folder-as-deep-as-a-team-might-keep-it'.repeat(2));
  await fs.mkdir(home, { recursive: true });
  suite = await startPitrRestoreSuite({ home, repository: path.join(tmp, 'repository') });
  ({ app, key, cluster, envId } = suite);
  const opened = await openRepository(app.runtime.deps, suite.destinationId);
  try {
    target = (await archiveStampedRows(cluster, opened.repo, shop())).target;
  } finally {
    await opened.close();
  }
}, 300_000);

afterAll(async () => {
  await suite?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

const workFolders = async () => (await fs.readdir(home)).filter((n) => n.startsWith(PITR_WORK_PREFIX));

describe('restoreToPointInTime cancelled while the recovery instance starts', () => {
  it('ends CANCELLED; the instance is stopped, and its work folder and /tmp socket folder are gone', { timeout: 240_000 }, async () => {
    const before = (await sql(shop(), 'SELECT count(*)::int AS n FROM pitr_rows')).rows[0].n as number;
    const res = await app.gql(RestoreToPointInTimeDocument, { input: { environmentId: gid('Environment', envId), pointInTime: target.t.toISOString(), includes: ['DB'], createSafetySnapshot: false } as never }, { key });
    const r = res.data?.restoreToPointInTime;
    if (r?.__typename !== 'RestorePayload') throw new Error(JSON.stringify(res));
    const operationId = r.operation.id;
    await follow(app, key, operationId, (s) => s.phase === 'replaying-wal');
    // The postmaster pg_ctl start launched has written its pid file: the instance is starting.
    const [folder] = await until(workFolders, (l) => l.length === 1, 'the work folder');
    const root = path.join(home, folder);
    const socket = path.join('/tmp', `backplane-${folder}`);
    const pidFile = path.join(root, 'data', 'postmaster.pid');
    const pid = await until(async () => Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0]), (p) => p > 0, 'the postmaster to start', 120_000);
    expect((await fs.stat(socket)).isDirectory()).toBe(true);
    const cancel = await app.gql(CancelOperationDocument, { input: { id: operationId } }, { key });
    expect(JSON.stringify(cancel)).not.toContain('"errors"');
    const states = await follow(app, key, operationId);
    expect(states.at(-1)?.status).toBe('CANCELLED');
    // All gone by the time the operation says it ended.
    expect(await alive(pid)).toBe(false);
    expect(await running(root)).toEqual([]);
    expect(await workFolders()).toEqual([]);
    expect(await fs.stat(socket).then(() => true, () => false)).toBe(false);
    expect((await fs.readdir('/tmp')).filter((n) => n === `backplane-${folder}`)).toEqual([]);
    expect((await sql(cluster.url(), "SELECT datname FROM pg_database WHERE datname LIKE '%bp_restore%'")).rows).toEqual([]);
    expect((await sql(shop(), 'SELECT count(*)::int AS n FROM pitr_rows')).rows[0].n).toBe(before);
  });
});
