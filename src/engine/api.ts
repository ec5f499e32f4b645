/**
 * The storage engine's public surface. Everything outside src/engine imports from here.
 *
 * Words: a *repository* (restic format version 2) holds *blobs* (chunks of file content and
 * serialized directories, called *trees*) inside *packs*, found through the *index*; a
 * *snapshot* names one root tree. See each module's opening comment for its part.
 *
 * Typical use:
 *
 *     const repo = await Repository.open(backend, password);        // or Repository.init(...)
 *     const r = await backup(repo, { '/db/app.dump': dumpStream, '/files': '/srv/env/files' },
 *                            { tags: ['backplane', 'env:42'], parent, signal, onProgress });
 *     await restore(repo, r.snapshotId, '/srv/env/.files-restore', { path: '/files' });
 *     tarStream(repo, 'latest', '/files')                            // Readable tar
 *     await forgetSnapshots(repo, [id]); await prune(repo); await check(repo, { readData: true });
 *     await repairPacks(repo);                                       // after damage: drop bad packs
 *
 * Operations take repository locks themselves (shared, or exclusive for prune), refresh the
 * index when another process changed it, and accept an AbortSignal. Deliberate failures are
 * EngineError subclasses with a stable `code`.
 */
export { Repository, type InitOptions, type OpenOptions, type RepoConfig, type WriteStats } from './repository.ts';
export { DEFAULT_KDF_PARAMS, type KdfParams } from './kdf.ts';
export { processAlive } from './owner.ts';
export { DEFAULT_CHUNKER_PARAMS, chunkerName, type ChunkerParams } from './chunker.ts';
export type { Id } from './ids.ts';
export type { Node, NodeType, Tree } from './tree.ts';
export { unixPermissions, parseTime, formatTime } from './tree.ts';
export {
  listSnapshots,
  loadSnapshot,
  findSnapshot,
  forgetSnapshots,
  type Snapshot,
  type SnapshotJson,
  type SnapshotFilter,
} from './snapshot.ts';
export {
  backup,
  InvalidSourceError,
  type BackupOptions,
  type BackupProgress,
  type BackupResult,
  type BackupSource,
  type StreamSource,
  type FileSource,
  type PipeSource,
} from './archiver.ts';
export { restore, type RestoreOptions, type RestoreProgress, type RestoreResult } from './restorer.ts';
export { CodecPool, defaultCodecThreads, prestartCodecThreads } from './codec-pool.ts';
export { resolvePath, walk, fileStream, contentWriter, type ContentWriter, type WalkEntry } from './walker.ts';
export { Lock, withLock, acquireLock, removeStaleLocks, isStale, STALE_LOCK_MS, REFRESH_LOCK_MS, type LockJson, type LockWait } from './lock.ts';
export {
  EngineError,
  WrongPasswordError,
  RepositoryNotFoundError,
  RepositoryExistsError,
  UnsupportedFormatError,
  IntegrityError,
  NotFoundInRepositoryError,
  BlobNotIndexedError,
  RepositoryLockedError,
  UnsafePathError,
  AbortedError,
} from './errors.ts';
export { check, type CheckOptions, type CheckProblem, type CheckResult } from './check.ts';
export { prune, usedBlobs, type PruneOptions, type PruneResult } from './prune.ts';
export { repairPacks, snapshotsMissingBlobs, packsOfSnapshots, type DamagedPack, type RepairOptions, type RepairResult } from './repair.ts';
export { copySnapshot, type CopyOptions, type CopyResult } from './copy.ts';
export { tarStream } from './tar.ts';
