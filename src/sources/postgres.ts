/**
 * The database half of an environment: a dump to put into a snapshot, and an atomic restore.
 *
 * Words used here:
 * - *target*: the environment's database, named by its URL.
 * - *temp database*: `<target>__bp_restore_<id>`, where a SWAP restore builds the new contents
 *   while the target keeps serving.
 * - *previous database*: `<target>__bp_pre_<id>`, the target as it was before a SWAP restore,
 *   kept until it expires (dropDatabase) so a restore can be taken back by hand.
 * - *prepare / commit*: a restore is done in two phases so that a database and a directory can
 *   be restored together: prepare does the long work and changes nothing the application sees;
 *   commit is one short step. restoreDatabase() is prepare followed by commit.
 */
import type { Readable } from 'node:stream';
import { PassThrough } from 'node:stream';
import { closeSync } from 'node:fs';
import { killOnAbort, startTool, type Tool } from './child.ts';
import { pgTarget, toolEnv } from './connection.ts';
import { AbortedError, SourceError } from './errors.ts';
import { withAdmin, withClient } from './pg-admin.ts';
import { abortError, restoreInput, type DumpSource, type PrepareDatabaseOptions, type PreparedDatabase } from './restore-common.ts';
import { prepareInPlace } from './restore-in-place.ts';
import { prepareSwap, restoreDatabaseNames, undoSwap } from './restore-swap.ts';
import { openPipe, PipeReader } from './pipe.ts';
import type { ContentWriter } from '../engine/api.ts';

export { dropDatabase } from './pg-admin.ts';
export { MAX_IDENTIFIER_BYTES, restoreDatabaseNames } from './restore-swap.ts';
export type { DumpSource, PrepareDatabaseOptions, PreparedDatabase } from './restore-common.ts';

/** A running pg_dump. */
export interface Dump {
  /**
   * The custom-format dump. It ends only after pg_dump exited 0; if pg_dump fails or is aborted
   * it is destroyed instead (with the error, when anyone listens for errors), so a reader never
   * mistakes a cut-off dump for a whole one.
   */
  stream: Readable;
  /** Resolves when pg_dump exited 0 and the stream has ended; rejects with PgToolError or AbortedError. */
  done: Promise<void>;
  /** pg_dump's process id (for logs and tests). */
  pid: number | undefined;
  /** pg_dump's arguments: no connection details, those travel in its environment. */
  args: readonly string[];
}

/** pg_dump's arguments: custom format, uncompressed (see startDump); no connection details. */
const DUMP_ARGS: readonly string[] = ['--format=custom', '--compress=0', '--no-password'];

/**
 * Starts `pg_dump -Fc -Z0` of the database at `databaseUrl`, streaming to `stream`.
 * Uncompressed because the engine compresses each chunk itself and compression would defeat
 * dedup of unchanged tables. Aborting kills pg_dump; so does destroying `stream` before it ends.
 */
export function startDump(databaseUrl: string, opts: { signal?: AbortSignal } = {}): Dump {
  const target = pgTarget(databaseUrl);
  const stream = new PassThrough({ highWaterMark: 1 << 20 });
  if (opts.signal?.aborted) {
    stream.destroy();
    const done = Promise.reject(new AbortedError({ cause: opts.signal.reason }));
    done.catch(() => {});
    return { stream, done, pid: undefined, args: DUMP_ARGS };
  }
  const tool = startTool('pg_dump', DUMP_ARGS, { env: toolEnv(target, { PGAPPNAME: 'backplane-dump' }), stdin: 'ignore', stdout: 'pipe' });
  const stdout = tool.child.stdout!;
  let settled = false;
  let consumerClosed = false;

  const stopKilling = killOnAbort(opts.signal, [tool]);
  stdout.pipe(stream, { end: false });
  stream.once('close', () => {
    if (settled) return;
    consumerClosed = true;
    tool.kill();
  });
  const stdoutEnded = new Promise<void>((resolve) => stdout.once('end', resolve));

  const done = (async () => {
    try {
      const exit = await tool.exited;
      const failure = opts.signal?.aborted
        ? new AbortedError({ cause: opts.signal.reason })
        : consumerClosed
          ? new SourceError('DUMP_STREAM_CLOSED', 'the dump stream was closed by its reader before pg_dump finished')
          : tool.failure(exit);
      if (failure) throw failure;
      await stdoutEnded;
      settled = true;
      stream.end();
    } catch (err) {
      settled = true;
      stdout.destroy();
      // Destroying with an error nobody listens for would crash the process; a listener-less
      // reader still sees a premature close instead of a clean end.
      stream.destroy(stream.listenerCount('error') > 0 ? (err as Error) : undefined);
      throw err;
    } finally {
      stopKilling();
    }
  })();
  // The caller may only watch the stream; its failure must not become an unhandled rejection.
  done.catch(() => {});
  return { stream, done, pid: tool.child.pid, args: DUMP_ARGS };
}

