/**
 * Restorer: writes a snapshot, or one path inside it, into a target directory with contents,
 * modes, times and symlinks (and owners when running as root).
 *
 * It never writes outside the target: every name is checked (no `..`, `.`, `/`, NUL or empty
 * names), files are opened with O_NOFOLLOW, and an existing entry in the way that is not a real
 * directory is refused rather than followed — so a symlink placed by the restore itself (or
 * found in the target) cannot redirect a later write.
 */
import { constants as fsc } from 'node:fs';
import { chmod, lchown, lstat, lutimes, mkdir, open, symlink, unlink, utimes } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { AbortedError, UnsafePathError, throwIfAborted } from './errors.ts';
import type { Id } from './ids.ts';
import { withLock } from './lock.ts';
import type { Repository } from './repository.ts';
import { findSnapshot, type Snapshot } from './snapshot.ts';
import { parseTime, unixPermissions, type Node } from './tree.ts';
import { fileBlobs, packError, resolvePath, threadBlob, walk } from './walker.ts';
import { CodecPool, defaultCodecThreads, type ThreadBlob } from './codec-pool.ts';

/** Files written at the same time within one directory (overlaps small-file latency). */
const FILES_IN_PARALLEL = 4;

/** Progress of a restore. */
export interface RestoreProgress {
  bytesDone: number;
  bytesTotal?: number;
  filesDone: number;
  currentPath?: string;
}

/** Options for restore(). */
export interface RestoreOptions {
  /** Path inside the snapshot; a directory's contents go into the target, a file goes to target/<name>. */
  path?: string;
  signal?: AbortSignal;
  onProgress?: (p: RestoreProgress) => void;
  /** Take a shared repository lock (default true). */
  lock?: boolean;
  /** Codec threads, at least 1 (default: one per core, at most four). */
  codecThreads?: number;
  /**
   * Decode in this pool (of this repository's key), left open afterwards: restores in a row then
   * start their threads once, which on a busy machine cost more than decoding a 16 MiB file.
   * Default: a pool of its own, closed at the end.
   */
  pool?: CodecPool;
}

/** What a restore wrote. */
export interface RestoreResult {
  snapshotId: Id;
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
}

/** Rejects names that could leave the directory they are written into. */
export function checkName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new UnsafePathError(`refusing unsafe name ${JSON.stringify(name)}`);
  }
}

const isRoot = process.getuid?.() === 0;

/**
 * Seconds for utimes, which takes a double: near 2^31 s its step is ~0.24 µs, so rounding could
 * carry a time just below a millisecond (or second) boundary over it. The middle of the time's
 * microsecond stays inside that microsecond, whichever way the double rounds.
 */
function secondsOf(time: string): number {
  const ns = parseTime(time);
  const sec = ns / 1_000_000_000n - (ns < 0n && ns % 1_000_000_000n !== 0n ? 1n : 0n);
  const us = (ns - sec * 1_000_000_000n) / 1000n;
  return Number(sec) + (Number(us) + 0.5) / 1e6;
}

