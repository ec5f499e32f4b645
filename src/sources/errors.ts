/**
 * Errors the sources layer raises on purpose, each with a stable `code`. A cancelled dump or
 * restore rejects with the engine's `AbortedError` (code `ABORTED`), so a job handles every
 * cancellation the same way whichever layer noticed it.
 */
export { AbortedError } from '../engine/errors.ts';

/** Codes of SourceError; never change what one means. */
export type SourceErrorCode =
  | 'PG_TOOL_FAILED'
  | 'DUMP_STREAM_CLOSED'
  | 'DUMP_STREAM_FAILED'
  | 'DATABASE_NOT_FOUND'
  | 'RESTORE_ALREADY_COMMITTED'
  | 'DATABASE_SWAP_FAILED'
  | 'DATABASE_SETTINGS_NOT_COPIED'
  | 'UNDO_NOT_POSSIBLE'
  | 'DIRECTORY_SWAP_FAILED'
  | 'NOT_A_RESTORE_DATABASE'
  | 'INVALID_HANDLE_STATE'
  | 'BASE_BACKUP_EXTRACT_FAILED'
  | 'PITR_RECOVERY_FAILED'
  | 'DATABASE_CREATE_FORBIDDEN'
  | 'DATABASE_EXISTS'
  | 'CHECK_QUERY_FAILED'
  | 'IN_PLACE_NEEDS_ARCHIVE'
  | 'BASEBACKUP_OUTPUT';

/** A deliberate failure of a dump, restore or swap. */
export class SourceError extends Error {
  constructor(
    readonly code: SourceErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A PostgreSQL client tool exited with an error; `stderr` holds its last lines. */
export class PgToolError extends SourceError {
  constructor(
    readonly tool: string,
    readonly exitCode: number | null,
    readonly exitSignal: NodeJS.Signals | null,
    readonly stderr: string,
  ) {
    const how = exitCode !== null ? `exited with code ${exitCode}` : `was killed by ${exitSignal}`;
    super('PG_TOOL_FAILED', `${tool} ${how}${stderr ? `: ${stderr}` : ''}`);
  }
}
