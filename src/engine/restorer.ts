/**
 * Restorer: writes a snapshot, or one path inside it, into a target directory with contents,
 * modes, times and symlinks (and owners when running as root).
 *
 * It never writes outside the target: every name is checked (no `..`, `.`, `/`, NUL or empty
 * names), files are opened with O_NOFOLLOW, and an existing entry in the way that is not a real
 * directory is refused rather than followed — so a symlink placed by the restore itself (or
 * found in the target) cannot redirect a later write.
 *
 * Contents are restored by pack, as restic's restorer does: the walk creates directories and
 * symlinks and plans a batch of files; each pack the batch needs is then read once, in
 * stretches, by the codec threads, which decode every blob once and write it into each file
 * that holds it (a file of one blob whole, with its mode and times; a larger file, created
 * beforehand, in place at its offset). Directories get their times last, below before above.
 */
import { constants as fsc } from 'node:fs';
import { chmod, lchown, lstat, lutimes, mkdir, open, readFile, symlink, unlink, utimes } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { AbortedError, BlobNotIndexedError, IntegrityError, UnsafePathError, throwIfAborted } from './errors.ts';
import type { Id } from './ids.ts';
import { withLock } from './lock.ts';
import type { IndexEntry } from './master-index.ts';
import type { Repository } from './repository.ts';
import { findSnapshot, type Snapshot } from './snapshot.ts';
import { CRYPTO_OVERHEAD } from './crypto.ts';
import { parseTime, unixPermissions, type Node } from './tree.ts';
import { packError, resolvePath, walk } from './walker.ts';
import { CodecPool, defaultCodecThreads, type PackRestoreJob, type PackRestoreTarget, type RestoreMeta } from './codec-pool.ts';

/**
 * A batch is planned until it holds this many files or plaintext bytes: enough that most packs
 * it touches are read in a few long stretches, few enough that the plan stays small however
 * large the snapshot.
 */
const BATCH_FILES = 8192;
const BATCH_BYTES = 256 * 1024 * 1024;
/** Stored bytes of a pack one thread job covers at most (a larger blob goes alone). */
const JOB_BYTES = 4 * 1024 * 1024;
/** Blob targets per job at most, so that packs of tiny files still spread over the threads. */
const JOB_TARGETS = 256;
/** Blobs this close in a pack are read in one run: reading the gap costs less than another read. */
const RUN_GAP = 256 * 1024;
/** Jobs in flight per codec thread: one running, one waiting, so a thread never idles between jobs. */
const JOBS_PER_THREAD = 2;

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
const egid = process.getegid?.();

/**
 * The process's umask from /proc (Linux), or undefined. Not process.umask(): reading it there
 * sets it to 0 for a moment, for every thread of the process.
 */
async function readUmask(): Promise<number | undefined> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const m = /^Umask:\s*([0-7]+)$/m.exec(status);
  return m ? parseInt(m[1], 8) : undefined;
}

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

/** A file of several blobs being written in place: its meta is set once its last blob is. */
interface PartsOf {
  node: Node;
  path: string;
  remaining: number;
}

/** A blob of the plan: where it is stored, and where its plaintext goes. */
interface PlannedBlob {
  id: Id;
  entry: IndexEntry;
  targets: PackRestoreTarget[];
  /** Per target, the larger file it is a part of (undefined for a whole file). */
  parts: (PartsOf | undefined)[];
}

/** The plaintext size of a stored blob. */
function plainLength(entry: IndexEntry): number {
  return entry.uncompressedLength ?? entry.length - CRYPTO_OVERHEAD;
}


function notRegularFile(path: string): UnsafePathError {
  return new UnsafePathError(`${path} exists and is not a regular file; refusing to write through it`);
}

class Restorer {
  readonly result: Omit<RestoreResult, 'snapshotId'> = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  bytesTotal: number | undefined;

  /** The batch being planned: per pack, its blobs by id. */
  private batch = new Map<Id, Map<Id, PlannedBlob>>();
  private batchFiles = 0;
  private batchBytes = 0;
  /** Stored bytes and blob targets of the batch: what its jobs will read and write. */
  private batchStored = 0;
  private batchTargets = 0;
  private readonly running = new Set<Promise<void>>();
  private readonly maxRunning: number;
  private failure: { err: unknown } | undefined;
  /** Directories restored, each after those below it: their times are set last, in this order. */
  private readonly dirs: { node: Node; path: string }[] = [];
  /**
   * Directories where a new file may get a group other than ours (setgid, or of another group,
   * as with the grpid mount option): its owner is always set there. Every other folder the
   * restore made has our group and no setgid bit until the end.
   */
  readonly otherGroupDirs = new Set<string>();

  constructor(
    private readonly repo: Repository,
    private readonly opts: RestoreOptions,
    private readonly pool: CodecPool,
    threads: number,
    private readonly umask: number | undefined,
  ) {
    this.maxRunning = threads * JOBS_PER_THREAD;
  }

