/**
 * What the database restore strategies (restore-swap.ts, restore-in-place.ts) share: the
 * prepared-restore handle, and feeding a dump to a client tool.
 */
import { closeSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { ContentWriter } from '../engine/api.ts';
import { killOnAbort, type Tool } from './child.ts';
import { AbortedError, SourceError } from './errors.ts';
import { openPipe } from './pipe.ts';

/**
 * A dump to restore: a stream, which this thread copies into the tool's stdin, or content that
 * writes itself into a pipe the tool reads (the engine's contentWriter: a codec thread decodes
 * and writes, and none of the bytes pass through this thread).
 */
export type DumpSource = Readable | ContentWriter;

/** A dump made ready for a tool: what its stdin is, and how it is fed once the tool runs. */
export interface RestoreInput {
  /** The tool's stdin: a pipe to feed, or the read end of a pipe the dump writes into. */
  stdin: 'pipe' | number;
  /** Starts feeding the started tool; settles with the dump's own error, or null once all of it is written. */
  feed(stdin: Writable | null): Promise<Error | null>;
  /** Gives the dump up (before or while it is fed) and releases what it holds. */
  discard(): void;
}

function isContentWriter(dump: DumpSource): dump is ContentWriter {
  return typeof (dump as ContentWriter).writeTo === 'function';
}

/** Makes `dump` ready for a tool: through a pipe it writes into itself where pipes can be made, else as a stream. */
export async function restoreInput(dump: DumpSource): Promise<RestoreInput> {
  let stream: Readable;
  if (isContentWriter(dump)) {
    const pipe = await openPipe().catch(() => null);
    if (pipe) return pipeInput(dump, pipe);
    stream = dump.stream();
  } else {
    stream = dump;
  }
  // The dump may fail before it is fed (while the temp database is made); feed() then finds
  // the error in stream.errored, and until then it must not be an uncaught 'error' event.
  stream.on('error', () => {});
  return {
    stdin: 'pipe',
    feed: (stdin) => feed(stream, stdin!),
    discard() {
      stream.unpipe();
      stream.destroy();
    },
  };
}

function pipeInput(writer: ContentWriter, pipe: { readFd: number; writeFd: number }): RestoreInput {
  let readFd: number | null = pipe.readFd;
  let writeFd: number | null = pipe.writeFd;
  let writing: Promise<Error | null> | null = null;
  const closeRead = () => {
    if (readFd !== null) closeSync(readFd);
    readFd = null;
  };
  return {
    stdin: pipe.readFd,
    feed() {
      // The tool holds its own copy of the read end now; ours would keep a pipe whose reader
      // died open, and the writer would wait on it forever instead of failing with EPIPE.
      closeRead();
      const fd = writeFd!;
      // writeTo settles only when no write is under way, so closing (the tool's EOF) is safe then.
      writing = writer.writeTo(fd).then(
        () => null,
        (err: Error) => err,
      );
      return writing.finally(() => {
        closeSync(fd);
        writeFd = null;
      });
    },
    discard() {
      writer.destroy();
      closeRead();
      if (!writing && writeFd !== null) {
        closeSync(writeFd);
        writeFd = null;
      }
    },
  };
}

/** Options of prepareDatabase(). */
export interface PrepareDatabaseOptions {
  /**
   * SWAP: restore into a new database, then swap names (needs canCreateDatabase).
   * IN_PLACE: drop and recreate the objects inside the existing database, in one transaction.
   * Default SWAP.
   */
  strategy?: 'SWAP' | 'IN_PLACE';
  /** The restore's id; names the temp and previous databases. */
  restoreId: string;
  /** Kills pg_restore and undoes everything prepare did. Commit itself is not interruptible. */
  signal?: AbortSignal;
  /**
   * What the dump is: pg_dump's custom format (the default; what snapshots hold) or tar, both
   * read by pg_restore, or plain SQL, run by psql (SWAP only: the SQL has no --clean of its own).
   */
  format?: 'custom' | 'tar' | 'plain';
  /** Told when the long restore starts and when the short swap (or commit) starts. */
  onPhase?: (phase: 'restoring' | 'swapping') => void;
  /**
   * Restore without object ownership (`--no-owner`): everything belongs to the URL's role.
   * Default: only when that role is not a superuser, because only a superuser can give objects
   * to other roles; a superuser restores owners exactly as dumped.
   */
  noOwner?: boolean;
}

/** A restore whose long part is done and which waits to be committed or rolled back. */
export interface PreparedDatabase {
  readonly strategy: 'SWAP' | 'IN_PLACE';
  /** The environment's database. */
  readonly targetName: string;
  /** SWAP: where the restored contents wait. IN_PLACE: null. */
  readonly tempName: string | null;
  /** SWAP: the name the old database will have after commit. IN_PLACE: null. */
  readonly previousName: string | null;
  /**
   * Whether undo() can take a commit back. False for IN_PLACE, whose commit is final: commit it
   * last in a combined restore.
   */
  readonly canUndo: boolean;
  /**
   * SWAP: terminates the target's sessions and renames target → previous and temp → target in
   * one transaction; new sessions wait meanwhile and then reach the restored database.
   * IN_PLACE: commits the restore transaction.
   * On failure nothing has changed (and rollback() is still due). Returns the previous
   * database's name (SWAP) or null (IN_PLACE).
   */
  commit(): Promise<{ previousDatabaseName: string | null }>;
  /** Before commit: drops the temp database (SWAP) or rolls the transaction back (IN_PLACE). Idempotent. */
  rollback(): Promise<void>;
  /** After a SWAP commit: swaps the previous database back under the target's name and drops the restored one. */
  undo(): Promise<void>;
  /** After a SWAP commit: drops the previous database (keepPrevious: false). */
  discardPrevious(): Promise<void>;
  /**
   * SWAP, instead of commit: the restored database becomes `name` (a clone beside the target,
   * which stays as it was). Refused (DATABASE_EXISTS) when that name is taken; nothing changed then.
   */
  keepAs?(name: string): Promise<void>;
}

/** A libpq conninfo value in single quotes. */
export function conninfoQuote(value: string): string {
  return `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/** Feeds `dump` to a tool's stdin; resolves with the dump's own error, if it failed. */
function feed(dump: Readable, stdin: Writable): Promise<Error | null> {
  return new Promise((resolve) => {
    // EPIPE when the tool stops reading: the tool's exit status tells why.
    stdin.on('error', () => {});
    if (dump.errored) return resolve(dump.errored);
    if (dump.destroyed) return resolve(new Error('the dump stream was destroyed before it was read'));
    dump.once('error', (err) => {
      resolve(err);
    });
    dump.once('end', () => {
      stdin.end();
      resolve(null);
    });
    // pg_restore stops reading at the archive's last byte, which may come before the dump says it
    // ended (startDump's stream ends once pg_dump's exit is seen; the engine's after its last
    // read). Node closes a tool's stdin when the tool exits, and pipe() then unpipes and pauses
    // the dump, which with no reader would never emit 'end': drain it, so its end or its own
    // error still comes. A tool that failed does not wait for it (runRestore discards it).
    stdin.once('close', () => {
      if (dump.readableEnded) return;
      dump.unpipe(stdin);
      dump.resume();
    });
    dump.pipe(stdin, { end: false });
  });
}

export function abortError(signal: AbortSignal | undefined): AbortedError | null {
  return signal?.aborted ? new AbortedError({ cause: signal.reason }) : null;
}

/**
 * Settles as `wait` does, or rejects with AbortedError once `signal` aborts: for a wait on
 * something that no process of ours ends (a dump's end after pg_restore exited), which killing
 * the tools on abort would not end.
 */
export function orAbort<T>(wait: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return wait;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    wait.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Runs pg_restore to completion, fed from `dump`; throws abort, dump, or tool errors in that order. */
export async function runRestore(
  tool: Tool,
  dump: RestoreInput,
  signal: AbortSignal | undefined,
  extraTools: Tool[] = [],
): Promise<void> {
  const all = [tool, ...extraTools];
  const killAll = () => all.forEach((t) => t.kill());
  // Aborted while the temp database was being made: killOnAbort kills at once.
  const stopKilling = killOnAbort(signal, all);
  try {
    const fed = dump.feed(tool.child.stdin);
    let dumpError: Error | null = null;
    void fed.then((err) => {
      if (err) {
        dumpError = err;
        killAll();
      }
    });
    const exit = await tool.exited;
    const aborted = abortError(signal);
    if (aborted) throw aborted;
    // A failed tool no longer reads its stdin, so 'end' may never come: only wait for the dump
    // when the tool succeeded (it then read to the end).
    const failure = tool.failure(exit);
    if (!failure) dumpError = await orAbort(fed, signal);
    if (dumpError) throw new SourceError('DUMP_STREAM_FAILED', `reading the dump failed: ${(dumpError as Error).message}`, { cause: dumpError });
    if (failure) throw failure;
  } catch (err) {
    killAll();
    dump.discard();
    throw err;
  } finally {
    stopKilling();
  }
}

/** The error for a handle method called in the wrong state. */
export function stateError(message: string): SourceError {
  return new SourceError('INVALID_HANDLE_STATE', message);
}
