/**
 * The restore job's failure paths, called directly on real environments (PostgreSQL databases
 * restored by the real pg_restore, files folders, LOCAL repositories): a swap that fails half way
 * and is undone, one side failing after the other got ready, a run after a killed one that clears
 * what that one left, the timeout, and a damaged pack that the job heals before it ends. Each time the target must be exactly as it was
 * (or exactly the snapshot, when the run succeeds), and no other environment changes.
 */
import { execFile } from 'node:child_process';
import fs, { type FileHandle } from 'node:fs/promises';
import { watch } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/services/schedules.ts';
import type { Runtime } from '../../src/app/runtime.ts';
import { LocalBackend } from '../../src/destinations/local.ts';
import { findSnapshot, Repository, resolvePath } from '../../src/engine/api.ts';
import type { Deps } from '../../src/services/deps.ts';
import { restoreIdOf } from '../../src/services/restore-leftovers.ts';
import { restoreSnapshot } from '../../src/services/restores.ts';
import type { Viewer } from '../../src/services/viewer.ts';
import { restoreDirectoryPaths } from '../../src/sources/files.ts';
import { restoreDatabaseNames } from '../../src/sources/postgres.ts';
import { adminUrl } from '../harness/database.ts';
import { makeOrganization } from '../harness/factories.ts';
import { databaseDigest, filesDigest, makeLiveEnvironment, repositoryPassword, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { waitFor } from '../harness/schedule-helpers.ts';
import { envState, runRestoreJob, snapshotByJob, startServiceRuntime, viewerOf, type EnvState } from '../harness/service-runtime.ts';

let rt: Runtime;
let deps: Deps;
let viewer: Viewer;
let prod: LiveEnvironment;
let staging: LiveEnvironment;
let snapshotId: string;
let atSnapshot: State;
let prodNow: State;
const NOW = new Date();

const PHOTO = '/files/uploads/photo ü.jpg';

type State = EnvState;
const state = envState;
const snapshot = (env: LiveEnvironment, includes?: ('DB' | 'FILES')[]) => snapshotByJob(deps, viewer, env.id, includes);
const databaseName = (env: LiveEnvironment) => new URL(env.databaseUrl).pathname.slice(1);
const urlOf = (env: LiveEnvironment, database: string) => Object.assign(new URL(env.databaseUrl), { pathname: `/${database}` }).toString();

/** Runs the job of a requested restore; returns what it recorded. */
function run(operationId: string, restoreLogId: string) {
  return runRestoreJob(deps, operationId, restoreLogId);
}

/** Databases and folders named after one restore beside `env`: temp, previous, staging. */
async function namedAfter(env: LiveEnvironment, restoreLogId: string) {
  const suffix = restoreIdOf(restoreLogId);
  const dbs = (await sql(adminUrl(), 'SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1', [`%${suffix}`])).rows.map((r) => r.datname as string);
  const dirs = (await fs.readdir(path.dirname(env.filesPath))).filter((f) => f.endsWith(suffix)).sort();
  return { dbs, dirs };
}

/** Changes `env` after its snapshot (a row, a file) and returns its state: what a failed restore must leave. */
async function changedAfterSnapshot(env: LiveEnvironment): Promise<State> {
  await sql(env.databaseUrl, "INSERT INTO customers (name) VALUES ('after the snapshot')");
  await fs.writeFile(path.join(env.filesPath, 'after.txt'), 'after the snapshot');
  return state(env);
}

/** A restore that failed with `cause` in its message and left `env` as it was, nothing beside it. */
async function expectFailedUntouched(ran: Awaited<ReturnType<typeof run>>, env: LiveEnvironment, restoreLogId: string, before: State, cause: string) {
  expect(ran.op).toMatchObject({ status: 'FAILED', error: expect.stringContaining(cause) });
  expect(ran.log).toMatchObject({ status: 'FAILED', error: ran.op.error });
  expect(ran.alerts).toMatchObject([{ type: 'RESTORE_FAILED' }]);
  expect(await state(env)).toEqual(before);
  expect(await namedAfter(env, restoreLogId)).toEqual({ dbs: [], dirs: [] });
}

/**
 * Stands a non-empty folder where the files commit will move the target aside, as soon as the
 * restore starts filling its staging folder (after its own check that the name is free): the
 * files swap then fails at commit, whatever the database side did.
 */
function blockFilesCommit(env: LiveEnvironment, restoreLogId: string): { done: Promise<string>; close(): void } {
  const { temp, previous } = restoreDirectoryPaths(env.filesPath, restoreIdOf(restoreLogId));
  const watcher = watch(path.dirname(env.filesPath));
  const done = new Promise<string>((resolve, reject) => {
    watcher.on('change', (_type, name) => {
      if (String(name) !== path.basename(temp)) return;
      watcher.close();
      fs.mkdir(previous)
        .then(() => fs.writeFile(path.join(previous, 'in-the-way'), 'x'))
        .then(() => resolve(previous), reject);
    });
    watcher.on('error', reject);
  });
  return { done, close: () => watcher.close() };
}

/** Where the stored blobs of a snapshot's file lie: its packs' files and offsets (`/db`: the dump). */
async function blobsOf(env: LiveEnvironment, id: string, filePath: string): Promise<{ file: string; offset: number }[]> {
  const copy = await rt.db.snapshotCopy.findFirstOrThrow({ where: { snapshotId: id } });
  const repo = await Repository.open(new LocalBackend(env.repositoryPath), await repositoryPassword({ runtime: rt }, env.destinationId));
  try {
    let node = await resolvePath(repo, await findSnapshot(repo, copy.repoSnapshotId!), filePath);
    if (node.type === 'dir') node = (await repo.loadTree(node.subtree!)).nodes.find((n) => n.type === 'file')!;
    return node.content!.map((blob) => {
      const at = repo.lookupBlob('data', blob)!;
      return { file: path.join(env.repositoryPath, 'data', at.packId.slice(0, 2), at.packId), offset: at.offset };
    });
  } finally {
    await repo.close();
  }
}

/** Flips a byte inside the stored blob of a snapshot's file: its MAC fails, the rest of the pack is fine. */
async function corruptFileBlob(env: LiveEnvironment, id: string, filePath: string): Promise<void> {
  const [at] = await blobsOf(env, id, filePath);
  const buf = await fs.readFile(at.file);
  buf[at.offset + 20] ^= 0xff;
  await fs.writeFile(at.file, buf);
}

/**
 * Turns a pack into a named pipe: a codec thread that opens it to restore from it waits in
 * open(2) until the other end is opened, then its positioned read fails (ESPIPE), as a read from
 * a failing disk would. release() opens that other end (read-write, which never blocks on Linux).
 */
async function packAsPipe(file: string): Promise<{ release(): Promise<void>; close(): Promise<void> }> {
  await fs.rm(file);
  await promisify(execFile)('mkfifo', [file]);
  let otherEnd: FileHandle | undefined;
  return {
    release: async () => void (otherEnd ??= await fs.open(file, 'r+')),
    close: async () => {
      otherEnd ??= await fs.open(file, 'r+');
      await otherEnd.close();
    },
  };
}

/** A new environment snapshotted twice, files alone then whole: the whole one's dump and its files lie in packs of their own. */
async function snapshotWithSeparatePacks(name: string) {
  const env = await makeLiveEnvironment({ runtime: rt }, { organizationId: prod.organizationId, name, rows: 10 });
  await snapshot(env, ['FILES']);
  const id = await snapshot(env);
  const filesPack = (await blobsOf(env, id, PHOTO))[0].file;
  const dumpPacks = (await blobsOf(env, id, '/db')).map((b) => b.file);
  expect(dumpPacks).not.toContain(filesPack);
  return { env, id, filesPack, dumpPack: dumpPacks[0] };
}

/** Waits until a restore's files side is ready: its staging folder is filled and has the target's mode (given last, but for the owner). */
async function filesSideReady(env: LiveEnvironment, restoreLogId: string): Promise<void> {
  const { temp } = restoreDirectoryPaths(env.filesPath, restoreIdOf(restoreLogId));
  const mode = (await fs.stat(env.filesPath)).mode & 0o7777;
  expect(mode).not.toBe(0o700); // the staging folder's own mode while it is filled
  await waitFor(() => fs.stat(temp).then((st) => st.mode & 0o7777, () => null), (m) => m === mode, `the files side of restore ${restoreLogId}`, 120_000);
}

/**
 * Waits until a SWAP restore's database side is ready: pg_restore filled its temp database,
 * left it, and exited, and this process has reaped it (no pg_restore child is left in /proc).
 */
async function databaseSideReady(env: LiveEnvironment, restoreLogId: string): Promise<void> {
  const { temp } = restoreDatabaseNames(databaseName(env), restoreIdOf(restoreLogId));
  const pgRestoreChildren = async () => {
    let n = 0;
    for (const pid of (await fs.readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
      const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      const m = /^\d+ \((.*)\) \S (\d+)/.exec(stat);
      if (m?.[1] === 'pg_restore' && Number(m[2]) === process.pid) n++;
    }
    return n;
  };
  const ready = async () => {
    const filled = await sql(urlOf(env, temp), 'SELECT count(*)::int AS n FROM customers').then((r) => r.rows[0].n > 0, () => false);
    if (!filled) return false;
    const sessions = await sql(adminUrl(), "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'backplane-restore'", [temp]);
    return sessions.rows[0].n === 0 && (await pgRestoreChildren()) === 0;
  };
  await waitFor(ready, (ok) => ok, `the database side of restore ${restoreLogId}`, 120_000);
}

beforeAll(async () => {
  rt = await startServiceRuntime('restore_fail');
  deps = { ...rt.deps, clock: { now: () => NOW } };
  const org = await makeOrganization(rt.db);
  viewer = viewerOf(org.id);
  prod = await makeLiveEnvironment({ runtime: rt }, { organizationId: org.id, name: 'production', rows: 60 });
  staging = await makeLiveEnvironment({ runtime: rt }, { organizationId: org.id, name: 'staging', rows: 20 });
  snapshotId = await snapshot(prod);
  atSnapshot = await state(prod);
  await sql(prod.databaseUrl, "INSERT INTO customers (name) VALUES ('after the snapshot')");
  prodNow = await state(prod);
});
afterAll(() => rt?.close());

describe('a swap that fails half way', () => {
  it('SWAP: the files commit fails after the database swapped, so the database swap is undone and the target is as it was', async () => {
    await sql(staging.databaseUrl, "INSERT INTO customers (name) VALUES ('staging before the swap')");
    const before = await state(staging);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId, targetEnvironmentId: staging.id, createSafetySnapshot: false });
    const blocker = blockFilesCommit(staging, restoreLogId);
    try {
      const { log, op, alerts } = await run(operationId, restoreLogId);
      const previous = await blocker.done;
      expect(op).toMatchObject({ status: 'FAILED', error: expect.stringContaining(`could not move ${staging.filesPath} aside`) });
      expect(log).toMatchObject({ status: 'FAILED', error: op.error, completedAt: NOW });
      expect(alerts).toMatchObject([{ type: 'RESTORE_FAILED', environmentId: staging.id }]);
      expect(await state(staging)).toEqual(before);
      expect(await state(prod)).toEqual(prodNow);
      // Only the folder put in the way is left: no temp or previous database, no staging folder.
      expect(await namedAfter(staging, restoreLogId)).toEqual({ dbs: [], dirs: [path.basename(previous)] });
      await fs.rm(previous, { recursive: true });
    } finally {
      blocker.close();
    }
  });

  it('IN_PLACE: the files commit fails first, so the database transaction is rolled back and the target is as it was', async () => {
    await sql(staging.databaseUrl, "INSERT INTO customers (name) VALUES ('staging before in place')");
    const before = await state(staging);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId, targetEnvironmentId: staging.id, createSafetySnapshot: false, strategy: 'IN_PLACE' });
    const blocker = blockFilesCommit(staging, restoreLogId);
    try {
      const { log, op, alerts } = await run(operationId, restoreLogId);
      const previous = await blocker.done;
      expect(op).toMatchObject({ status: 'FAILED', error: expect.stringContaining(`could not move ${staging.filesPath} aside`) });
      expect(log).toMatchObject({ status: 'FAILED', error: op.error });
      expect(alerts).toMatchObject([{ type: 'RESTORE_FAILED' }]);
      expect(await state(staging)).toEqual(before);
      expect(await namedAfter(staging, restoreLogId)).toEqual({ dbs: [], dirs: [path.basename(previous)] });
      await fs.rm(previous, { recursive: true });
    } finally {
      blocker.close();
    }
  });

  it('IN_PLACE: a database COMMIT refused after the files swapped undoes the files swap; the target is as it was, FAILED', async () => {
    const env = await makeLiveEnvironment({ runtime: rt }, { organizationId: prod.organizationId, name: 'commit-refused', rows: 10 });
    const id = await snapshot(env);
    // Made after the snapshot, so not in its dump, which --clean replaces: every DDL statement of
    // the restore's transaction adds a row whose deferred foreign key fails only at COMMIT.
    await sql(env.databaseUrl, `
      CREATE TABLE ddl_seen_parent (id int PRIMARY KEY);
      CREATE TABLE ddl_seen (parent int REFERENCES ddl_seen_parent DEFERRABLE INITIALLY DEFERRED);
      CREATE FUNCTION note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.ddl_seen VALUES (0); END $$;
      CREATE EVENT TRIGGER note_ddl ON ddl_command_end EXECUTE FUNCTION note_ddl();
    `);
    const before = await changedAfterSnapshot(env);
    try {
      const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId: id, createSafetySnapshot: false, strategy: 'IN_PLACE' });
      await expectFailedUntouched(await run(operationId, restoreLogId), env, restoreLogId, before, 'ddl_seen');
    } finally {
      await sql(env.databaseUrl, 'DROP EVENT TRIGGER note_ddl');
    }
  });
});

