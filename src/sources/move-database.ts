/**
 * Moving a database from one server to another (a restore to a point in time: from the paused
 * recovery instance into the environment's server) in parallel streams.
 *
 * One `pg_dump | pg_restore` moves a table's rows through one COPY, and the receiving server's
 * one backend (parse, insert, WAL, writing back its ring of buffers) was the slowest link: in
 * bench:pitr most of the 4.3 s the move took went to the COPY of pgbench_accounts alone. The
 * source does not change while it is read (the instance is paused, or promoted with nobody else
 * connected), so pg_dump's sections can be moved apart, as its documentation describes
 * (`--section`), and the large tables' rows alongside in several COPY streams:
 *
 * 1. pre-data (`pg_dump --section=pre-data | pg_restore`): types, tables, functions...
 * 2. at most `streams` at a time: the data section without the large tables' rows (sequence
 *    values, large objects, the small tables), and each *chunk* of a large table: its rows in a
 *    range of blocks (a TID range scan, PostgreSQL 14 or later), `psql COPY ... TO STDOUT`
 *    piped into `psql COPY ... FROM STDIN`.
 * 3. post-data: indexes, constraints, triggers; then the source is no longer read.
 *
 * Words: a *large table* is an ordinary, logged table outside the system schemas and outside any
 * extension, of at least two chunks' size.
 */
import { closeSync } from 'node:fs';
import os from 'node:os';
import { killOnAbort, startTool, type Tool } from './child.ts';
import { pgTarget, toolEnv, type PgTarget } from './connection.ts';
import { AbortedError } from './errors.ts';
import { withClient } from './pg-admin.ts';
import { openPipe } from './pipe.ts';
import { conninfoQuote } from './restore-common.ts';

/** How many rows of a large table one COPY stream moves: blocks of about this many bytes. */
export const MOVE_CHUNK_BYTES = 32 * 2 ** 20;

/** The streams a move runs at once by default: one per core, at least two, at most four. */
export function defaultMoveStreams(): number {
  return Math.max(2, Math.min(4, os.availableParallelism()));
}

/** One COPY stream's share of a large table. */
interface Chunk {
  /** `schema.table`, quoted. */
  table: string;
  /** The column list, quoted: generated columns are not copied, as pg_dump does not. */
  columns: string;
  /** Blocks [from, to); `to` null for the last chunk (rows past the size read are still moved). */
  from: number;
  to: number | null;
}

/** What the source holds, as the move plans it. */
interface MovePlan {
  /** pg_dump patterns (`"schema"."table"`) of the large tables, whose rows the chunks move. */
  excludeData: string[];
  chunks: Chunk[];
  /** The source database's encoding, for both ends of a COPY (as pg_dump sets it). */
  encoding: string;
}

/**
 * Session settings of both ends of a COPY stream: the text format's spellings of dates,
 * intervals and floats as pg_dump sets them, so what one end writes the other reads back exactly;
 * and row security off, so a policy never filters rows silently (reading such a table fails
 * instead, as pg_dump does).
 */
const COPY_SESSION = ['-c DateStyle=ISO', '-c IntervalStyle=postgres', '-c extra_float_digits=3', '-c row_security=off'];

/** A pg_dump pattern naming exactly one table (in double quotes nothing is special but `"`). */
function exactPattern(schema: string, table: string): string {
  const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
  return `${q(schema)}.${q(table)}`;
}

