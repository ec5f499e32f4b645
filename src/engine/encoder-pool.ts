/**
 * Encoder pool: a few worker threads that turn data chunks into stored blob bytes (zstd +
 * AES-CTR + Poly1305), so that reading, chunking and hashing on the main thread overlap with
 * the expensive encoding. With no workers (size 0) it encodes inline.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { keyToBytes, type Key } from './crypto.ts';
import { encodeBlob } from './blob-codec.ts';
import type { BlobType, EncodedBlob } from './pack.ts';

/** A request to a worker (see blob-worker.mjs). */
interface EncodeRequest {
  seq: number;
  plain: Uint8Array;
}

/** A worker's answer. */
interface EncodeResponse {
  seq: number;
  data?: Uint8Array;
  uncompressedLength?: number;
  error?: string;
}

interface Job {
  resolve: (b: EncodedBlob) => void;
  reject: (e: Error) => void;
  id: string;
  type: BlobType;
}

/** Default worker count: one per core, at least one. */
export function defaultEncoderThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** A pool of encoder threads. Call close() when done. */
export class EncoderPool {
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly jobs = new Map<number, Job & { worker: number }>();
  private seq = 0;
  private failed: Error | null = null;

  constructor(private readonly key: Key, size = defaultEncoderThreads()) {
    const url = new URL('./blob-worker.mjs', import.meta.url);
    for (let i = 0; i < size; i++) {
      const w = new Worker(url, { workerData: { key: keyToBytes(key) } });
      w.on('message', (m: EncodeResponse) => this.onMessage(m));
      w.on('error', (err) => this.fail(err));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`encoder worker exited with code ${code}`));
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

  private onMessage(m: EncodeResponse): void {
    const job = this.jobs.get(m.seq);
    if (!job) return;
    this.jobs.delete(m.seq);
    if (--this.load[job.worker] === 0) this.workers[job.worker]?.unref();
    if (m.error || !m.data) return job.reject(new Error(m.error ?? 'encoder returned nothing'));
    const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
    const blob: EncodedBlob = { id: job.id, type: job.type, data };
    if (m.uncompressedLength !== undefined) blob.uncompressedLength = m.uncompressedLength;
    job.resolve(blob);
  }

  /** Number of jobs not yet answered. */
  get inFlight(): number {
    return this.jobs.size;
  }

  /** Encodes one blob. The plaintext is copied, so the caller may reuse it. */
  encode(type: BlobType, id: string, plain: Uint8Array): Promise<EncodedBlob> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.workers.length === 0) return Promise.resolve(encodeBlob(this.key, type, id, plain));
    let w = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i] < this.load[w]) w = i;
    const copy = new Uint8Array(plain.length);
    copy.set(plain);
    const seq = ++this.seq;
    return new Promise<EncodedBlob>((resolve, reject) => {
      this.jobs.set(seq, { resolve, reject, id, type, worker: w });
      // Only busy workers keep the process alive; an idle pool never blocks exit.
      if (this.load[w]++ === 0) this.workers[w].ref();
      const req: EncodeRequest = { seq, plain: copy };
      this.workers[w].postMessage(req, [copy.buffer]);
    });
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
