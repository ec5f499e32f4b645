/**
 * The recovery instance with WAL fetched on demand: the replay starts from the base backup alone
 * and waits in its restore_command for each WAL file until the fetch places it (placeWal), so it
 * recovers exactly the rows committed by the time; a failed fetch aborts the recovery instead of
 * ending it early; a work folder removed under a waiting recovery (a killed worker's, by the
 * sweep) leaves no instance and no waiting restore_command behind.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discardPitrWorkDir, makePitrWorkDir, placeWal, recoverInstance, recoveryWalName, walFetchFailed } from '../../src/sources/pitr-instance.ts';
import { sql } from '../harness/live-environment.ts';
import { startPitrCluster, startWorkload, timeBetweenCommits, type PitrCluster } from '../harness/pitr-fixture.ts';
import { until } from '../harness/process.ts';

let cluster: PitrCluster;
let home: string;
/** A plain base backup, copied into each test's work folder. */
let base: string;
/** The WAL files from before the base backup to after the target, as pg_receivewal left them. */
let wal: string[];
let target: { t: Date; expected: number };
/** A time in the last WAL file, after the segment switch. */
let late: { t: Date; expected: number };
let restores = 0;

const shop = () => cluster.url('shop');

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} failed: ${err}`))));
  });
}

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-instance-'));
  cluster = await startPitrCluster();
  await sql(cluster.url(), 'CREATE DATABASE shop');
  const workload = startWorkload(shop());
  while (workload.committed() < 5) await new Promise((r) => setTimeout(r, 20));
  base = path.join(home, 'base');
  const { server } = cluster;
  await run('/usr/lib/postgresql/15/bin/pg_basebackup', ['-D', base, '-F', 'plain', '-X', 'none', '--checkpoint=fast'], {
    ...process.env,
    PGHOST: '127.0.0.1',
    PGPORT: String(server.port),
    PGUSER: server.user,
    PGPASSWORD: server.password,
  });
  const afterBase = new Date();
  const from = workload.committed();
  while (workload.committed() < from + 40) await new Promise((r) => setTimeout(r, 20));
  // Two segments at least: the replay waits for more than one file.
  await sql(cluster.url(), 'SELECT pg_switch_wal()');
  const afterSwitch = new Date();
  while (workload.committed() < from + 60) await new Promise((r) => setTimeout(r, 20));
  const flushed = await cluster.flushWal();
  await workload.stop();
  target = await timeBetweenCommits(shop(), new Date(afterBase.getTime() + 300), flushed);
  late = await timeBetweenCommits(shop(), new Date(afterSwitch.getTime() + 300), flushed);
  wal = (await fs.readdir(cluster.walDir)).sort();
  expect(wal.filter((n) => !n.endsWith('.partial')).length).toBeGreaterThan(1);
}, 300_000);

afterAll(async () => {
  await cluster?.stop();
  if (home) await fs.rm(home, { recursive: true, force: true });
});

/** A work folder holding the base backup and no WAL yet. */
async function workFolder() {
  const id = `test${++restores}`;
  const dirs = await makePitrWorkDir(home, id);
  await fs.cp(base, dirs.data, { recursive: true });
  return { id, dirs };
}

/** Processes running the work folder's restore_command (for file `name`): the replay waiting for WAL. */
async function waitingFor(root: string, name = ''): Promise<number[]> {
  const pids: number[] = [];
  for (const p of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(path.join(root, 'restore-wal.sh')) && cmd.includes(name)) pids.push(Number(p));
  }
  return pids;
}

const waiting = (root: string) => waitingFor(root);

/** Whether process `pid` runs (a zombie, ended but not yet reaped by its parent, does not). */
async function alive(pid: number): Promise<boolean> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return status !== '' && !/^State:\s+Z/m.test(status);
}

/** Processes whose command line names `dir` (and `name`, when given): pg_ctl, the postmaster, a restore_command. */
async function running(dir: string, name = ''): Promise<number[]> {
  const pids: number[] = [];
  for (const p of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(dir) && cmd.includes(name)) pids.push(Number(p));
  }
  return pids;
}

describe('recoverInstance with WAL fetched on demand', () => {
  it('starts replaying from the base alone, waits for each WAL file as it is placed, and recovers exactly the rows committed by the time', { timeout: 240_000 }, async () => {
    const { id, dirs } = await workFolder();
    let settled = false;
    // As the job does: the fetch's signal, aborted once the replay needs no more WAL.
    const fetch = new AbortController();
    const recovering = recoverInstance(dirs, target.t, { wal, signal: fetch.signal });
    recovering.then(() => (settled = true), () => (settled = true));
    await until(() => waiting(dirs.root), (p) => p.length > 0, 'the replay to wait for WAL', 120_000);
    expect(settled).toBe(false);
    for (const name of wal) {
      const staged = path.join(dirs.root, `staged-${name}`);
      await fs.copyFile(path.join(cluster.walDir, name), staged);
      await placeWal(dirs, staged, name);
    }
    const instance = await recovering;
    fetch.abort();
    try {
      expect(instance.toEndOfArchive).toBe(false);
      const [row] = (await sql(instance.url('shop', cluster.server.user), 'SELECT count(*)::int AS n, max(stamped) AS newest FROM pitr_rows')).rows as { n: number; newest: Date }[];
      expect(row.n).toBe(target.expected);
      expect(row.newest.getTime()).toBeLessThanOrEqual(target.t.getTime());
      // A one-off instance: it never waits for a disk, and vacuums nothing while it is dumped.
      const settings = (await sql(instance.url('shop', cluster.server.user), "SELECT name, setting FROM pg_settings WHERE name IN ('autovacuum', 'fsync', 'full_page_writes') ORDER BY name")).rows;
      expect(settings).toEqual([{ name: 'autovacuum', setting: 'off' }, { name: 'fsync', setting: 'off' }, { name: 'full_page_writes', setting: 'off' }]);
      // stop() shuts the instance down whatever became of the signal it recovered under.
      await instance.stop();
      await expect(fs.access(path.join(dirs.data, 'postmaster.pid'))).rejects.toMatchObject({ code: 'ENOENT' });
      expect(await fs.readFile(path.join(dirs.root, 'server.log'), 'utf8')).toContain('database system is shut down');
    } finally {
      await instance.stop();
      await discardPitrWorkDir(home, id);
    }
  });

  it('a failed fetch aborts the recovery: it fails, typed, and never promotes to the WAL it had so far', { timeout: 240_000 }, async () => {
    const { id, dirs } = await workFolder();
    const recovering = recoverInstance(dirs, late.t, { wal });
    recovering.catch(() => undefined);
    // Enough WAL for a consistent state, but not the last file, which holds the time.
    const last = wal.at(-1)!;
    for (const name of wal.slice(0, -1)) {
      const staged = path.join(dirs.root, `staged-${name}`);
      await fs.copyFile(path.join(cluster.walDir, name), staged);
      await placeWal(dirs, staged, name);
    }
    await until(() => waitingFor(dirs.root, recoveryWalName(last)), (p) => p.length > 0, 'the replay to wait for the last WAL file', 120_000);
    await walFetchFailed(dirs);
    await expect(recovering).rejects.toMatchObject({ code: 'PITR_RECOVERY_FAILED' });
    const log = await fs.readFile(path.join(dirs.root, 'server.log'), 'utf8');
    // Exit status 126, which PostgreSQL calls "command not executable": the recovery aborts.
    expect(log).toMatch(/FATAL: +could not restore file "\w+" from archive: command not executable/);
    expect(log).not.toContain('selected new timeline ID');
    expect(await waiting(dirs.root)).toEqual([]);
    expect(await discardPitrWorkDir(home, id)).toBe(true);
  });

  it('a home too deep for a socket under it: the socket folder is a short one of /tmp, the recovery works, and the discard removes it', { timeout: 240_000 }, async () => {
    // Linux binds socket paths of at most 107 bytes; under this home the work folder's would be longer.
    const deep = path.join(home, 'a-home-folder-as-deep-as-a-team-might-keep-it'.repeat(2));
    const id = `deep${++restores}`;
    const dirs = await makePitrWorkDir(deep, id);
    expect(path.dirname(dirs.socket)).toBe('/tmp');
    expect(Buffer.byteLength(path.join(dirs.root, 'socket', '.s.PGSQL.65535'))).toBeGreaterThan(107);
    expect((await fs.stat(dirs.socket)).mode & 0o777).toBe(0o700);
    await fs.cp(base, dirs.data, { recursive: true });
    for (const name of wal) {
      const staged = path.join(dirs.root, `staged-${name}`);
      await fs.copyFile(path.join(cluster.walDir, name), staged);
      await placeWal(dirs, staged, name);
    }
    const instance = await recoverInstance(dirs, target.t, { wal });
    try {
      const [row] = (await sql(instance.url('shop', cluster.server.user), 'SELECT count(*)::int AS n FROM pitr_rows')).rows as { n: number }[];
      expect(row.n).toBe(target.expected);
    } finally {
      await instance.stop();
    }
    expect(await discardPitrWorkDir(deep, id)).toBe(true);
    for (const gone of [dirs.root, dirs.socket]) expect(await fs.stat(gone).then(() => true, () => false)).toBe(false);
  });

  it('aborted while pg_ctl start waits for the instance (a cancelled restore): the instance is stopped, and the discard leaves no folder, socket folder or process', { timeout: 240_000 }, async () => {
    // Under a deep home, as in a real one: the socket folder is one of /tmp, which must go too.
    const deep = path.join(home, 'a-home-folder-as-deep-as-a-team-might-keep-it'.repeat(2));
    const id = `cancel${process.pid}x${++restores}`;
    const dirs = await makePitrWorkDir(deep, id);
    expect(dirs.socketApart).toBe(true);
    await fs.cp(base, dirs.data, { recursive: true });
    const job = new AbortController();
    const recovering = recoverInstance(dirs, target.t, { wal, signal: job.signal });
    recovering.catch(() => undefined);
    // No WAL placed: the replay waits for the first file, so the hot standby never gets
    // consistent and pg_ctl start -w is still waiting for it.
    await until(() => waiting(dirs.root), (p) => p.length > 0, 'the replay to wait for WAL', 120_000);
    const pgCtl = await running(dirs.data, 'pg_ctl');
    expect(pgCtl).toHaveLength(1);
    const pid = Number((await fs.readFile(path.join(dirs.data, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    job.abort(new Error('cancelled'));
    await expect(recovering).rejects.toMatchObject({ code: 'ABORTED' });
    try {
      // Stopped before recoverInstance gave up: the job's discard that follows kills nothing.
      expect(await alive(pid)).toBe(false);
      expect(await alive(pgCtl[0])).toBe(false);
      await expect(fs.access(path.join(dirs.data, 'postmaster.pid'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      expect(await discardPitrWorkDir(deep, id)).toBe(true);
    }
    for (const gone of [dirs.root, dirs.socket]) expect(await fs.stat(gone).then(() => true, () => false)).toBe(false);
    expect(await running(dirs.root)).toEqual([]);
  });

  it('the work folder removed while the replay waits (the sweep after a killed worker): no instance, no waiting restore_command, no folder left', { timeout: 240_000 }, async () => {
    const { id, dirs } = await workFolder();
    const recovering = recoverInstance(dirs, target.t, { wal });
    recovering.catch(() => undefined);
    await until(() => waiting(dirs.root), (p) => p.length > 0, 'the replay to wait for WAL', 120_000);
    const pid = Number((await fs.readFile(path.join(dirs.data, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    expect(await discardPitrWorkDir(home, id)).toBe(true);
    await expect(recovering).rejects.toThrow();
    await until(() => waiting(dirs.root), (p) => p.length === 0, 'the restore_command to end');
    expect(await fs.stat(dirs.root).then(() => true, () => false)).toBe(false);
    expect(await fs.stat(`/proc/${pid}`).then(() => true, () => false)).toBe(false);
  });
});
