/**
 * Codec pool: a few worker threads (blob-worker.mjs) that turn stored blob bytes back into
 * verified plaintext, that scan batches of files for backups (scan-core.mjs: lstat, read,
 * chunk, hash, seal), and that chunk, hash and seal streams, so the main thread only walks
 * directories, copies stream bytes (none, for a pipe) and writes packs.
 */
import { closeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { keyToBytes, type Key } from './crypto.ts';
import type { ScanJob, ScanMessage } from './scan-core.mjs';
import { STREAM, STREAM_CTL_BYTES, answerChunk, wakeStream } from './stream-ctl.mjs';
import { cutBufferSize } from './chunker-core.mjs';
import { backgroundNice } from './priority.ts';
import { IntegrityError } from './errors.ts';
import type { Id } from './ids.ts';

/** A worker's answer (see codec-thread.mjs). */
interface WorkerResponse {
  seq: number;
  /** Set on scan and stream messages: 'batch' carries scan-core.mjs messages in items, 'done' ends the job. */
  type?: 'batch' | 'done';
  items?: (ScanMessage | StreamChunk)[];
  /** A stream's byte count, on its 'done'. */
  size?: number;
  /** Answer to 'du'. */
  total?: number;
  /** Answer to 'writeFile', 'writeTo' and 'restorePack'. */
  bytes?: number;
  /** With `error` from 'restorePack': the file being written, if the failure was there. */
  path?: string;
  /** With `error`: the system error's code (or EINTEGRITY for a blob that does not verify). */
  code?: string;
  data?: Uint8Array;
  uncompressedLength?: number;
  error?: string;
}

interface Job {
  worker: number;
  resolve: (r: WorkerResponse) => void;
  reject: (e: Error) => void;
  items?: ItemHandlers;
}

/** How a scan or stream job's messages are handled: blobs in order, chained; the rest at once. */
interface ItemHandlers {
  onBlob: ScanHandlers['onBlob'];
  onItem: (m: ScanMessage | StreamChunk) => void;
  error?: unknown;
}

/** A stream chunk's id, announced by its thread before it is sealed (see stream()). */
export interface StreamChunk {
  type: 'chunk';
  /** The chunk's number in the stream, from 0. */
  k: number;
  id: Id;
  len: number;
  /** Where the chunk lies in the cutting thread's buffer. */
  off: number;
}

/** What a stream's caller does with its chunks (see stream()). */
export interface StreamHandlers {
  /** Called in order for every chunk; true to have it sealed and sent to onBlob. */
  onChunk: (m: StreamChunk) => boolean;
  /** A stored chunk's sealed bytes (index is the chunk's number), as for scans. */
  onBlob: ScanHandlers['onBlob'];
  /** The stream is a tar archive: no chunk spans two of its entries (tarEntryCuts in chunker-core.mjs). */
  tar?: boolean;
}

/** A pipe's read end, blocking, for stream(): a codec thread reads it to the end; stream() closes it. */
export interface StreamFd {
  fd: number;
  /** Stops the writer when the stream fails, so that a read waiting for it returns. */
  cancel?: () => void;
}

/** What a scan's caller does with its results (see scan()). */
export interface ScanHandlers {
  /** A new blob's stored bytes, valid until the promise returned settles. Called in order. */
  onBlob: (m: ScanMessage & { type: 'blob' }, data: Buffer) => Promise<void> | void;
  onEntry: (m: ScanMessage & { type: 'entry' }) => void;
}

/**
 * Size of each scanning thread's ring of sealed blobs (see codec-thread.mjs): how far it may run
 * ahead of the main thread, so it bounds memory whatever the sizes of the files. Holds a
 * blob of the default chunker's maximum size; larger ones travel in buffers of their own.
 */
const RING_BYTES = 9 * 1024 * 1024;

/** Default worker count: one per core, at most four. */
export function defaultCodecThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** An ArrayBuffer holding exactly these bytes that may be transferred (copied when shared). */
function ownedCopy(u: Uint8Array): Uint8Array {
  if (u.byteOffset === 0 && u.byteLength === u.buffer.byteLength && u.buffer instanceof ArrayBuffer) return u;
  const copy = new Uint8Array(u.byteLength);
  copy.set(u);
  return copy;
}

const THREAD_URL = new URL('./blob-worker.mjs', import.meta.url);

function startThread(nice: number): Worker {
  return new Worker(THREAD_URL, { workerData: { nice } });
}

/** A codec thread started ahead of need, not yet given a key. */
interface Spare {
  worker: Worker;
  nice: number;
  /** Settles once the thread has loaded its modules, or has died. */
  warm: Promise<void>;
  drop: () => void;
}

/**
 * Codec threads kept started for the next pool (keepCodecThreadsWarm). A thread's start-up,
 * Node's bootstrap and the codec modules, takes tens of milliseconds of a core, the bootstrap at
 * normal priority since a thread can lower its own only once it runs. In a server that also
 * answers requests, pools started on demand put that burst at every job's start, beside the
 * API; spares start it when a pool closes, with the server usually idle.
 */
const spares: Spare[] = [];
let sparesWanted = 0;
/** How long spares wait for a pool before they stop (keepCodecThreadsWarm's idleMs); undefined: for ever. */
let sparesIdleMs: number | undefined;
let sparesTimer: NodeJS.Timeout | undefined;

function addSpare(): void {
  const nice = backgroundNice();
  const worker = startThread(nice);
  let warmed!: () => void;
  const spare: Spare = {
    worker,
    nice,
    warm: new Promise<void>((resolve) => (warmed = resolve)),
    drop: () => {
      worker.off('message', onMessage).off('error', onGone).off('exit', onGone);
      const i = spares.indexOf(spare);
      if (i >= 0) spares.splice(i, 1);
      warmed();
    },
  };
  const onMessage = (m: { type?: string }): void => {
    if (m.type === 'ready') warmed();
  };
  // A spare that dies is not replaced until the next pool closes, so a thread that cannot
  // start does not loop.
  const onGone = (): void => spare.drop();
  worker.on('message', onMessage).on('error', onGone).on('exit', onGone);
  worker.unref();
  spares.push(spare);
}

/** Pools whose threads are running, and the most threads one of them had since spares were last started. */
let poolsRunning = 0;
let replaceUpTo = 0;

/**
 * A pool's threads start: with idleMs, the spares it did not take are stopped, since they would
 * wait idle through the job (two threads' memory at a backup's peak) and the last pool to close
 * starts replacements anyway.
 */
function poolStarted(): void {
  poolsRunning++;
  if (sparesIdleMs === undefined) return;
  clearTimeout(sparesTimer);
  void stopSpares(0);
}

/**
 * A pool that had `threads` closed. Replacements start once no pool runs, as many as the
 * largest of those pools had: a one-thread pool (a WAL upload, every archive interval) keeps
 * one thread warm, not a backup's worth.
 */
function poolClosed(threads: number): void {
  poolsRunning--;
  replaceUpTo = Math.max(replaceUpTo, threads);
  if (poolsRunning > 0) return;
  refillSpares(replaceUpTo);
  replaceUpTo = 0;
}

/** Starts spares up to the number wanted, or up to `upTo` when that is fewer. */
function refillSpares(upTo = sparesWanted): void {
  while (spares.length < Math.min(sparesWanted, upTo)) addSpare();
  if (sparesIdleMs === undefined || spares.length === 0) return;
  clearTimeout(sparesTimer);
  // Counted from when they are ready: a start-up slowed down by load does not eat the wait.
  void Promise.all(spares.map((s) => s.warm)).then(() => {
    if (sparesIdleMs === undefined) return;
    clearTimeout(sparesTimer);
    sparesTimer = setTimeout(() => void stopSpares(0), sparesIdleMs).unref();
  });
}

/** Stops the spares past the first `keep`. */
async function stopSpares(keep: number): Promise<void> {
  await Promise.all(
    spares.splice(keep).map((s) => {
      s.drop();
      return s.worker.terminate();
    }),
  );
}

/** A warm thread at this niceness, taken out of the spares, if there is one. */
function takeSpare(nice: number): Worker | undefined {
  const i = spares.findIndex((s) => s.nice === nice);
  if (i < 0) return undefined;
  const spare = spares[i];
  spare.drop();
  return spare.worker;
}

/**
 * Keeps `count` codec threads started and idle for the pools to come (a long-running server
 * calls this; 0, the default, starts every pool's threads with it and stops the spares). Each
 * pool takes what it can and, once closed, starts replacements. An idle spare costs its
 * thread's memory (about 11 MiB) and no CPU. With `idleMs`, none start now: they start when a
 * pool closes and stop after `idleMs` in which no pool took them, so they are there for the jobs
 * that follow one another (a copy after a snapshot, the next scheduled one) and not in a server
 * that has been idle that long.
 */
export async function keepCodecThreadsWarm(count: number, opts: { idleMs?: number } = {}): Promise<void> {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`spare codec threads must be 0 or more, not ${count}`);
  sparesWanted = count;
  sparesIdleMs = opts.idleMs;
  clearTimeout(sparesTimer);
  await stopSpares(sparesIdleMs === undefined ? count : 0);
  if (sparesIdleMs === undefined) refillSpares();
}

