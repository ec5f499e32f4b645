/**
 * Archiver: makes a snapshot. A *virtual root* maps absolute snapshot paths to *sources*: a
 * directory or file on disk, or a stream (e.g. pg_dump's stdout) stored as one file. Paths in
 * between become synthetic directories, so `{ '/db/app.dump': stream, '/files': '/srv/files' }`
 * yields the tree `/db/app.dump` and `/files/…`.
 *
 * Files on disk are scanned in batches by the codec threads (scan-core.mjs): they lstat, read,
 * chunk, hash and seal, and the main thread keeps the blobs the repository lacks, appends them
 * to packs and builds the trees. A stream's bytes are copied to one codec thread, which chunks
 * and hashes them, asks the main thread which chunks the repository lacks and seals only those
 * (codec-pool.ts stream()). With a parent snapshot, a file whose size, mtime, inode and device are
 * unchanged reuses the parent's blob list without being read.
 * An abort leaves no snapshot; packs uploaded before it are harmless and prune removes them.
 */
import { lstatSync, readdirSync, type BigIntStats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { CodecPool, defaultCodecThreads, type StreamFd } from './codec-pool.ts';
import { signatureStat, statFields, statSignature } from './scan-core.mjs';
import type { ScanMessage, ScanParent, ScanStat } from './scan-core.mjs';
import { AbortedError, EngineError, throwIfAborted } from './errors.ts';
import type { Id } from './ids.ts';
import { withLock } from './lock.ts';
import type { EncodedBlob } from './pack.ts';
import type { Repository } from './repository.ts';
import { findSnapshot, newSnapshotJson, saveSnapshot } from './snapshot.ts';
import { formatTime, goModeFromUnix, parseTime, type Node, type Tree } from './tree.ts';
import { type CachedDir, type CachedEntry, FilesCache, FilesCacheWriter, racyLimitNs, signatureSize } from './files-cache.ts';

/**
 * A pipe's read end, read by a codec thread itself so that its bytes never pass through the
 * main thread (e.g. pg_dump's output).
 */
export interface PipeSource {
  /** Hands over the blocking read descriptor, which the reader closes; null once taken or closed. */
  take(): number | null;
  /**
   * Settles once the writer has finished: rejects when what came through the pipe is not the
   * whole stream (the writer failed), and then the backup fails rather than store it.
   */
  complete: Promise<void>;
  /** Stops the writer, so that a read waiting for it returns; called when the backup fails. */
  cancel(): void;
}

/** A stream stored as one file, with optional metadata: a Readable, or a pipe (PipeSource). */
export type StreamSource = ({ stream: Readable } | { pipe: PipeSource }) & {
  /** Expected size, for progress only. */
  size?: number;
  /** Unix permission bits; default 0o600. */
  mode?: number;
  /** Default: the snapshot time. */
  mtime?: Date;
  /**
   * The stream is a tar archive (pg_basebackup's base.tar): besides content-defined cuts, a
   * chunk ends where an entry ends, so each file of it deduplicates on its own.
   */
  tar?: boolean;
};

/**
 * A file on disk chunked with forced cut points (ascending byte offsets, see cutChunks in
 * chunker-core.mjs): a chunk ends at each of them whatever the content. For a file stored again
 * as it grows, cut where its earlier copies ended: the chunks before those points are the same
 * blobs again, and only what was appended since is new.
 */
export interface FileSource {
  path: string;
  cuts: readonly number[];
}

/** What one virtual path holds: a path on disk (a file with forced cuts), a stream, or a stream with metadata. */
export type BackupSource = string | FileSource | Readable | StreamSource;

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
  /**
   * A files cache per disk source (files-cache.ts): `dir` is the cache directory (e.g.
   * ~/.cache/backplane). Where a source has a usable cache, it replaces the parent for that
   * source: unchanged files are not read, unchanged directories' trees are not encoded again,
   * and the parent's trees are not loaded. With `use: false` every file is read (and the cache
   * is still written). Written only once the snapshot is saved.
   */
  filesCache?: { dir: string; use?: boolean };
  /**
   * The clock the backup's start is read from (ms since the epoch; default Date.now). A file
   * whose mtime or ctime is not older than that start (rounded down to 2 s) is read again by
   * the next backup even when unchanged, since it may have changed after it was read without
   * either time moving.
   */
  clock?: () => number;
  signal?: AbortSignal;
  onProgress?: (p: BackupProgress) => void;
  /** Codec threads, at least 1 (default: one per core, at most four). */
  codecThreads?: number;
  /**
   * The zstd level of this backup's data blobs (default ZSTD_LEVEL, 3), where the repository
   * compresses (version 2). Any level reads back the same: restic too.
   */
  compressionLevel?: number;
  /** Take a shared repository lock for the duration (default true). */
  lock?: boolean;
  /**
   * Called once every source is stored, before the snapshot is written: its tags are added to
   * `tags` and its time replaces `time`. For what is known only once a stream has ended (the WAL
   * range of a base backup, the moment it finished).
   */
  finish?: () => Promise<{ tags?: string[]; time?: Date }>;
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
  /** Logical bytes of each stream source, by its virtual path (what a next run can expect). */
  streamBytes: Record<string, number>;
  /** Stored bytes of new blobs (compressed and encrypted). */
  bytesAdded: number;
  /** Bytes of the files this backup saved (packs with their headers, index, snapshot): see WriteStats. */
  bytesStored: number;
  blobsAdded: number;
  /** Of blobsAdded, the data (file content) blobs; 0 when nothing new was read. */
  dataBlobsAdded: number;
  /** Files on disk taken as unchanged from the files cache or the parent, without reading them. */
  filesUnmodified: number;
  /** Directories whose stored tree the files cache named, so it was not encoded again. */
  treesReused: number;
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
  | { kind: 'disk'; path: string; cuts?: readonly number[] }
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
      typeof src === 'string'
        ? { kind: 'disk', path: src }
        : isReadable(src)
          ? { kind: 'stream', src: { stream: src } }
          : 'path' in src
            ? { kind: 'disk', path: src.path, cuts: src.cuts }
            : { kind: 'stream', src };
    dir.children.set(name, entry);
  }
  return root;
}

