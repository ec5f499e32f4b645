/**
 * Codec thread: the byte work of backups and restores, off the main thread. Receives the
 * master key once (workerData.key: 64 bytes, encryption key || k || r), then messages:
 *   `{ seq, op: 'encode', plain }` → `{ seq, data, uncompressedLength }`
 *   `{ seq, op: 'decode', id, stored, uncompressedLength }` → `{ seq, data }` (verified plaintext)
 *   `{ seq, op: 'scan', job }` → `{ seq, type: 'batch', items }` with the messages of
 *     scan-core.mjs in order (a few hundred or about a MiB of blobs per batch), then
 *     `{ seq, type: 'done' }`
 *   `{ seq, op: 'du', paths }` → `{ seq, total }` (scan-core.mjs diskUsage)
 * or `{ seq, error }`, transferring buffers instead of copying them.
 *
 * Scans write sealed blobs into a ring (workerData.ring, a SharedArrayBuffer) and send only
 * where they are; the main thread copies them into packs and gives the space back through
 * workerData.owed (bytes of the ring in use). A thread waits when the ring is full, which
 * bounds memory, and no buffer is allocated, transferred and collected per blob.
 * Plain JavaScript, so the thread starts fast and small whatever loader the main thread uses.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { decodeBlobRaw, encodeBlobRaw } from './seal-core.mjs';
import { Scanner, diskUsage } from './scan-core.mjs';

const keyBytes = Buffer.from(workerData.key);
const encKey = keyBytes.subarray(0, 32);
const macK = keyBytes.subarray(32, 48);
const macR = keyBytes.subarray(48, 64);

// Each job leaves a few MiB of dead buffers behind, and V8 collects an isolate's external
// memory only after tens of MiB have piled up — per thread. Collecting every few MiB keeps
// the process within its memory budget; a full GC of this tiny heap takes about a millisecond.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');
const GC_EVERY_BYTES = 8 * 1024 * 1024;
let sinceGc = 0;

function collect(bytes) {
  sinceGc += bytes;
  if (sinceGc >= GC_EVERY_BYTES) {
    sinceGc = 0;
    gc();
  }
}

const owed = workerData.owed ? new Int32Array(workerData.owed) : null;
const ring = workerData.ring ? Buffer.from(workerData.ring) : null;
/** Where the next slot starts; everything before it back to the oldest unreturned slot is in use. */
let head = 0;

/** Scan messages not yet posted: one postMessage per batch costs far less than one each. */
const BATCH_BYTES = 1024 * 1024;
const BATCH_ITEMS = 256;
let batch = [];
let batchTransfer = [];
let batchBytes = 0;
let batchSeq = 0;

function flush() {
  if (batch.length === 0) return;
  parentPort.postMessage({ seq: batchSeq, type: 'batch', items: batch }, batchTransfer);
  batch = [];
  batchTransfer = [];
  batchBytes = 0;
}

function emit(m, transfer) {
  batch.push(m);
  if (transfer) batchTransfer.push(...transfer);
  batchBytes += m.len ?? 0;
  if (batchBytes >= BATCH_BYTES || batch.length >= BATCH_ITEMS) flush();
}

/**
 * A ring slot of n bytes: `{ view, off, cost }`, cost counting the unused end of the ring when
 * the slot wraps to its start. The main thread returns slots in the order they were given.
 */
function ringSlot(n) {
  if (!ring || n > ring.length) return { view: Buffer.allocUnsafeSlow(n) };
  for (;;) {
    const used = Atomics.load(owed, 0);
    if (used === 0) head = 0; // all returned: start over at the front
    const start = head + n <= ring.length ? head : 0;
    const cost = n + (start === 0 && head !== 0 ? ring.length - head : 0);
    if (used + cost <= ring.length) {
      Atomics.add(owed, 0, cost);
      head = start + n;
      collect(n);
      return { view: ring.subarray(start, start + n), off: start, cost };
    }
    flush(); // the slots the main thread would return may still be in the unsent batch
    Atomics.wait(owed, 0, used, 1000);
  }
}

const scanner = new Scanner(encKey, macK, macR, workerData.compression, ringSlot);

/** Large Buffers own their ArrayBuffer; small ones may live in Node's shared pool. */
function transferable(buf) {
  return buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength ? buf : Uint8Array.from(buf);
}

parentPort.on('message', (msg) => {
  try {
    if (msg.op === 'scan') {
      batchSeq = msg.seq;
      try {
        scanner.scanBatch(msg.job, emit);
      } finally {
        flush();
      }
      parentPort.postMessage({ seq: msg.seq, type: 'done' });
    } else if (msg.op === 'du') {
      parentPort.postMessage({ seq: msg.seq, total: diskUsage(msg.paths) });
    } else if (msg.op === 'decode') {
      const r = decodeBlobRaw(encKey, macK, macR, msg.id, msg.stored, msg.uncompressedLength);
      if (r.error !== undefined) {
        parentPort.postMessage({ seq: msg.seq, error: r.error });
      } else {
        const data = transferable(r.plain);
        parentPort.postMessage({ seq: msg.seq, data }, [data.buffer]);
        collect(msg.stored.length + data.length);
      }
    } else {
      const enc = encodeBlobRaw(encKey, macK, macR, msg.plain, workerData.compression);
      const data = transferable(enc.data);
      parentPort.postMessage({ seq: msg.seq, data, uncompressedLength: enc.uncompressedLength }, [data.buffer]);
      collect(msg.plain.length + data.length);
    }
  } catch (err) {
    parentPort.postMessage({ seq: msg.seq, error: err instanceof Error ? err.message : String(err) });
  }
});
