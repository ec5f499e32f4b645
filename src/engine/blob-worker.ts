/**
 * Encoder worker: compresses and encrypts data blobs off the main thread. Receives the master
 * key once (workerData) and then `{ seq, id, type, plain }` messages; answers `{ seq, data,
 * uncompressedLength }` with the stored bytes, transferring buffers instead of copying them.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { keyFromBytes } from './crypto.ts';
import { encodeBlob } from './blob-codec.ts';
import type { BlobType } from './pack.ts';

/** A request to the worker. */
export interface EncodeRequest {
  seq: number;
  id: string;
  type: BlobType;
  plain: Uint8Array;
}

/** The worker's answer. */
export interface EncodeResponse {
  seq: number;
  data?: Uint8Array;
  uncompressedLength?: number;
  error?: string;
}

const key = keyFromBytes((workerData as { key: Uint8Array }).key);

parentPort!.on('message', (msg: EncodeRequest) => {
  try {
    const enc = encodeBlob(key, msg.type, msg.id, msg.plain);
    // A Buffer may share a pooled ArrayBuffer; copy into an exact one so it can be transferred.
    const data = new Uint8Array(enc.data.length);
    data.set(enc.data);
    const res: EncodeResponse = { seq: msg.seq, data, uncompressedLength: enc.uncompressedLength };
    parentPort!.postMessage(res, [data.buffer]);
  } catch (err) {
    parentPort!.postMessage({ seq: msg.seq, error: (err as Error).message } satisfies EncodeResponse);
  }
});