class Restorer {
  readonly result: Omit<RestoreResult, 'snapshotId'> = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };

  constructor(private readonly repo: Repository, private readonly opts: RestoreOptions, private readonly pool: CodecPool) {}

  bytesTotal: number | undefined;

  private progress(path?: string): void {
    this.opts.onProgress?.({ bytesDone: this.result.bytes, bytesTotal: this.bytesTotal, filesDone: this.result.files, currentPath: path });
  }

  /** Makes sure `path` is a real directory (creating it when missing). */
  async ensureDir(path: string, mode = 0o700): Promise<void> {
    try {
      await mkdir(path, { mode });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const st = await lstat(path);
    if (!st.isDirectory()) throw new UnsafePathError(`${path} exists and is not a directory; refusing to write through it`);
  }

  async restoreTree(treeId: Id, dir: string): Promise<void> {
    const tree = await this.repo.loadTree(treeId, this.opts.signal);
    const seen = new Set<string>();
    for (const node of tree.nodes) {
      checkName(node.name);
      if (seen.has(node.name)) throw new UnsafePathError(`tree ${treeId} lists ${JSON.stringify(node.name)} twice`);
      seen.add(node.name);
    }
    // Regular files are independent of each other: write a few at once. Everything else in
    // order, so symlinks and directories never race with writes below them.
    const files = tree.nodes.filter((n) => n.type === 'file');
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const node = files[next++];
        await this.restoreNode(node, join(dir, node.name));
      }
    };
    await Promise.all(Array.from({ length: Math.min(FILES_IN_PARALLEL, files.length) }, worker));
    for (const node of tree.nodes) if (node.type !== 'file') await this.restoreNode(node, join(dir, node.name));
  }

  async restoreNode(node: Node, path: string): Promise<void> {
    throwIfAborted(this.opts.signal);
    switch (node.type) {
      case 'dir':
        await this.ensureDir(path);
        if (node.subtree) await this.restoreTree(node.subtree, path);
        this.result.dirs++;
        await this.setMeta(node, path);
        return;
      case 'file':
        if ((node.content?.length ?? 0) <= 1) {
          await this.writeSmallFile(node, path);
        } else {
          await this.writeFile(node, path);
          await this.setMeta(node, path);
        }
        this.result.files++;
        this.progress(path);
        return;
      case 'symlink': {
        const st = await lstat(path).catch(() => null);
        if (st?.isDirectory()) throw new UnsafePathError(`${path} exists as a directory; not replacing it with a symlink`);
        if (st) await unlink(path);
        await symlink(node.linktarget ?? '', path);
        this.result.symlinks++;
        await this.setMeta(node, path);
        return;
      }
      default:
        // Devices, FIFOs and sockets cannot be created from Node.js; they carry no data.
        return;
    }
  }

  private async writeFile(node: Node, path: string): Promise<void> {
    let fh;
    try {
      fh = await open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o600);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'EISDIR') throw new UnsafePathError(`${path} exists and is not a regular file; refusing to write through it`);
      throw err;
    }
    try {
      for await (const buf of fileBlobs(this.repo, node, this.opts.signal, this.pool)) {
        let off = 0;
        while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
        this.result.bytes += buf.length;
        this.progress(path);
      }
    } finally {
      await fh.close();
    }
  }

  /**
   * A file of at most one blob (most files of a typical tree), written whole by a codec thread,
   * which also reads the blob from a local pack: one message instead of a round trip to libuv's
   * pool for each of about eleven calls, which is what restoring many small files spent its
   * time on.
   */
  private async writeSmallFile(node: Node, path: string): Promise<void> {
    const blobs: ThreadBlob[] = [];
    let localPack: string | undefined;
    for (const id of node.content ?? []) {
      const { blob, packId } = await threadBlob(this.repo, id, this.opts.signal);
      if ('pack' in blob) localPack = packId;
      blobs.push(blob);
    }
    let bytes;
    try {
      bytes = await this.pool.writeFile(path, blobs, {
        mode: unixPermissions(node.mode),
        atime: secondsOf(node.atime),
        mtime: secondsOf(node.mtime),
        owner: isRoot ? { uid: node.uid, gid: node.gid } : undefined,
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'EISDIR') throw new UnsafePathError(`${path} exists and is not a regular file; refusing to write through it`);
      throw packError(err, localPack ?? '');
    }
    this.result.bytes += bytes;
  }

  async setMeta(node: Node, path: string): Promise<void> {
    if (isRoot) await lchown(path, node.uid, node.gid).catch(() => {});
    const atime = secondsOf(node.atime);
    const mtime = secondsOf(node.mtime);
    if (node.type === 'symlink') {
      await lutimes(path, atime, mtime).catch(() => {});
      return;
    }
    await chmod(path, unixPermissions(node.mode));
    await utimes(path, atime, mtime);
  }
}

/** Sum of file sizes at and below a node (one extra pass over the trees, for progress). */
async function totalSize(repo: Repository, node: Node, signal?: AbortSignal): Promise<number> {
  if (node.type === 'file') return node.size ?? 0;
  let total = 0;
  if (node.type === 'dir' && node.subtree) {
    for await (const e of walk(repo, node.subtree, '', signal)) if (e.node.type === 'file') total += e.node.size ?? 0;
  }
  return total;
}

/**
 * Restores a snapshot (`latest`, an id or a unique prefix, or a loaded Snapshot) into target.
 * The target is created when missing; existing files in the way are overwritten.
 */
export async function restore(repo: Repository, snapshot: string | Snapshot, target: string, opts: RestoreOptions = {}): Promise<RestoreResult> {
  const run = async (): Promise<RestoreResult> => {
    await repo.refreshIndex(opts.signal);
    const sn = typeof snapshot === 'string' ? await findSnapshot(repo, snapshot, undefined, opts.signal) : snapshot;
    const node = await resolvePath(repo, sn, opts.path ?? '/', opts.signal);
    await mkdir(target, { recursive: true });
    const st = await lstat(target);
    if (!st.isDirectory()) throw new UnsafePathError(`restore target ${target} is not a directory`);
    const pool = opts.pool ?? new CodecPool(repo.key, opts.codecThreads ?? defaultCodecThreads());
    const r = new Restorer(repo, opts, pool);
    if (opts.onProgress) r.bytesTotal = await totalSize(repo, node, opts.signal);
    try {
      if (node.type === 'dir') {
        if (node.subtree) await r.restoreTree(node.subtree, target);
        if (node.name !== '') await r.setMeta(node, target);
      } else {
        checkName(node.name);
        await r.restoreNode(node, join(target, basename(node.name)));
      }
    } catch (err) {
      if (opts.signal?.aborted && !(err instanceof AbortedError)) throw new AbortedError({ cause: err });
      throw err;
    } finally {
      if (!opts.pool) await pool.close();
    }
    return { snapshotId: sn.id, ...r.result };
  };
  return opts.lock === false ? run() : withLock(repo, false, run, opts.signal);
}