/**
 * Starts codec threads now for the next pool to take, up to `count` spares (default: a
 * default pool's worth). For a short-lived process that knows a pool comes: `backplane repo
 * backup` starts them before it derives the repository key, so that their start-up (tens of
 * milliseconds of a core each) runs while the main thread waits for scrypt, not after it. Unlike
 * keepCodecThreadsWarm's, they are not replaced once taken, and one not taken keeps no process
 * alive.
 */
export function prestartCodecThreads(count = defaultCodecThreads()): void {
  while (spares.length < count) addSpare();
}

/** Resolves once every spare thread has loaded its modules; how many are warm. */
export async function spareCodecThreads(): Promise<number> {
  await Promise.all(spares.map((s) => s.warm));
  return spares.length;
}

/** A blob for a thread to decode and write: its stored bytes, or where a local pack holds them. */
export type ThreadBlob = { id: Id; uncompressedLength?: number; where?: string } & ({ stored: Buffer } | { pack: string; offset: number; length: number });

/** What a restored file gets once written: mode, times and (as root) owner. */
export interface RestoreMeta {
  mode: number;
  atime: number;
  mtime: number;
  /** asMade: a file created by the thread gets this owner anyway (no chown needed). */
  owner?: { uid: number; gid: number; asMade?: boolean };
}