/** A pg_dump that restores itself: a DumpSource for prepareDatabase, and when it ended. */
export interface DumpWriter extends ContentWriter {
  /** Settles once pg_dump has exited (or never started, when the writer was given up): its server is no longer read. */
  readonly ended: Promise<void>;
}

/**
 * `pg_dump -Fc -Z0` of the database at `databaseUrl` as a dump that writes itself into
 * pg_restore's stdin (prepareDatabase gives it the write end of the pipe pg_restore reads): pg_dump
 * writes there directly, so a database moved between servers (a restore to a point in time) never
 * passes through this thread, which relayed each of its bytes before. writeTo rejects when pg_dump
 * fails (its error) or is aborted; where no pipe can be made, `stream()` is startDump's stream.
 */
export function dumpWriter(databaseUrl: string, opts: { signal?: AbortSignal } = {}): DumpWriter {
  let tool: Tool | null = null;
  let given = false;
  let ended!: () => void;
  const endedP = new Promise<void>((r) => (ended = r));
  const start = () => {
    if (given) throw new SourceError('DUMP_STREAM_CLOSED', 'the dump was given up before pg_dump started');
    given = true;
  };
  return {
    ended: endedP,
    async writeTo(fd) {
      start();
      if (opts.signal?.aborted) {
        ended();
        throw new AbortedError({ cause: opts.signal.reason });
      }
      const started = dumpInto(databaseUrl, fd, opts.signal);
      tool = started.tool;
      try {
        await started.done;
      } finally {
        ended();
      }
    },
    stream() {
      start();
      const dump = startDump(databaseUrl, opts);
      void dump.done.then(ended, ended);
      return dump.stream;
    },
    destroy() {
      if (tool) tool.kill();
      else {
        given = true;
        ended();
      }
    },
  };
}

/** A running pg_dump writing into a pipe (see startDumpToPipe). */
export interface PipedDump {
  /** The pipe's read end; its `complete` is `done`. */
  pipe: PipeReader;
  /** Resolves when pg_dump exited 0; rejects with PgToolError or AbortedError. */
  done: Promise<void>;
  pid: number | undefined;
  args: readonly string[];
}

/**
 * Starts `pg_dump -Fc -Z0` like startDump, but writing into a pipe whose read end (dump.pipe) a
 * codec thread reads itself, so the dump never passes through the main thread. The reader sees
 * the end of the pipe also when pg_dump fails; only `done` tells the two apart. Returns null
 * where such a pipe cannot be made (then use startDump). Call dump.pipe.close() once the backup
 * is over, whatever its outcome.
 */
export async function startDumpToPipe(databaseUrl: string, opts: { signal?: AbortSignal } = {}): Promise<PipedDump | null> {
  const ends = await openPipe();
  if (!ends) return null;
  let started: ReturnType<typeof dumpInto>;
  try {
    started = dumpInto(databaseUrl, ends.writeFd, opts.signal);
  } catch (err) {
    closeSync(ends.readFd);
    throw err;
  } finally {
    closeSync(ends.writeFd); // pg_dump holds its own copy: the pipe ends when pg_dump exits
  }
  const { tool, done } = started;
  return { pipe: new PipeReader(ends.readFd, done, () => tool.kill()), done, pid: tool.child.pid, args: DUMP_ARGS };
}

/**
 * Starts pg_dump writing into descriptor `fd`. `done` resolves when it exited 0 and rejects with
 * PgToolError, or AbortedError when `signal` stopped it; it is never an unhandled rejection (the
 * caller may learn of a failure through the reader of `fd` first).
 */
function dumpInto(databaseUrl: string, fd: number, signal?: AbortSignal): { tool: Tool; done: Promise<void> } {
  const tool = startTool('pg_dump', DUMP_ARGS, { env: toolEnv(pgTarget(databaseUrl), { PGAPPNAME: 'backplane-dump' }), stdin: 'ignore', stdout: fd });
  const stopKilling = killOnAbort(signal, [tool]);
  const done = (async () => {
    try {
      const exit = await tool.exited;
      const failure = signal?.aborted ? new AbortedError({ cause: signal.reason }) : tool.failure(exit);
      if (failure) throw failure;
    } finally {
      stopKilling();
    }
  })();
  done.catch(() => {});
  return { tool, done };
}

/** Size on disk of the database the URL names (pg_database_size). */
export async function databaseSize(databaseUrl: string): Promise<bigint> {
  return withClient(databaseUrl, async (c) => {
    const { rows } = await c.query<{ size: string }>('SELECT pg_database_size(current_database())::text AS size');
    return BigInt(rows[0].size);
  });
}