/** Reads the source's large tables and cuts them into chunks of about `chunkBytes`. */
async function planMove(sourceUrl: string, chunkBytes: number): Promise<MovePlan> {
  return withClient(sourceUrl, async (c) => {
    const version = Number((await c.query<{ v: string }>('SHOW server_version_num')).rows[0].v);
    const encoding = (await c.query<{ e: string }>('SELECT pg_encoding_to_char(encoding) AS e FROM pg_database WHERE datname = current_database()')).rows[0].e;
    // Before 14 a ctid range reads the whole table for each chunk: one stream then.
    if (version < 140000) return { excludeData: [], chunks: [], encoding };
    const { rows } = await c.query<{ schema: string; name: string; bytes: string; block: number; columns: string[] | null }>(
      `SELECT n.nspname AS schema, c.relname AS name, pg_relation_size(c.oid)::text AS bytes,
              current_setting('block_size')::int AS block,
              (SELECT array_agg(quote_ident(a.attname) ORDER BY a.attnum) FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS columns
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND c.relpersistence = 'p'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
          AND pg_relation_size(c.oid) >= $1
        ORDER BY pg_relation_size(c.oid) DESC`,
      [2 * chunkBytes],
    );
    const excludeData: string[] = [];
    const chunks: Chunk[] = [];
    for (const r of rows) {
      if (!r.columns) continue;
      const blocks = Math.ceil(Number(r.bytes) / r.block);
      const pieces = Math.min(64, Math.ceil(Number(r.bytes) / chunkBytes));
      const per = Math.ceil(blocks / pieces);
      const table = `${c.escapeIdentifier(r.schema)}.${c.escapeIdentifier(r.name)}`;
      excludeData.push(exactPattern(r.schema, r.name));
      for (let from = 0; from < blocks; from += per) {
        chunks.push({ table, columns: r.columns.join(', '), from, to: from + per >= blocks ? null : from + per });
      }
    }
    return { excludeData, chunks, encoding };
  });
}

/** A producer and a consumer tool joined by a pipe; settles when both have exited. */
async function piped(
  producer: { command: string; args: string[]; env: NodeJS.ProcessEnv },
  consumer: { command: string; args: string[]; env: NodeJS.ProcessEnv },
  signal: AbortSignal,
  onProducerExit?: () => void,
): Promise<void> {
  const ends = await openPipe();
  if (!ends) throw new Error('no pipe can be made here to move a database');
  let tools: Tool[];
  try {
    const out = startTool(producer.command, producer.args, { env: producer.env, stdin: 'ignore', stdout: ends.writeFd });
    tools = [out];
    tools.push(startTool(consumer.command, consumer.args, { env: consumer.env, stdin: ends.readFd, stdout: 'ignore' }));
  } finally {
    // Each child holds its own copy: the consumer sees the end when the producer exits.
    closeSync(ends.writeFd);
    closeSync(ends.readFd);
  }
  const [out, into] = tools;
  const stopKilling = killOnAbort(signal, tools);
  try {
    // Either one failing stops the other: a consumer that stopped reading would block the producer,
    // and a producer cut off must never leave the consumer to take a short stream for a whole one.
    const outExit = out.exited.then((e) => {
      onProducerExit?.();
      if (out.failure(e)) into.kill();
      return e;
    });
    const intoExit = into.exited.then((e) => {
      if (into.failure(e)) out.kill();
      return e;
    });
    const [o, i] = await Promise.all([outExit, intoExit]);
    if (signal.aborted) throw new AbortedError({ cause: signal.reason });
    // The producer's error first: a consumer fed a cut-off stream fails (or not) only because of it.
    const failure = out.failure(o) ?? into.failure(i);
    if (failure) throw failure;
  } finally {
    stopKilling();
  }
}

