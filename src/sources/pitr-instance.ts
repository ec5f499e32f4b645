/**
 * The temporary PostgreSQL instance a restore to a point in time recovers in: a base backup's
 * data folder plus a folder of WAL (both filled by the caller from the repository, see
 * src/sources/pitr-layout.ts), recovered to the target time with the local PostgreSQL 15
 * binaries, then promoted, so one database can be dumped out of it. It lives in one *work
 * folder*, `<home>/pitr-restore-<id>` (data/, wal/, socket/, the restore_command and its list of
 * expected WAL), which names the restore it belongs
 * to, so the leftovers of a killed worker are found and removed (discardPitrWorkDir). It listens
 * on no TCP address, only on a socket in its own 0700 folder, and trusts local connections: no
 * password of the source is needed, and nobody but the user it runs as can reach it.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { systemPgBinaries, type PgBinaries } from '../db/pg-binaries.ts';
import { freePort, pgRunAs, processAlive, scanProcesses } from '../db/pg-server.ts';
import { startTool } from './child.ts';
import { AbortedError, PgToolError, SourceError } from './errors.ts';
import { restoreInput, runRestore, type DumpSource } from './restore-common.ts';
import { restoreSuffix } from './names.ts';
import { lastSegmentOnPath, parseSegment } from './pitr-layout.ts';
import { HISTORY_NAME } from './wal.ts';

/** Prefix of a work folder under the home; the rest is the restore's suffix (names.ts). */
export const PITR_WORK_PREFIX = 'pitr-restore-';
/**
 * Prefix of a recovery instance's folder (openRecoveryInstance) under the home; the rest is the
 * instance's id without its dashes. Kept after its job ends, unlike a restore's work folder, and
 * removed by the keeper (services/recovery-instance-keeper.ts), never by a restore's clean-up.
 */
export const PITR_INSTANCE_PREFIX = 'pitr-instance-';

/** The longest socket path Linux binds (sun_path holds 108 bytes with its terminating NUL). */
const SOCKET_PATH_MAX = 107;
/** The name PostgreSQL gives its socket in the socket folder, with the longest port. */
const SOCKET_NAME = '.s.PGSQL.65535';

/** A work folder and its parts (pitrWorkDir, instanceWorkDir). */
export interface PitrWorkDir {
  root: string;
  data: string;
  wal: string;
  socket: string;
  socketApart: boolean;
}

/**
 * The folder `<home>/<prefix><suffix>` and its parts. The socket folder is the work folder's own
 * unless the socket's path would be too long to bind (a home deeper than about 60 characters):
 * then it is a folder of /tmp with the same name, found by that name when the folder is discarded.
 */
function workDirOf(home: string, name: string): PitrWorkDir {
  const root = path.join(home, name);
  const inside = path.join(root, 'socket');
  const socketApart = Buffer.byteLength(path.join(inside, SOCKET_NAME)) > SOCKET_PATH_MAX;
  const socket = socketApart ? path.join('/tmp', `backplane-${name}`) : inside;
  return { root, data: path.join(root, 'data'), wal: path.join(root, 'wal'), socket, socketApart };
}

/** The work folder of restore `restoreId` under `home`, and its parts. */
export function pitrWorkDir(home: string, restoreId: string): PitrWorkDir {
  return workDirOf(home, `${PITR_WORK_PREFIX}${restoreSuffix(restoreId)}`);
}

/** The folder of recovery instance `instanceId` under `home`, and its parts. */
export function instanceWorkDir(home: string, instanceId: string): PitrWorkDir {
  return workDirOf(home, `${PITR_INSTANCE_PREFIX}${instanceId.replace(/-/g, '')}`);
}

/** Makes an empty work folder of restore `restoreId` (whatever an earlier attempt left goes first). */
export async function makePitrWorkDir(home: string, restoreId: string): Promise<PitrWorkDir> {
  return makeWorkDir(pitrWorkDir(home, restoreId));
}

/** Makes the empty work folder `dirs` (whatever was there goes first). */
export async function makeWorkDir(dirs: PitrWorkDir): Promise<PitrWorkDir> {
  await discardWorkDir(dirs);
  for (const d of [dirs.data, dirs.wal]) await fs.mkdir(d, { recursive: true, mode: 0o700 });
  if (!dirs.socketApart) await fs.mkdir(dirs.socket, { mode: 0o700 });
  else {
    // In /tmp under a name anyone could take first: made here and now (EEXIST otherwise, since the
    // discard removed ours), so it is ours and 0700, and nobody else reaches the instance.
    await fs.mkdir(dirs.socket, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      throw new SourceError(RECOVERY_FAILED, `the recovery's socket folder ${dirs.socket} exists and is not this restore's (${err.code})`);
    });
  }
  return dirs;
}

