/**
 * Recovery instances (openRecoveryInstance), through the API and a worker, from a repository the
 * PITR fixture archived while a workload committed stamped rows: the instance is READY, reachable
 * over TCP with the source's role and password (and not without it), holds exactly the rows
 * committed at or before the time, refuses writes, and nothing is written into the environment's
 * server. Its lifetime: closed → STOPPED, past expiresAt → EXPIRED, its lease lapsed → LOST, a
 * cancel while it recovers → nothing left; each time no process and no folder. Refusals are typed
 * and create nothing.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeGlobalID } from '@pothos/plugin-relay';
import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/engine/api.ts';
import { openRepository } from '../../src/services/repositories.ts';
import { instanceWorkDir, PITR_INSTANCE_PREFIX } from '../../src/sources/pitr-instance.ts';
import {
  CancelOperationDocument,
  CloseRecoveryInstanceDocument,
  ExtendRecoveryInstanceDocument,
  OpenRecoveryInstanceDocument,
  RecoveryInstanceActivityDocument,
  RecoveryInstanceDocument,
  RestoreToPointInTimeDocument,
} from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import { sql } from '../harness/live-environment.ts';
import { archiveStampedRows, startPitrRestoreSuite, type PitrCluster, type PitrRestoreSuite } from '../harness/pitr-fixture.ts';
import { alive, processesNaming as running, until } from '../harness/process.ts';
import { follow } from '../harness/snapshot-helpers.ts';

let suite: PitrRestoreSuite;
let app: TestApp;
let key: string;
let cluster: PitrCluster;
let home: string;
let envId: string;
let orgId: string;
let firstBase: Date;
let target: { t: Date; expected: number };
let totalRows: number;

const shop = () => cluster.url('shop');

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-instance-'));
  suite = await startPitrRestoreSuite({ home, repository: path.join(home, 'repository') });
  ({ app, key, cluster, envId } = suite);
  orgId = (await app.runtime.db.environment.findUniqueOrThrow({ where: { id: envId } })).organizationId;
  await sql(cluster.url(), 'CREATE DATABASE other');
  await sql(cluster.url('other'), "CREATE TABLE t (v text); INSERT INTO t VALUES ('before')");
  const opened = await openRepository(app.runtime.deps, suite.destinationId);
  try {
    ({ firstBase, target } = await archiveStampedRows(cluster, opened.repo, shop()));
    totalRows = (await sql(shop(), 'SELECT count(*)::int AS n FROM pitr_rows')).rows[0].n;
    expect(totalRows).toBeGreaterThan(target.expected);
    // After the time, in another database: the instance holds the whole cluster as it was.
    await sql(cluster.url('other'), "UPDATE t SET v = 'after'");
  } finally {
    await opened.close();
  }
}, 300_000);

afterAll(async () => {
  await suite?.stop();
  if (home) await fs.rm(home, { recursive: true, force: true });
});

async function open(input: Record<string, unknown>) {
  return app.gql(OpenRecoveryInstanceDocument, { input: { environmentId: gid('Environment', envId), ...input } as never }, { key });
}

async function opened(input: Record<string, unknown>) {
  const res = await open(input);
  const r = res.data?.openRecoveryInstance;
  if (r?.__typename !== 'RecoveryInstancePayload') throw new Error(JSON.stringify(res));
  return { operationId: r.operation.id, id: r.recoveryInstance.id, rowId: decodeGlobalID(r.recoveryInstance.id).id };
}

const instance = async (id: string) => {
  const node = (await app.gql(RecoveryInstanceDocument, { id }, { key })).data?.node;
  if (!node || !('status' in node)) throw new Error(`no recovery instance ${id}`);
  return node;
};

/** The postmaster of instance `rowId`, from its folder's pid file (0 if none). */
async function postmasterPid(rowId: string): Promise<number> {
  return Number((await fs.readFile(path.join(instanceWorkDir(home, rowId).data, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
}

const instanceFolders = async () => (await fs.readdir(home)).filter((n) => n.startsWith(PITR_INSTANCE_PREFIX));

/** Opens an instance at the target and waits until it is READY; returns it with its postmaster's pid. */
async function readyInstance(input: Record<string, unknown> = {}) {
  const o = await opened({ pointInTime: target.t.toISOString(), ...input });
  const states = await follow(app, key, o.operationId);
  expect(states.at(-1), states.at(-1)?.error ?? '').toMatchObject({ status: 'SUCCEEDED' });
  const pid = await postmasterPid(o.rowId);
  expect(pid).toBeGreaterThan(0);
  expect(await alive(pid)).toBe(true);
  return { ...o, pid, states };
}

/** Nothing of instance `rowId` runs or stays on disk. */
async function expectGone(rowId: string, pid: number) {
  expect(await alive(pid)).toBe(false);
  const dirs = instanceWorkDir(home, rowId);
  expect(await running(dirs.root)).toEqual([]);
  expect(await fs.stat(dirs.root).then(() => true, () => false)).toBe(false);
  expect(await fs.stat(dirs.socket).then(() => true, () => false)).toBe(false);
}

const databasesOfSource = async () => (await sql(cluster.url(), 'SELECT datname FROM pg_database ORDER BY datname')).rows.map((r) => r.datname as string);

describe('openRecoveryInstance', () => {
  it('READY at the time: over TCP with the source’s role and password it holds exactly the rows committed by then, in every database; writes are refused; the environment’s server is unchanged; closed → STOPPED, nothing left', { timeout: 240_000 }, async () => {
    const databases = await databasesOfSource();
    const ws = app.ws(key);
    const seen: string[] = [];
    let readySeen!: () => void;
    const readyEvent = new Promise<void>((r) => (readySeen = r));
    const unsubscribe = ws.subscribe(
      { query: print(RecoveryInstanceActivityDocument), variables: { environmentId: gid('Environment', envId) } },
      {
        next: (v) => {
          const e = (v.data as { environmentActivity: { kind: string; recoveryInstance: { status: string } | null } }).environmentActivity;
          if (e.kind === 'RECOVERY_INSTANCE' && e.recoveryInstance) {
            seen.push(e.recoveryInstance.status);
            if (e.recoveryInstance.status === 'READY') readySeen();
          }
        },
        error: () => undefined,
        complete: () => undefined,
      },
    );
    const o = await readyInstance({ ttlMinutes: 30, idempotencyKey: 'instance-1' });
    // The same key and input: the same instance.
    expect((await opened({ pointInTime: target.t.toISOString(), ttlMinutes: 30, idempotencyKey: 'instance-1' })).id).toBe(o.id);
    await readyEvent;
    unsubscribe();
    expect(seen).toContain('READY');

    const i = await instance(o.id);
    expect(i).toMatchObject({ status: 'READY', host: '127.0.0.1', ttlMinutes: 30, environment: { id: gid('Environment', envId) } });
    expect(i.connectionUri).toBe(`postgresql://127.0.0.1:${i.port}/`);
    expect(new Date(i.expiresAt!).getTime() - new Date(i.readyAt!).getTime()).toBe(30 * 60_000);
    expect((await app.runtime.db.recoveryInstance.findUniqueOrThrow({ where: { id: o.rowId } })).leaseOwner).not.toBeNull();

    const { user, password } = cluster.server;
    const url = (database: string, pw = password) => `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(pw)}@127.0.0.1:${i.port}/${database}`;
    const rows = (await sql(url('shop'), 'SELECT count(*)::int AS n, max(stamped) AS newest FROM pitr_rows')).rows[0];
    expect(rows.n).toBe(target.expected);
    expect((rows.newest as Date).getTime()).toBeLessThanOrEqual(target.t.getTime());
    expect((await sql(url('other'), 'SELECT v FROM t')).rows).toEqual([{ v: 'before' }]);
    // Password authentication over TCP, never trust.
    await expect(sql(url('shop', 'wrong-password'), 'SELECT 1')).rejects.toMatchObject({ code: '28P01' });
    await expect(sql(`postgresql://${encodeURIComponent(user)}@127.0.0.1:${i.port}/shop`, 'SELECT 1')).rejects.toThrow();
    // Read-only.
    await expect(sql(url('shop'), "INSERT INTO pitr_rows (stamped) VALUES (now())")).rejects.toMatchObject({ code: '25006' });
    await expect(sql(url('shop'), 'CREATE TABLE nope (x int)')).rejects.toMatchObject({ code: '25006' });
    // Nothing was written into the environment's server.
    expect(await databasesOfSource()).toEqual(databases);
    expect((await sql(shop(), 'SELECT count(*)::int AS n FROM pitr_rows')).rows[0].n).toBe(totalRows);

    // Extended: ttlMinutes more from now; 0 is refused.
    const before = Date.now();
    const extended = (await app.gql(ExtendRecoveryInstanceDocument, { input: { id: o.id, ttlMinutes: 120 } }, { key })).data?.extendRecoveryInstance;
    if (extended?.__typename !== 'RecoveryInstanceChangePayload') throw new Error(JSON.stringify(extended));
    expect(new Date(extended.recoveryInstance.expiresAt!).getTime()).toBeGreaterThanOrEqual(before + 120 * 60_000 - 1000);
    expect(extended.recoveryInstance.ttlMinutes).toBe(120);
    expect((await app.gql(ExtendRecoveryInstanceDocument, { input: { id: o.id, ttlMinutes: 0 } }, { key })).data?.extendRecoveryInstance).toMatchObject({ __typename: 'ValidationError' });

    const closed = await app.gql(CloseRecoveryInstanceDocument, { input: { id: o.id } }, { key });
    expect(closed.data?.closeRecoveryInstance.__typename).toBe('RecoveryInstanceChangePayload');
    const ended = await until(() => instance(o.id), (x) => x.status !== 'READY', 'the instance to stop', 30_000);
    expect(ended).toMatchObject({ status: 'STOPPED', connectionUri: null });
    expect(ended.stoppedAt).not.toBeNull();
    await expectGone(o.rowId, o.pid);
    expect((await app.gql(ExtendRecoveryInstanceDocument, { input: { id: o.id, ttlMinutes: 10 } }, { key })).data?.extendRecoveryInstance).toMatchObject({ __typename: 'ConflictError', code: 'RECOVERY_INSTANCE_NOT_READY' });
    // Closing it again changes nothing.
    expect((await app.gql(CloseRecoveryInstanceDocument, { input: { id: o.id } }, { key })).data?.closeRecoveryInstance).toMatchObject({ recoveryInstance: { status: 'STOPPED' } });
  });

  it('past its expiresAt: the keeper stops it (EXPIRED), process and folder gone', { timeout: 240_000 }, async () => {
    const o = await readyInstance({ ttlMinutes: 1 });
    await app.runtime.db.recoveryInstance.update({ where: { id: o.rowId }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const ended = await until(() => instance(o.id), (x) => x.status !== 'READY', 'the keeper to expire it', 30_000);
    expect(ended.status).toBe('EXPIRED');
    await expectGone(o.rowId, o.pid);
  });

  it('its worker’s lease lapsed (the worker died): the row is LOST, and the sweep stops the instance and removes its folder', { timeout: 240_000 }, async () => {
    const o = await readyInstance();
    // As a SIGKILLed worker leaves it: held by a process that no longer renews its lease.
    await app.runtime.db.recoveryInstance.update({ where: { id: o.rowId }, data: { leaseOwner: 'a-worker-that-died', leaseExpiresAt: new Date(Date.now() - 1000) } });
    const ended = await until(() => instance(o.id), (x) => x.status !== 'READY', 'the instance to be marked lost', 30_000);
    expect(ended.status).toBe('LOST');
    expect(ended.error).toContain('a-worker-that-died');
    await until(instanceFolders, (l) => l.length === 0, 'the sweep to remove its folder', 30_000);
    await expectGone(o.rowId, o.pid);
  });

  it('a folder whose row is gone is swept; a live instance’s never is', { timeout: 240_000 }, async () => {
    const live = await readyInstance();
    const orphan = instanceWorkDir(home, '01900000-0000-7000-8000-000000000abc');
    await fs.mkdir(orphan.data, { recursive: true });
    await until(instanceFolders, (l) => !l.includes(path.basename(orphan.root)), 'the orphan folder to be swept', 30_000);
    // Several ticks have passed: the live one is untouched.
    expect(await instanceFolders()).toEqual([path.basename(instanceWorkDir(home, live.rowId).root)]);
    expect(await alive(live.pid)).toBe(true);
    expect((await instance(live.id)).status).toBe('READY');
    await app.gql(CloseRecoveryInstanceDocument, { input: { id: live.id } }, { key });
    await until(() => instance(live.id), (x) => x.status === 'STOPPED', 'the instance to stop', 30_000);
    await expectGone(live.rowId, live.pid);
  });

  it('cancelled while it recovers (waiting for the repository to fetch the base backup): the operation ends CANCELLED, the row is not live, no process, no folder', { timeout: 240_000 }, async () => {
    // An exclusive lock (as a prune's) holds the fetch, so the cancel surely lands mid-recovery.
    const d = await app.runtime.db.environmentDestination.findFirstOrThrow({ where: { environmentId: envId } });
    const repo = await openRepository(app.runtime.deps, d.destinationId);
    const lock = await acquireLock(repo.repo, true, { ms: 0 });
    let o: Awaited<ReturnType<typeof opened>>;
    try {
      o = await opened({ pointInTime: target.t.toISOString() });
      await follow(app, key, o.operationId, (s) => s.phase === 'fetching-base');
      await until(instanceFolders, (l) => l.length === 1, 'the work folder');
      const cancel = await app.gql(CancelOperationDocument, { input: { id: o.operationId } }, { key });
      expect(JSON.stringify(cancel)).not.toContain('"errors"');
      const states = await follow(app, key, o.operationId);
      expect(states.at(-1)?.status).toBe('CANCELLED');
    } finally {
      await lock.release();
      await repo.close();
    }
    const row = await instance(o.id);
    expect(row.status).toBe('STOPPED');
    expect(row.connectionUri).toBeNull();
    expect(await running(instanceWorkDir(home, o.rowId).root)).toEqual([]);
    expect(await instanceFolders()).toEqual([]);
  });

  it('cancelled while it replays: the operation ends CANCELLED or, if the replay won the race, SUCCEEDED; either way no live row after a close, no process, no folder', { timeout: 240_000 }, async () => {
    const o = await opened({ pointInTime: target.t.toISOString() });
    await follow(app, key, o.operationId, (s) => s.phase === 'replaying-wal');
    const root = instanceWorkDir(home, o.rowId).root;
    const pid = await until(() => postmasterPid(o.rowId), (p) => p > 0, 'the postmaster to start', 120_000);
    const cancel = await app.gql(CancelOperationDocument, { input: { id: o.operationId } }, { key });
    expect(JSON.stringify(cancel)).not.toContain('"errors"');
    const states = await follow(app, key, o.operationId);
    if (states.at(-1)?.status === 'SUCCEEDED') {
      await app.gql(CloseRecoveryInstanceDocument, { input: { id: o.id } }, { key });
      await until(() => instance(o.id), (x) => x.status !== 'READY', 'the instance to stop', 30_000);
    } else {
      expect(states.at(-1)?.status).toBe('CANCELLED');
    }
    const row = await instance(o.id);
    expect(row.status).toBe('STOPPED');
    expect(row.connectionUri).toBeNull();
    expect(await alive(pid)).toBe(false);
    expect(await running(root)).toEqual([]);
    expect(await instanceFolders()).toEqual([]);
  });

  it('refusals are typed and create nothing: ttlMinutes 0 or 5000, a time before the first base backup (as restoreToPointInTime says), beyond PITR_INSTANCE_MAX', async () => {
    const count = () => Promise.all([app.runtime.db.recoveryInstance.count(), app.runtime.db.operation.count({ where: { type: 'RECOVERY_INSTANCE' } })]);
    const before = await count();
    for (const ttlMinutes of [0, 5000]) {
      const r = (await open({ pointInTime: target.t.toISOString(), ttlMinutes })).data?.openRecoveryInstance;
      expect(r, String(ttlMinutes)).toMatchObject({ __typename: 'ValidationError', fields: [{ path: ['input', 'ttlMinutes'] }] });
    }
    const early = new Date(firstBase.getTime() - 60_000).toISOString();
    const asInstance = (await open({ pointInTime: early })).data?.openRecoveryInstance;
    const asRestore = (await app.gql(RestoreToPointInTimeDocument, { input: { environmentId: gid('Environment', envId), pointInTime: early, cloneDatabaseName: 'never' } as never }, { key })).data?.restoreToPointInTime;
    expect(asInstance).toMatchObject({ __typename: asRestore?.__typename, code: (asRestore as { code: string }).code });
    expect(['PITR_TIME_NOT_RECOVERABLE', 'PITR_BEFORE_FIRST_BASE_BACKUP']).toContain((asInstance as { code: string }).code);
    const future = (await open({ pointInTime: new Date(Date.now() + 3_600_000).toISOString() })).data?.openRecoveryInstance;
    expect(future).toMatchObject({ __typename: 'ValidationError' });
    // The cap (2 by default), counted over starting and running instances.
    const fillers = [];
    for (let n = 0; n < 2; n++) {
      const op = await app.runtime.db.operation.create({ data: { organizationId: orgId, environmentId: envId, type: 'RECOVERY_INSTANCE', status: 'SUCCEEDED' } });
      fillers.push(await app.runtime.db.recoveryInstance.create({ data: { organizationId: orgId, environmentId: envId, operationId: op.id, pointInTime: target.t, ttlMinutes: 60, status: 'READY' } }));
    }
    const counted = await count();
    const capped = (await open({ pointInTime: target.t.toISOString() })).data?.openRecoveryInstance;
    expect(capped).toMatchObject({ __typename: 'ConflictError', code: 'RECOVERY_INSTANCE_LIMIT' });
    expect(await count()).toEqual(counted);
    await app.runtime.db.operation.deleteMany({ where: { id: { in: fillers.map((f) => f.operationId) } } });
    expect(await count()).toEqual(before);
  });

  it('a stopping worker stops the instances it holds (STOPPED), process and folder gone', { timeout: 240_000 }, async () => {
    // A second worker: its keeper is the newest, so it holds what this process's jobs open.
    const worker = await app.startWorker({ instances: { tickMs: 200 } });
    const o = await readyInstance();
    expect((await app.runtime.db.recoveryInstance.findUniqueOrThrow({ where: { id: o.rowId } })).leaseOwner).not.toBeNull();
    await worker.stop();
    const row = await instance(o.id);
    expect(row).toMatchObject({ status: 'STOPPED', error: 'its worker stopped' });
    await expectGone(o.rowId, o.pid);
  });
});