/** Where a blob of a restorePack job goes: a whole file (meta set), or a part of one at pos. */
export interface PackRestoreTarget {
  path: string;
  pos: number;
  meta?: RestoreMeta;
}

/** A stretch of one pack for restorePack: runs read at once, each with its blobs in order. */
export interface PackRestoreJob {
  /** The local pack file, when the thread reads the runs itself. */
  pack?: string;
  /** Names the pack in error messages (` in pack <id>`). */
  where: string;
  /** The process's umask, when known: a new file whose mode it leaves whole needs no chmod. */
  umask?: number;
  runs: {
    offset: number;
    length: number;
    /** The run's stored bytes, when there is no local pack file. */
    stored?: Buffer;
    /** at: where the blob starts in the run. */
    blobs: { id: Id; at: number; length: number; uncompressedLength?: number; targets: PackRestoreTarget[] }[];
  }[];
}

function ownedBlobs(blobs: ThreadBlob[]): [unknown[], ArrayBuffer[]] {
  const owned = blobs.map((b) => ('stored' in b ? { ...b, stored: ownedCopy(b.stored) } : b));
  return [owned, owned.flatMap((b) => ('stored' in b ? [b.stored.buffer as ArrayBuffer] : []))];
}

function bytesWritten(m: WorkerResponse): number {
  if (m.error !== undefined) {
    if (m.code === 'EINTEGRITY') throw new IntegrityError(m.error);
    throw Object.assign(new Error(m.error), { code: m.code });
  }
  return m.bytes!;
}

/** A pool of codec threads. Call close() when done. */
export class CodecPool {
  private readonly workers: Worker[] = [];
  private readonly owed: Int32Array[] = [];
  private readonly rings: Buffer[] = [];
  /** Per thread: the scan blobs being handled, in order (ring slots go back in that order). */
  private readonly chains: Promise<void>[] = [];
  private readonly load: number[] = [];
  private readonly jobs = new Map<number, Job>();
  private seq = 0;
  private failed: Error | null = null;
  private closed = false;

