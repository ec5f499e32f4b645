/**
 * Encoder worker: compresses and encrypts data blobs off the main thread. Receives the master
 * key once (workerData: 64 bytes, encryption key || k || r), then messages:
 *   `{ seq, op: 'encode', plain }` → `{ seq, data, uncompressedLength }`
 *   `{ seq, op: 'decode', id, stored, uncompressedLength }` → `{ seq, data }` (verified plaintext)
 * or `{ seq, error }`, transferring buffers instead of copying them. Also used for restores.
 * Plain JavaScript, so the thread starts fast and small whatever loader the main thread uses.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { decodeBlobRaw, encodeBlobRaw } from './seal-core.mjs';

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

/** Large Buffers own their ArrayBuffer; small ones may live in Node's shared pool. */
function transferable(buf) {
  return buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength ? buf : Uint8Array.from(buf);
}

parentPort.on('message', (msg) => {
  try {
    if (msg.op === 'decode') {
      const r = decodeBlobRaw(encKey, macK, macR, msg.id, msg.stored, msg.uncompressedLength);
      if (r.error !== undefined) {
        parentPort.postMessage({ seq: msg.seq, error: r.error });
      } else {
        const data = transferable(r.plain);
        parentPort.postMessage({ seq: msg.seq, data }, [data.buffer]);
        sinceGc += msg.stored.length + data.length;
      }
    } else {
      const enc = encodeBlobRaw(encKey, macK, macR, msg.plain, workerData.compression);
      const data = transferable(enc.data);
      parentPort.postMessage({ seq: msg.seq, data, uncompressedLength: enc.uncompressedLength }, [data.buffer]);
      sinceGc += msg.plain.length + data.length;
    }
  } catch (err) {
    parentPort.postMessage({ seq: msg.seq, error: err instanceof Error ? err.message : String(err) });
  }
  if (sinceGc >= GC_EVERY_BYTES) {
    sinceGc = 0;
    gc();
  }
});
