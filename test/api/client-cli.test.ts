/**
 * The client command line (`backplane snapshot …`, `backplane operation watch`) run as a real
 * process against a running server with a real environment: exit codes, JSON lines, progress,
 * name resolution, and a watch that survives a cut connection.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gid, makeApiKey } from '../harness/factories.ts';
import { databaseDigest, sql } from '../harness/live-environment.ts';
import { until } from '../harness/process.ts';
import { startSnapshot, startSnapshotSuite } from '../harness/snapshot-helpers.ts';
import type { TestApp } from '../harness/app.ts';
import type { LiveEnvironment } from '../harness/live-environment.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Run {
  code: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
  /** stdout lines so far (a line is added when it is complete). */
  lines: string[];
  stdout: () => string;
  stderr: () => string;
}

/** Starts `backplane …` with BACKPLANE_URL/TOKEN from `env` (none when left out). */
function start(args: string[], env: Record<string, string> = {}, cwd = ROOT): Run {
  const { BACKPLANE_URL: _u, BACKPLANE_TOKEN: _t, ...rest } = process.env;
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/backplane.js'), ...args], { cwd, env: { ...rest, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const lines: string[] = [];
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  readline.createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
  const code = new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  return { code, lines, stdout: () => out, stderr: () => err, kill: (signal) => child.kill(signal) };
}

async function run(args: string[], env: Record<string, string> = {}) {
  const r = start(args, env);
  const code = await r.code;
  return { code, stdout: r.stdout(), stderr: r.stderr(), lines: r.lines };
}

const jsonLines = (lines: string[]) => lines.map((l) => JSON.parse(l) as { event: string; status: string; phase?: string; error?: string; snapshot?: { id: string; status: string } });

