/**
 * The recovery instance pauses at its target in hot standby instead of promoting, with the
 * settings hot standby needs read from the base backup's control file; and when the source raised
 * one of them after the base backup (a restart with more max_worker_processes), the replay pauses
 * before the target, which recoverInstance must not take for the target: it recovers again and
 * promotes, and the rows are still exactly those committed by the time.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgRunAs, startScratchPostgres, type ScratchPostgres } from '../../src/db/pg-server.ts';
import { discardPitrWorkDir, makePitrWorkDir, placeWal, recoverInstance } from '../../src/sources/pitr-instance.ts';
import { sql } from '../harness/live-environment.ts';
import { startWorkload, timeBetweenCommits } from '../harness/pitr-fixture.ts';

const PG_BIN = '/usr/lib/postgresql/15/bin';

let source: ScratchPostgres;
let home: string;
let archive: string;
let base: string;
let wal: string[];
/** A time before the source's restart, and one after it (past the parameter change in the WAL). */
let beforeRaise: { t: Date; expected: number };
let afterRaise: { t: Date; expected: number };
let restores = 0;

const shop = () => source.url('shop');

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, uid: opts.uid, gid: opts.gid, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} failed: ${err}`))));
  });
}

async function commitsAfter(workload: ReturnType<typeof startWorkload>, n: number): Promise<void> {
  const from = workload.committed();
  while (workload.committed() < from + n) await new Promise((r) => setTimeout(r, 20));
}

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-standby-'));
  await fs.chmod(home, 0o755);
  const runAs = await pgRunAs();
  archive = path.join(home, 'archive');
  await fs.mkdir(archive);
  if (runAs.uid !== undefined) await fs.chown(archive, runAs.uid, runAs.gid!);
  source = await startScratchPostgres({ settings: { wal_level: 'replica', archive_mode: 'on' } });
  await sql(source.adminUrl, `ALTER SYSTEM SET archive_command = 'cp %p ${archive}/%f'`);
  await sql(source.adminUrl, 'SELECT pg_reload_conf()');
  await sql(source.adminUrl, 'CREATE DATABASE shop');
  let workload = startWorkload(shop());
  await commitsAfter(workload, 5);
  base = path.join(home, 'base');
  const pgEnv = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(source.port), PGUSER: source.user, PGPASSWORD: source.password };
  await run(path.join(PG_BIN, 'pg_basebackup'), ['-D', base, '-F', 'plain', '-X', 'none', '--checkpoint=fast'], { env: pgEnv });
  const afterBase = new Date();
  await commitsAfter(workload, 30);
  await workload.stop();
  // A setting hot standby checks, raised by a restart: the WAL gets a parameter change record.
  await sql(source.adminUrl, 'ALTER SYSTEM SET max_worker_processes = 16');
  await run(path.join(PG_BIN, 'pg_ctl'), ['restart', '-D', source.dataDir, '-w', '-t', '60', '-m', 'fast'], { ...runAs, env: { ...process.env, LC_MESSAGES: 'C' } });
  const restarted = new Date();
  workload = startWorkload(shop());
  await commitsAfter(workload, 30);
  await workload.stop();
  // The scratch cluster commits asynchronously: the checkpoint writes every commit's WAL, and the
  // switch hands the last segment to the archiver.
  await sql(source.adminUrl, 'CHECKPOINT');
  const flushed = new Date();
  const [{ f }] = (await sql(source.adminUrl, 'SELECT pg_walfile_name(pg_switch_wal()) AS f')).rows as { f: string }[];
  for (;;) {
    const [{ last }] = (await sql(source.adminUrl, 'SELECT last_archived_wal AS last FROM pg_stat_archiver')).rows as { last: string | null }[];
    if (last !== null && last >= f) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  beforeRaise = await timeBetweenCommits(shop(), new Date(afterBase.getTime() + 300), restarted);
  afterRaise = await timeBetweenCommits(shop(), new Date(restarted.getTime() + 300), flushed);
  wal = (await fs.readdir(archive)).sort();
}, 300_000);

afterAll(async () => {
  await source?.stop();
  if (home) await fs.rm(home, { recursive: true, force: true });
});

/** Recovers a copy of the base backup to `t` with the whole archive placed, and reads the rows. */
async function recoverTo(t: Date) {
  const id = `standby${++restores}`;
  const dirs = await makePitrWorkDir(home, id);
  await fs.cp(base, dirs.data, { recursive: true });
  for (const name of wal) {
    const staged = path.join(dirs.root, `staged-${name}`);
    await fs.copyFile(path.join(archive, name), staged);
    await placeWal(dirs, staged, name);
  }
  const instance = await recoverInstance(dirs, t, { wal });
  try {
    const url = instance.url('shop', source.user);
    const [row] = (await sql(url, 'SELECT count(*)::int AS n, max(stamped) AS newest, pg_is_in_recovery() AS recovering FROM pitr_rows')).rows as { n: number; newest: Date; recovering: boolean }[];
    const log = await fs.readFile(path.join(dirs.root, 'server.log'), 'utf8');
    return { instance, row, log };
  } finally {
    await instance.stop();
    await discardPitrWorkDir(home, id);
  }
}

describe('recoverInstance in hot standby', () => {
  it('pauses at the target without promoting, read-only, with exactly the rows committed by the time', { timeout: 240_000 }, async () => {
    const { instance, row, log } = await recoverTo(beforeRaise.t);
    expect(instance.paused).toBe(true);
    expect(instance.toEndOfArchive).toBe(false);
    expect(row.recovering).toBe(true);
    expect(row.n).toBe(beforeRaise.expected);
    expect(row.newest.getTime()).toBeLessThanOrEqual(beforeRaise.t.getTime());
    expect(log).toContain('pausing at the end of recovery');
    // No end-of-recovery checkpoint, no new timeline.
    expect(log).not.toContain('selected new timeline ID');
    expect(log).not.toMatch(/checkpoint starting: end-of-recovery/);
  });

  it('a setting the source raised after the base backup pauses the replay early: it recovers again and promotes, with exactly the rows committed by the time', { timeout: 240_000 }, async () => {
    const { instance, row, log } = await recoverTo(afterRaise.t);
    expect(log).toContain('insufficient parameter settings');
    expect(instance.paused).toBe(false);
    expect(instance.toEndOfArchive).toBe(false);
    expect(row.recovering).toBe(false);
    expect(row.n).toBe(afterRaise.expected);
    expect(row.newest.getTime()).toBeLessThanOrEqual(afterRaise.t.getTime());
  });
});