describe('one side ready, the other failing', () => {
  // Each side in turn waits on its pack, made a pipe, and fails only once the other side is ready.
  it('a database side that fails after the files are staged: the staged files are dropped, nothing is swapped in, FAILED', () =>
    oneSideFailsLate('late-database', 'dumpPack', filesSideReady));

  it('a files side that fails after the database side is ready: the ready database is dropped, nothing is swapped in, FAILED', () =>
    oneSideFailsLate('late-files', 'filesPack', databaseSideReady));
});

/** Restores a snapshot with one side's pack a pipe, let go (to fail) once the other side is ready. */
async function oneSideFailsLate(name: string, pack: 'dumpPack' | 'filesPack', otherSideReady: (env: LiveEnvironment, restoreLogId: string) => Promise<void>) {
  const { env, id, ...packs } = await snapshotWithSeparatePacks(name);
  const before = await changedAfterSnapshot(env);
  const pipe = await packAsPipe(packs[pack]);
  const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId: id, createSafetySnapshot: false });
  const running = run(operationId, restoreLogId);
  try {
    await otherSideReady(env, restoreLogId);
    await pipe.release();
    await expectFailedUntouched(await running, env, restoreLogId, before, 'ESPIPE');
  } finally {
    await pipe.close();
    await running;
  }
}

