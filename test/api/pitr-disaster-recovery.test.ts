/**
 * README's "A cluster to a point in time, by hand", run as it stands: its bash block, taken
 * from README.md, against a repository the PITR fixture wrote, with stock restic and the
 * PostgreSQL 15 binaries only, as the postgres user. Then the recovered rows are exactly those
 * committed at or before the time asked for.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalBackend } from '../../src/destinations/local.ts';
import { Repository } from '../../src/engine/api.ts';
import { freePort, pgRunAs } from '../../src/db/pg-server.ts';
import { sql } from '../harness/live-environment.ts';
import { startPitrCluster, startWorkload, timeBetweenCommits, type PitrCluster } from '../harness/pitr-fixture.ts';

const exec = promisify(execFile);
const PASSWORD = 'the one thing to keep';
const PGBIN = '/usr/lib/postgresql/15/bin';

/** The bash block under README's heading for recovery by hand. */
async function readmeBlock(): Promise<string> {
  const readme = await fs.readFile(path.join(import.meta.dirname, '../../README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### A cluster to a point in time, by hand'));
  const m = /```bash\n([\s\S]*?)```/.exec(section);
  if (!m) throw new Error('README has no bash block under "A cluster to a point in time, by hand"');
  return m[1];
}

let cluster: PitrCluster;
let root: string;

beforeAll(async () => {
  cluster = await startPitrCluster();
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-pitr-dr-'));
});
afterAll(async () => {
  const work = path.join(root, 'work');
  await exec('runuser', ['-u', 'postgres', '--', `${PGBIN}/pg_ctl`, '-D', path.join(work, 'data'), '-m', 'immediate', 'stop']).catch(() => undefined);
  await cluster?.stop();
  if (root) await fs.rm(root, { recursive: true, force: true });
});

it('recovers a cluster to a time between two commits with restic and PostgreSQL alone, following the README', async () => {
  const repoDir = path.join(root, 'repository');
  const repo = await Repository.init(new LocalBackend(repoDir, { fsync: false }), PASSWORD, { kdf: { N: 1024, r: 8, p: 1 } });
  let target: { t: Date; expected: number };
  try {
    await sql(cluster.url(), 'CREATE DATABASE shop');
    const workload = startWorkload(cluster.url('shop'));
    // Two base backups and WAL snapshots around them, one closing a segment, the last one
    // ending in a .partial: the block must pick the right base and finish the partial.
    await cluster.archiveWal(repo);
    await cluster.baseBackup(repo);
    await cluster.archiveWal(repo, { switchSegment: true });
    const second = await cluster.baseBackup(repo);
    await cluster.archiveWal(repo, { switchSegment: true });
    const afterBase = new Date();
    await until(() => workload.committed() > 20);
    await new Promise((r) => setTimeout(r, 1500));
    const last = await cluster.archiveWal(repo);
    expect(last.files.some((f) => f.endsWith('.partial'))).toBe(true);
    await workload.stop();
    target = await timeBetweenCommits(cluster.url('shop'), new Date(afterBase.getTime() + 1000), last.time);
    expect(target.t.getTime()).toBeGreaterThan(second.time.getTime());
    expect(target.t.getTime()).toBeLessThan(last.time.getTime());
    const [{ n: total }] = (await sql(cluster.url('shop'), 'SELECT count(*)::int AS n FROM pitr_rows')).rows;
    expect(total).toBeGreaterThan(target.expected);
  } finally {
    await repo.close();
  }

  // A folder as it would come from a bucket: the postgres user's own copy.
  const { uid, gid } = await pgRunAs();
  const work = path.join(root, 'work');
  await fs.mkdir(work);
  if (uid !== undefined) await exec('chown', ['-R', `${uid}:${gid}`, repoDir, work]);
  await fs.chmod(root, 0o755);
  const port = await freePort();
  const env = {
    RESTIC_REPOSITORY: repoDir,
    RESTIC_PASSWORD: PASSWORD,
    SYSID: cluster.sysid,
    TARGET: target.t.toISOString().replace('T', ' ').replace('Z', '+00'),
    WORK: work,
    PGBIN,
    PORT: String(port),
  };
  const envArgs = ['env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'bash', '-c', await readmeBlock()];
  const asPostgres = uid !== undefined ? ['runuser', '-u', 'postgres', '--'] : [];
  const [cmd, ...args] = [...asPostgres, ...envArgs];
  const { stdout } = await exec(cmd, args, { maxBuffer: 16 << 20 });
  expect(stdout).toContain(`recovered to ${env.TARGET}`);

  const recovered = `postgresql://postgres@/shop?host=${encodeURIComponent(path.join(work, 'socket'))}&port=${port}`;
  const rows = (await sql(recovered, 'SELECT count(*)::int AS n, max(stamped) AS newest FROM pitr_rows')).rows[0];
  expect(rows.n).toBe(target.expected);
  expect((rows.newest as Date).getTime()).toBeLessThanOrEqual(target.t.getTime());
  // Nothing of what came after: the recovered cluster is a new timeline, promoted.
  expect((await sql(recovered, 'SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(false);
}, 300_000);

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 20));
}
