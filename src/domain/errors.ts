/**
 * The one catalog of error codes a caller can act on. GraphQL exposes each class as a type
 * implementing `Error { message, code }`; services and jobs throw them; the codes never change
 * meaning once released.
 */
export const ErrorCode = {
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  PROJECT_NOT_FOUND: 'PROJECT_NOT_FOUND',
  ENVIRONMENT_NOT_FOUND: 'ENVIRONMENT_NOT_FOUND',
  API_KEY_NOT_FOUND: 'API_KEY_NOT_FOUND',
  DESTINATION_NOT_FOUND: 'DESTINATION_NOT_FOUND',
  SNAPSHOT_NOT_FOUND: 'SNAPSHOT_NOT_FOUND',
  OPERATION_NOT_FOUND: 'OPERATION_NOT_FOUND',
  NODE_NOT_FOUND: 'NODE_NOT_FOUND',
  NAME_TAKEN: 'NAME_TAKEN',
  PROJECT_NOT_EMPTY: 'PROJECT_NOT_EMPTY',
  OPERATION_RUNNING: 'OPERATION_RUNNING',
  SNAPSHOT_PINNED: 'SNAPSHOT_PINNED',
  MAX_PINNED: 'MAX_PINNED',
  IDEMPOTENCY_KEY_REUSED: 'IDEMPOTENCY_KEY_REUSED',
  API_KEY_REVOKED: 'API_KEY_REVOKED',
  OPERATION_FINISHED: 'OPERATION_FINISHED',
  NO_DESTINATION: 'NO_DESTINATION',
  SNAPSHOT_NOT_READY: 'SNAPSHOT_NOT_READY',
  SNAPSHOT_DAMAGED: 'SNAPSHOT_DAMAGED',
  RESTORE_RUNNING: 'RESTORE_RUNNING',
  SCHEDULE_NOT_FOUND: 'SCHEDULE_NOT_FOUND',
  ALERT_NOT_FOUND: 'ALERT_NOT_FOUND',
  WEBHOOK_NOT_FOUND: 'WEBHOOK_NOT_FOUND',
  DESTINATION_IN_USE: 'DESTINATION_IN_USE',
  DESTINATION_NO_REPOSITORY: 'DESTINATION_NO_REPOSITORY',
  COPY_EXISTS: 'COPY_EXISTS',
  DATABASE_UNREACHABLE: 'DATABASE_UNREACHABLE',
  ENVIRONMENT_LOCKED: 'ENVIRONMENT_LOCKED',
  /** The repository holds no base backup of the environment's cluster. */
  PITR_NO_ARCHIVE: 'PITR_NO_ARCHIVE',
  PITR_BEFORE_FIRST_BASE_BACKUP: 'PITR_BEFORE_FIRST_BASE_BACKUP',
  PITR_AFTER_ARCHIVED_WAL: 'PITR_AFTER_ARCHIVED_WAL',
  /** WAL is missing between the base backup and the point in time (or the catalog lists a gap there). */
  PITR_IN_GAP: 'PITR_IN_GAP',
  DATABASE_CREATE_FORBIDDEN: 'DATABASE_CREATE_FORBIDDEN',
  ENVIRONMENT_NOT_READY: 'ENVIRONMENT_NOT_READY',
  DRILL_RUNNING: 'DRILL_RUNNING',
  /** The dump is none of the formats importDump reads (plain SQL, custom, tar; raw, gzip or zstd). */
  IMPORT_FORMAT_UNKNOWN: 'IMPORT_FORMAT_UNKNOWN',
  /** The dump was read but could not be loaded (broken, cut short, or SQL that fails). */
  IMPORT_FAILED: 'IMPORT_FAILED',
  /** The upload or download is larger than IMPORT_MAX_BYTES. */
  IMPORT_TOO_LARGE: 'IMPORT_TOO_LARGE',
  /** The URL is not https, or names a private or loopback address, and the configuration does not allow it. */
  IMPORT_URL_REFUSED: 'IMPORT_URL_REFUSED',
  /** The URL or the destination key could not be read. */
  IMPORT_SOURCE_UNREADABLE: 'IMPORT_SOURCE_UNREADABLE',
  /** The server's settings do not allow WAL archiving; the message says what to change. */
  PITR_SOURCE_UNSUITABLE: 'PITR_SOURCE_UNSUITABLE',
  PITR_NOT_ENABLED: 'PITR_NOT_ENABLED',
  /** A time outside the recovery window or inside a gap of it. */
  PITR_TIME_NOT_RECOVERABLE: 'PITR_TIME_NOT_RECOVERABLE',
  BASE_BACKUP_RUNNING: 'BASE_BACKUP_RUNNING',
  RECOVERY_INSTANCE_NOT_FOUND: 'RECOVERY_INSTANCE_NOT_FOUND',
  /** As many recovery instances as PITR_INSTANCE_MAX allows are starting or running already. */
  RECOVERY_INSTANCE_LIMIT: 'RECOVERY_INSTANCE_LIMIT',
  /** The recovery instance is not READY (starting, or ended): it cannot be extended. */
  RECOVERY_INSTANCE_NOT_READY: 'RECOVERY_INSTANCE_NOT_READY',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Refusals of a whole request before it runs (`src/app/query-limits.ts`), sent as
 * `extensions.code` of a GraphQL error rather than as typed results.
 */
export const QueryLimitCode = {
  /** More tokens than MAX_TOKENS. */
  QUERY_TOO_LONG: 'QUERY_TOO_LONG',
  /** Nested deeper than MAX_DEPTH. */
  QUERY_TOO_DEEP: 'QUERY_TOO_DEEP',
  /** More aliases than MAX_ALIASES. */
  QUERY_TOO_MANY_ALIASES: 'QUERY_TOO_MANY_ALIASES',
  /** Could return more objects than MAX_COST. */
  QUERY_TOO_COMPLEX: 'QUERY_TOO_COMPLEX',
} as const;
export type QueryLimitCode = (typeof QueryLimitCode)[keyof typeof QueryLimitCode];

/** Base of every expected failure. */
export abstract class AppError extends Error {
  abstract readonly code: ErrorCode;
}

export class NotFoundError extends AppError {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'NotFoundError';
  }

  static project = () => new NotFoundError(ErrorCode.PROJECT_NOT_FOUND, 'Project not found');
  static environment = () => new NotFoundError(ErrorCode.ENVIRONMENT_NOT_FOUND, 'Environment not found');
  static apiKey = () => new NotFoundError(ErrorCode.API_KEY_NOT_FOUND, 'API key not found');
}

export interface FieldIssue {
  /** Path of the offending field, e.g. ["input", "name"]. */
  path: string[];
  message: string;
}

export class ValidationError extends AppError {
  /** VALIDATION_FAILED, or a more precise code for an input refused for one known reason (IMPORT_TOO_LARGE). */
  constructor(
    readonly fields: FieldIssue[],
    readonly code: ErrorCode = ErrorCode.VALIDATION_FAILED,
  ) {
    super(fields.length === 1 ? `${fields[0].path.join('.')}: ${fields[0].message}` : `Invalid input (${fields.length} problems)`);
    this.name = 'ValidationError';
  }

  static field(path: string[], message: string, code?: ErrorCode): ValidationError {
    return new ValidationError([{ path, message }], code);
  }
}

export class ConflictError extends AppError {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ConflictError';
  }
}
