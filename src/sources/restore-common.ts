/**
 * What the database restore strategies (restore-swap.ts, restore-in-place.ts) share: the
 * prepared-restore handle, and feeding a dump stream to a client tool.
 */
import type { Readable, Writable } from 'node:stream';
import { closeSync } from 'node:fs';
import type { Tool } from './child.ts';
import { openPipe } from './pipe.ts';
import { AbortedError, SourceError } from './errors.ts';

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
}

/** A libpq conninfo value in single quotes. */
export function conninfoQuote(value: string): string {
  return `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/**
 * A dump that writes itself into a pipe (e.g. a codec thread decoding a snapshot's file), so
 * its bytes never pass through the event loop.
 */
export interface DumpWriter {
  /** Writes the whole dump into `fd`, a pipe's blocking write end (the caller closes it); rejects with why not. */
  writeInto(fd: number): Promise<void>;
}

/** A dump to restore: a stream, or a writer into a pipe. */
export type DumpInput = Readable | DumpWriter;

function isWriter(dump: DumpInput): dump is DumpWriter {
  return typeof (dump as DumpWriter).writeInto === 'function';
}

/**
 * How a tool that reads the dump on its stdin is fed: a stream through the stdin pipe Node
 * makes, a writer through a pipe of our own (give the tool `stdin`, then call started()).
 */
export class DumpFeed {
  readonly stdin: 'pipe' | number;
  private readFd: number | null = null;
  private writeFd: number | null = null;

  static async create(dump: DumpInput): Promise<DumpFeed> {
    if (!isWriter(dump)) {
      // The dump may fail while the temp database is still being made; feed() finds the
      // error in dump.errored, and until then it must not be an uncaught 'error' event.
      dump.on('error', () => {});
      return new DumpFeed(dump, null);
    }
    const ends = await openPipe();
    if (!ends) throw new Error('this platform cannot make a pipe for a dump writer; pass a stream');
    return new DumpFeed(dump, ends);
  }

  private constructor(
    private readonly dump: DumpInput,
    ends: { readFd: number; writeFd: number } | null,
  ) {
    if (ends) {
      this.readFd = ends.readFd;
      this.writeFd = ends.writeFd;
      this.stdin = ends.readFd;
    } else {
      this.stdin = 'pipe';
    }
  }

  /** After the tool started: it holds its own copy of the pipe's read end. */
  started(): void {
    if (this.readFd !== null) closeSync(this.readFd);
    this.readFd = null;
  }

  /** Feeds the tool; resolves with the dump's own error, if it failed. */
  feed(tool: Tool): Promise<Error | null> {
    if (!isWriter(this.dump)) return feed(this.dump, tool.child.stdin!);
    const fd = this.writeFd!;
    this.writeFd = null;
    return this.dump.writeInto(fd).then(
      () => null,
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    ).finally(() => closeSync(fd)); // the end of the dump, for the tool
  }

  /** On failure: stops a stream, closes what is left of a pipe. */
  discard(): void {
    if (!isWriter(this.dump)) {
      this.dump.unpipe();
      this.dump.destroy();
    }
    for (const fd of [this.readFd, this.writeFd]) if (fd !== null) closeSync(fd);
    this.readFd = this.writeFd = null;
  }
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
    dump.pipe(stdin, { end: false });
  });
}

export function abortError(signal: AbortSignal | undefined): AbortedError | null {
  return signal?.aborted ? new AbortedError({ cause: signal.reason }) : null;
}

/** Runs pg_restore to completion, fed from `dump`; throws abort, dump, or tool errors in that order. */
export async function runRestore(
  tool: Tool,
  dump: DumpFeed,
  signal: AbortSignal | undefined,
  extraTools: Tool[] = [],
): Promise<void> {
  const all = [tool, ...extraTools];
  const onAbort = () => all.forEach((t) => t.kill());
  signal?.addEventListener('abort', onAbort, { once: true });
  // Aborted while the temp database was being made: the listener above will never fire.
  if (signal?.aborted) onAbort();
  try {
    const fed = dump.feed(tool);
    let dumpError: Error | null = null;
    void fed.then((err) => {
      if (err) {
        dumpError = err;
        all.forEach((t) => t.kill());
      }
    });
    const exit = await tool.exited;
    const aborted = abortError(signal);
    if (aborted) throw aborted;
    // A failed tool no longer reads its stdin, so 'end' may never come: only wait for the dump
    // when the tool succeeded (it then read to the end).
    const failure = tool.failure(exit);
    if (!failure) dumpError = await fed;
    if (dumpError) throw new SourceError('DUMP_STREAM_FAILED', `reading the dump failed: ${(dumpError as Error).message}`, { cause: dumpError });
    if (failure) throw failure;
  } catch (err) {
    onAbort();
    dump.discard();
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** The error for a handle method called in the wrong state. */
export function stateError(message: string): SourceError {
  return new SourceError('INVALID_HANDLE_STATE', message);
}
