/**
 * Archiver: makes a snapshot. A *virtual root* maps absolute snapshot paths to *sources*: a
 * directory or file on disk, or a stream (e.g. pg_dump's stdout) stored as one file. Paths in
 * between become synthetic directories, so `{ '/db/app.dump': stream, '/files': '/srv/files' }`
 * yields the tree `/db/app.dump` and `/files/…`.
 *
 * Content is cut by the chunker and hashed on the main thread; chunks the repository lacks are
 * encoded by the encoder pool and appended to packs. With a parent snapshot, a file whose
 * size, mtime and inode are unchanged reuses the parent's blob list without being read.
 * An abort leaves no snapshot; packs uploaded before it are harmless and prune removes them.
 */
import { constants as fsConstants } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { lstat, open, readdir, readlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Chunker } from './chunker.ts';
import { CodecPool, defaultCodecThreads } from './codec-pool.ts';
import { AbortedError, EngineError, throwIfAborted } from './errors.ts';
import { hashId, type Id } from './ids.ts';
import { withLock } from './lock.ts';
import type { Repository } from './repository.ts';
import { findSnapshot, newSnapshotJson, saveSnapshot } from './snapshot.ts';
import { formatTime, goModeFromUnix, parseTime, type Node, type Tree } from './tree.ts';

/** A stream stored as one file, with optional metadata. */
export interface StreamSource {
  stream: Readable;
  /** Expected size, for progress only. */
  size?: number;
  /** Unix permission bits; default 0o600. */
  mode?: number;
  /** Default: the snapshot time. */
  mtime?: Date;
}

/** What one virtual path holds: a path on disk, a stream, or a stream with metadata. */
export type BackupSource = string | Readable | StreamSource;

/** Progress of a backup; reported whenever bytes or files advance. */
export interface BackupProgress {
  bytesDone: number;
  /** Known once the disk scan finished and every stream declared its size. */
  bytesTotal?: number;
  filesDone: number;
  currentPath?: string;
}

/** Options for backup(). */
export interface BackupOptions {
  tags?: string[];
  hostname?: string;
  /** Snapshot time; default now. */
  time?: Date;
  /** Parent snapshot id (or unique prefix) whose unchanged files are not read again. */
  parent?: Id;
  signal?: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
  /** Encoder worker threads; 0 encodes on the main thread. */
  codecThreads?: number;
  /** Take a shared repository lock for the duration (default true). */
  lock?: boolean;
}

/** What a backup did. */
export interface BackupResult {
  snapshotId: Id;
  treeId: Id;
  parent?: Id;
  files: number;
  dirs: number;
  /** Logical bytes of all files in the snapshot (including unchanged ones). */
  bytesProcessed: number;
  /** Stored bytes of new blobs (compressed and encrypted). */
  bytesAdded: number;
  blobsAdded: number;
  /** Of blobsAdded, the data (file content) blobs; 0 when nothing new was read. */
  dataBlobsAdded: number;
  packsAdded: number;
  durationMs: number;
}

/** A bad virtual root. */
export class InvalidSourceError extends EngineError {
  constructor(message: string) {
    super('BACKUP_INVALID_SOURCE', message);
  }
}

type VEntry =
  | { kind: 'vdir'; children: Map<string, VEntry> }
  | { kind: 'disk'; path: string }
  | { kind: 'stream'; src: StreamSource };

function isReadable(x: unknown): x is Readable {
  return typeof x === 'object' && x !== null && typeof (x as Readable).pipe === 'function' && typeof (x as Readable).on === 'function';
}

function buildVirtualRoot(sources: Record<string, BackupSource>): VEntry & { kind: 'vdir' } {
  const root: VEntry & { kind: 'vdir' } = { kind: 'vdir', children: new Map() };
  for (const [vpath, src] of Object.entries(sources)) {
    if (!vpath.startsWith('/')) throw new InvalidSourceError(`virtual path ${vpath} must be absolute`);
    const parts = vpath.split('/').filter((p) => p !== '');
    if (parts.length === 0) throw new InvalidSourceError('the virtual root itself cannot be a source');
    if (parts.some((p) => p === '.' || p === '..' || p.includes('\0'))) throw new InvalidSourceError(`virtual path ${vpath} is not normalized`);
    let dir = root;
    for (const p of parts.slice(0, -1)) {
      let next = dir.children.get(p);
      if (!next) {
        next = { kind: 'vdir', children: new Map() };
        dir.children.set(p, next);
      }
      if (next.kind !== 'vdir') throw new InvalidSourceError(`virtual path ${vpath} lies inside another source`);
      dir = next;
    }
    const name = parts[parts.length - 1];
    if (dir.children.has(name)) throw new InvalidSourceError(`virtual path ${vpath} is given twice or contains another source`);
    const entry: VEntry =
      typeof src === 'string' ? { kind: 'disk', path: src } : isReadable(src) ? { kind: 'stream', src: { stream: src } } : { kind: 'stream', src };
    dir.children.set(name, entry);
  }
  return root;
}

