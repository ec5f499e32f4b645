/**
 * What the database restore strategies (restore-swap.ts, restore-in-place.ts) share: the
 * prepared-restore handle, and feeding a dump stream to a client tool.
 */
import type { Readable, Writable } from 'node:stream';
import type { Tool } from './child.ts';
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
  dump: Readable,
  signal: AbortSignal | undefined,
  extraTools: Tool[] = [],
): Promise<void> {
  const all = [tool, ...extraTools];
  const onAbort = () => all.forEach((t) => t.kill());
  signal?.addEventListener('abort', onAbort, { once: true });
  // Aborted while the temp database was being made: the listener above will never fire.
  if (signal?.aborted) onAbort();
  try {
    const fed = feed(dump, tool.child.stdin!);
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
    dump.unpipe();
    dump.destroy();
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** The error for a handle method called in the wrong state. */
export function stateError(message: string): SourceError {
  return new SourceError('INVALID_HANDLE_STATE', message);
}