// Every command is a fresh process (seconds each on a loaded machine): generous limits.
describe('backplane snapshot / operation (client)', { timeout: 300_000 }, () => {
  let app: TestApp;
  let key: string;
  let env: LiveEnvironment;
  let ref: string;
  let auth: Record<string, string>;

  beforeAll(async () => {
    const suite = await startSnapshotSuite({ envName: 'staging' });
    ({ app, key, env } = suite);
    const project = await app.runtime.db.project.findUniqueOrThrow({ where: { id: env.projectId } });
    ref = `${project.name}/staging`;
    auth = { BACKPLANE_URL: app.url, BACKPLANE_TOKEN: key };
  });
  afterAll(() => app?.stop());

  it('exits 2 with a message on usage errors, before contacting any server', async () => {
    const cases = [
      ['snapshot', 'create'],
      ['snapshot', 'create', '--env', ref, '--db-only', '--files-only'],
      ['snapshot', 'create', '--env', ref, '--frobnicate'],
      ['snapshot', 'list', '--env', ref, '--kind', 'WEEKLY'],
      ['snapshot', 'restore'],
      ['snapshot', 'explode'],
      ['operation', 'watch'],
    ];
    for (const args of cases) {
      const r = await run(args, { BACKPLANE_URL: 'http://127.0.0.1:9/graphql', BACKPLANE_TOKEN: 'x' });
      expect([args.join(' '), r.code]).toEqual([args.join(' '), 2]);
      expect(r.stderr).toMatch(/^backplane: \S/);
    }
    for (const args of [['snapshot', '--help'], ['snapshot', 'create', '--help']]) {
      const help = await run(args);
      expect([args.join(' '), help.code]).toEqual([args.join(' '), 0]);
      expect(help.stdout).toContain('snapshot restore  <snapshot>');
    }
    const noServer = await run(['snapshot', 'list', '--env', ref]);
    expect(noServer.code).toBe(2);
    expect(noServer.stderr).toContain('BACKPLANE_URL');
  });

  it('says clearly that the API key was refused (exit 5) and changes nothing', async () => {
    const r = await run(['snapshot', 'create', '--env', gid('Environment', env.id), '--wait'], { BACKPLANE_URL: app.url, BACKPLANE_TOKEN: 'bp_not_a_real_key' });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/^backplane: the server refused the API key/);
    expect(await app.runtime.db.snapshot.count({ where: { environmentId: env.id } })).toBe(0);

    const readOnly = (await makeApiKey(app.runtime.db, env.organizationId, { scopes: ['backups:read'] })).secret;
    const denied = await run(['snapshot', 'create', '--env', ref], { BACKPLANE_URL: app.url, BACKPLANE_TOKEN: readOnly });
    expect(denied.code).toBe(5);
    expect(denied.stderr).toMatch(/^backplane: the server refused the API key: \S/);
    expect(await app.runtime.db.snapshot.count({ where: { environmentId: env.id } })).toBe(0);
  });

  it('exits 4 when the server cannot be reached', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const r = await run(['snapshot', 'list', '--env', ref], { BACKPLANE_URL: `http://127.0.0.1:${port}`, BACKPLANE_TOKEN: key });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`cannot reach http://127.0.0.1:${port}/graphql`);
  });

  let snapshotId: string;

  it('snapshot create --wait --json: one JSON line per change, ending in SUCCEEDED, exit 0', async () => {
    const r = await run(['snapshot', 'create', '--env', ref, '--label', 'from the cli', '--wait', '--json'], auth);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const events = jsonLines(r.lines);
    expect(events.length).toBeGreaterThan(1);
    expect(events.every((e) => e.event === 'operation')).toBe(true);
    expect(events.at(-1)).toMatchObject({ status: 'SUCCEEDED', snapshot: { status: 'READY' } });
    snapshotId = events.at(-1)!.snapshot!.id;
    const row = await app.runtime.db.snapshot.findFirstOrThrow({ where: { environmentId: env.id } });
    expect(gid('Snapshot', row.id)).toBe(snapshotId);
    expect([row.status, row.label]).toEqual(['READY', 'from the cli']);
  });

  it('snapshot create --wait without --json prints progress lines and the result', async () => {
    const r = await run(['snapshot', 'create', '--env', gid('Environment', env.id), '--db-only', '--wait'], auth);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.lines[0]).toMatch(/^snapshot \S+, operation \S+$/);
    // Not a terminal: plain lines, no carriage-return redraws.
    expect(r.stdout).not.toContain('\r');
    expect(r.lines.at(-1)).toMatch(/^operation \S+ succeeded \(snapshot \S+ READY\)$/);
    expect(r.lines.at(-2)).toMatch(/^succeeded/);
    const db = await app.runtime.db.snapshot.findFirstOrThrow({ where: { environmentId: env.id, label: null } });
    expect(db.includes).toEqual(['DB']);
  });

  it('a failing snapshot exits 1 with the operation\'s error on stderr', async () => {
    await app.runtime.db.environment.update({ where: { id: env.id }, data: { filesPath: path.join(env.filesPath, 'gone') } });
    try {
      const r = await run(['snapshot', 'create', '--env', ref, '--files-only', '--wait', '--json'], auth);
      expect(r.code).toBe(1);
      expect(jsonLines(r.lines).at(-1)).toMatchObject({ status: 'FAILED' });
      expect(r.stderr).toMatch(/^backplane: operation \S+ failed: .*gone/m);
    } finally {
      await app.runtime.db.environment.update({ where: { id: env.id }, data: { filesPath: env.filesPath } });
    }
  });

  it('snapshot list shows the snapshots, filtered by kind and status', async () => {
    const all = await run(['snapshot', 'list', '--env', ref, '--json'], auth);
    expect(all.code).toBe(0);
    const rows = JSON.parse(all.stdout) as Array<{ id: string; status: string; label: string | null }>;
    expect(rows.map((s) => s.status).sort()).toEqual(['FAILED', 'READY', 'READY']);
    expect(rows.find((s) => s.id === snapshotId)?.label).toBe('from the cli');

    const ready = await run(['snapshot', 'list', '--env', ref, '--status', 'ready', '--kind', 'MANUAL'], auth);
    expect(ready.code).toBe(0);
    expect(ready.lines[0]).toMatch(/^ID\s+KIND\s+STATUS\s+INCLUDES\s+SIZE\s+CREATED\s+LABEL$/);
    expect(ready.lines).toHaveLength(3);
    expect(ready.stdout).toContain(snapshotId);
    expect(ready.stdout).not.toContain('FAILED');

    const none = await run(['snapshot', 'list', '--env', ref, '--kind', 'SAFETY', '--json'], auth);
    expect(JSON.parse(none.stdout)).toEqual([]);
  });

  it('names that do not resolve fail with a clear message (exit 1)', async () => {
    const r = await run(['snapshot', 'list', '--env', 'no-such-project/staging'], auth);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no project named "no-such-project"');
  });

  it('snapshot restore --wait brings the data back and takes a safety snapshot first', async () => {
    const before = await databaseDigest(env.databaseUrl);
    await sql(env.databaseUrl, 'DELETE FROM orders WHERE id % 2 = 0');
    expect(await databaseDigest(env.databaseUrl)).not.toEqual(before);
    const r = await run(['snapshot', 'restore', snapshotId, '--wait', '--json'], auth);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const events = jsonLines(r.lines);
    expect(events.at(-1)?.status).toBe('SUCCEEDED');
    expect(await databaseDigest(env.databaseUrl)).toEqual(before);
    expect(await app.runtime.db.snapshot.count({ where: { environmentId: env.id, kind: 'SAFETY' } })).toBe(1);
  });

  describe('snapshot download', () => {
    let reference: Buffer;
    let etag: string;
    let dir: string;
    beforeAll(async () => {
      // The archive as the API's own link serves it, fetched without the command line.
      const { SnapshotDownloadDocument } = await import('../generated/graphql.ts');
      const res = await app.gql(SnapshotDownloadDocument, { id: snapshotId }, { key });
      const link = res.data!.snapshot!.download;
      if (link.__typename !== 'Download') throw new Error(JSON.stringify(res));
      const served = await fetch(new URL(link.url, app.url));
      etag = served.headers.get('etag')!;
      reference = Buffer.from(await served.arrayBuffer());
      expect(reference.length).toBeGreaterThan(200_000);
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-cli-download-'));
    });
    afterAll(() => fs.rm(dir, { recursive: true, force: true }));

    it('writes the archive under the server\'s file name, and never a partial one under it', async () => {
      const r = start(['snapshot', 'download', snapshotId], auth, dir);
      expect(await r.code).toBe(0);
      const files = await fs.readdir(dir);
      expect(files).toHaveLength(1);
      expect(files[0]).toMatch(/^staging-\d{8}T\d{6}Z-full\.tar\.zst$/);
      expect((await fs.readFile(path.join(dir, files[0]!))).equals(reference)).toBe(true);
      expect(r.lines.at(-1)).toBe(`saved ${path.join(dir, files[0]!)}`);
    });

    it('resumes from a part file, and starts over when the part is not the same archive', async () => {
      const out = path.join(dir, 'resumed.tar.zst');
      await fs.writeFile(`${out}.part`, reference.subarray(0, 150_000));
      const r = await run(['snapshot', 'download', snapshotId, '-o', out], auth);
      expect(r.code).toBe(0);
      expect(r.stderr).toContain('resuming');
      expect((await fs.readFile(out)).equals(reference)).toBe(true);
      await expect(fs.stat(`${out}.part`)).rejects.toThrow();

      const other = path.join(dir, 'other.tar.zst');
      await fs.writeFile(`${other}.part`, Buffer.alloc(1000, 1));
      const again = await run(['snapshot', 'download', snapshotId, '-o', other], auth);
      expect(again.code).toBe(0);
      expect(again.stderr).toContain('starting over');
      expect((await fs.readFile(other)).equals(reference)).toBe(true);
    });

    it('a part of the same archive (its ETag kept beside it) is resumed with a range; a whole one is only renamed', async () => {
      const out = path.join(dir, 'ranged.tar.zst');
      await fs.writeFile(`${out}.part`, reference.subarray(0, 150_000));
      await fs.writeFile(`${out}.part.etag`, etag);
      const r = await run(['snapshot', 'download', snapshotId, '-o', out], auth);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/resuming .* at /);
      expect(r.stderr).not.toContain('compared');
      expect((await fs.readFile(out)).equals(reference)).toBe(true);
      await expect(fs.stat(`${out}.part.etag`)).rejects.toThrow();

      const whole = path.join(dir, 'whole.tar.zst');
      await fs.writeFile(`${whole}.part`, reference);
      await fs.writeFile(`${whole}.part.etag`, etag);
      const again = await run(['snapshot', 'download', snapshotId, '-o', whole], auth);
      expect(again.code).toBe(0);
      expect((await fs.readFile(whole)).equals(reference)).toBe(true);
      await expect(fs.stat(`${whole}.part`)).rejects.toThrow();
    });

    it('a connection cut mid-download is retried and resumed (exit 0, the same bytes)', async () => {
      const proxy = await startCuttableProxy(Number(new URL(app.url).port), { cutOnce: { request: /^GET \/downloads\//m, afterBytes: 100_000 } });
      try {
        const out = path.join(dir, 'cut.tar.zst');
        const r = await run(['snapshot', 'download', snapshotId, '-o', out], { BACKPLANE_URL: proxy.url, BACKPLANE_TOKEN: key });
        expect(r.stderr).toContain('download interrupted');
        expect(r.stderr).toContain('resuming');
        expect(r.code).toBe(0);
        expect((await fs.readFile(out)).equals(reference)).toBe(true);
      } finally {
        await proxy.stop();
      }
    });

    it('an unknown variant is a usage error', async () => {
      expect((await run(['snapshot', 'download', snapshotId, '--variant', 'ALL'], auth)).code).toBe(2);
    });
  });

  it('snapshot restore --into puts the snapshot into another environment, found by name', async () => {
    const { makeLiveEnvironment } = await import('../harness/live-environment.ts');
    const qa = await makeLiveEnvironment(app, { organizationId: env.organizationId, projectId: env.projectId, name: 'qa', rows: 20, destinationId: env.destinationId });
    const source = await databaseDigest(env.databaseUrl);
    expect(await databaseDigest(qa.databaseUrl)).not.toEqual(source);
    const r = await run(['snapshot', 'restore', snapshotId, '--into', `${ref.split('/')[0]}/qa`, '--no-safety-snapshot', '--wait'], auth);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.lines.at(-1)).toMatch(/^operation \S+ succeeded\b/);
    expect(await databaseDigest(qa.databaseUrl)).toEqual(source);
    expect(await app.runtime.db.snapshot.count({ where: { environmentId: qa.id, kind: 'SAFETY' } })).toBe(0);
  });

  it('a refused restore exits 1 with the server\'s error and its code', async () => {
    const r = await run(['snapshot', 'restore', gid('Snapshot', '00000000-0000-0000-0000-000000000000'), '--no-safety-snapshot'], auth);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^backplane: .+ \[SNAPSHOT_NOT_FOUND\]$/m);
  });
});

