/**
 * Destinations: where repository bytes live.
 *
 * A backend stores named files of a few kinds, exactly as restic lays out a repository:
 * `config` at the root, `keys/<id>`, `data/<first two hex digits of id>/<id>`, `index/<id>`,
 * `snapshots/<id>` and `locks/<id>`. The engine only speaks this interface; local disk and
 * S3-compatible storage implement it, and one conformance suite (test/destinations) runs
 * against every implementation.
 *
 * Every write is atomic: a reader sees either no file or the whole file, never a prefix.
 */
import type { Readable } from 'node:stream';

/** The kinds of file in a restic repository. */
export type FileType = 'config' | 'keys' | 'data' | 'index' | 'snapshots' | 'locks';

export const FILE_TYPES: readonly FileType[] = ['config', 'keys', 'data', 'index', 'snapshots', 'locks'];

/** Names one file: its kind and its name (a 64-hex-digit id; ignored for `config`). */
export interface Handle {
  type: FileType;
  name: string;
}

export interface FileInfo {
  name: string;
  size: number;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface SaveOptions extends CallOptions {
  /**
   * Called once the backend no longer reads `data` (the local backend: after writing it, before
   * the fsync), so the caller can reuse the buffer early. Backends that do not call it are done
   * with the data when save() settles.
   */
  dataConsumed?: () => void;
}

export interface LoadOptions extends CallOptions {
  /** First byte to read; defaults to 0. */
  offset?: number;
  /** How many bytes to read from offset; defaults to the rest of the file. */
  length?: number;
}

/** The one storage interface the engine uses. */
export interface Backend {
  /** Human-readable location, e.g. `/srv/repo` or `s3:http://host:9000/bucket/prefix`. */
  readonly location: string;
  /** Writes the whole file atomically; replaces an existing file of the same handle. */
  save(h: Handle, data: Uint8Array, opts?: SaveOptions): Promise<void>;
  /** Reads the file, or a byte range of it. Throws BackendNotFoundError when it does not exist. */
  load(h: Handle, opts?: LoadOptions): Promise<Buffer>;
  /** Size of the file, or null when it does not exist. */
  stat(h: Handle, opts?: CallOptions): Promise<FileInfo | null>;
  /** Every file of one kind (for `data`, across all subdirectories), in no particular order. */
  list(type: FileType, opts?: CallOptions): AsyncIterable<FileInfo>;
  /** Deletes the file; deleting a missing file is not an error. */
  remove(h: Handle, opts?: CallOptions): Promise<void>;
  /** Releases connections and handles. */
  close(): Promise<void>;
  /**
   * For backends whose files are plain local files: the path of one, so a reader on another
   * thread may read it itself (restores of small files do). Others leave it out.
   */
  localPath?(h: Handle): string;
  /**
   * Streams a file that is no part of the repository, by its key under the destination's root
   * (a dump someone put beside the repository, for importDump). The key must pass
   * objectKeyProblem. Throws BackendNotFoundError when it does not exist.
   */
  openObject?(key: string, opts?: CallOptions): Promise<{ stream: Readable; size: number | null }>;
}

/**
 * Why `key` could leave the destination's root, or null when it cannot: keys are relative,
 * `/`-separated, without empty, `.` or `..` segments, backslashes or control characters.
 */
export function objectKeyProblem(key: string): string | null {
  if (!key) return 'must not be empty';
  if (key.length > 1024) return 'must be at most 1024 characters';
  if (key.startsWith('/')) return 'must be relative to the destination, without a leading /';
  if (/[\\\u0000-\u001f]/.test(key)) return 'must not contain backslashes or control characters';
  if (key.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')) return 'must not contain empty, . or .. segments';
  return null;
}

/** The file does not exist in the backend. */
export class BackendNotFoundError extends Error {
  readonly code = 'BACKEND_NOT_FOUND';
  constructor(readonly handle: Handle, options?: { cause?: unknown }) {
    super(`${handle.type}/${handle.name} does not exist`, options);
    this.name = 'BackendNotFoundError';
  }
}

/**
 * The backend could not be reached or refused the credentials. `kind` lets callers tell a
 * wrong key, a missing bucket and an unreachable endpoint apart.
 */
export class BackendAccessError extends Error {
  readonly code = 'BACKEND_ACCESS';
  constructor(
    readonly kind: 'UNREACHABLE' | 'AUTH' | 'NO_BUCKET' | 'IO',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BackendAccessError';
  }
}
