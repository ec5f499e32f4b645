/**
 * Errors the engine raises on purpose. Each has a stable `code` so that services can map it to
 * the domain error catalog without matching on messages.
 */

/** Base class of every deliberate engine error. */
export class EngineError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** No key file in the repository opens with the given password. */
export class WrongPasswordError extends EngineError {
  constructor(options?: { cause?: unknown }) {
    super('REPOSITORY_WRONG_PASSWORD', 'wrong password or no key found', options);
  }
}

/** The backend holds no repository (no `config` file). */
export class RepositoryNotFoundError extends EngineError {
  constructor(location: string, options?: { cause?: unknown }) {
    super('REPOSITORY_NOT_FOUND', `no repository at ${location}`, options);
  }
}

/** `init` was called where a repository already exists. */
export class RepositoryExistsError extends EngineError {
  constructor(location: string) {
    super('REPOSITORY_EXISTS', `a repository already exists at ${location}`);
  }
}

/** The repository uses a format version or feature this engine does not understand. */
export class UnsupportedFormatError extends EngineError {
  constructor(message: string) {
    super('REPOSITORY_UNSUPPORTED', message);
  }
}

/** Stored bytes fail their MAC or hash, or do not parse: corruption or tampering. */
export class IntegrityError extends EngineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('REPOSITORY_INTEGRITY', message, options);
  }
}

/** A blob, tree, snapshot or path that was asked for does not exist. */
export class NotFoundInRepositoryError extends EngineError {
  constructor(message: string) {
    super('REPOSITORY_NOT_FOUND_ITEM', message);
  }
}

/** A blob no index lists (same code: callers that only know NotFoundInRepositoryError still match). */
export class BlobNotIndexedError extends NotFoundInRepositoryError {
  constructor(type: string, id: string) {
    super(`${type} blob ${id} is not in the index`);
  }
}

/** Another process holds a conflicting lock. */
export class RepositoryLockedError extends EngineError {
  constructor(message: string) {
    super('REPOSITORY_LOCKED', message);
  }
}

/** A restore would write outside its target directory. */
export class UnsafePathError extends EngineError {
  constructor(message: string) {
    super('RESTORE_UNSAFE_PATH', message);
  }
}

/** The caller's AbortSignal fired. */
export class AbortedError extends EngineError {
  constructor(options?: { cause?: unknown }) {
    super('ABORTED', 'operation aborted', options);
  }
}

/** Throws AbortedError when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortedError({ cause: signal.reason });
}