describe('a run after one whose worker died', () => {
  it('undoes the swaps the dead run made before it starts over: the snapshot goes in, and the database kept aside is the target as it was', async () => {
    await sql(staging.databaseUrl, "INSERT INTO customers (name) VALUES ('staging before the crash')");
    const before = await state(staging);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId, targetEnvironmentId: staging.id, createSafetySnapshot: false });
    const restoreId = restoreIdOf(restoreLogId);
    // What a run killed between its swaps and its success leaves: the live database and folder
    // moved aside under the restore's previous names, half-restored ones in their place.
    const names = restoreDatabaseNames(databaseName(staging), restoreId);
    await sql(adminUrl(), `ALTER DATABASE "${databaseName(staging)}" RENAME TO "${names.previous}"`);
    await sql(adminUrl(), `CREATE DATABASE "${databaseName(staging)}"`);
    await sql(staging.databaseUrl, 'CREATE TABLE customers (id int PRIMARY KEY, name text)');
    const dirs = restoreDirectoryPaths(staging.filesPath, restoreId);
    await fs.rename(staging.filesPath, dirs.previous);
    await fs.mkdir(staging.filesPath);
    await fs.writeFile(path.join(staging.filesPath, 'half-restored.txt'), 'half');
    await rt.db.operation.update({ where: { id: operationId }, data: { attempts: 1 } });

    const { log, op } = await run(operationId, restoreLogId);
    expect(op).toMatchObject({ status: 'SUCCEEDED', attempts: 2, error: null });
    expect(log.status).toBe('SUCCEEDED');
    expect(await state(staging)).toEqual(atSnapshot);
    expect(await databaseDigest(urlOf(staging, names.previous))).toEqual(before.db);
    expect(await filesDigest(dirs.previous)).toEqual(before.files);
    expect(await namedAfter(staging, restoreLogId)).toEqual({ dbs: [names.previous], dirs: [path.basename(dirs.previous)] });
    await fs.rm(dirs.previous, { recursive: true });
  });
});

