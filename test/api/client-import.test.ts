/**
 * The "done when" for imports, exactly: from a fresh start (`backplane start` with no
 * configuration: the embedded PostgreSQL and the demo environment), `backplane import` of a plain
 * .sql.gz and of a custom-format dump both work on the demo environment, run as a user runs them.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { createScratchDatabase } from '../harness/database.ts';
import { seedDatabase, sql } from '../harness/live-environment.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const exec = promisify(execFile);
let child: ChildProcess | undefined;
let home: string | undefined;

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  if (home) await fs.rm(home, { recursive: true, force: true });
});

function userEnv(backplaneHome: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, BACKPLANE_HOME: backplaneHome, PORT: '0', LOG_LEVEL: 'info' };
  for (const name of ['DATABASE_URL', 'BACKPLANE_SECRET_KEY', 'PUBLIC_URL', 'BACKPLANE_URL', 'BACKPLANE_TOKEN']) delete env[name];
  return env;
}

/** Starts `backplane start`; resolves with its port and banner once the banner is printed. */
function start(env: NodeJS.ProcessEnv): Promise<{ port: number; banner: string }> {
  child = spawn(process.execPath, [path.join(ROOT, 'bin/backplane.js'), 'start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let port: number | undefined;
  return new Promise((resolve, reject) => {
    const done = () => port !== undefined && /Stop with Ctrl-C/.test(stderr) && resolve({ port, banner: stderr });
    readline.createInterface({ input: child!.stdout! }).on('line', (line) => {
      try {
        const rec = JSON.parse(line) as { msg?: string; port?: number };
        if (rec.msg === 'listening') port = rec.port;
      } catch {
        // not a log line
      }
      done();
    });
    child!.stderr!.on('data', (d) => {
      stderr += d;
      done();
    });
    child!.once('exit', (code) => reject(new Error(`backplane start exited with ${code}:\n${stderr}`)));
  });
}

async function backplane(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [path.join(ROOT, 'bin/backplane.js'), ...args], { cwd: ROOT, env, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** What the tables hold, the same query on both sides. */
const DIGEST = `SELECT (SELECT count(*) FROM customers) || ':' || (SELECT md5(string_agg(c::text, '|' ORDER BY c.id)) FROM customers c) || ':' || (SELECT md5(string_agg(o::text, '|' ORDER BY o.id)) FROM orders o) || ':' || (SELECT string_agg(note, ',') FROM imported_marker)`;

describe('backplane import on the demo environment, from a fresh start', () => {
  it('imports a plain .sql.gz and a custom-format dump with --wait; each leaves an IMPORT snapshot', { timeout: 420_000 }, async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-import-cli-'));
    await fs.chmod(home, 0o777);
    const env = userEnv(path.join(home, '.backplane'));
    const { port, banner } = await start(env);
    const key = /Admin API key \(shown once, keep it\):\s+(bp_\S+)/.exec(banner)?.[1];
    expect(key, banner).toBeTruthy();
    const client = { ...env, BACKPLANE_URL: `http://127.0.0.1:${port}/graphql`, BACKPLANE_TOKEN: key! };

    // Two dumps of another server's database, as a user would bring them.
    const dumps = [
      { name: 'plain', file: path.join(home, 'shop.sql.gz'), marker: 'from the plain dump', format: 'plain' },
      { name: 'custom', file: path.join(home, 'shop.dump'), marker: 'from the custom dump', format: 'custom' },
    ];
    const digests: string[] = [];
    for (const d of dumps) {
      const url = await createScratchDatabase('import-cli');
      await seedDatabase(url, d.name === 'plain' ? 80 : 150);
      await sql(url, `CREATE TABLE imported_marker (note text); INSERT INTO imported_marker VALUES ('${d.marker}')`);
      const { stdout } = await exec('pg_dump', [`--format=${d.format}`, '--no-owner', '--no-privileges', '--dbname', url], { encoding: 'buffer', maxBuffer: 256 << 20 });
      await fs.writeFile(d.file, d.format === 'plain' ? gzipSync(stdout as unknown as Buffer) : (stdout as unknown as Buffer));
      digests.push(String((await sql(url, DIGEST)).rows[0]['?column?']));
    }

    for (const [i, d] of dumps.entries()) {
      const r = await backplane(client, 'import', d.file, '--env', 'Demo/demo', '--wait', '--json');
      expect(r.code, `${d.name}: ${r.stderr}`).toBe(0);
      const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { status?: string; phase?: string });
      expect(events.at(-1)).toMatchObject({ status: 'SUCCEEDED' });
      // The phases an import goes through, as the subscription reported them (a late watcher may miss early ones).
      expect(events.map((e) => e.phase)).toContain('done');

      const inDemo = await backplane(env, 'psql', 'demo', '-At', '-c', DIGEST);
      expect(inDemo.code, inDemo.stderr).toBe(0);
      expect(inDemo.stdout.trim()).toBe(digests[i]);

      const list = await backplane(client, 'snapshot', 'list', '--env', 'Demo/demo', '--kind', 'IMPORT', '--json');
      expect(list.code, list.stderr).toBe(0);
      const imports = JSON.parse(list.stdout) as { kind: string; status: string; includes: string[] }[];
      expect(imports).toHaveLength(i + 1);
      expect(imports.every((s) => s.kind === 'IMPORT' && s.status === 'READY')).toBe(true);
      const safety = await backplane(client, 'snapshot', 'list', '--env', 'Demo/demo', '--kind', 'SAFETY', '--json');
      expect(JSON.parse(safety.stdout)).toHaveLength(i + 1);
    }

    // A file that is no dump: refused with its code, exit 1, the demo as the last import left it.
    const noise = path.join(home, 'photo.sql');
    await fs.writeFile(noise, Buffer.from('\x89PNG\r\n\x1a\n\0\0\0\rIHDR', 'latin1'));
    const refused = await backplane(client, 'import', noise, '--env', 'Demo/demo', '--wait');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('IMPORT_FORMAT_UNKNOWN');
    expect((await backplane(env, 'psql', 'demo', '-At', '-c', DIGEST)).stdout.trim()).toBe(digests[1]);
  });
});