/**
 * Bytes of table data without indexes (heap and TOAST of ordinary tables outside the system
 * schemas): close to what `pg_dump -Z0` writes, unlike the database's size on disk, which counts
 * indexes, catalogs and dead space a dump never carries.
 */
export async function tableDataSize(databaseUrl: string): Promise<bigint> {
  const userTables = `c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`;
  return withClient(databaseUrl, async (c) => {
    // pg_table_size waits for a lock someone else holds (an estimate must not hold a snapshot up,
    // nor outlive its timeout); then the catalog's page counts, which take no lock but lag behind.
    await c.query(`SET lock_timeout = '250ms'`);
    try {
      const { rows } = await c.query<{ size: string }>(
        `SELECT coalesce(sum(pg_table_size(c.oid)), 0)::text AS size FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${userTables}`,
      );
      return BigInt(rows[0].size);
    } catch {
      const { rows } = await c.query<{ size: string }>(
        `SELECT coalesce(sum((c.relpages::bigint + coalesce(t.relpages, 0)) * current_setting('block_size')::bigint), 0)::text AS size
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
          WHERE ${userTables}`,
      );
      return BigInt(rows[0].size);
    }
  });
}

/**
 * Whether the URL's role may make a SWAP restore: create a database, and rename the target
 * (which needs CREATEDB and ownership). Superusers always may.
 */
export async function canCreateDatabase(databaseUrl: string): Promise<boolean> {
  return withClient(databaseUrl, async (c) => {
    const { rows } = await c.query<{ ok: boolean }>(
      `SELECT r.rolsuper OR (r.rolcreatedb AND pg_has_role(current_user, d.datdba, 'MEMBER')) AS ok
         FROM pg_roles r, pg_database d
        WHERE r.rolname = current_user AND d.datname = current_database()`,
    );
    return rows[0]?.ok === true;
  });
}

/**
 * Restores `dump` (pg_dump custom format) for the database at `databaseUrl` up to the point
 * where only commit() is left. If it throws, everything it did is undone.
 */
export async function prepareDatabase(databaseUrl: string, dump: DumpSource, opts: PrepareDatabaseOptions): Promise<PreparedDatabase> {
  const aborted = abortError(opts.signal);
  if (aborted) {
    dump.destroy();
    throw aborted;
  }
  if (opts.format === 'plain' && opts.strategy === 'IN_PLACE') {
    dump.destroy();
    throw new SourceError('IN_PLACE_NEEDS_ARCHIVE', 'plain SQL can only be restored into a new database (SWAP)');
  }
  const target = pgTarget(databaseUrl);
  const input = await restoreInput(dump);
  return (opts.strategy ?? 'SWAP') === 'SWAP' ? prepareSwap(databaseUrl, target, input, opts) : prepareInPlace(databaseUrl, target, input, opts);
}

/** Options of restoreDatabase(). */
export interface RestoreDatabaseOptions extends PrepareDatabaseOptions {
  /** Keep the old database as `<db>__bp_pre_<id>` (default true); false drops it after the swap. */
  keepPrevious?: boolean;
}

/**
 * Restores `dump` into the database at `databaseUrl` atomically: on failure or abort the
 * database is exactly as it was. Returns the name the old database now has (SWAP with
 * keepPrevious), else null.
 */
export async function restoreDatabase(databaseUrl: string, dump: DumpSource, opts: RestoreDatabaseOptions): Promise<{ previousDatabaseName: string | null }> {
  const prepared = await prepareDatabase(databaseUrl, dump, opts);
  try {
    const aborted = abortError(opts.signal);
    if (aborted) throw aborted;
    await prepared.commit();
  } catch (err) {
    await prepared.rollback().catch(() => {});
    throw err;
  }
  if (prepared.previousName === null) return { previousDatabaseName: null };
  if (opts.keepPrevious === false) {
    await prepared.discardPrevious();
    return { previousDatabaseName: null };
  }
  return { previousDatabaseName: prepared.previousName };
}

/**
 * Drops the temp database a SWAP restore of the URL's database was filling when its process
 * was killed (`<db>__bp_restore_<id>`: never live, only ours). Returns whether there was one.
 */
export async function discardRestoreDatabase(databaseUrl: string, restoreId: string): Promise<boolean> {
  const { temp } = restoreDatabaseNames(pgTarget(databaseUrl).database, restoreId);
  return withAdmin(databaseUrl, [temp], async (c) => {
    const found = ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [temp])).rowCount ?? 0) > 0;
    if (found) await c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(temp)} WITH (FORCE)`);
    return found;
  });
}

/**
 * Undoes the database swap of a SWAP restore of the URL's database that was killed before it
 * ended (see `undoSwap`). Returns whether there was one.
 */
export async function undoRestoreSwap(databaseUrl: string, restoreId: string): Promise<boolean> {
  return undoSwap(databaseUrl, pgTarget(databaseUrl).database, restoreId);
}