describe('limits', () => {
  it('an environment without settings runs under the default timeout; a timeout of 0 s fails the restore with the target as it was', async () => {
    await rt.db.environmentSettings.delete({ where: { environmentId: staging.id } });
    try {
      const first = await restoreSnapshot(deps, viewer, { snapshotId, targetEnvironmentId: staging.id, includes: ['FILES'], createSafetySnapshot: false });
      const ok = await run(first.operationId, first.restoreLogId);
      expect(ok.op).toMatchObject({ status: 'SUCCEEDED', error: null });
      expect((await state(staging)).files).toEqual(atSnapshot.files);
    } finally {
      await rt.db.environmentSettings.create({ data: { environmentId: staging.id } });
    }
    await fs.writeFile(path.join(staging.filesPath, 'before-timeout.txt'), 'x');
    await sql(staging.databaseUrl, "INSERT INTO customers (name) VALUES ('before the timeout')");
    const before = await state(staging);
    await rt.db.environmentSettings.update({ where: { environmentId: staging.id }, data: { timeoutSeconds: 0 } });
    try {
      const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId, targetEnvironmentId: staging.id, createSafetySnapshot: false });
      const { log, op, alerts } = await run(operationId, restoreLogId);
      expect(op).toMatchObject({ status: 'FAILED', error: 'Timed out after 0 s' });
      expect(log).toMatchObject({ status: 'FAILED', error: 'Timed out after 0 s' });
      expect(alerts).toMatchObject([{ type: 'RESTORE_FAILED', message: 'Restore into staging failed: Timed out after 0 s' }]);
      expect(await state(staging)).toEqual(before);
      expect(await namedAfter(staging, restoreLogId)).toEqual({ dbs: [], dirs: [] });
    } finally {
      await rt.db.environmentSettings.update({ where: { environmentId: staging.id }, data: { timeoutSeconds: 3600 } });
    }
  });
});