/**
 * A TCP proxy in front of the server that can cut every connection and refuse new ones, then
 * come back on the same port: a network outage, as the client sees it.
 */
async function startCuttableProxy(target: number, opts: { cutOnce?: { request: RegExp; afterBytes: number } } = {}) {
  const sockets = new Set<net.Socket>();
  let upgrades = 0;
  let cutOnce = opts.cutOnce;
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.once('data', (d) => {
      const head = d.toString('latin1');
      if (/^GET [^\r]*\r\n(?:[^\r]*\r\n)*upgrade: websocket/i.test(head)) upgrades++;
    });
    // Requests share kept-alive connections: look at every request a client sends.
    client.on('data', (d: Buffer) => {
      const cut = cutOnce;
      if (!cut || !cut.request.test(d.toString('latin1'))) return;
      // The first matching answer is cut after so many bytes, as a dropped network would.
      cutOnce = undefined;
      let relayed = 0;
      upstream.on('data', (chunk: Buffer) => {
        relayed += chunk.length;
        if (relayed >= cut.afterBytes) {
          client.destroy();
          upstream.destroy();
        }
      });
    });
    client.pipe(upstream).pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/graphql`,
    upgrades: () => upgrades,
    async cut() {
      const closed = new Promise((r) => server.close(r));
      for (const s of sockets) s.destroy();
      sockets.clear();
      await closed;
    },
    restore: () => new Promise<void>((r) => server.listen(port, '127.0.0.1', r)),
    stop: () => new Promise((r) => server.close(r)),
  };
}

describe('operation watch through a lost connection', { timeout: 300_000 }, () => {
  let suite: Awaited<ReturnType<typeof startSnapshotSuite>>;
  // No worker at first: snapshots stay QUEUED until a test starts one, so the cancel and the
  // cut certainly happen mid-operation.
  beforeAll(async () => {
    suite = await startSnapshotSuite({ worker: false });
  });
  afterAll(() => suite?.app.stop());

  it('exits 3 with the reason when the operation is cancelled', async () => {
    const { app, key, env } = suite;
    const { operationId } = await startSnapshot(app, key, env.id);
    const watch = start(['operation', 'watch', operationId], { BACKPLANE_URL: app.url, BACKPLANE_TOKEN: key });
    await until(async () => watch.lines.length, (n) => n >= 1, 'the first state');
    const { CancelOperationDocument } = await import('../generated/graphql.ts');
    const res = await app.gql(CancelOperationDocument, { input: { id: operationId } }, { key });
    expect(res.data?.cancelOperation.__typename).toBe('OperationPayload');
    expect(await watch.code).toBe(3);
    expect(watch.stderr()).toMatch(/^backplane: operation \S+ was cancelled/m);
  });

  it('Ctrl-C stops the watching, not the operation (exit 130, how to watch again)', async () => {
    const { app, key, env } = suite;
    const { operationId } = await startSnapshot(app, key, env.id);
    const watch = start(['operation', 'watch', operationId], { BACKPLANE_URL: app.url, BACKPLANE_TOKEN: key });
    await until(async () => watch.lines.length, (n) => n >= 1, 'the first state');
    watch.kill('SIGINT');
    expect(await watch.code).toBe(130);
    expect(watch.stderr()).toContain(`backplane operation watch ${operationId}`);
    const { decodeGlobalID } = await import('@pothos/plugin-relay');
    const op = await app.runtime.db.operation.findUniqueOrThrow({ where: { id: decodeGlobalID(operationId).id } });
    expect(op.status).toBe('QUEUED');
  });

  it('reconnects, re-reads the state, resubscribes and ends with the outcome (exit 0)', async () => {
    const { app, key, env } = suite;
    const port = Number(new URL(app.url).port);
    const proxy = await startCuttableProxy(port);
    try {
      const { operationId } = await startSnapshot(app, key, env.id);
      const watch = start(['operation', 'watch', operationId, '--json'], { BACKPLANE_URL: proxy.url, BACKPLANE_TOKEN: key });
      await until(async () => watch.lines.length, (n) => n >= 1, 'the first state');
      await until(async () => proxy.upgrades(), (n) => n >= 1, 'the subscription to connect');
      expect(JSON.parse(watch.lines[0]!)).toMatchObject({ status: 'QUEUED' });

      await proxy.cut();
      await until(async () => watch.stderr(), (s) => (s.match(/reconnecting/g) ?? []).length >= 2, 'failed reconnect attempts', 60_000);
      await proxy.restore();
      // Back with the operation still queued: the client re-reads it and subscribes again.
      await until(async () => proxy.upgrades(), (n) => n >= 2, 'the subscription to connect again', 60_000);
      await app.startWorker();

      expect(await watch.code).toBe(0);
      expect(watch.stderr()).toMatch(/connection to ws:\/\/127\.0\.0\.1:\d+\/graphql lost/);
      const events = jsonLines(watch.lines);
      expect(events.at(-1)).toMatchObject({ status: 'SUCCEEDED', snapshot: { status: 'READY' } });
    } finally {
      await proxy.stop();
    }
  });
});
