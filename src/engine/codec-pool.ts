/**
 * Codec pool: a few worker threads (blob-worker.mjs) that turn data chunks into stored blob
 * bytes (zstd, AES-CTR, Poly1305) and stored bytes back into verified plaintext, and that scan
 * batches of files for backups (scan-core.mjs: lstat, read, chunk, hash, seal), so the main
 * thread only walks directories and writes packs. With no workers (size 0) it does the same
 * work inline.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { keyToBytes, type Key } from './crypto.ts';
import { decodeBlob, encodeBlob } from './blob-codec.ts';
import { Scanner, diskUsage } from './scan-core.mjs';
import type { ScanJob, ScanMessage } from './scan-core.mjs';
import { IntegrityError } from './errors.ts';
import type { Id } from './ids.ts';
import type { BlobType, EncodedBlob } from './pack.ts';

/** A worker's answer (see blob-worker.mjs). */
interface WorkerResponse {
  seq: number;
  /** Set on scan messages: 'batch' carries scan-core.mjs messages in items, 'done' ends a scan. */
  type?: 'batch' | 'done';
  items?: ScanMessage[];
  /** Answer to 'du'. */
  total?: number;
  data?: Uint8Array;
  uncompressedLength?: number;
  error?: string;
}

interface Job {
  worker: number;
  resolve: (r: WorkerResponse) => void;
  reject: (e: Error) => void;
  scan?: ScanHandlers & { error?: unknown };
}

/** What a scan's caller does with its results (see scan()). */
export interface ScanHandlers {
  /** A new blob's stored bytes, valid until the promise returned settles. Called in order. */
  onBlob: (m: ScanMessage & { type: 'blob' }, data: Buffer) => Promise<void> | void;
  onEntry: (m: ScanMessage & { type: 'entry' }) => void;
}

/**
 * Size of each scanning thread's ring of sealed blobs (see blob-worker.mjs): how far it may run
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
function ownedCopy(u: Uint8Array, mayTakeOver: boolean): Uint8Array {
  if (mayTakeOver && u.byteOffset === 0 && u.byteLength === u.buffer.byteLength && u.buffer instanceof ArrayBuffer) return u;
  const copy = new Uint8Array(u.byteLength);
  copy.set(u);
  return copy;
}

function joinParts(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
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
   * compression: false for version 1 repositories, which cannot hold compressed blobs. The
   * threads start with the first job, so a backup with nothing new to encode starts none.
   */
  constructor(
    private readonly key: Key,
    private readonly size = defaultCodecThreads(),
    private readonly compression = true,
    /** Each scanning thread's ring (tests make it small to exercise wrapping and waiting). */
    private readonly ringBytes = RING_BYTES,
  ) {}

  private start(): void {
    const url = new URL('./blob-worker.mjs', import.meta.url);
    const { key, compression } = this;
    for (let i = 0; i < this.size; i++) {
      const owed = new SharedArrayBuffer(4);
      const ring = new SharedArrayBuffer(this.ringBytes);
      const w = new Worker(url, { workerData: { key: keyToBytes(key), compression, owed, ring } });
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
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const j of this.jobs.values()) j.reject(err);
    this.jobs.clear();
  }

  private onMessage(m: WorkerResponse): void {
    const job = this.jobs.get(m.seq);
    if (!job) return;
    if (job.scan && m.type === 'batch') {
      for (const item of m.items!) {
        if (item.type === 'entry') {
          job.scan.onEntry(item);
          continue;
        }
        this.chainBlob(job.worker, job.scan, item);
      }
      return;
    }
    if (job.scan && m.type === 'done') {
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
    if (job.scan?.error) job.reject(job.scan.error instanceof Error ? job.scan.error : new Error(String(job.scan.error)));
    else job.resolve(m);
  }

  /** Queues a scanned blob behind the thread's others; its ring slot goes back once handled. */
  private chainBlob(worker: number, scan: Job['scan'] & object, item: ScanMessage & { type: 'blob' }): void {
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

  private post(msg: Record<string, unknown>, transfer: ArrayBuffer[], scan?: Job['scan']): Promise<WorkerResponse> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closed) return Promise.reject(new Error('codec pool is closed'));
    if (this.workers.length === 0) this.start();
    let w = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i] < this.load[w]) w = i;
    const seq = ++this.seq;
    return new Promise<WorkerResponse>((resolve, reject) => {
      this.jobs.set(seq, { worker: w, resolve, reject, scan });
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
   * Encodes one blob, given whole or as slices to be joined. The plaintext is copied, so the
   * caller may reuse it.
   */
  async encode(type: BlobType, id: Id, plain: Uint8Array | Uint8Array[]): Promise<EncodedBlob> {
    let fresh = false;
    if (Array.isArray(plain)) {
      fresh = plain.length > 1;
      plain = plain.length === 1 ? plain[0] : joinParts(plain);
    }
    if (this.size === 0) return encodeBlob(this.key, type, id, plain, this.compression);
    const copy = ownedCopy(plain, fresh);
    const m = await this.post({ op: 'encode', plain: copy }, [copy.buffer as ArrayBuffer]);
    if (m.error || !m.data) throw new Error(m.error ?? 'codec worker returned nothing');
    const blob: EncodedBlob = { id, type, data: asBuffer(m.data) };
    if (m.uncompressedLength !== undefined && m.uncompressedLength !== null) blob.uncompressedLength = m.uncompressedLength;
    return blob;
  }

  /**
   * Decrypts, decompresses and verifies a stored blob; throws IntegrityError naming the blob.
   * Takes ownership of `stored` (it may be transferred to a worker).
   */
  async decode(id: Id, stored: Buffer, uncompressedLength: number | undefined, where = ''): Promise<Buffer> {
    if (this.size === 0) return decodeBlob(this.key, id, stored, uncompressedLength, where);
    const owned = ownedCopy(stored, true);
    const m = await this.post({ op: 'decode', id, stored: owned, uncompressedLength }, [owned.buffer as ArrayBuffer]);
    if (m.error || !m.data) throw new IntegrityError(`blob ${id}${where}: ${m.error ?? 'codec worker returned nothing'}`);
    return asBuffer(m.data);
  }

  private inlineScanner: Scanner | null = null;

  /**
   * Scans a batch of directory entries (see scan-core.mjs) on the least busy thread. Entries
   * and blobs come in order; the blobs' handlers run one after another per thread, and the ring
   * slot of a blob is reused once its handler settles. Resolves after the last handler; rejects
   * with the first handler error.
   */
  async scan(job: ScanJob, handlers: ScanHandlers): Promise<void> {
    if (this.size === 0) {
      this.inlineScanner ??= new Scanner(this.key.encrypt, this.key.macK, this.key.macR, this.compression);
      let chain: Promise<void> = Promise.resolve();
      this.inlineScanner.scanBatch(job, (m) => {
        if (m.type === 'entry') handlers.onEntry(m);
        else chain = chain.then(() => handlers.onBlob(m, asBuffer(m.data!)));
      });
      return chain;
    }
    const m = await this.post({ op: 'scan', job }, [], { ...handlers });
    if (m.error) throw new Error(m.error);
  }

  /** Total size of the regular files under the given paths, counted on a thread. */
  async diskUsage(paths: string[]): Promise<number> {
    if (this.size === 0) return diskUsage(paths);
    const m = await this.post({ op: 'du', paths }, []);
    if (m.error || m.total === undefined) throw new Error(m.error ?? 'codec worker returned no total');
    return m.total;
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
    await Promise.all(this.chains); // handlers still running finish before the pool is gone
    this.fail(new Error('codec pool is closed')); // jobs still waiting never get an answer
  }
}