/** Runs `tasks` with at most `limit` at once; the first failure aborts the others and is thrown. */
async function pooled(tasks: ((signal: AbortSignal) => Promise<void>)[], limit: number, signal: AbortSignal): Promise<void> {
  const inner = new AbortController();
  const stop = () => inner.abort(signal.reason);
  signal.addEventListener('abort', stop, { once: true });
  let next = 0;
  let first: { err: unknown } | null = null;
  const worker = async () => {
    while (next < tasks.length && !inner.signal.aborted) {
      const task = tasks[next++];
      try {
        await task(inner.signal);
      } catch (err) {
        first ??= { err };
        inner.abort(err);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  } finally {
    signal.removeEventListener('abort', stop);
  }
  if (signal.aborted) throw new AbortedError({ cause: signal.reason });
  if (first) throw (first as { err: unknown }).err;
}

/** Options of moveInto(). */
export interface MoveOptions {
  signal: AbortSignal;
  /** COPY streams at once (defaultMoveStreams); 1 moves everything through one pg_dump | pg_restore. */
  streams?: number;
  /** Chunk size (MOVE_CHUNK_BYTES); tests make it small to split small tables. */
  chunkBytes?: number;
  /** Called once the source is no longer read (its last pg_dump has exited), even on failure. */
  onSourceDone?: () => void;
}

/**
 * Moves the database at `sourceAt` (once that is known) into the empty database `temp` on `target`'s server, restored
 * without owners when `noOwner`, with pg_restore's session settings `restoreOptions` (PGOPTIONS).
 * On failure the temp database holds part of it: the caller drops it.
 */
export async function moveInto(sourceAt: string | Promise<string>, target: PgTarget, temp: string, noOwner: boolean, restoreOptions: string, opts: MoveOptions): Promise<void> {
  let sourceDone = false;
  const doneWithSource = () => {
    if (!sourceDone) opts.onSourceDone?.();
    sourceDone = true;
  };
  try {
    const sourceUrl = await sourceAt;
    const source = pgTarget(sourceUrl);
    const streams = opts.streams ?? defaultMoveStreams();
    const plan = streams > 1 ? await planMove(sourceUrl, opts.chunkBytes ?? MOVE_CHUNK_BYTES) : { excludeData: [], chunks: [], encoding: '' };
    const dumpEnv = toolEnv(source, { PGAPPNAME: 'backplane-dump' });
    const restoreEnv = toolEnv(target, { PGDATABASE: temp, PGAPPNAME: 'backplane-restore', PGOPTIONS: restoreOptions });
    const dbname = `--dbname=dbname=${conninfoQuote(temp)}`;
    const section = (dumpArgs: string[], onProducerExit?: () => void) => (signal: AbortSignal) =>
      piped(
        { command: 'pg_dump', args: ['--format=custom', '--compress=0', '--no-password', ...dumpArgs], env: dumpEnv },
        { command: 'pg_restore', args: ['--exit-on-error', '--no-password', dbname, ...(noOwner ? ['--no-owner'] : [])], env: restoreEnv },
        signal,
        onProducerExit,
      );
    if (plan.chunks.length === 0) return await section([], doneWithSource)(opts.signal);

    await section(['--section=pre-data'])(opts.signal);
    const copyEnv = (t: PgTarget, base: string | undefined, extra: Record<string, string>) =>
      toolEnv(t, { PGCLIENTENCODING: plan.encoding, PGOPTIONS: [base, ...COPY_SESSION].filter(Boolean).join(' '), ...extra });
    const fromEnv = copyEnv(source, source.env.PGOPTIONS, { PGAPPNAME: 'backplane-dump' });
    const intoEnv = copyEnv(target, restoreOptions, { PGDATABASE: temp, PGAPPNAME: 'backplane-restore' });
    const psql = ['--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=1'];
    const copy = (ch: Chunk) => (signal: AbortSignal) => {
      const range = `ctid >= '(${ch.from},0)'::tid${ch.to === null ? '' : ` AND ctid < '(${ch.to},0)'::tid`}`;
      return piped(
        { command: 'psql', args: [...psql, `--command=COPY (SELECT ${ch.columns} FROM ONLY ${ch.table} WHERE ${range}) TO STDOUT`], env: fromEnv },
        { command: 'psql', args: [...psql, dbname, `--command=COPY ${ch.table} (${ch.columns}) FROM STDIN`], env: intoEnv },
        signal,
      );
    };
    const rest = section(['--section=data', ...plan.excludeData.map((p) => `--exclude-table-data=${p}`)]);
    await pooled([rest, ...plan.chunks.map(copy)], streams, opts.signal);
    await section(['--section=post-data'], doneWithSource)(opts.signal);
  } finally {
    doneWithSource();
  }
}