interface Counters {
  files: number;
  dirs: number;
  bytesDone: number;
  /** Files whose content was taken from the files cache or the parent without reading them. */
  filesUnmodified: number;
  /** Directories whose tree the files cache named, so it was neither encoded nor hashed. */
  treesReused: number;
}

/** Names per scan batch: enough to amortize a message, few enough to spread over threads. */
const SCAN_BATCH_NAMES = 64;
/**
 * Names per scan batch of a directory the files cache recorded: its files are likely unchanged,
 * so a thread only lstats them, and one message per directory costs the main thread less than
 * spreading a few microseconds of work each over the threads gains.
 */
const SCAN_BATCH_NAMES_CACHED = 512;
/** Scan batches in flight on all threads together; bounds the walk's bookkeeping. */
const SCAN_BATCHES_IN_FLIGHT = 8;
/**
 * Bytes of files one scan batch reads at most (but always its first file): the rest go to
 * further batches, so that large files of one folder are read, chunked and sealed on all
 * threads at once. One batch of a folder of videos kept one thread busy for seconds while the
 * other idled: a third of the threads' time in the mixed benchmark's first backup.
 */
const SCAN_BATCH_BYTES = 8 * 1024 * 1024;

/** lstat with nanosecond times; null when the entry is gone. */
async function lstatOrNull(path: string): Promise<BigIntStats | null> {
  try {
    return await lstat(path, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** lstatOrNull, synchronous (see walkDir). */
function lstatNowOrNull(path: string): BigIntStats | null {
  return lstatSync(path, { bigint: true, throwIfNoEntry: false }) ?? null;
}

/** An error a thread reported for one entry, as the fs call would have thrown it. */
function entryError(path: string, e: { code?: string; message: string }): Error {
  return Object.assign(new Error(`${path}: ${e.message}`), { code: e.code, path });
}

/**
 * A file as the last backup stored it: what the scanning thread compares (the parent's fields,
 * or the files cache's signature) and its content.
 */
interface PriorFile {
  scan: ScanParent | null;
  sig: string | null;
  content: Id[];
}

/**
 * What the last backup knew of one directory on disk: from the files cache (FilesCache), or
 * else from the parent snapshot's tree.
 */
interface PriorDir {
  /** Files whose mtime or ctime is at or after this (ns) are read even when they match. */
  readonly racyNs: bigint;
  /** The directory as the files cache recorded it (then its tree may serve again). */
  readonly cached: CachedDir | null;
  /** The entry of this name, when it was a regular file (or, from the cache, any entry but a directory). */
  file(name: string): PriorFile | null;
  /** The subdirectory of this name. */
  subdir(name: string): Promise<PriorDir | null>;
}

/** A directory of the parent snapshot. */
class TreePrior implements PriorDir {
  private readonly byName: Map<string, Node>;
  readonly cached = null;

  constructor(
    tree: Tree,
    private readonly load: (node: Node | undefined) => Promise<Tree | null>,
    readonly racyNs: bigint,
  ) {
    this.byName = new Map(tree.nodes.map((n) => [n.name, n]));
  }

  file(name: string): PriorFile | null {
    const p = this.byName.get(name);
    if (!p || p.type !== 'file' || !p.content || p.inode === undefined) return null;
    return { scan: { size: p.size ?? 0, ino: p.inode, dev: p.device_id ?? 0, mtime: p.mtime, ctime: p.ctime }, sig: null, content: p.content };
  }

  async subdir(name: string): Promise<PriorDir | null> {
    const tree = await this.load(this.byName.get(name));
    return tree ? new TreePrior(tree, this.load, this.racyNs) : null;
  }
}

/** A directory as the files cache recorded it. */
class CachePrior implements PriorDir {
  constructor(
    private readonly cache: FilesCache,
    private readonly vpath: string,
    readonly cached: CachedDir,
  ) {}

  get racyNs(): bigint {
    return this.cache.racyNs;
  }

  static of(cache: FilesCache, vpath: string): CachePrior | null {
    const dir = cache.dir(vpath);
    return dir ? new CachePrior(cache, vpath, dir) : null;
  }

  file(name: string): PriorFile | null {
    const e = this.cached.entry(name);
    if (!e || e[1].startsWith('dir\x1f')) return null;
    return { scan: null, sig: e[1], content: e.slice(2) };
  }

  async subdir(name: string): Promise<PriorDir | null> {
    const e = this.cached.entry(name);
    return e && e[1].startsWith('dir\x1f') ? CachePrior.of(this.cache, `${this.vpath}/${name}`) : null;
  }
}

/** An entry the scanning thread found exactly as the files cache recorded it. */
interface SameEntry {
  same: true;
  name: string;
  sig: string;
  content: Id[];
}

function isSame(e: Node | SameEntry): e is SameEntry {
  return (e as SameEntry).same === true;
}

/** A disk source's files cache: the one read (if any can be used) and the one being written. */
interface SourceCache {
  vpath: string;
  read: FilesCache | null;
  write: FilesCacheWriter;
}

class Archiver {
  private failure: unknown = null;
  /** Aborted when the backup fails: stops streams (and the writers of pipes) still running. */
  private readonly stop = new AbortController();
  readonly counters: Counters = { files: 0, dirs: 0, bytesDone: 0, filesUnmodified: 0, treesReused: 0 };
  private bytesTotal: number | undefined;
  private scannedTotal: number | undefined;
  /** Real minus declared size of the streams that ended: a declared size is only an estimate. */
  private streamSurplus = 0;
  readonly streamBytes: Record<string, number> = {};
  private currentPath: string | undefined;
  private readonly nowTime: string;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;

  constructor(
    private readonly repo: Repository,
    private readonly pool: CodecPool,
    private readonly opts: BackupOptions,
    time: Date,
    /** Racy limit of the parent snapshot's files (see files-cache.ts). */
    private readonly parentRacyNs: bigint,
    /** Files caches of the disk sources, by virtual path. */
    private readonly caches: Map<string, SourceCache>,
  ) {
    this.nowTime = formatTime(BigInt(time.getTime()) * 1_000_000n);
  }

  /** The files cache being written for the source this path lies in. */
  private cacheWriter(vpath: string): FilesCacheWriter | undefined {
    for (const c of this.caches.values()) if (vpath === c.vpath || vpath.startsWith(`${c.vpath}/`)) return c.write;
    return undefined;
  }

  setTotal(total: number | undefined): void {
    this.scannedTotal = total;
    this.bytesTotal = total === undefined ? undefined : total + this.streamSurplus;
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

  /** Adds a sealed data blob a thread sent (its bytes are copied into a pack at once). */
  private storeBlob(m: ScanMessage & { type: 'blob' }, data: Buffer): Promise<void> {
    const blob: EncodedBlob = { id: m.id, type: 'data', data };
    if (m.uncompressedLength !== undefined && m.uncompressedLength !== null) blob.uncompressedLength = m.uncompressedLength;
    // The promise waits only for room among the uploads.
    return this.repo.addEncodedBlob(blob);
  }

  /**
   * Chunks a stream into data blobs on a codec thread; returns their ids and the byte count.
   * Only chunks the repository lacks are sealed.
   */
  private async saveContent(src: StreamSource): Promise<{ content: Id[]; size: number }> {
    const content: Id[] = [];
    let source: AsyncIterable<Buffer | string> | StreamFd;
    // A Readable is checked between its pieces (below); a pipe is read on a thread, which the
    // backup's abort or failure must stop, and its writer with it.
    let pipeSignal: AbortSignal | undefined;
    if ('pipe' in src) {
      pipeSignal = this.opts.signal ? AbortSignal.any([this.opts.signal, this.stop.signal]) : this.stop.signal;
      const fd = src.pipe.take();
      if (fd === null) throw new InvalidSourceError('the pipe was closed or read before the backup reached it');
      src.pipe.complete.catch(() => {}); // awaited below, once the pipe is read: not unhandled meanwhile
      source = { fd, cancel: () => src.pipe.cancel() };
    } else {
      const stream = src.stream;
      source = async function* (this: Archiver): AsyncGenerator<Buffer | string> {
        for await (const piece of stream) {
          this.check();
          yield piece;
        }
      }.call(this);
    }
    const size = await this.pool.stream(source, this.repo.chunkerParams, {
      onChunk: (m) => {
        content.push(m.id);
        this.counters.bytesDone += m.len;
        this.progress();
        if (this.failure || this.repo.knowsBlob('data', m.id)) return false;
        this.repo.reserveBlob('data', m.id);
        return true;
      },
      onBlob: (m, data) => this.storeBlob(m, data),
      tar: src.tar,
    }, pipeSignal);
    // A pipe's end of file also comes when its writer fails: only the writer can tell.
    if ('pipe' in src) await src.pipe.complete;
    return { content, size };
  }

  /** File batches being scanned. */
  private readonly scans = new Set<Promise<void>>();

  /** Waits for every file batch and directory still being saved (streams are awaited where saved). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.scans]);
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

  /** The parent snapshot's tree of a directory, given its node there (if any). */
  private async parentSubtree(pn: Node | undefined): Promise<Tree | null> {
    if (!pn || pn.type !== 'dir' || !pn.subtree) return null;
    try {
      return await this.repo.loadTree(pn.subtree, this.opts.signal);
    } catch {
      return null; // a damaged parent only costs re-reading
    }
  }

  /**
   * Saves a virtual directory; returns its tree id. Its entries are saved side by side, so a
   * dump streaming in and a directory being scanned keep different threads busy. The first
   * failure stops the rest (see stopAll), and all have settled before it is thrown.
   */
  async saveVirtual(dir: VEntry & { kind: 'vdir' }, parentTree: Tree | null, vpath: string): Promise<Id> {
    const saves = [...dir.children].map(([name, entry]) =>
      this.saveVirtualEntry(name, entry, parentTree, `${vpath === '/' ? '' : vpath}/${name}`).catch((err: unknown) => {
        this.stopAll(err);
        throw err;
      }),
    );
    const settled = await Promise.allSettled(saves);
    const nodes: Node[] = [];
    for (const r of settled) {
      if (r.status === 'rejected') throw this.failure ?? r.reason;
      nodes.push(r.value);
    }
    return this.repo.saveTree({ nodes });
  }

  private async saveVirtualEntry(name: string, entry: VEntry, parentTree: Tree | null, childPath: string): Promise<Node> {
    if (entry.kind === 'vdir') {
      const id = await this.saveVirtual(entry, await this.parentSubtree(parentTree?.nodes.find((n) => n.name === name)), childPath);
      this.counters.dirs++;
      return this.synthDir(name, id, parentTree);
    }
    if (entry.kind === 'stream') return this.saveStream(name, entry.src, childPath);
    const outer = parentTree ? new TreePrior(parentTree, (n) => this.parentSubtree(n), this.parentRacyNs) : null;
    const cache = this.caches.get(childPath)?.read;
    // With a files cache, the parent's trees of this source are not needed at all.
    const sub = cache ? Promise.resolve(CachePrior.of(cache, childPath)) : undefined;
    const node = await (await this.walkEntry(entry.path, name, outer, childPath, sub, false, entry.cuts))();
    if (!node) throw new InvalidSourceError(`source ${entry.path} (for ${childPath}) does not exist`);
    return node;
  }

  /** Makes every part of the backup still running give up: the first failure is the backup's. */
  stopAll(err: unknown): void {
    this.failure ??= err;
    this.stop.abort(err);
  }

  private async saveStream(name: string, src: StreamSource, vpath: string): Promise<Node> {
    this.currentPath = vpath;
    const { content, size } = await this.saveContent(src);
    this.streamBytes[vpath] = size;
    if (src.size !== undefined) {
      // The stream's real size is known now: the total stops relying on the estimate.
      this.streamSurplus += size - src.size;
      if (this.scannedTotal !== undefined) this.bytesTotal = this.scannedTotal + this.streamSurplus;
    }
    const mtime = src.mtime ? formatTime(BigInt(src.mtime.getTime()) * 1_000_000n) : this.nowTime;
    this.counters.files++;
    this.progress();
    const node: Node = {
      name, type: 'file', mode: goModeFromUnix(0o100000 | (src.mode ?? 0o600)), mtime, atime: mtime, ctime: mtime,
      uid: this.uid, gid: this.gid, size, content,
    };
    return node;
  }

  /** Signatures (statSignature) of the nodes made from an lstat that describes them. */
  private readonly sigs = new WeakMap<Node, string>();

  /** The node of an entry found as the files cache recorded it. */
  private nodeFromSignature(e: SameEntry): Node {
    const { stat, linktarget } = signatureStat(e.sig);
    const node = this.nodeFromStat(e.name, stat);
    if (stat.kind === 'symlink') node.linktarget = linktarget;
    if (stat.kind === 'file') node.content = e.content;
    this.sigs.set(node, e.sig);
    return node;
  }

  /** A tree node for an entry with the given lstat (content and subtree still to be filled in). */
  private nodeFromStat(name: string, st: ScanStat): Node {
    const node: Node = {
      name,
      type: 'file',
      mode: goModeFromUnix(st.mode),
      mtime: st.mtime,
      atime: st.atime,
      ctime: st.ctime,
      uid: st.uid,
      gid: st.gid,
      inode: st.ino,
      device_id: st.dev,
      content: null,
    };
    if (st.kind === 'file') {
      node.size = st.size;
      node.links = st.nlink;
    } else if (st.kind === 'symlink') {
      node.type = 'symlink';
      node.links = st.nlink;
    } else if (st.kind === 'dir') {
      node.type = 'dir';
    } else {
      node.type = st.kind;
      if (st.kind === 'chardev' || st.kind === 'dev') node.device = st.rdev;
    }
    return node;
  }

  /**
   * Saves one file-system entry (any type) under the given name; null for vanished entries.
   * Directories are walked here; everything else goes through a thread's scan.
   */
  private async saveDiskEntry(path: string, name: string, prior: PriorDir | null, vpath: string): Promise<Node | null> {
    return (await this.walkEntry(path, name, prior, vpath))();
  }

  /**
   * Walks one entry: for a directory, reads it and queues its files and subdirectories, and
   * resolves once that is done with a function that finishes the node (waits for the scans
   * and saves the tree). So the walk moves on to the next directory while the threads still
   * scan this one's files; the scan slots bound how far it runs ahead.
   */
  private async walkEntry(
    path: string,
    name: string,
    prior: PriorDir | null,
    vpath: string,
    priorSub?: Promise<PriorDir | null>,
    knownDir = false,
    /** Forced cut points, when the entry is a file (FileSource). */
    cuts?: readonly number[],
  ): Promise<() => Promise<Node | null>> {
    this.check();
    // readdir's entry types say which entries are directories; anything else is statted here.
    if (!knownDir) {
      const st = await lstatOrNull(path);
      if (!st) return async () => null; // vanished since readdir
      if (!st.isDirectory()) {
        await this.takeScanSlot();
        const scanned = this.scanFiles(dirname(path), [basename(path)], [prior?.file(name) ?? null], prior?.racyNs ?? 0n, [name], `${vpath.slice(0, -name.length)}`, cuts && [cuts]);
        scanned.catch(() => {}); // awaited by the caller's finish
        return async () => {
          const e = (await scanned)[0];
          return e && isSame(e) ? this.nodeFromSignature(e) : e;
        };
      }
    }
    if (cuts) throw new InvalidSourceError(`${path} is a directory: cut points are for a file`);
    const sub = await (priorSub ?? prior?.subdir(name) ?? null);
    const walked = await this.walkDir(path, sub, vpath);
    if (walked === 'gone') return async () => null;
    if (walked === 'not a directory') return this.walkEntry(path, name, prior, vpath); // replaced since readdir
    // The lstat taken after reading the directory: reading may have updated its atime, and the
    // next backup should find the time it records unchanged.
    const node = this.nodeFromStat(name, statFields(walked.stat));
    this.sigs.set(node, statSignature(walked.stat));
    return async () => {
      node.subtree = await walked.finish();
      this.counters.dirs++;
      return node;
    };
  }

  private batchesInFlight = 0;
  private readonly batchWaiters: (() => void)[] = [];

  private async takeScanSlot(): Promise<void> {
    while (this.batchesInFlight >= SCAN_BATCHES_IN_FLIGHT) await new Promise<void>((r) => this.batchWaiters.push(r));
    this.batchesInFlight++;
  }

  /**
   * Has a thread scan names in dir and returns their nodes (named nodeNames), null for vanished
   * ones. The caller has taken a scan slot (takeScanSlot); it is given back once the thread is
   * done. Blobs the repository lacks go into packs as they arrive. A file that matches what the
   * last backup stored (parents; racyNs: see PriorDir) but whose blobs the index lacks is
   * scanned again without it.
   */
  private async scanFiles(
    dir: string,
    names: string[],
    parents: (PriorFile | null)[],
    racyNs: bigint,
    nodeNames: string[],
    vdir: string,
    cuts?: (readonly number[] | null)[],
  ): Promise<(Node | SameEntry | null)[]> {
    const nodes: (Node | SameEntry | null)[] = new Array(names.length).fill(null);
    const again: number[] = [];
    const asDir: number[] = [];
    /** Files left for other batches (scan-core's `later`), with their sizes. */
    const later: { i: number; size: number }[] = [];
    let failure: unknown = null;
    try {
      const scanParents = parents.map((p) => p?.scan ?? null);
      const sigs = parents.some((p) => p?.sig) ? parents.map((p) => p?.sig ?? null) : undefined;
      const onBlob = (m: ScanMessage & { type: 'blob' }, data: Buffer): Promise<void> | void => {
        this.counters.bytesDone += m.plainLength;
        this.progress();
        if (failure || this.repo.knowsBlob('data', m.id)) return;
        this.repo.reserveBlob('data', m.id);
        return this.storeBlob(m, data);
      };
      const onEntry = (m: ScanMessage & { type: 'entry' }): void => {
        const i = m.index;
        if (m.gone) return;
        if (m.later !== undefined) {
          later.push({ i, size: m.later });
          return;
        }
        if (m.error) {
          failure ??= entryError(join(dir, names[i]), m.error);
          return;
        }
        if (m.same) {
          const old = parents[i]!;
          if (old.content.length > 0 && !old.content.every((id) => this.repo.knowsBlob('data', id))) {
            again.push(i);
            return;
          }
          if (old.sig!.startsWith('file\x1f')) {
            this.counters.files++;
            this.counters.filesUnmodified++;
            this.counters.bytesDone += signatureSize(old.sig!);
          }
          nodes[i] = { same: true, name: nodeNames[i], sig: old.sig!, content: old.content };
          return;
        }
        const st = m.stat!;
        if (st.kind === 'dir') {
          asDir.push(i); // replaced by a directory since readdir
          return;
        }
        const node = this.nodeFromStat(nodeNames[i], st);
        if (st.kind === 'symlink') node.linktarget = m.linktarget;
        // A file that changed while it was read is stored as read, which its lstat does not describe.
        if (m.sig !== undefined && (st.kind !== 'file' || m.unchanged || m.size === st.size)) this.sigs.set(node, m.sig);
        if (st.kind === 'file') {
          if (m.unchanged) {
            const old = parents[i]!;
            if (!old.content!.every((id) => this.repo.knowsBlob('data', id))) {
              again.push(i);
              return;
            }
            node.content = old.content;
            this.counters.bytesDone += node.size ?? 0;
            this.counters.filesUnmodified++;
          } else {
            node.content = m.content ?? [];
            node.size = m.size; // the file may have changed while it was read; record what was stored
          }
          this.counters.files++;
          this.currentPath = `${vdir}${nodeNames[i]}`;
          this.progress();
        }
        nodes[i] = node;
      };
      const job = { dir, names, parents: scanParents, sigs, racyNs, params: this.repo.chunkerParams, maxBytes: SCAN_BATCH_BYTES, cuts };
      await this.pool.scan(job, { onBlob, onEntry });
    } catch (err) {
      failure ??= err;
    } finally {
      this.batchesInFlight--;
      this.batchWaiters.shift()?.();
    }
    if (failure) throw failure;
    // The files left over go out again in batches of SCAN_BATCH_BYTES each, side by side.
    const groups: number[][] = [];
    let groupBytes = Infinity;
    for (const { i, size } of later) {
      if (groupBytes + size > SCAN_BATCH_BYTES) {
        groups.push([]);
        groupBytes = 0;
      }
      groups[groups.length - 1].push(i);
      groupBytes += size;
    }
    const rescans = await Promise.allSettled(
      groups.map(async (g) => {
        await this.takeScanSlot();
        const redone = await this.scanFiles(dir, g.map((i) => names[i]), g.map((i) => parents[i]), racyNs, g.map((i) => nodeNames[i]), vdir, cuts && g.map((i) => cuts[i]));
        g.forEach((i, k) => (nodes[i] = redone[k]));
      }),
    );
    for (const r of rescans) if (r.status === 'rejected') throw r.reason;
    if (again.length > 0) {
      await this.takeScanSlot();
      const redone = await this.scanFiles(dir, again.map((i) => names[i]), again.map(() => null), 0n, again.map((i) => nodeNames[i]), vdir, cuts && again.map((i) => cuts[i]));
      again.forEach((i, k) => (nodes[i] = redone[k]));
    }
    for (const i of asDir) nodes[i] = await this.saveDiskEntry(join(dir, names[i]), nodeNames[i], null, `${vdir}${nodeNames[i]}`);
    return nodes;
  }

  /**
   * Reads a directory and queues its entries; returns its lstat (taken after the read) and a
   * function that saves its tree.
   */
  private async walkDir(
    path: string,
    prior: PriorDir | null,
    vpath: string,
  ): Promise<{ stat: BigIntStats; finish: () => Promise<Id> } | 'gone' | 'not a directory'> {
    // Synchronous, as the lstat after it: from the page cache each takes microseconds, less than
    // an async call's round trip through the thread pool and a promise, which was a tenth of
    // the main thread's time in an unchanged re-backup (two such calls per directory).
    let listed;
    try {
      listed = readdirSync(path, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return 'gone';
      if (code === 'ENOTDIR') return 'not a directory';
      throw err;
    }
    const dirStat = lstatNowOrNull(path);
    if (!dirStat) return 'gone';
    if (!dirStat.isDirectory()) return 'not a directory';
    // The entries' types come with the names (d_type), so only directories are statted here.
    const entries = listed.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const names = entries.map((e) => e.name);
    const nodes: (Node | SameEntry | null)[] = new Array(names.length).fill(null);
    const fileIdx: number[] = [];
    const dirIdx: number[] = [];
    for (let i = 0; i < entries.length; i++) (entries[i].isDirectory() ? dirIdx : fileIdx).push(i);
    const pending: Promise<void>[] = [];
    const track = (p: Promise<void>) => {
      p.catch((err) => {
        this.failure ??= err;
      });
      pending.push(p);
      this.scans.add(p);
      void p.finally(() => this.scans.delete(p)).catch(() => {});
    };
    // File batches go to the threads first and run while the subdirectories are walked.
    const perBatch = prior?.cached ? SCAN_BATCH_NAMES_CACHED : SCAN_BATCH_NAMES;
    for (let b = 0; b < fileIdx.length; b += perBatch) {
      this.check();
      const idx = fileIdx.slice(b, b + perBatch);
      const batchNames = idx.map((i) => names[i]);
      await this.takeScanSlot();
      track(
        this.scanFiles(path, batchNames, batchNames.map((n) => prior?.file(n) ?? null), prior?.racyNs ?? 0n, batchNames, `${vpath}/`).then((res) =>
          res.forEach((node, k) => (nodes[idx[k]] = node)),
        ),
      );
    }
    // The parent snapshot's trees of all subdirectories load at once, not one per step of the walk.
    const subtrees = dirIdx.map((i) => prior?.subdir(names[i]) ?? Promise.resolve(null));
    for (const [k, i] of dirIdx.entries()) {
      const finish = await this.walkEntry(join(path, names[i]), names[i], prior, `${vpath}/${names[i]}`, subtrees[k], true);
      track(finish().then((node) => void (nodes[i] = node)));
    }
    return {
      stat: dirStat,
      finish: async () => {
        await Promise.all(pending);
        const found = nodes.filter((n): n is Node | SameEntry => n !== null);
        const writer = this.cacheWriter(vpath);
        // Every entry as the files cache recorded it, and no other: the recorded tree serves.
        const cached = prior?.cached ?? null;
        if (cached && found.length === cached.size && this.repo.knowsBlob('tree', cached.tree)) {
          const unchanged = found.every((e) => {
            if (isSame(e)) return true;
            const sig = this.sigs.get(e);
            return sig !== undefined && cached.matches(e.name, sig, e.type === 'dir' ? [e.subtree!] : (e.content ?? []));
          });
          if (unchanged) {
            this.counters.treesReused++;
            writer?.keep(vpath, cached);
            return cached.tree;
          }
        }
        const kept = found.map((e) => (isSame(e) ? this.nodeFromSignature(e) : e));
        const id = await this.repo.saveTree({ nodes: kept });
        if (writer) {
          const entries: CachedEntry[] = [];
          for (const n of kept) {
            const sig = this.sigs.get(n);
            if (sig !== undefined) entries.push([n.name, sig, ...(n.type === 'dir' ? [n.subtree!] : (n.content ?? []))]);
          }
          writer.record(vpath, id, entries);
        }
        return id;
      },
    };
  }
}

/** The disk sources of a virtual root, by virtual path. */
function diskSources(root: VEntry, vpath = ''): Map<string, string> {
  const out = new Map<string, string>();
  if (root.kind === 'disk') out.set(vpath, root.path);
  else if (root.kind === 'vdir') for (const [name, e] of root.children) for (const [k, v] of diskSources(e, `${vpath}/${name}`)) out.set(k, v);
  return out;
}

/** Each disk source's files cache: the last one, when it can be used, and a writer for the next. */
async function loadFilesCaches(repo: Repository, root: VEntry, opts: { dir: string; use?: boolean }, racyNs: bigint): Promise<Map<string, SourceCache>> {
  const out = new Map<string, SourceCache>();
  for (const [vpath, path] of diskSources(root)) {
    const key = { dir: opts.dir, repoId: repo.config.id, vpath, path };
    const read = opts.use === false ? null : await FilesCache.load(key);
    out.set(vpath, { vpath, read, write: new FilesCacheWriter(key, racyNs, read) });
  }
  return out;
}

/** The progress total from the files caches, when every disk source has one and no stream is of unknown size. */
function cachedBytes(root: VEntry, caches: Map<string, SourceCache>): number | undefined {
  let total = 0;
  const visit = (e: VEntry, vpath: string): boolean => {
    if (e.kind === 'vdir') return [...e.children].every(([name, c]) => visit(c, `${vpath}/${name}`));
    if (e.kind === 'stream') {
      total += e.src.size ?? NaN;
      return e.src.size !== undefined;
    }
    const read = caches.get(vpath)?.read;
    total += read?.bytes ?? 0;
    return read !== null && read !== undefined;
  };
  return visit(root, '') ? total : undefined;
}

/** Sums the sizes of regular files under the disk sources and the declared stream sizes (for progress). */
async function scanSize(root: VEntry, pool: CodecPool): Promise<number | undefined> {
  const paths: string[] = [];
  let streams = 0;
  let known = true;
  const visit = (e: VEntry): void => {
    if (e.kind === 'vdir') for (const c of e.children.values()) visit(c);
    else if (e.kind === 'disk') paths.push(e.path);
    else if (e.src.size !== undefined) streams += e.src.size;
    else known = false;
  };
  visit(root);
  if (!known) return undefined;
  return streams + (paths.length > 0 ? await pool.diskUsage(paths) : 0);
}

/**
 * Backs up the virtual root into one new snapshot and returns what was done. Throws
 * AbortedError when the signal fires; the repository stays valid and no snapshot is written.
 */
export async function backup(repo: Repository, sources: Record<string, BackupSource>, opts: BackupOptions = {}): Promise<BackupResult> {
  const root = buildVirtualRoot(sources);
  if (opts.compressionLevel !== undefined && !(Number.isInteger(opts.compressionLevel) && opts.compressionLevel >= 1 && opts.compressionLevel <= 22)) {
    throw new RangeError(`zstd level ${opts.compressionLevel}: 1 to 22`);
  }
  const run = async (): Promise<BackupResult> => {
    const started = Date.now();
    const startedAt = (opts.clock ?? Date.now)();
    const time = opts.time ?? new Date(startedAt);
    throwIfAborted(opts.signal);
    await repo.refreshIndex(opts.signal);
    const before = repo.writeStats();
    const caches = opts.filesCache ? await loadFilesCaches(repo, root, opts.filesCache, racyLimitNs(startedAt)) : new Map<string, SourceCache>();
    let parentTree: Tree | null = null;
    let parentId: Id | undefined;
    let parentRacyNs = 0n;
    if (opts.parent) {
      const parent = await findSnapshot(repo, opts.parent, undefined, opts.signal);
      parentId = parent.id;
      parentTree = await repo.loadTree(parent.tree, opts.signal);
      parentRacyNs = racyLimitNs(Number(parseTime(parent.time) / 1_000_000n));
    }
    const pool = new CodecPool(repo.key, opts.codecThreads ?? defaultCodecThreads(), repo.compression && (opts.compressionLevel ?? true));
    const archiver = new Archiver(repo, pool, opts, time, parentRacyNs, caches);
    // Where every disk source has a files cache, its byte count stands in for walking the tree twice.
    const cachedTotal = cachedBytes(root, caches);
    if (cachedTotal !== undefined) archiver.setTotal(cachedTotal);
    else void scanSize(root, pool).then((t) => archiver.setTotal(t), () => {});
    let treeId: Id;
    try {
      treeId = await archiver.saveVirtual(root, parentTree, '/');
      await archiver.drain();
      throwIfAborted(opts.signal);
      await repo.flush();
    } catch (err) {
      archiver.stopAll(err); // a pipe's writer first: its reading thread ends only with it
      await pool.close(); // ends running scans at once
      await archiver.drain();
      await repo.discardWrites();
      if (opts.signal?.aborted) throw err instanceof AbortedError ? err : new AbortedError({ cause: err });
      throw err;
    } finally {
      await pool.close();
    }
    const paths = Object.keys(sources).sort();
    const late = opts.finish ? await opts.finish() : {};
    const tags = late.tags ? [...(opts.tags ?? []), ...late.tags] : opts.tags;
    const sn = newSnapshotJson(treeId, paths, {
      time: formatTime(BigInt((late.time ?? time).getTime()) * 1_000_000n),
      tags,
      parent: parentId,
      hostname: opts.hostname,
    });
    const snapshotId = await saveSnapshot(repo, sn, opts.signal);
    for (const c of caches.values()) {
      // A cache that cannot be written costs the next backup time, not correctness.
      await c.write.save(snapshotId).catch(() => {});
    }
    const after = repo.writeStats();
    return {
      snapshotId,
      treeId,
      parent: parentId,
      files: archiver.counters.files,
      dirs: archiver.counters.dirs,
      bytesProcessed: archiver.counters.bytesDone,
      streamBytes: archiver.streamBytes,
      bytesAdded: after.bytesAdded - before.bytesAdded,
      bytesStored: after.bytesStored - before.bytesStored,
      blobsAdded: after.blobsAdded - before.blobsAdded,
      dataBlobsAdded: after.dataBlobsAdded - before.dataBlobsAdded,
      filesUnmodified: archiver.counters.filesUnmodified,
      treesReused: archiver.counters.treesReused,
      packsAdded: after.packsAdded - before.packsAdded,
      durationMs: Date.now() - started,
    };
  };
  return repo.serializeWrites(() => (opts.lock === false ? run() : withLock(repo, false, run, opts.signal)));
}