describe('a damaged pack', () => {
  it('fails the restore with the target as it was, heals the repository, and takes the safety snapshot that leaned on the lost blob again', async () => {
    const env = await makeLiveEnvironment({ runtime: rt }, { organizationId: prod.organizationId, name: 'damaged', rows: 20 });
    const damagedId = await snapshot(env);
    await corruptFileBlob(env, damagedId, PHOTO);
    await sql(env.databaseUrl, "INSERT INTO customers (name) VALUES ('after the damage')");
    const before = await state(env);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId: damagedId });
    const { log, op, alerts } = await run(operationId, restoreLogId);
    const note = ' (1 damaged pack(s) dropped from the index; 2 snapshot(s) marked damaged; the safety snapshot used damaged data and was taken again)';
    expect(op.status).toBe('FAILED');
    expect(op.error!.endsWith(note)).toBe(true);
    expect(log).toMatchObject({ status: 'FAILED', error: op.error });
    expect(alerts.map((a) => a.type)).toContain('RESTORE_FAILED');
    expect(alerts.find((a) => a.type === 'RESTORE_FAILED')!.message).toBe(`Restore into damaged failed: ${op.error}`);
    expect(await state(env)).toEqual(before);

    // The first safety snapshot deduplicated against the lost blob; the log names the second, taken after the heal, whole.
    const safety = await rt.db.snapshot.findMany({ where: { environmentId: env.id, kind: 'SAFETY' }, orderBy: { createdAt: 'asc' } });
    expect(safety).toHaveLength(2);
    expect(log.safetySnapshotId).toBe(safety[1].id);
    expect(safety[1]).toMatchObject({ status: 'READY', includes: ['DB', 'FILES'] });
    // It wrote the lost blob again: the snapshot that failed to restore is whole and restores now.
    expect((await rt.db.snapshot.findUniqueOrThrow({ where: { id: damagedId } })).status).toBe('READY');
    const again = await restoreSnapshot(deps, viewer, { snapshotId: damagedId, createSafetySnapshot: false });
    expect((await run(again.operationId, again.restoreLogId)).op.status).toBe('SUCCEEDED');
  });

  it('the heal also reads the safety snapshot’s own packs: one leaning on another damaged pack, which the failed read never met, is taken again', async () => {
    const env = await makeLiveEnvironment({ runtime: rt }, { organizationId: prod.organizationId, name: 'damaged-elsewhere', rows: 20 });
    const damagedId = await snapshot(env, ['FILES']);
    // The target moves on: the photo changes (the safety snapshot will not hold its old blob) and
    // a new file lands in a later snapshot's pack, which the safety snapshot deduplicates against.
    await fs.writeFile(path.join(env.filesPath, 'uploads/photo ü.jpg'), 'another photo');
    await fs.writeFile(path.join(env.filesPath, 'later.bin'), Buffer.alloc(64 * 1024, 7));
    const laterId = await snapshot(env, ['FILES']);
    await corruptFileBlob(env, damagedId, PHOTO);
    await corruptFileBlob(env, laterId, '/files/later.bin');
    expect((await blobsOf(env, laterId, '/files/later.bin'))[0].file).not.toBe((await blobsOf(env, damagedId, PHOTO))[0].file);
    const before = await state(env);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId: damagedId, includes: ['FILES'] });
    const { log, op } = await run(operationId, restoreLogId);
    expect(op.status).toBe('FAILED');
    // The restored snapshot, the later one and the first safety snapshot: all three lean on a lost blob.
    expect(op.error!.endsWith(' (2 damaged pack(s) dropped from the index; 3 snapshot(s) marked damaged; the safety snapshot used damaged data and was taken again)')).toBe(true);
    const safety = await rt.db.snapshot.findMany({ where: { environmentId: env.id, kind: 'SAFETY' }, orderBy: { createdAt: 'asc' } });
    expect(safety).toHaveLength(2);
    expect(log.safetySnapshotId).toBe(safety[1].id);
    expect(safety[1]).toMatchObject({ status: 'READY', includes: ['FILES'] });
    expect(await state(env)).toEqual(before);
  });

  it('a safety snapshot that leans on no damaged data is kept, not taken again', async () => {
    const env = await makeLiveEnvironment({ runtime: rt }, { organizationId: prod.organizationId, name: 'damaged-alone', rows: 20 });
    const damagedId = await snapshot(env, ['FILES']);
    // The target's photo changes, so its safety snapshot does not hold the blob that gets damaged.
    await fs.writeFile(path.join(env.filesPath, 'uploads/photo ü.jpg'), 'another photo');
    await corruptFileBlob(env, damagedId, PHOTO);
    const before = await state(env);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId: damagedId, includes: ['FILES'] });
    const { log, op } = await run(operationId, restoreLogId);
    expect(op.status).toBe('FAILED');
    expect(op.error!.endsWith(' (1 damaged pack(s) dropped from the index; 1 snapshot(s) marked damaged)')).toBe(true);
    const safety = await rt.db.snapshot.findMany({ where: { environmentId: env.id, kind: 'SAFETY' } });
    expect(safety).toMatchObject([{ id: log.safetySnapshotId, status: 'READY' }]);
    expect(await state(env)).toEqual(before);
  });

  it('without a safety snapshot: the note says what was dropped and marked, nothing is taken again', async () => {
    const env = await makeLiveEnvironment({ runtime: rt }, { organizationId: prod.organizationId, name: 'damaged-plain', rows: 20 });
    const damagedId = await snapshot(env);
    await corruptFileBlob(env, damagedId, PHOTO);
    const before = await state(env);
    const { operationId, restoreLogId } = await restoreSnapshot(deps, viewer, { snapshotId: damagedId, createSafetySnapshot: false });
    const { log, op } = await run(operationId, restoreLogId);
    expect(op.status).toBe('FAILED');
    expect(op.error!.endsWith(' (1 damaged pack(s) dropped from the index; 1 snapshot(s) marked damaged)')).toBe(true);
    expect(log).toMatchObject({ status: 'FAILED', safetySnapshotId: null });
    expect(await rt.db.snapshot.findUniqueOrThrow({ where: { id: damagedId } })).toMatchObject({ status: 'DAMAGED' });
    expect(await rt.db.snapshot.count({ where: { environmentId: env.id, kind: 'SAFETY' } })).toBe(0);
    expect(await state(env)).toEqual(before);
  });
});