interface Counters {
  files: number;
  dirs: number;
  bytesDone: number;
}

const MAX_FILES_IN_PARALLEL = 2;
/** Read size for files; read buffers are recycled, so this is also their size. */
const READ_SIZE = 1024 * 1024;
const MAX_FREE_BUFFERS = 8;

/** lstat calls kept in flight ahead of the files being saved. */
const STAT_AHEAD = 32;

/** lstat with nanosecond times; null when the entry is gone. */
async function lstatOrNull(path: string): Promise<BigIntStats | null> {
  try {
    return await lstat(path, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Linux only; 0 elsewhere. */
const O_NOATIME = fsConstants.O_NOATIME ?? 0;

/**
 * Opens a file for reading without updating its access time, as restic does (its PR #2816):
 * otherwise the first backup's reads change every file's atime, and the next backup, though
 * nothing changed, stores a new node, so a new tree, for every directory. O_NOATIME is refused
 * (EPERM) for files the user neither owns nor has CAP_FOWNER for; those are opened normally.
 */
async function openForReading(path: string): Promise<FileHandle> {
  if (O_NOATIME) {
    try {
      return await open(path, fsConstants.O_RDONLY | O_NOATIME);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    }
  }
  return open(path, 'r');
}

class Archiver {
  private readonly inflight = new Set<Promise<void>>();
  private readonly maxInflight: number;
  private failure: unknown = null;
  readonly counters: Counters = { files: 0, dirs: 0, bytesDone: 0 };
  private bytesTotal: number | undefined;
  private currentPath: string | undefined;
  private readonly nowTime: string;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;

  constructor(
    private readonly repo: Repository,
    private readonly pool: CodecPool,
    private readonly opts: BackupOptions,
    time: Date,
  ) {
    this.maxInflight = Math.max(2, (opts.codecThreads ?? defaultCodecThreads()) + 2);
    this.nowTime = formatTime(BigInt(time.getTime()) * 1_000_000n);
  }

  setTotal(total: number | undefined): void {
    this.bytesTotal = total;
    this.progress();
  }

  private progress(): void {
    this.opts.onProgress?.({
      bytesDone: this.counters.bytesDone,
      bytesTotal: this.bytesTotal,
      filesDone: this.counters.files,
      currentPath: this.currentPath,
    });
  }

  private check(): void {
    throwIfAborted(this.opts.signal);
    if (this.failure) throw this.failure;
  }

  /** Hashes a chunk (given as slices) and queues it for encoding unless the repository has it. */
  private async saveChunk(chunk: Buffer[]): Promise<Id> {
    this.check();
    const id = hashId(...chunk);
    for (const part of chunk) this.counters.bytesDone += part.length;
    this.progress();
    if (this.repo.knowsBlob('data', id)) return id;
    this.repo.reserveBlob('data', id);
    while (this.inflight.size >= this.maxInflight) await Promise.race(this.inflight);
    this.check();
    const p: Promise<void> = this.pool
      .encode('data', id, chunk)
      .then((enc) => this.repo.addEncodedBlob(enc))
      .catch((err) => {
        this.failure ??= err;
      })
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
    return id;
  }

  /** Chunks a stream into data blobs; returns their ids and the byte count. */
  private async saveContent(stream: AsyncIterable<Buffer | string>): Promise<{ content: Id[]; size: number }> {
    const chunker = new Chunker(this.repo.chunkerParams);
    const content: Id[] = [];
    let size = 0;
    for await (const piece of stream) {
      this.check();
      const buf = typeof piece === 'string' ? Buffer.from(piece) : piece;
      size += buf.length;
      for (const c of chunker.pushParts(buf)) content.push(await this.saveChunk(c));
    }
    const last = chunker.finishParts();
    if (last) content.push(await this.saveChunk(last));
    return { content, size };
  }

  private readonly freeBuffers: Buffer[] = [];

  private recycle(buf: Buffer): void {
    if (this.freeBuffers.length < MAX_FREE_BUFFERS) this.freeBuffers.push(buf);
  }

  /**
   * Chunks a file read into recycled buffers: a buffer goes back to the free list as soon as
   * the chunker no longer refers to it, which keeps garbage (and so process memory) low.
   */
  private async saveFileContent(path: string, statSize: number): Promise<{ content: Id[]; size: number }> {
    const fh = await openForReading(path);
    const chunker = new Chunker(this.repo.chunkerParams);
    const content: Id[] = [];
    let size = 0;
    let held: Buffer[] = [];
    try {
      for (;;) {
        this.check();
        const buf = this.freeBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
        const { bytesRead } = await fh.read(buf, 0, READ_SIZE, null);
        if (bytesRead === 0) {
          this.recycle(buf);
          break;
        }
        held.push(buf);
        size += bytesRead;
        // saveChunk hashes and copies a chunk before it returns, so only pending bytes pin memory.
        for (const c of chunker.pushParts(buf.subarray(0, bytesRead))) content.push(await this.saveChunk(c));
        const pinned = new Set(chunker.pendingMemory());
        const keep: Buffer[] = [];
        for (const b of held) {
          if (pinned.has(b.buffer)) keep.push(b);
          else this.recycle(b);
        }
        held = keep;
        // A short read of a regular file is its end: skip the read that would return 0, one of
        // the four thread-pool round trips a small file costs. A file that grew since lstat is
        // read on to its end as before.
        if (bytesRead < READ_SIZE && size >= statSize) break;
      }
      const last = chunker.finishParts();
      if (last) content.push(await this.saveChunk(last));
    } finally {
      for (const b of held) this.recycle(b);
      await fh.close();
    }
    return { content, size };
  }

  /** Waits for every queued chunk to be encoded and added to a pack. */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.race(this.inflight);
  }

  /**
   * A directory node for a path between the virtual root and a source. It takes the parent
   * snapshot's times when the parent had it, so that an unchanged backup stores the same trees
   * all the way up to the root instead of new ones stamped with each snapshot's time.
   */
  private synthDir(name: string, subtree: Id, parentTree: Tree | null): Node {
    const old = parentTree?.nodes.find((n) => n.name === name && n.type === 'dir');
    const mtime = old?.mtime ?? this.nowTime;
    return {
      name, type: 'dir', mode: goModeFromUnix(0o040755), mtime, atime: old?.atime ?? mtime, ctime: old?.ctime ?? mtime,
      uid: this.uid, gid: this.gid, content: null, subtree,
    };
  }

  private async parentSubtree(parentTree: Tree | null, name: string): Promise<Tree | null> {
    const pn = parentTree?.nodes.find((n) => n.name === name);
    if (!pn || pn.type !== 'dir' || !pn.subtree) return null;
    try {
      return await this.repo.loadTree(pn.subtree, this.opts.signal);
    } catch {
      return null; // a damaged parent only costs re-reading
    }
  }

  /** Saves a virtual directory; returns its tree id. */
  async saveVirtual(dir: VEntry & { kind: 'vdir' }, parentTree: Tree | null, vpath: string): Promise<Id> {
    const nodes: Node[] = [];
    for (const [name, entry] of dir.children) {
      const childPath = `${vpath === '/' ? '' : vpath}/${name}`;
      if (entry.kind === 'vdir') {
        const id = await this.saveVirtual(entry, await this.parentSubtree(parentTree, name), childPath);
        nodes.push(this.synthDir(name, id, parentTree));
        this.counters.dirs++;
      } else if (entry.kind === 'stream') {
        nodes.push(await this.saveStream(name, entry.src, childPath));
      } else {
        const node = await this.saveDiskEntry(entry.path, name, parentTree, childPath);
        if (!node) throw new InvalidSourceError(`source ${entry.path} (for ${childPath}) does not exist`);
        nodes.push(node);
      }
    }
    return this.repo.saveTree({ nodes });
  }

  private async saveStream(name: string, src: StreamSource, vpath: string): Promise<Node> {
    this.currentPath = vpath;
    const { content, size } = await this.saveContent(src.stream);
    const mtime = src.mtime ? formatTime(BigInt(src.mtime.getTime()) * 1_000_000n) : this.nowTime;
    this.counters.files++;
    this.progress();
    const node: Node = {
      name, type: 'file', mode: goModeFromUnix(0o100000 | (src.mode ?? 0o600)), mtime, atime: mtime, ctime: mtime,
      uid: this.uid, gid: this.gid, size, content,
    };
    return node;
  }

  /** Saves one file-system entry (any type) under the given name; null for vanished entries. */
  private async saveDiskEntry(path: string, name: string, parentTree: Tree | null, vpath: string, stat?: Promise<BigIntStats | null>): Promise<Node | null> {
    this.check();
    const st = await (stat ?? lstatOrNull(path));
    if (!st) return null; // vanished since readdir
    const node: Node = {
      name,
      type: 'file',
      mode: goModeFromUnix(Number(st.mode)),
      mtime: formatTime(st.mtimeNs),
      atime: formatTime(st.atimeNs),
      ctime: formatTime(st.ctimeNs),
      uid: Number(st.uid),
      gid: Number(st.gid),
      inode: Number(st.ino),
      device_id: Number(st.dev),
      content: null,
    };
    if (st.isDirectory()) {
      node.type = 'dir';
      const sub = await this.parentSubtree(parentTree, name);
      node.subtree = await this.saveDiskDir(path, sub, vpath);
      // Reading a directory updates its atime (no O_NOATIME for readdir in Node): record the
      // time after our own read, which the next backup then finds unchanged.
      const after = await lstat(path, { bigint: true }).catch(() => null);
      if (after && after.ino === st.ino) node.atime = formatTime(after.atimeNs);
      this.counters.dirs++;
    } else if (st.isFile()) {
      node.size = Number(st.size);
      node.links = Number(st.nlink);
      node.content = await this.saveDiskFile(path, node, parentTree, vpath);
      this.counters.files++;
      this.progress();
    } else if (st.isSymbolicLink()) {
      node.type = 'symlink';
      node.links = Number(st.nlink);
      node.linktarget = await readlink(path);
    } else {
      node.type = st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : st.isCharacterDevice() ? 'chardev' : 'dev';
      if (node.type === 'chardev' || node.type === 'dev') node.device = Number(st.rdev);
    }
    return node;
  }

  private async saveDiskFile(path: string, node: Node, parentTree: Tree | null, vpath: string): Promise<Id[]> {
    const old = parentTree?.nodes.find((n) => n.name === node.name);
    if (
      // Inode numbers only identify a file within one device, so the device must match too.
      old && old.type === 'file' && old.content && (old.size ?? 0) === node.size && old.inode === node.inode &&
      (old.device_id ?? 0) === (node.device_id ?? 0) &&
      parseTime(old.mtime) === parseTime(node.mtime) && old.content.every((id) => this.repo.knowsBlob('data', id))
    ) {
      this.counters.bytesDone += node.size ?? 0;
      return old.content;
    }
    this.currentPath = vpath;
    const { content, size } = await this.saveFileContent(path, node.size ?? 0);
    node.size = size; // the file may have changed while we read it; record what we stored
    return content;
  }

  private async saveDiskDir(path: string, parentTree: Tree | null, vpath: string): Promise<Id> {
    // The entries' types come with the names (d_type; Node stats entries whose type is unknown).
    const entries = (await readdir(path, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const names = entries.map((e) => e.name);
    const nodes: (Node | null)[] = new Array(names.length).fill(null);
    // Small files go a few at a time to overlap their I/O; subdirectories one at a time so the
    // number of open files stays bounded however deep the tree is.
    const fileIdx: number[] = [];
    const dirIdx: number[] = [];
    for (let i = 0; i < entries.length; i++) (entries[i].isDirectory() ? dirIdx : fileIdx).push(i);
    // One lstat at a time costs a thread-pool round trip each (~30 µs, more than the unchanged
    // file's other work); a window of them in flight costs a fifth of that.
    const stats = new Map<number, Promise<BigIntStats | null>>();
    let statted = 0;
    const statAhead = (upTo: number) => {
      for (; statted < Math.min(upTo, fileIdx.length); statted++) {
        const i = fileIdx[statted];
        const p = lstatOrNull(join(path, names[i]));
        p.catch(() => {}); // rethrown where awaited
        stats.set(i, p);
      }
    };
    let next = 0;
    const worker = async () => {
      while (next < fileIdx.length) {
        const k = next++;
        statAhead(k + STAT_AHEAD);
        const i = fileIdx[k];
        const st = stats.get(i);
        stats.delete(i);
        nodes[i] = await this.saveDiskEntry(join(path, names[i]), names[i], parentTree, `${vpath}/${names[i]}`, st);
      }
    };
    await Promise.all(Array.from({ length: Math.min(MAX_FILES_IN_PARALLEL, fileIdx.length) }, worker));
    for (const i of dirIdx) nodes[i] = await this.saveDiskEntry(join(path, names[i]), names[i], parentTree, `${vpath}/${names[i]}`);
    return this.repo.saveTree({ nodes: nodes.filter((n): n is Node => n !== null) });
  }
}

/** Sums the sizes of regular files under the disk sources (for progress). */
async function scanSize(root: VEntry, signal?: AbortSignal): Promise<number | undefined> {
  let total = 0;
  let known = true;
  // Directories come typed from readdir; only regular files are statted, a window at a time.
  const walkDir = async (path: string): Promise<void> => {
    if (signal?.aborted) return;
    const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
    const files = entries.filter((e) => !e.isDirectory());
    for (let i = 0; i < files.length; i += STAT_AHEAD) {
      const sts = await Promise.all(files.slice(i, i + STAT_AHEAD).map((e) => lstat(join(path, e.name)).catch(() => null)));
      for (const st of sts) if (st?.isFile()) total += st.size;
    }
    for (const e of entries) if (e.isDirectory()) await walkDir(join(path, e.name));
  };
  const walk = async (path: string): Promise<void> => {
    const st = await lstat(path).catch(() => null);
    if (st?.isFile()) total += st.size;
    else if (st?.isDirectory()) await walkDir(path);
  };
  const visit = async (e: VEntry): Promise<void> => {
    if (e.kind === 'vdir') for (const c of e.children.values()) await visit(c);
    else if (e.kind === 'disk') await walk(e.path);
    else if (e.src.size !== undefined) total += e.src.size;
    else known = false;
  };
  await visit(root);
  return known ? total : undefined;
}

/**
 * Backs up the virtual root into one new snapshot and returns what was done. Throws
 * AbortedError when the signal fires; the repository stays valid and no snapshot is written.
 */
export async function backup(repo: Repository, sources: Record<string, BackupSource>, opts: BackupOptions = {}): Promise<BackupResult> {
  const root = buildVirtualRoot(sources);
  const run = async (): Promise<BackupResult> => {
    const started = Date.now();
    const time = opts.time ?? new Date();
    throwIfAborted(opts.signal);
    await repo.refreshIndex(opts.signal);
    const before = repo.writeStats();
    let parentTree: Tree | null = null;
    let parentId: Id | undefined;
    if (opts.parent) {
      const parent = await findSnapshot(repo, opts.parent, undefined, opts.signal);
      parentId = parent.id;
      parentTree = await repo.loadTree(parent.tree, opts.signal);
    }
    const pool = new CodecPool(repo.key, opts.codecThreads ?? defaultCodecThreads(), repo.compression);
    const archiver = new Archiver(repo, pool, opts, time);
    void scanSize(root, opts.signal).then((t) => archiver.setTotal(t), () => {});
    let treeId: Id;
    try {
      treeId = await archiver.saveVirtual(root, parentTree, '/');
      await archiver.drain();
      throwIfAborted(opts.signal);
      await repo.flush();
    } catch (err) {
      await archiver.drain();
      await repo.discardWrites();
      if (opts.signal?.aborted) throw err instanceof AbortedError ? err : new AbortedError({ cause: err });
      throw err;
    } finally {
      await pool.close();
    }
    const paths = Object.keys(sources).sort();
    const sn = newSnapshotJson(treeId, paths, {
      time: formatTime(BigInt(time.getTime()) * 1_000_000n),
      tags: opts.tags,
      parent: parentId,
      hostname: opts.hostname,
    });
    const snapshotId = await saveSnapshot(repo, sn, opts.signal);
    const after = repo.writeStats();
    return {
      snapshotId,
      treeId,
      parent: parentId,
      files: archiver.counters.files,
      dirs: archiver.counters.dirs,
      bytesProcessed: archiver.counters.bytesDone,
      bytesAdded: after.bytesAdded - before.bytesAdded,
      blobsAdded: after.blobsAdded - before.blobsAdded,
      dataBlobsAdded: after.dataBlobsAdded - before.dataBlobsAdded,
      packsAdded: after.packsAdded - before.packsAdded,
      durationMs: Date.now() - started,
    };
  };
  return repo.serializeWrites(() => (opts.lock === false ? run() : withLock(repo, false, run, opts.signal)));
}
