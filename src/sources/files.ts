/**
 * The files half of an environment: how much there is, and an atomic directory restore.
 *
 * A restore fills a sibling directory `<target>.bp_restore_<id>` (same parent, so the same
 * filesystem and rename(2) cannot turn into a copy), then renames target → `<target>.bp_pre_<id>`
 * and the sibling → target. POSIX has no atomic swap of two directories (Linux's
 * renameat2(RENAME_EXCHANGE) is not reachable from Node), so between the two renames the target
 * path is briefly missing; it is never half-restored. A target that is itself a mount point
 * cannot be renamed: restore into a directory inside the mount instead.
 */
import type { Stats } from 'node:fs';
import { chmod, lchown, lstat, mkdir, opendir, realpath, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { DRILL_PREFIX, restoreSuffix } from './names.ts';
import { AbortedError, SourceError } from './errors.ts';

/** Regular files under `dir` and their total size; symlinks are not followed; a missing dir counts zero. */
export async function scanFiles(dir: string): Promise<{ bytes: bigint; fileCount: number }> {
  let bytes = 0n;
  let fileCount = 0;
  const pending = [dir];
  while (pending.length > 0) {
    const current = pending.pop()!;
    let entries;
    try {
      entries = await opendir(current);
    } catch (err) {
      // The root missing means "no files yet"; a subdirectory vanishing mid-scan is a race we accept.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for await (const entry of entries) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) pending.push(full);
      else if (entry.isFile()) {
        try {
          bytes += BigInt((await lstat(full)).size);
          fileCount++;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
    }
  }
  return { bytes, fileCount };
}

/** The sibling paths a restore of directory `target` uses (prepareDirectory first resolves symlinks). */
export function restoreDirectoryPaths(target: string, restoreId: string): { temp: string; previous: string } {
  const suffix = restoreSuffix(restoreId);
  const resolved = path.resolve(target);
  return { temp: `${resolved}.bp_restore_${suffix}`, previous: `${resolved}.bp_pre_${suffix}` };
}

/** A restore drill's scratch folder beside `target`: `<target>.bp_drill_<id>`. */
export function drillDirectoryPath(target: string, drillId: string): string {
  return `${path.resolve(target)}.${DRILL_PREFIX}${restoreSuffix(drillId)}`;
}

/** A directory restore whose contents are in place beside the target, waiting for commit. */
export interface PreparedDirectory {
  /** The directory replaced: the target with symlinks resolved. */
  readonly target: string;
  /** Where the restored contents wait until commit. */
  readonly tempPath: string;
  /** Where the old directory goes on commit; after commit, null if there was no target. */
  readonly previousPath: string | null;
  /** Renames target → previous and temp → target. On failure the target is as it was. */
  commit(): Promise<{ previousPath: string | null }>;
  /** Before commit: removes the temp directory. Idempotent. */
  rollback(): Promise<void>;
  /** After commit: puts the previous directory back and removes the restored one. */
  undo(): Promise<void>;
  /** After commit: removes the previous directory (keepPrevious: false). */
  discardPrevious(): Promise<void>;
}

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * The directory a restore really replaces. A files path is often a symlink (/srv/files →
 * /data/files): renaming the link would put a real directory in its place on another
 * filesystem, so the swap happens beside the directory the link points to, and the link stays.
 */
async function realTarget(target: string): Promise<string> {
  try {
    return await realpath(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return path.resolve(target);
    throw err;
  }
}

function stateError(message: string): SourceError {
  return new SourceError('INVALID_HANDLE_STATE', message);
}

const isRoot = process.getuid?.() === 0;

/**
 * Creates `<target>.bp_restore_<id>`, lets `fill` write the restored files into it, and gives it
 * the target's own mode (and owner, when running as root); the mtime is what `fill` left.
 * Nothing the application sees changes until commit(). If it throws, the temp dir is gone.
 */
export async function prepareDirectory(
  target: string,
  restoreId: string,
  fill: (tempDir: string) => Promise<void>,
  opts: { signal?: AbortSignal } = {},
): Promise<PreparedDirectory> {
  const resolved = await realTarget(target);
  const { temp, previous } = restoreDirectoryPaths(resolved, restoreId);
  const aborted = () => (opts.signal?.aborted ? new AbortedError({ cause: opts.signal.reason }) : null);
  const early = aborted();
  if (early) throw early;

  const existing = await lstatOrNull(resolved);
  if (existing && !existing.isDirectory()) {
    throw new SourceError('DIRECTORY_SWAP_FAILED', `${resolved} exists and is not a directory`);
  }
  if (await lstatOrNull(previous)) {
    throw new SourceError('RESTORE_ALREADY_COMMITTED', `${previous} exists: restore ${restoreId} was already committed`);
  }
  // Left by an earlier attempt of this same restore that died; never live.
  await rm(temp, { recursive: true, force: true });
  await mkdir(path.dirname(resolved), { recursive: true });
  // Private while it is being filled: nobody should read a half-restored tree.
  await mkdir(temp, { mode: 0o700 });
  try {
    await fill(temp);
    const late = aborted();
    if (late) throw late;
    if (existing) {
      await chmod(temp, existing.mode & 0o7777);
      if (isRoot) await lchown(temp, existing.uid, existing.gid);
    } else if (((await stat(temp)).mode & 0o7777) === 0o700) {
      // fill left our private mode in place and there is no target to copy one from.
      await chmod(temp, 0o755);
    }
  } catch (err) {
    await rm(temp, { recursive: true, force: true });
    throw err;
  }

  let state: 'prepared' | 'committed' | 'rolledBack' | 'undone' = 'prepared';
  let hadTarget = false;
  return {
    target: resolved,
    tempPath: temp,
    get previousPath() {
      return state === 'committed' && !hadTarget ? null : previous;
    },
    async commit() {
      if (state !== 'prepared') throw stateError(`cannot commit a restore that is ${state}`);
      try {
        await rename(resolved, previous);
        hadTarget = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new SourceError('DIRECTORY_SWAP_FAILED', `could not move ${resolved} aside: ${(err as Error).message}`, { cause: err });
        }
      }
      try {
        await rename(temp, resolved);
      } catch (err) {
        if (hadTarget) await rename(previous, resolved);
        hadTarget = false;
        throw new SourceError('DIRECTORY_SWAP_FAILED', `could not move the restored files into ${resolved}: ${(err as Error).message}`, { cause: err });
      }
      state = 'committed';
      return { previousPath: hadTarget ? previous : null };
    },
    async rollback() {
      if (state === 'rolledBack') return;
      if (state !== 'prepared') throw stateError(`cannot roll back a restore that is ${state}`);
      await rm(temp, { recursive: true, force: true });
      state = 'rolledBack';
    },
    async undo() {
      if (state !== 'committed') throw stateError(`cannot undo a restore that is ${state}`);
      await rename(resolved, temp);
      if (hadTarget) {
        try {
          await rename(previous, resolved);
        } catch (err) {
          await rename(temp, resolved);
          throw err;
        }
      }
      state = 'undone';
      await rm(temp, { recursive: true, force: true });
    },
    async discardPrevious() {
      if (state !== 'committed') throw stateError(`cannot discard the previous directory of a restore that is ${state}`);
      if (hadTarget) await rm(previous, { recursive: true, force: true });
    },
  };
}

/**
 * Clears what a restore of `target` that stopped (its process killed) left: the temp directory
 * it was filling, a commit cut between its two renames (target moved aside, restored files not
 * yet in place), which is put back, and a commit that completed although the restore did not
 * (restored files in place, the old ones at `<target>.bp_pre_<id>`), which is undone so the
 * target is as it was. Returns what it found.
 */
export async function discardRestoreDirectory(target: string, restoreId: string): Promise<{ removedTemp: boolean; putBack: boolean; undone: boolean }> {
  const resolved = await realTarget(target);
  const { temp, previous } = restoreDirectoryPaths(resolved, restoreId);
  let putBack = false;
  let undone = false;
  const [hasTarget, hasTemp, hasPrevious] = await Promise.all([resolved, temp, previous].map(async (p) => (await lstatOrNull(p)) !== null));
  if (!hasTarget && hasTemp && hasPrevious) {
    await rename(previous, resolved);
    putBack = true;
  } else if (hasTarget && !hasTemp && hasPrevious) {
    await rename(resolved, temp);
    await rename(previous, resolved);
    undone = true;
  }
  const removedTemp = !undone && (await lstatOrNull(temp)) !== null;
  await rm(temp, { recursive: true, force: true });
  return { removedTemp, putBack, undone };
}

/**
 * Restores a directory atomically: `fill` writes the snapshot's files into a sibling temp dir,
 * which then replaces `target`. On failure or abort before the swap the target is untouched and
 * the temp dir removed. The old directory stays at `<target>.bp_pre_<id>` (returned) unless
 * keepPrevious is false.
 */
export async function swapDirectory(
  target: string,
  restoreId: string,
  fill: (tempDir: string) => Promise<void>,
  opts: { keepPrevious?: boolean; signal?: AbortSignal } = {},
): Promise<{ previousPath: string | null }> {
  const prepared = await prepareDirectory(target, restoreId, fill, { signal: opts.signal });
  let result: { previousPath: string | null };
  try {
    if (opts.signal?.aborted) throw new AbortedError({ cause: opts.signal.reason });
    result = await prepared.commit();
  } catch (err) {
    await prepared.rollback();
    throw err;
  }
  if (opts.keepPrevious === false) {
    await prepared.discardPrevious();
    return { previousPath: null };
  }
  return result;
}
