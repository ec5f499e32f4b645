/**
 * Encoder worker: compresses and encrypts data blobs off the main thread. Receives the master
 * key once (workerData: 64 bytes, encryption key || k || r), then `{ seq, plain }` messages,
 * and answers `{ seq, data, uncompressedLength }` (or `{ seq, error }`), transferring buffers.
 * Plain JavaScript, so the thread starts fast and small whatever loader the main thread uses.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { encodeBlobRaw } from './seal-core.mjs';

const keyBytes = Buffer.from(workerData.key);
const encKey = keyBytes.subarray(0, 32);
const macK = keyBytes.subarray(32, 48);
const macR = keyBytes.subarray(48, 64);

// Each job leaves a few MiB of dead buffers behind, and V8 collects an isolate's external
// memory only after tens of MiB have piled up — per thread. Collecting every few MiB keeps
// the process within its memory budget; a full GC of this tiny heap takes about a millisecond.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');
const GC_EVERY_BYTES = 4 * 1024 * 1024;
let sinceGc = 0;

parentPort.on('message', (msg) => {
  try {
    const enc = encodeBlobRaw(encKey, macK, macR, msg.plain);
    let data = enc.data;
    if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) data = Uint8Array.from(data);
    parentPort.postMessage({ seq: msg.seq, data, uncompressedLength: enc.uncompressedLength }, [data.buffer]);
    sinceGc += msg.plain.length + data.length;
  } catch (err) {
    parentPort.postMessage({ seq: msg.seq, error: err instanceof Error ? err.message : String(err) });
  }
  if (sinceGc >= GC_EVERY_BYTES) {
    sinceGc = 0;
    gc();
  }
});