  /** Notes whether new files in this existing directory get our group. */
  noteDir(path: string, st: { mode: number; gid: number }): void {
    if ((st.mode & 0o2000) !== 0 || st.gid !== egid) this.otherGroupDirs.add(path);
  }

  private fileMeta(node: Node, path: string): RestoreMeta {
    const meta: RestoreMeta = { mode: unixPermissions(node.mode), atime: secondsOf(node.atime), mtime: secondsOf(node.mtime) };
    if (isRoot) {
      // A file the restore creates is ours (uid 0) with our group, unless its folder says otherwise.
      const asMade = node.uid === 0 && node.gid === egid && !this.otherGroupDirs.has(dirname(path));
      meta.owner = { uid: node.uid, gid: node.gid, asMade };
    }
    return meta;
  }

  private progress(path?: string): void {
    this.opts.onProgress?.({ bytesDone: this.result.bytes, bytesTotal: this.bytesTotal, filesDone: this.result.files, currentPath: path });
  }

  /** Makes sure `path` is a real directory (creating it when missing). */
  async ensureDir(path: string, mode = 0o700): Promise<void> {
    try {
      await mkdir(path, { mode });
      // It took its folder's group and setgid bit, or ours and none.
      if (this.otherGroupDirs.has(dirname(path))) this.otherGroupDirs.add(path);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const st = await lstat(path);
    if (!st.isDirectory()) throw new UnsafePathError(`${path} exists and is not a directory; refusing to write through it`);
    this.noteDir(path, st);
  }

  /** Creates the tree's directories and symlinks and plans its files, depth first. */
  async restoreTree(treeId: Id, dir: string): Promise<void> {
    const tree = await this.repo.loadTree(treeId, this.opts.signal);
    const seen = new Set<string>();
    for (const node of tree.nodes) {
      checkName(node.name);
      if (seen.has(node.name)) throw new UnsafePathError(`tree ${treeId} lists ${JSON.stringify(node.name)} twice`);
      seen.add(node.name);
    }
    for (const node of tree.nodes) await this.restoreNode(node, join(dir, node.name));
  }

  async restoreNode(node: Node, path: string): Promise<void> {
    throwIfAborted(this.opts.signal);
    switch (node.type) {
      case 'dir':
        await this.ensureDir(path);
        if (node.subtree) await this.restoreTree(node.subtree, path);
        this.result.dirs++;
        this.dirs.push({ node, path });
        return;
      case 'file':
        await this.planFile(node, path);
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

  /** Adds a file to the batch (an empty one is written at once); runs the batch once it is full. */
  private async planFile(node: Node, path: string): Promise<void> {
    const ids = node.content ?? [];
    if (ids.length === 0) {
      await this.slot();
      this.start(async () => {
        await this.pool.writeFile(path, [], this.fileMeta(node, path), this.umask).catch((err: unknown) => {
          const code = (err as NodeJS.ErrnoException).code;
          throw code === 'ELOOP' || code === 'EISDIR' ? notRegularFile(path) : err;
        });
        this.result.files++;
        this.progress(path);
      });
      return;
    }
    const entries = ids.map((id) => {
      const entry = this.repo.lookupBlob('data', id);
      if (!entry) throw new BlobNotIndexedError('data', id);
      return entry;
    });
    if (ids.length === 1) {
      this.planBlob(ids[0], entries[0], { path, pos: 0, meta: this.fileMeta(node, path) }, undefined);
    } else {
      // Created here, so that the threads writing its parts in any order only open it.
      const fh = await open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o600).catch((err: unknown) => {
        const code = (err as NodeJS.ErrnoException).code;
        throw code === 'ELOOP' || code === 'EISDIR' ? notRegularFile(path) : err;
      });
      await fh.close();
      const parts: PartsOf = { node, path, remaining: ids.length };
      let pos = 0;
      for (const [i, id] of ids.entries()) {
        this.planBlob(id, entries[i], { path, pos }, parts);
        pos += plainLength(entries[i]);
      }
    }
    this.batchFiles++;
    this.batchBytes += node.size ?? 0;
    // A full batch runs; so does one job's worth while a thread could take it, so that the
    // threads start at once and never wait for the walk.
    const full = this.batchFiles >= BATCH_FILES || this.batchBytes >= BATCH_BYTES;
    if (full || (this.running.size < this.maxRunning && (this.batchStored >= JOB_BYTES || this.batchTargets >= JOB_TARGETS))) await this.runBatch();
  }

  private planBlob(id: Id, entry: IndexEntry, target: PackRestoreTarget, parts: PartsOf | undefined): void {
    let pack = this.batch.get(entry.packId);
    if (!pack) this.batch.set(entry.packId, (pack = new Map()));
    let blob = pack.get(id);
    if (!blob) {
      pack.set(id, (blob = { id, entry, targets: [], parts: [] }));
      this.batchStored += entry.length;
    }
    blob.targets.push(target);
    blob.parts.push(parts);
    this.batchTargets++;
  }

  /** Hands the planned batch to the threads, pack by pack in stretches; returns once all are under way. */
  async runBatch(): Promise<void> {
    const batch = this.batch;
    this.batch = new Map();
    this.batchFiles = 0;
    this.batchBytes = 0;
    this.batchStored = 0;
    this.batchTargets = 0;
    for (const [packId, blobs] of batch) {
      const sorted = [...blobs.values()].sort((a, b) => a.entry.offset - b.entry.offset);
      let job: PlannedBlob[] = [];
      let targets = 0;
      for (const blob of sorted) {
        const end = blob.entry.offset + blob.entry.length;
        if (job.length > 0 && (end - job[0].entry.offset > JOB_BYTES || targets + blob.targets.length > JOB_TARGETS)) {
          await this.runJob(packId, job);
          job = [];
          targets = 0;
        }
        job.push(blob);
        targets += blob.targets.length;
      }
      if (job.length > 0) await this.runJob(packId, job);
    }
  }

  /** Starts one thread job for blobs of one pack, sorted by offset, once a slot is free. */
  private async runJob(packId: Id, blobs: PlannedBlob[]): Promise<void> {
    await this.slot();
    const runs: PackRestoreJob['runs'] = [];
    let run: PackRestoreJob['runs'][number] | undefined;
    for (const b of blobs) {
      const { offset, length } = b.entry;
      if (!run || offset - (run.offset + run.length) > RUN_GAP) runs.push((run = { offset, length: 0, blobs: [] }));
      run.blobs.push({ id: b.id, at: offset - run.offset, length, uncompressedLength: b.entry.uncompressedLength, targets: b.targets });
      run.length = offset + length - run.offset;
    }
    const local = this.repo.backend.localPath?.call(this.repo.backend, { type: 'data', name: packId });
    this.start(async () => {
      if (local === undefined) {
        for (const r of runs) {
          r.stored = await this.repo.backend.load({ type: 'data', name: packId }, { offset: r.offset, length: r.length, signal: this.opts.signal });
          if (r.stored.length !== r.length) throw new IntegrityError(`pack ${packId} is truncated`);
        }
      }
      let bytes;
      try {
        bytes = await this.pool.restorePack({ pack: local, where: ` in pack ${packId}`, umask: this.umask, runs });
      } catch (err) {
        const { code, path } = err as NodeJS.ErrnoException;
        if (path !== undefined && (code === 'ELOOP' || code === 'EISDIR')) throw notRegularFile(path);
        throw packError(err, packId);
      }
      this.result.bytes += bytes;
      let last: string | undefined;
      const done: Promise<void>[] = [];
      for (const b of blobs) {
        for (const [i, parts] of b.parts.entries()) {
          last = b.targets[i].path;
          if (!parts) this.result.files++;
          else if (--parts.remaining === 0) done.push(this.setMeta(parts.node, parts.path).then(() => void this.result.files++));
        }
      }
      await Promise.all(done);
      this.progress(last);
    });
  }

  /** Waits until another job may start; throws the first job's failure, or the abort. */
  private async slot(): Promise<void> {
    while (this.running.size >= this.maxRunning) await Promise.race(this.running);
    if (this.failure) throw this.failure.err;
    throwIfAborted(this.opts.signal);
  }

  private start(work: () => Promise<void>): void {
    const p: Promise<void> = work()
      .catch((err: unknown) => {
        this.failure ??= { err };
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }

  /** Runs what is still planned, waits for every job, then sets the directories' times. */
  async finish(): Promise<void> {
    await this.runBatch();
    await this.settle();
    if (this.failure) throw this.failure.err;
    throwIfAborted(this.opts.signal);
    for (const { node, path } of this.dirs) await this.setMeta(node, path);
  }

  /** Waits for the jobs under way (a failed restore too: nothing may still write once it returns). */
  async settle(): Promise<void> {
    while (this.running.size > 0) await Promise.race(this.running);
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
    // A caller's pool (restores in a row share one) is used and left open; else one of our own.
    const pool = opts.pool ?? new CodecPool(repo.key, opts.codecThreads ?? defaultCodecThreads());
    const r = new Restorer(repo, opts, pool, pool.size, await readUmask());
    r.noteDir(target, st);
    if (opts.onProgress) r.bytesTotal = await totalSize(repo, node, opts.signal);
    try {
      if (node.type === 'dir') {
        if (node.subtree) await r.restoreTree(node.subtree, target);
        await r.finish();
        if (node.name !== '') await r.setMeta(node, target);
      } else {
        checkName(node.name);
        await r.restoreNode(node, join(target, basename(node.name)));
        await r.finish();
      }
    } catch (err) {
      await r.settle();
      if (opts.signal?.aborted && !(err instanceof AbortedError)) throw new AbortedError({ cause: err });
      throw err;
    } finally {
      if (!opts.pool) await pool.close();
    }
    return { snapshotId: sn.id, ...r.result };
  };
  return opts.lock === false ? run() : withLock(repo, false, run, opts.signal);
}
