import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded.ts';

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

async function postmasterPid(dataDir: string): Promise<number> {
  return Number((await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
}

/** Whether `pid` is a running process; a zombie nobody reaped (no init in a container) is not. */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
}

let stateDir: string;
let dataDir: string;
const started: EmbeddedPostgres[] = [];

async function start(): Promise<EmbeddedPostgres> {
  const pgs = await startEmbeddedPostgres({ stateDir });
  started.push(pgs);
  return pgs;
}

beforeEach(async () => {
  stateDir = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'bp-embedded-')), '.backplane');
  dataDir = path.join(stateDir, 'pg');
});

afterEach(async () => {
  for (const pgs of started.splice(0)) await pgs.stop();
  await fs.rm(path.dirname(stateDir), { recursive: true, force: true });
});

describe('embedded PostgreSQL', () => {
  it('keeps its cluster, port and password from one start to the next', async () => {
    const first = await start();
    const url = await first.createDatabase('demo');
    expect(await first.createDatabase('demo')).toBe(url);
    await query(url, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')`);
    const state = JSON.parse(await fs.readFile(path.join(stateDir, 'embedded.json'), 'utf8'));
    expect(state.port).toBe(first.port);
    expect((await fs.stat(path.join(stateDir, 'embedded.json'))).mode & 0o777).toBe(0o600);
    const version = await fs.stat(path.join(dataDir, 'PG_VERSION'));

    await first.stop();
    expect(existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);
    await expect(query(first.adminUrl, 'SELECT 1')).rejects.toThrow();

    const second = await start();
    expect(second.port).toBe(first.port);
    expect(second.url('demo')).toBe(url);
    expect(await query(url, 'SELECT v FROM kept')).toEqual([{ v: 'still here' }]);
    // Not initialised again.
    expect((await fs.stat(path.join(dataDir, 'PG_VERSION'))).mtimeMs).toBe(version.mtimeMs);
  });

  it('starts after its postmaster was killed with SIGKILL, even with a backend left behind', async () => {
    const first = await start();
    const url = await first.createDatabase('crash');
    await query(url, `CREATE TABLE t (v int); INSERT INTO t VALUES (1)`);
    // The hard case: a backend that outlives its postmaster keeps the shared memory attached,
    // and PostgreSQL refuses to start while it does. A stopped backend cannot notice the death.
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => {});
    await client.connect();
    const backend = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    process.kill(backend, 'SIGSTOP');
    const pid = await postmasterPid(dataDir);
    process.kill(pid, 'SIGKILL');
    started.splice(0);

    const second = await start();
    expect(running(pid)).toBe(false);
    expect(running(backend)).toBe(false);
    expect(await postmasterPid(dataDir)).not.toBe(pid);
    expect(await query(second.url('crash'), 'SELECT v FROM t')).toEqual([{ v: 1 }]);
    await client.end().catch(() => {});
  });

  it('ignores a pid file whose process is not its postmaster', async () => {
    const first = await start();
    await first.stop();
    started.splice(0);
    // A crash leaves the file; the pid now belongs to some other process (here: this one).
    await fs.writeFile(path.join(dataDir, 'postmaster.pid'), `${process.pid}\n${dataDir}\n0\n${first.port}\n\n127.0.0.1\n0 0\nready\n`);
    const second = await start();
    expect(await query<{ ok: number }>(second.adminUrl, 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
  });

  it('adopts a postmaster of its cluster that is still running', async () => {
    const first = await start();
    const pid = await postmasterPid(dataDir);
    // Our process "crashed" without stopping the server: the next start must not start it twice.
    started.splice(0);
    const second = await start();
    expect(await postmasterPid(dataDir)).toBe(pid);
    expect(second.port).toBe(first.port);
    expect(await query<{ ok: number }>(second.adminUrl, 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
  });

  it('leaves running a server that another live process started, and takes over once that process is gone', async () => {
    const first = await start();
    const pid = await postmasterPid(dataDir);
    started.splice(0);
    // Stand-in for the `backplane start` that owns the server while, say, `backplane migrate` runs.
    const owner = spawn('sleep', ['300'], { stdio: 'ignore' });
    const ownerExited = new Promise((resolve) => owner.once('exit', resolve));
    try {
      const stateFile = path.join(stateDir, 'embedded.json');
      const state = JSON.parse(await fs.readFile(stateFile, 'utf8'));
      expect(state.ownerPid).toBe(process.pid);
      await fs.writeFile(stateFile, JSON.stringify({ ...state, ownerPid: owner.pid }));

      const guest = await startEmbeddedPostgres({ stateDir });
      await guest.stop();
      expect(await postmasterPid(dataDir)).toBe(pid);
      expect(await query<{ ok: number }>(first.adminUrl, 'SELECT 1 AS ok')).toEqual([{ ok: 1 }]);
    } finally {
      owner.kill();
      await ownerExited;
    }

    const heir = await start();
    expect(await postmasterPid(dataDir)).toBe(pid);
    await heir.stop();
    expect(existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);
    expect(JSON.parse(await fs.readFile(path.join(stateDir, 'embedded.json'), 'utf8')).ownerPid).toBeUndefined();
  });
});