/**
 * Stops the instance of restore `restoreId` if one still runs (immediate: it holds nothing
 * anyone needs) and removes its work folder. Returns whether there was one.
 */
export async function discardPitrWorkDir(home: string, restoreId: string): Promise<boolean> {
  return discardWorkDir(pitrWorkDir(home, restoreId));
}

/** Stops the instance in `dirs` if one still runs (immediate) and removes the folder. Returns whether there was one. */
export async function discardWorkDir(dirs: PitrWorkDir): Promise<boolean> {
  const { root, data, socket, socketApart } = dirs;
  if (!existsSync(root)) return false;
  const pid = Number((await fs.readFile(path.join(data, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
  if (pid > 0 && processAlive(pid)) {
    // SIGQUIT is PostgreSQL's immediate shutdown; its children follow the postmaster.
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // Gone meanwhile.
    }
    const deadline = Date.now() + 30_000;
    while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }
  // The socket folder first when it is outside: made after the work folder, so removed before it.
  if (socketApart) await fs.rm(socket, { recursive: true, force: true });
  await fs.rm(root, { recursive: true, force: true });
  // A restore_command the startup process was waiting on outlives it (orphaned by the immediate
  // stop) until its next poll finds the folder gone (50 ms): wait for it, so nothing of the
  // restore runs once the discard returns. Bounded; where /proc is missing there is nothing to see.
  const deadline = Date.now() + 2_000;
  while ((await processesNaming(root)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return true;
}

/** Live processes whose command line names `dir` (Linux /proc; none elsewhere). */
export function processesNaming(dir: string): Promise<number[]> {
  return scanProcesses(async (p) => (await p.read('cmdline')).includes(dir));
}

/** The work folders under `home` (for a sweep), by restore suffix. */
export async function listPitrWorkDirs(home: string): Promise<string[]> {
  const names = await fs.readdir(home).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith(PITR_WORK_PREFIX)).map((n) => n.slice(PITR_WORK_PREFIX.length));
}

/** The recovery instances' folders under `home` (for the keeper's sweep), by instance id. */
export async function listInstanceWorkDirs(home: string): Promise<string[]> {
  const names = await fs.readdir(home).catch(() => [] as string[]);
  return names
    .filter((n) => n.startsWith(PITR_INSTANCE_PREFIX) && /^[0-9a-f]{32}$/.test(n.slice(PITR_INSTANCE_PREFIX.length)))
    .map((n) => n.slice(PITR_INSTANCE_PREFIX.length).replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5'));
}

/**
 * Extracts a tar (base.tar) into `dir`: a stream, or content that writes itself into tar's stdin
 * from a codec thread (the engine's contentWriter), so that none of the base backup's bytes pass
 * through this thread, which the WAL fetch and the job share meanwhile. Rejects with the
 * content's own error when reading it failed, else BASE_BACKUP_EXTRACT_FAILED when tar did.
 */
export async function extractTar(tar: DumpSource, dir: string, signal?: AbortSignal): Promise<void> {
  const input = await restoreInput(tar);
  const tool = startTool('tar', ['-x', '-C', dir], { env: process.env, stdin: input.stdin, stdout: 'ignore' });
  try {
    await runRestore(tool, input, signal);
  } catch (err) {
    if (err instanceof SourceError && err.code === 'DUMP_STREAM_FAILED') throw err.cause;
    if (err instanceof PgToolError) throw new SourceError('BASE_BACKUP_EXTRACT_FAILED', `extracting the base backup failed: ${err.message}`, { cause: err });
    throw err;
  }
}

/**
 * The name a WAL file has in the recovery's folder: the one `.partial` a recovery reads
 * (walFilesToFetch keeps only the newest, whose segment is not there complete) becomes its
 * segment, since recovery reads the last segment whole or not at all.
 */
export function recoveryWalName(name: string): string {
  return name.endsWith('.partial') ? name.slice(0, -'.partial'.length) : name;
}

/**
 * Puts a fetched WAL file into the recovery's wal/ folder under `name` (recoveryWalName), owned
 * by the instance's user (when we run as root) before it appears there, so the restore_command
 * never sees it half written or unreadable, whether recoverInstance has given the folder to that
 * user yet or not.
 */
export async function placeWal(dirs: PitrWorkDir, from: string, name: string): Promise<void> {
  const runAs = await pgRunAs();
  if (runAs.uid !== undefined) await fs.chown(from, runAs.uid, runAs.gid!);
  await fs.rename(from, path.join(dirs.wal, recoveryWalName(name)));
}

/** Tells a waiting restore_command that no more WAL comes (the fetch failed): the recovery aborts. */
export async function walFetchFailed(dirs: PitrWorkDir): Promise<void> {
  await fs.writeFile(path.join(dirs.root, WAL_FAILED), '').catch(() => undefined);
}

const WAL_EXPECTED = 'wal.expected';
const WAL_FAILED = 'wal.failed';

/**
 * The restore_command: a file the recovery will be given (listed in wal.expected) is waited for
 * until the fetch places it in wal/; any other (a later timeline's history, the segment after the
 * archive) is "not archived" at once, which ends the replay there. Exit status 126 makes
 * PostgreSQL abort the recovery instead of taking it as the end of the archive: for a fetch that
 * failed, a work folder removed under it (the job stopped), or a copy that failed. It polls, as
 * pgBackRest's asynchronous archive-get waits on its spool: a shell has nothing to wait on.
 */
function restoreScript(root: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '#!/bin/sh',
    `root=${q(root)}`,
    `grep -qxF -- "$1" "$root/${WAL_EXPECTED}" || exit 1`,
    'while [ ! -f "$root/wal/$1" ]; do',
    `  if [ -e "$root/${WAL_FAILED}" ] || [ ! -d "$root/wal" ]; then exit 126; fi`,
    '  sleep 0.05',
    'done',
    // A hard link, not a copy: the startup process waits for this script, and copying 16 MiB per
    // segment was on the replay's path. Recovery only reads the file and renames it into pg_wal;
    // wal/ keeps its name for a later start. Only a promoted instance, which no start follows,
    // may recycle (overwrite) segments.
    'ln "$root/wal/$1" "$2" 2>/dev/null || cp "$root/wal/$1" "$2" || exit 126',
    '',
  ].join('\n');
}

/**
 * A recovered instance: paused at the target in hot standby (read-only, which is all pg_dump
 * needs), or promoted (recovered to the end of the archive, or where hot standby was not to be had).
 */
export interface RecoveredInstance {
  /** A URL of `database` on the instance, as `user` (through its socket, no password). */
  url(database: string, user: string): string;
  /** Which WAL the recovery went up to, for the log. */
  endedAt: string;
  /** Recovered to the end of the archive: nothing was committed between the last archived transaction and the target. */
  toEndOfArchive: boolean;
  /** Paused at the target in hot standby rather than promoted. */
  paused: boolean;
  /** The port it listens on (on its socket, and on TCP at `listen` when it was given one). */
  port: number;
  /** Stops it (immediate: nothing in it is kept) and waits until it has exited. */
  stop(): Promise<void>;
}

const RECOVERY_FAILED = 'PITR_RECOVERY_FAILED';

/**
 * How a start recovers: `pause` at the target in hot standby, `promote` at the target, or `to-end`
 * of the archive (no target) and promote.
 */
type RecoveryMode = 'pause' | 'promote' | 'to-end';

/**
 * Recovers the base backup in `dirs.data` to `targetTime` with the WAL files named `wal` (their
 * names as recovery reads them, recoveryWalName), which the caller places into `dirs.wal`
 * (placeWal) before or while the replay runs: each is waited for when the replay reaches it.
 * It pauses there in hot standby: promoting would first write an end-of-recovery checkpoint (every
 * page the replay dirtied) and switch timelines, which a read-only pg_dump has no use for. Hot
 * standby needs the settings the source had (hotStandbySettings); where they cannot be read, or
 * the replay pauses before its target because the source raised one later, it recovers again and
 * promotes. When the archive ends before a transaction later than the target (nothing was
 * committed between the last archived one and the target, which the caller checked the archive
 * covers), PostgreSQL refuses to stop short of its target; the state it reached is then the state
 * at the target, so it recovers again without one, and checks that it did replay every archived
 * segment (else WAL is missing in the middle, which is an error, never a silently older state).
 */
export async function recoverInstance(
  dirs: PitrWorkDir,
  targetTime: Date,
  opts: {
    wal: string[];
    signal?: AbortSignal;
    binaries?: PgBinaries;
    /**
     * Also listen on TCP at this address (a recovery instance that users reach), where only
     * password authentication is accepted: `md5`, which takes SCRAM-stored passwords too. Without
     * it, the socket alone.
     */
    listen?: string;
  },
): Promise<RecoveredInstance> {
  const binaries = opts.binaries ?? systemPgBinaries();
  if (!binaries) throw new SourceError(RECOVERY_FAILED, 'no local PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin, or BACKPLANE_PG_BIN_DIR) to recover in');
  const segments = opts.wal.map(recoveryWalName).filter((n) => parseSegment(n));
  await fs.writeFile(path.join(dirs.root, WAL_EXPECTED), opts.wal.map((n) => `${recoveryWalName(n)}\n`).join(''));
  const script = path.join(dirs.root, 'restore-wal.sh');
  await fs.writeFile(script, restoreScript(dirs.root), { mode: 0o755 });
  const env = { ...process.env, ...binaries.env, LC_MESSAGES: 'C' };
  const standby = await hotStandbySettings(binaries, dirs.data, env);
  const quoted = (s: string) => s.replace(/'/g, "''");
  const settings = (mode: RecoveryMode) =>
    [
      '',
      '# Backplane: recovery to a point in time',
      `restore_command = '"${quoted(script)}" "%f" "%p"'`,
      mode === 'to-end' ? '' : `recovery_target_time = '${targetTime.toISOString().replace('T', ' ').replace('Z', '+00')}'`,
      ...(mode === 'pause' && standby
        ? ["recovery_target_action = 'pause'", 'hot_standby = on', ...Object.entries(standby).map(([k, v]) => `${k} = ${v}`)]
        : // No hot standby: nothing (max_connections...) has to match the source's settings.
          ["recovery_target_action = 'promote'", 'hot_standby = off', ...(opts.listen ? ['default_transaction_read_only = on'] : [])]),
      // The source's own archiving must not run here.
      "archive_mode = 'off'",
      // A one-off instance, dumped and then removed with its folder: nothing in it has to survive
      // a crash, so it never waits for a disk (the end-of-recovery checkpoint, which a
      // recovery_target_action promote waits for, included); no restartpoint while it replays;
      // and nothing vacuumed or analyzed while pg_dump reads it.
      'fsync = off',
      'full_page_writes = off',
      'synchronous_commit = off',
      "checkpoint_timeout = '1d'",
      "max_wal_size = '100GB'",
      'autovacuum = off',
      // Replay and then pg_dump go through the buffer cache: with the default 128 MB a database
      // larger than that has its pages written out and read back again while the replay runs.
      `shared_buffers = '${recoverySharedBuffersMiB()}MB'`,
      '',
    ].join('\n');
  const autoConf = path.join(dirs.data, 'postgresql.auto.conf');
  const original = await fs.readFile(autoConf, 'utf8').catch(() => '');
  const configure = async (mode: RecoveryMode) => {
    await fs.writeFile(autoConf, original + settings(mode));
    await fs.writeFile(path.join(dirs.data, 'recovery.signal'), '');
  };
  // Trust only on the socket, in a 0700 folder of ours; over TCP a password, never trust.
  await fs.writeFile(path.join(dirs.data, 'pg_hba.conf'), ['local all all trust', ...(opts.listen ? ['host all all 0.0.0.0/0 md5', 'host all all ::/0 md5'] : []), ''].join('\n'));
  // Files of a base backup that would stop the start or confuse it.
  for (const f of ['postmaster.pid', 'postmaster.opts']) await fs.rm(path.join(dirs.data, f), { force: true });
  await configure(standby ? 'pause' : 'promote');

  const runAs = await pgRunAs();
  if (runAs.uid !== undefined) {
    await chownTree(dirs.root, runAs.uid, runAs.gid!);
    if (dirs.socketApart) await chownTree(dirs.socket, runAs.uid, runAs.gid!);
    await searchableParents(dirs.root);
  }
  await fs.chmod(dirs.data, 0o700);
  const port = await freePort(opts.listen);
  const listenAddresses = opts.listen ?? '';
  const pgCtl = (args: string[], signal: AbortSignal | undefined) => runTool(path.join(binaries.binDir, 'pg_ctl'), args, env, runAs, signal);
  const log = path.join(dirs.root, 'server.log');
  const url = (database: string, user: string) =>
    // The socket folder as the host, percent-encoded: libpq's and node-pg's spelling of a socket.
    `postgresql://${encodeURIComponent(user)}@${encodeURIComponent(dirs.socket)}:${port}/${encodeURIComponent(database)}`;
  const logSince = async (offset: number) => (await fs.readFile(log).catch(() => Buffer.alloc(0))).subarray(offset).toString('utf8');
  // pg_ctl -w returns once recovery starts (hot standby off) or the instance is consistent (on);
  // the instance is ours when it is promoted, or paused at its target; a recovery that fails
  // ends the postmaster. 'early' is a pause before the target (see recoverInstance).
  const start = async (mode: RecoveryMode): Promise<'ready' | 'early' | 'end-of-archive'> => {
    const logFrom = (await fs.stat(log).catch(() => null))?.size ?? 0;
    try {
      await pgCtl(['start', '-D', dirs.data, '-w', '-t', '600', '-l', log, '-o', `-p ${port} -c listen_addresses='${listenAddresses}' -c unix_socket_directories='${dirs.socket}'`], opts.signal);
      const pid = Number((await fs.readFile(path.join(dirs.data, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
      // One connection for the whole wait, once one is let in (hot standby: as soon as the replay
      // is consistent): a new backend every 50 ms took a share of the CPU the replay needs.
      let c: pg.Client | null = null;
      try {
        for (;;) {
          if (opts.signal?.aborted) throw new AbortedError({ cause: opts.signal.reason });
          c ??= await connectAnyRole(dirs, url).catch(() => null);
          const state = c
            ? await c.query<{ r: boolean; p: string | null }>('SELECT pg_is_in_recovery() AS r, CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END AS p').then(
                (r) => r.rows[0],
                () => {
                  void c?.end().catch(() => undefined);
                  c = null;
                  return null;
                },
              )
            : null;
          if (state && !state.r) return 'ready';
          if (state?.p === 'paused' && mode === 'pause') {
            // The pause at the target logs this before it pauses; a pause for a setting the source
            // raised (insufficient parameter settings) does not.
            return (await logSince(logFrom)).includes('pausing at the end of recovery') ? 'ready' : 'early';
          }
          if (!(pid > 0 && processAlive(pid))) throw new Error('the recovery instance stopped');
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await (c as pg.Client | null)?.end().catch(() => undefined);
      }
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      const text = await logSince(logFrom);
      if (mode !== 'to-end' && text.includes('recovery ended before configured recovery target was reached')) return 'end-of-archive';
      // The source raised a setting hot standby checks before this replay was consistent: that
      // ends the instance rather than pausing it.
      if (mode === 'pause' && text.includes('insufficient parameter settings')) return 'early';
      throw new SourceError(RECOVERY_FAILED, `recovery failed: ${lastLines(text, 6)}`, { cause: err });
    }
  };
  const stop = async () => {
    // Never cut short, whatever became of opts.signal (the job's fetch aborts it as soon as the
    // replay ends): a server left running would hold the work folder. (`undefined` given to a
    // parameter that defaulted to opts.signal got opts.signal: stop() ran no pg_ctl at all.)
    // Immediate: its folder goes next, so the shutdown checkpoint a fast stop writes (the hint
    // bits pg_dump set on every page it read) would be work thrown away.
    await pgCtl(['stop', '-D', dirs.data, '-m', 'immediate', '-w', '-t', '120'], undefined).catch(() => undefined);
  };
  let mode: RecoveryMode = standby ? 'pause' : 'promote';
  try {
    let outcome = await start(mode);
    if (outcome === 'early') {
      await stop();
      mode = 'promote';
      await configure(mode);
      outcome = await start(mode);
    }
    if (outcome === 'end-of-archive') {
      mode = 'to-end';
      await configure(mode);
      await start(mode);
      const histories = new Map<number, string>();
      for (const n of (await fs.readdir(dirs.wal)).filter((f) => HISTORY_NAME.test(f))) histories.set(parseInt(n.slice(0, 8), 16), await fs.readFile(path.join(dirs.wal, n), 'utf8'));
      const lastArchived = lastSegmentOnPath(segments, histories);
      const reached = await currentSegment(dirs, url);
      if (reached < lastArchived) {
        throw new SourceError(RECOVERY_FAILED, 'recovery stopped before the end of the archived WAL: a segment in the middle is missing or damaged');
      }
    }
    const endedAt = await withAnyRole(dirs, url, async (c) =>
      (await c.query<{ lsn: string }>('SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn')).rows[0].lsn,
    );
    return { url, endedAt, toEndOfArchive: mode === 'to-end', paused: mode === 'pause', port, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The settings hot standby needs at least as high as the source had them, from the base backup's
 * control file (pg_controldata); null where they cannot be read (no pg_controldata beside pg_ctl).
 */
async function hotStandbySettings(binaries: PgBinaries, dataDir: string, env: NodeJS.ProcessEnv): Promise<Record<string, number> | null> {
  const tool = path.join(binaries.binDir, 'pg_controldata');
  if (!existsSync(tool)) return null;
  const text = await runTool(tool, ['-D', dataDir], env, {}).catch(() => null);
  if (text === null) return null;
  const names: Record<string, string> = {
    max_connections: 'max_connections',
    max_worker_processes: 'max_worker_processes',
    max_wal_senders: 'max_wal_senders',
    max_prepared_xacts: 'max_prepared_transactions',
    max_locks_per_xact: 'max_locks_per_transaction',
  };
  const settings: Record<string, number> = {};
  for (const [label, setting] of Object.entries(names)) {
    const m = new RegExp(`^${label} setting:\\s+(\\d+)$`, 'm').exec(text);
    if (!m) return null;
    settings[setting] = Number(m[1]);
  }
  return settings;
}

/** The recovery instance's shared_buffers: an eighth of the machine's memory, from 128 MB (PostgreSQL's default) to 1 GB. */
function recoverySharedBuffersMiB(): number {
  return Math.max(128, Math.min(1024, Math.floor(os.totalmem() / 8 / 2 ** 20)));
}

/** Segment number the promoted instance writes in now: where its replay ended. */
async function currentSegment(dirs: PitrWorkDir, url: RecoveredInstance['url']): Promise<number> {
  return withAnyRole(dirs, url, async (c) => {
    const name = (await c.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')).rows[0].f;
    return parseSegment(name)!.number;
  });
}

/**
 * A connection to the instance as its bootstrap superuser: the role owning template1, found by
 * trying the usual names (the OS user's name is what a socket connection defaults to).
 */
async function withAnyRole<T>(dirs: PitrWorkDir, url: RecoveredInstance['url'], fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await connectAnyRole(dirs, url);
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** A connection to the instance as its bootstrap superuser (see withAnyRole); the caller ends it. */
async function connectAnyRole(dirs: PitrWorkDir, url: RecoveredInstance['url']): Promise<pg.Client> {
  let lastError: unknown;
  for (const user of ['postgres', process.env.USER ?? 'root']) {
    const c = new pg.Client({ connectionString: url('template1', user) });
    c.on('error', () => {});
    try {
      await c.connect();
      return c;
    } catch (err) {
      lastError = err;
    }
  }
  throw new SourceError(RECOVERY_FAILED, `could not connect to the recovered instance in ${dirs.root}`, { cause: lastError });
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join('\n');
}

/** Runs a PostgreSQL tool to its end; resolves with its standard output, rejects with all its output. */
function runTool(cmd: string, args: string[], env: NodeJS.ProcessEnv, runAs: { uid?: number; gid?: number }, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError({ cause: signal.reason }));
    const child = spawn(cmd, args, { env, uid: runAs.uid, gid: runAs.gid, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // pg_ctl -w only waits; the caller's cleanup stops the server itself.
    const onAbort = () => child.kill('SIGTERM');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', reject);
    child.on('close', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) return reject(new AbortedError({ cause: signal.reason }));
      if (code === 0) resolve(stdout);
      else reject(new Error(`${path.basename(cmd)} ${args[0]} failed: ${out.trim()}`));
    });
  });
}

/**
 * Gives the tree to the instance's user. The WAL fetch works in the same folder meanwhile
 * (placeWal chowns what it places): what it removes under the walk is skipped.
 */
async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  const gone = (err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  };
  await fs.lchown(dir, uid, gid);
  for (const e of await fs.readdir(dir, { withFileTypes: true }).catch((err: unknown) => (gone(err), []))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await chownTree(p, uid, gid).catch(gone);
    else await fs.lchown(p, uid, gid).catch(gone);
  }
}

/** As root, PostgreSQL runs as another user, who must pass through every parent of the folder. */
async function searchableParents(dir: string): Promise<void> {
  for (let d = path.dirname(dir); ; d = path.dirname(d)) {
    const st = await fs.stat(d);
    if ((st.mode & 0o001) === 0) await fs.chmod(d, (st.mode & 0o7777) | 0o001);
    if (path.dirname(d) === d) break;
  }
}