  /**
   * size: threads, at least 1. compression: false for version 1 repositories, which cannot
   * hold compressed blobs; true for zstd at ZSTD_LEVEL, or another zstd level. The threads start with the first job, so a backup with nothing new
   * to encode starts none.
   */
  constructor(
    private readonly key: Key,
    readonly size = defaultCodecThreads(),
    private readonly compression: boolean | number = true,
    /** Each scanning thread's ring (tests make it small to exercise wrapping and waiting). */
    private readonly ringBytes = RING_BYTES,
    /** The threads' niceness; default the background work's (priority.ts) at start. */
    private readonly nice?: number,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`a codec pool needs at least one thread, not ${size}`);
  }

  private start(): void {
    const { key, compression } = this;
    for (let i = 0; i < this.size; i++) {
      const owed = new SharedArrayBuffer(4);
      const ring = new SharedArrayBuffer(this.ringBytes);
      const nice = this.nice ?? backgroundNice();
      const w = takeSpare(nice) ?? startThread(nice);
      w.postMessage({ op: 'init', key: keyToBytes(key), compression, owed, ring });
      this.owed.push(new Int32Array(owed));
      this.rings.push(Buffer.from(ring));
      this.chains.push(Promise.resolve());
      w.on('message', (m: WorkerResponse) => this.onMessage(m));
      w.on('error', (err) => this.fail(err));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`codec worker exited with code ${code}`));
      });
      w.unref();
      this.workers.push(w);
      this.load.push(0);
    }
    poolStarted();
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const j of this.jobs.values()) j.reject(err);
    this.jobs.clear();
  }

  private onMessage(m: WorkerResponse): void {
    const job = this.jobs.get(m.seq);
    if (!job) return;
    if (job.items && m.type === 'batch') {
      for (const item of m.items!) {
        if (item.type === 'blob') this.chainBlob(job.worker, job.items, item);
        else job.items.onItem(item);
      }
      return;
    }
    if (job.items && m.type === 'done') {
      // Settle only once every blob of the scan has been handled (finishJob rejects with the
      // first handler error).
      this.chains[job.worker] = this.chains[job.worker].then(() => this.finishJob(m));
      return;
    }
    this.finishJob(m);
  }

  private finishJob(m: WorkerResponse): void {
    const job = this.jobs.get(m.seq);
    if (!job) return;
    this.jobs.delete(m.seq);
    if (--this.load[job.worker] === 0) this.workers[job.worker]?.unref();
    if (job.items?.error) job.reject(job.items.error instanceof Error ? job.items.error : new Error(String(job.items.error)));
    else job.resolve(m);
  }

  /** Queues a scanned blob behind the thread's others; its ring slot goes back once handled. */
  private chainBlob(worker: number, scan: ItemHandlers, item: ScanMessage & { type: 'blob' }): void {
    const ring = this.rings[worker];
    const owed = this.owed[worker];
    const data = item.data ? asBuffer(item.data) : ring.subarray(item.off!, item.off! + item.len);
    this.chains[worker] = this.chains[worker]
      .then(() => (scan.error ? undefined : scan.onBlob(item, data)))
      .catch((err: unknown) => {
        scan.error ??= err;
      })
      .then(() => {
        if (item.cost !== undefined) {
          Atomics.sub(owed, 0, item.cost);
          Atomics.notify(owed, 0);
        }
      });
  }

  /** The least busy thread, other than `not` (when there is another). Starts the threads. */
  private pick(not = -1): number {
    if (this.workers.length === 0) this.start();
    let w = -1;
    for (let i = 0; i < this.load.length; i++) if (i !== not && (w < 0 || this.load[i] < this.load[w])) w = i;
    return w < 0 ? 0 : w;
  }

  private post(msg: Record<string, unknown>, transfer: ArrayBuffer[], items?: ItemHandlers, worker?: number): Promise<WorkerResponse> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closed) return Promise.reject(new Error('codec pool is closed'));
    const w = worker ?? this.pick();
    const seq = ++this.seq;
    return new Promise<WorkerResponse>((resolve, reject) => {
      this.jobs.set(seq, { worker: w, resolve, reject, items });
      // Only busy workers keep the process alive; an idle pool never blocks exit.
      if (this.load[w]++ === 0) this.workers[w].ref();
      this.workers[w].postMessage({ ...msg, seq }, transfer);
    });
  }

  /** Number of jobs not yet answered. */
  get inFlight(): number {
    return this.jobs.size;
  }

  /**
   * Decrypts, decompresses and verifies a stored blob; throws IntegrityError naming the blob.
   * Takes ownership of `stored` (it may be transferred to a worker).
   */
  async decode(id: Id, stored: Buffer, uncompressedLength: number | undefined, where = ''): Promise<Buffer> {
    const owned = ownedCopy(stored);
    const m = await this.post({ op: 'decode', id, stored: owned, uncompressedLength }, [owned.buffer as ArrayBuffer]);
    if (m.error || !m.data) throw new IntegrityError(`blob ${id}${where}: ${m.error ?? 'codec worker returned nothing'}`);
    return asBuffer(m.data);
  }

  /**
   * Scans a batch of directory entries (see scan-core.mjs) on the least busy thread. Entries
   * and blobs come in order; the blobs' handlers run one after another per thread, and the ring
   * slot of a blob is reused once its handler settles. Resolves after the last handler; rejects
   * with the first handler error.
   */
  async scan(job: ScanJob, handlers: ScanHandlers): Promise<void> {
    const m = await this.post({ op: 'scan', job }, [], { onBlob: handlers.onBlob, onItem: (item) => handlers.onEntry(item as ScanMessage & { type: 'entry' }) });
    if (m.error) throw new Error(m.error);
  }

  /**
   * Chunks, hashes and seals a stream; returns its byte count once the last stored chunk has
   * been handled. One thread cuts and hashes the bytes and announces each chunk's id; onChunk
   * decides whether it is stored, so a chunk the repository has costs no compression or
   * encryption. A chunk to store is sealed by another thread straight from the cutting
   * thread's buffer while that one has room for it, else by the cutting thread itself, so
   * sealing is spread over the threads.
   *
   * The source is either an async iterable, whose pieces the main thread copies into a ring
   * shared with the cutting thread, or a pipe's read end ({ fd }, blocking), which the cutting
   * thread reads itself, so no byte passes through the main thread; it is closed at the end.
   * A pipe's reads end only with the writer, so whoever aborts must also stop the writer.
   *
   * Throws the source's error, or the first handler error, or the signal's reason; either way
   * the threads stop.
   */
  async stream(source: AsyncIterable<Buffer | string> | StreamFd, params: ScanJob['params'], handlers: StreamHandlers, signal?: AbortSignal): Promise<number> {
    const fd = 'fd' in source ? source.fd : undefined;
    if (this.failed || this.closed) {
      if (fd !== undefined) closeSync(fd);
      throw this.failed ?? new Error('codec pool is closed');
    }
    const ctl = new Int32Array(new SharedArrayBuffer(STREAM_CTL_BYTES));
    const ring = fd === undefined ? new SharedArrayBuffer(STREAM.INPUT_BYTES) : undefined;
    const cut = new SharedArrayBuffer(cutBufferSize(params) + STREAM.CUT_SLACK);
    const cutter = this.pick();
    const abort = (): void => {
      Atomics.store(ctl, STREAM.STATE, STREAM.ABORTED);
      wakeStream(ctl);
      if ('fd' in source) source.cancel?.();
    };
    const onBlob: StreamHandlers['onBlob'] = async (m, data) => {
      try {
        await handlers.onBlob(m, data);
      } catch (err) {
        abort(); // nothing more would be stored
        throw err;
      }
    };
    // Chunks handed to other threads at a time: enough to keep them busy, few enough that the
    // cutting thread seals the rest itself instead of waiting for them.
    const maxLent = 2 * (this.size - 1);
    const lent = new Set<Promise<void>>();
    const lend = (m: StreamChunk): void => {
      const sealing = this.post({ op: 'sealShared', cut, off: m.off, len: m.len, id: m.id, k: m.k, ctl: ctl.buffer }, [], { onBlob, onItem: () => {} }, this.pick(cutter))
        .then(
          (r) => {
            if (r.error) failed(new Error(r.error));
          },
          (err: unknown) => failed(err),
        )
        .finally(() => lent.delete(sealing));
      lent.add(sealing);
    };
    const failed = (err: unknown): void => {
      items.error ??= err;
      abort();
    };
    const items: ItemHandlers = {
      onBlob,
      onItem: (item) => {
        const m = item as StreamChunk;
        let store = false;
        try {
          store = !items.error && handlers.onChunk(m);
        } catch (err) {
          failed(err);
        }
        if (store && lent.size < maxLent) lend(m);
        else answerChunk(ctl, m.k, store);
      },
    };
    const onAbort = (): void => failed(signal!.reason);
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = this.post({ op: 'stream', ...(fd === undefined ? { input: ring } : { fd }), cut, ctl: ctl.buffer, params, tar: handlers.tar === true }, [], items, cutter);
    try {
      if (fd === undefined) await this.pump(source as AsyncIterable<Buffer | string>, Buffer.from(ring!), ctl, done, items);
      const m = await done;
      // Every lent chunk has been sealed by now (the cutting thread waited for them), but their
      // blobs' handlers may still be running.
      await Promise.all(lent);
      if (items.error) throw items.error;
      if (m.error) throw new Error(m.error);
      return m.size!;
    } catch (err) {
      abort();
      await done.catch(() => {});
      await Promise.all(lent);
      throw items.error ?? err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // Here, not on the thread, which never opened it (Node warns about that); the job is over.
      if (fd !== undefined) closeSync(fd);
    }
  }

  /** Copies an iterable stream into the cutting thread's input ring (see stream()). */
  private async pump(source: AsyncIterable<Buffer | string>, input: Buffer, ctl: Int32Array, done: Promise<WorkerResponse>, items: ItemHandlers): Promise<void> {
    let ended = false;
    done.then(
      () => (ended = true),
      () => (ended = true),
    );
    let at = 0;
    for await (const piece of source) {
      const buf = typeof piece === 'string' ? Buffer.from(piece) : piece;
      for (let off = 0; off < buf.length; ) {
        if (items.error) throw items.error; // stop reading: nothing more would be stored
        if (ended) {
          const m = await done;
          throw new Error(m.error ?? 'the stream thread stopped before the end of the stream');
        }
        const used = Atomics.load(ctl, STREAM.USED);
        if (used === input.length) {
          await Atomics.waitAsync(ctl, STREAM.USED, used, 100).value;
          continue;
        }
        const n = Math.min(input.length - used, buf.length - off, input.length - at);
        buf.copy(input, at, off, off + n);
        at = (at + n) % input.length;
        off += n;
        Atomics.add(ctl, STREAM.USED, n);
        wakeStream(ctl);
      }
    }
    Atomics.store(ctl, STREAM.STATE, STREAM.ENDED);
    wakeStream(ctl);
  }

  /**
   * Writes a small file of a restore whole on a thread (see codec-thread.mjs writeFileJob):
   * decodes the blobs (given, or read from a local pack file by the thread), writes them to `path` (created or truncated, never through a
   * symlink) and sets mode, times and owner (umask: see PackRestoreJob). Takes ownership of the stored buffers. Returns the
   * bytes written; throws an Error whose `code` is the system error's, or EINTEGRITY with an
   * IntegrityError's message.
   */
  async writeFile(path: string, blobs: ThreadBlob[], meta: RestoreMeta, umask?: number): Promise<number> {
    const [owned, transfer] = ownedBlobs(blobs);
    return bytesWritten(await this.post({ op: 'writeFile', path, blobs: owned, ...meta, umask }, transfer));
  }

  /**
   * Writes blobs' plaintext, in order, into `fd`, which the caller keeps open until this
   * settles (see codec-thread.mjs writeToJob). Every part goes to the pool's first thread, in
   * order; after a failed part, the writer's later parts are refused (code EABORTED). Takes ownership
   * of the stored buffers. Returns the bytes written; throws as writeFile does.
   */
  async writeTo(fd: number, writer: number, blobs: ThreadBlob[]): Promise<number> {
    const [owned, transfer] = ownedBlobs(blobs);
    // Always the first thread, so that the parts keep their order.
    if (this.workers.length === 0) this.start();
    return bytesWritten(await this.post({ op: 'writeTo', fd, writer, blobs: owned }, transfer, undefined, 0));
  }

  /**
   * Restores a stretch of one pack on the least busy thread (see codec-thread.mjs
   * restorePackJob): reads each run once (from the local file `pack`, or the run's `stored`
   * bytes, whose ownership this takes), decodes each blob once and writes it to all its
   * targets. Returns the bytes written; throws as writeFile does, with `path` set on the error
   * when a target failed.
   */
  async restorePack(job: PackRestoreJob): Promise<number> {
    const transfer: ArrayBuffer[] = [];
    const runs = job.runs.map((r) => {
      if (!r.stored) return r;
      const stored = ownedCopy(r.stored);
      transfer.push(stored.buffer as ArrayBuffer);
      return { ...r, stored };
    });
    const m = await this.post({ op: 'restorePack', pack: job.pack, where: job.where, umask: job.umask, runs }, transfer);
    if (m.error !== undefined && m.path !== undefined) {
      throw Object.assign(m.code === 'EINTEGRITY' ? new IntegrityError(m.error) : new Error(m.error), { code: m.code, path: m.path });
    }
    return bytesWritten(m);
  }

  /** Total size of the regular files under the given paths, counted on a thread. */
  async diskUsage(paths: string[]): Promise<number> {
    const m = await this.post({ op: 'du', paths }, []);
    if (m.error || m.total === undefined) throw new Error(m.error ?? 'codec worker returned no total');
    return m.total;
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    this.closed = true;
    const started = this.workers.length > 0;
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
    if (started) poolClosed(this.size);
    await Promise.all(this.chains); // handlers still running finish before the pool is gone
    this.fail(new Error('codec pool is closed')); // jobs still waiting never get an answer
  }
}
