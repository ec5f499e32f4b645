/**
 * Codec thread (started through blob-worker.mjs): the byte work of backups and restores, off
 * the main thread. Its first message gives it a pool's master key and buffers (a thread may be
 * started before any pool needs it: codec-pool.ts keepCodecThreadsWarm):
 *   `{ op: 'init', key, compression, owed, ring }` (key: 64 bytes, encryption key || k || r)
 * then:
 *   `{ seq, op: 'decode', id, stored, uncompressedLength }` → `{ seq, data }` (verified plaintext)
 *   `{ seq, op: 'scan', job }` → `{ seq, type: 'batch', items }` with the messages of
 *     scan-core.mjs in order (a few hundred or about a MiB of blobs per batch), then
 *     `{ seq, type: 'done' }`
 *   `{ seq, op: 'stream', input | fd, cut, ctl, params, tar }` → batches of `{ type: 'chunk', k, id, len,
 *     off }` and `{ type: 'blob', index: k, … }` messages, then `{ seq, type: 'done', size }`
 *     (see streamJob below)
 *   `{ seq, op: 'sealShared', cut, off, len, id, k, ctl }` → a batch with the sealed blob,
 *     then `{ seq, type: 'done' }`: seals chunk k of another thread's stream from its cutting
 *     buffer and answers k there (sealSharedJob below)
 *   `{ seq, op: 'du', paths }` → `{ seq, total }` (scan-core.mjs diskUsage)
 *   `{ seq, op: 'writeFile', path, blobs, mode, atime, mtime, owner, umask }` → `{ seq, bytes }`
 *     (writeFileJob below: one small file of a restore, written whole)
 *   `{ seq, op: 'restorePack', pack?, where, umask, runs }` → `{ seq, bytes }` (restorePackJob below:
 *     a stretch of one pack read once, each blob written to every file that needs it)
 * or `{ seq, error }`, transferring buffers instead of copying them.
 *
 * Scans write sealed blobs into a ring (init's ring, a SharedArrayBuffer) and send only
 * where they are; the main thread copies them into packs and gives the space back through
 * init's owed (bytes of the ring in use). A thread waits when the ring is full, which
 * bounds memory, and no buffer is allocated, transferred and collected per blob.
 * Plain JavaScript, so the thread starts fast and small whatever loader the main thread uses.
 */
import { parentPort } from 'node:worker_threads';
import { closeSync, constants as fsc, fchmodSync, fchownSync, futimesSync, openSync, readSync, writeSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { decodeBlobRaw } from './seal-core.mjs';
import { MAX_UNANSWERED, Scanner, diskUsage } from './scan-core.mjs';
import { STREAM, answerChunk, chunkAnswer } from './stream-ctl.mjs';

/** Set by the 'init' message. */
let encKey, macK, macR, scanner;

// Each job leaves a few MiB of dead buffers behind, and V8 collects an isolate's external
// memory only after tens of MiB have piled up — per thread. Collecting every few MiB keeps
// the process within its memory budget. Those buffers (cipher output, hashes, messages) die
// young, so a minor GC frees them; a full one, which cost 10-20 times as much (about 12 ms
// against well under 1 ms on the loaded bench machine, and a sixth of a codec thread's time in
// a profiled backup), runs only every GC_FULL_EVERY collections, for what got promoted.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');
const GC_EVERY_BYTES = 8 * 1024 * 1024;
const GC_FULL_EVERY = 8;
let sinceGc = 0;
let minorGcs = 0;

function collect(bytes) {
  sinceGc += bytes;
  if (sinceGc >= GC_EVERY_BYTES) {
    sinceGc = 0;
    if (++minorGcs % GC_FULL_EVERY === 0) gc();
    else gc({ type: 'minor' });
  }
}

/** Bytes of the ring in use, and the ring (see the top of this file); set by 'init'. */
let owed = null;
let ring = null;
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

function init(msg) {
  const keyBytes = Buffer.from(msg.key);
  encKey = keyBytes.subarray(0, 32);
  macK = keyBytes.subarray(32, 48);
  macR = keyBytes.subarray(48, 64);
  owed = msg.owed ? new Int32Array(msg.owed) : null;
  ring = msg.ring ? Buffer.from(msg.ring) : null;
  scanner = new Scanner(encKey, macK, macR, msg.compression, ringSlot);
}

/**
 * Chunks a stream the main thread copies into `input`, a shared ring (or that the thread reads
 * itself from `fd`, a pipe's blocking read end, which the main thread closes), through `cut`, a shared
 * cutting buffer, and seals the chunks it is told to. `ctl` (Int32Array over a
 * SharedArrayBuffer, layout in stream-ctl.mjs) holds the bytes waiting in the ring, the
 * stream's state (open, ended, aborted), a wake-up counter bumped after every change, and one
 * answer cell per unanswered chunk (answerChunk): seal it here, or nothing to do (the
 * repository has it, or another thread has sealed it: sealSharedJob).
 */
function streamJob(msg) {
  const input = msg.input ? Buffer.from(msg.input) : null;
  const ctl = new Int32Array(msg.ctl);
  let readPos = 0;
  /** Blocks until ready() returns something other than undefined, or throws once aborted. */
  const waitFor = (ready) => {
    for (;;) {
      const gen = Atomics.load(ctl, STREAM.WAKE);
      if (Atomics.load(ctl, STREAM.STATE) === STREAM.ABORTED) throw new Error('stream aborted');
      const r = ready();
      if (r !== undefined) return r;
      flush(); // the main thread may be waiting for what is in the batch
      Atomics.wait(ctl, STREAM.WAKE, gen, 1000);
    }
  };
  const fromRing = (buf, off, want, idle) => {
    let used = 0;
    waitFor(() => {
      // The state first: the main thread adds the last bytes before it marks the end.
      const ended = Atomics.load(ctl, STREAM.STATE) === STREAM.ENDED;
      used = Atomics.load(ctl, STREAM.USED);
      if (used > 0 || ended) return true;
      idle();
      return undefined;
    });
    if (used === 0) return 0;
    const n = Math.min(used, want, input.length - readPos);
    input.copy(buf, off, readPos, readPos + n);
    readPos = (readPos + n) % input.length;
    Atomics.sub(ctl, STREAM.USED, n);
    Atomics.notify(ctl, STREAM.USED);
    return n;
  };
  // Straight from a pipe (msg.fd, blocking): the bytes never pass through the main thread.
  // Answered chunks are sealed as new ones are cut, so a read never waits for sealing.
  const fromFd = (buf, off, want) => {
    const n = readSync(msg.fd, buf, off, want, null);
    if (Atomics.load(ctl, STREAM.STATE) === STREAM.ABORTED) throw new Error('stream aborted');
    return n;
  };
  const announce = (k, id, len, off) => {
    emit({ type: 'chunk', k, id, len, off });
    flush();
  };
  const decide = (k, wait) => (wait ? waitFor(() => chunkAnswer(ctl, k)) : chunkAnswer(ctl, k));
  batchSeq = msg.seq;
  let size;
  try {
    size = scanner.readStream(Buffer.from(msg.cut), msg.fd === undefined ? fromRing : fromFd, msg.params, announce, decide, emit, msg.tar === true);
  } finally {
    flush();
  }
  parentPort.postMessage({ seq: msg.seq, type: 'done', size });
}

/**
 * Seals chunk k of a stream another thread is cutting, reading it from that thread's cutting
 * buffer, then tells that thread the bytes are no longer needed (whether or not sealing
 * worked: a failure reaches the main thread through this job's error).
 */
function sealSharedJob(msg) {
  batchSeq = msg.seq;
  const ctl = new Int32Array(msg.ctl);
  try {
    scanner.sealChunk(Buffer.from(msg.cut, msg.off, msg.len), { type: 'blob', index: msg.k, id: msg.id }, emit);
  } finally {
    answerChunk(ctl, msg.k, false);
    flush();
  }
  parentPort.postMessage({ seq: msg.seq, type: 'done' });
}

if (STREAM.ANSWER_CELLS <= MAX_UNANSWERED) throw new Error('stream answer cells must outnumber unanswered chunks');

/**
 * Writes one small file of a restore whole: decodes its blobs (`{ id, stored, uncompressedLength }`
 * each, in order, or `{ id, pack, offset, length, uncompressedLength }` to read from a local pack), creates or truncates `path` without following a symlink, writes, and sets
 * mode, times and (when `owner` is set) owner on the open file. One message per file, where the
 * main thread would need a round trip to libuv's pool for each of about eight calls.
 * Answers `{ seq, bytes }`, or `{ seq, error, code }` with the system error's code.
 */
function writeFileJob(msg) {
  let bytes;
  try {
    const { fd, made } = createFile(msg.path, msg.mode);
    try {
      bytes = writeBlobs(fd, msg.blobs);
      finishFile(fd, msg, made, msg.umask);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    parentPort.postMessage({ seq: msg.seq, error: err.message, code: err.code });
    return;
  }
  parentPort.postMessage({ seq: msg.seq, bytes });
}

/**
 * Creates a restored file with its permission bits (`made`: true), or else truncates the file in
 * the way (opened 0600, its mode set afterwards); never through a symlink (ELOOP) or onto a
 * directory (EISDIR). A new file takes its mode from open, so a restore into an empty folder
 * makes no chmod per file.
 */
function createFile(path, mode) {
  try {
    return { fd: openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode & 0o777), made: true };
  } catch (err) {
    // EEXIST also for a symlink in the way: the open below refuses it (ELOOP).
    if (err.code !== 'EEXIST') throw err;
  }
  return { fd: openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o600), made: false };
}

/**
 * Sets a restored file's owner (when `meta.owner` is set), mode and times on its open
 * descriptor. A file made here (createFile) already has the owner a new file gets
 * (`meta.owner.asMade`) and, when the umask (if known) took none of its bits and it has no
 * setuid, setgid or sticky bit, its mode: those calls are skipped.
 */
function finishFile(fd, meta, made, umask) {
  if (meta.owner && !(made && meta.owner.asMade)) {
    try {
      fchownSync(fd, meta.owner.uid, meta.owner.gid);
    } catch {
      // as the path-based restore: an owner that cannot be set is left as is
    }
  }
  if (!made || umask === undefined || (meta.mode & (0o7000 | umask)) !== 0) fchmodSync(fd, meta.mode);
  futimesSync(fd, meta.atime, meta.mtime);
}

function writeAll(fd, buf, position) {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off, position === undefined ? null : position + off);
}

/**
 * Restores a stretch of one pack: `runs` of it (`{ offset, length, stored?, blobs }`, read from
 * the local file `pack` when `stored` is absent, each with one read), and each run's blobs
 * (`{ id, at, length, uncompressedLength, targets }`, `at` counted from the run's start)
 * decoded once and written to every target. A target `{ path, pos, meta }` is a file of this
 * one blob: created (or truncated), written, given meta's mode, times and owner. A target
 * `{ path, pos }` is a part of a larger file the caller created: written at pos. Answers
 * `{ seq, bytes }` (bytes written), or `{ seq, error, code, path }` at the first failure; its
 * parts written so far stay, as a failed restore leaves what it wrote.
 */
function restorePackJob(msg) {
  let packFd;
  let partPath;
  let partFd;
  let path;
  let bytes = 0;
  let failure;
  try {
    if (msg.pack !== undefined) {
      try {
        packFd = openSync(msg.pack, fsc.O_RDONLY);
      } catch (err) {
        throw Object.assign(new Error(`pack${msg.where}: ${err.message}`), { code: err.code === 'ENOENT' ? 'ENOPACK' : err.code });
      }
    }
    for (const run of msg.runs) {
      const stored = run.stored ? Buffer.from(run.stored.buffer, run.stored.byteOffset, run.stored.byteLength) : readRun(packFd, run.offset, run.length, msg.where);
      for (const b of run.blobs) {
        const r = decodeBlobRaw(encKey, macK, macR, b.id, stored.subarray(b.at, b.at + b.length), b.uncompressedLength, scratchOf, cipherScratchOf);
        if (r.error !== undefined) throw Object.assign(new Error(`blob ${b.id}${msg.where}: ${r.error}`), { code: 'EINTEGRITY' });
        for (const t of b.targets) {
          path = t.path;
          if (t.meta) {
            const { fd, made } = createFile(t.path, t.meta.mode);
            try {
              writeAll(fd, r.plain);
              finishFile(fd, t.meta, made, msg.umask);
            } finally {
              closeSync(fd);
            }
          } else {
            // A large file's blobs often lie next to each other in a pack: keep its descriptor.
            if (partPath !== t.path) {
              if (partFd !== undefined) closeSync(partFd);
              partFd = undefined;
              partFd = openSync(t.path, fsc.O_WRONLY | fsc.O_NOFOLLOW);
              partPath = t.path;
            }
            writeAll(partFd, r.plain, t.pos);
          }
          bytes += r.plain.length;
        }
        path = undefined;
        collect(b.length); // the decryption's pieces (runs are read into one buffer)
      }
    }
  } catch (err) {
    failure = err;
  } finally {
    if (partFd !== undefined) closeSync(partFd);
    if (packFd !== undefined) closeSync(packFd);
  }
  // Answered once every descriptor is closed: the caller may set times or rename next.
  parentPort.postMessage(failure ? { seq: msg.seq, error: failure.message, code: failure.code, path } : { seq: msg.seq, bytes });
}

/** The thread's buffer for runs read from packs, grown to the longest run met. */
let runScratch = null;

/** `length` bytes of a pack at `offset`, into the run scratch (valid until the next run). */
function readRun(fd, offset, length, where) {
  if (!runScratch || runScratch.length < length) runScratch = Buffer.allocUnsafeSlow(Math.max(length, 4 * 1024 * 1024));
  let got = 0;
  while (got < length) {
    const n = readSync(fd, runScratch, got, length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  if (got !== length) throw Object.assign(new Error(`pack${where} is truncated`), { code: 'EINTEGRITY' });
  return runScratch.subarray(0, length);
}

/**
 * Decodes blobs (as writeFileJob takes them) in order and writes their plaintext to `fd`; returns
 * the bytes written. Throws EINTEGRITY for a blob that fails verification, else the system error.
 */
function writeBlobs(fd, blobs) {
  let bytes = 0;
  for (const b of blobs) {
    const stored = b.stored ?? readPackRange(b);
    // The plaintext is written out and dropped: a compressed blob decompresses into the scratch.
    const r = decodeBlobRaw(encKey, macK, macR, b.id, stored, b.uncompressedLength, scratchOf, cipherScratchOf);
    if (r.error !== undefined) throw Object.assign(new Error(`blob ${b.id}${b.where ?? ''}: ${r.error}`), { code: 'EINTEGRITY' });
    writeAll(fd, r.plain);
    bytes += r.plain.length;
    // Fresh memory per blob: the stored bytes and the decryption's pieces (about as large).
    collect(2 * stored.length);
  }
  return bytes;
}

/**
 * The thread's buffers for blobs written out and dropped (writeBlobs, restorePackJob): one a
 * compressed blob is decompressed into, one blobs are decrypted into; each grown to the
 * largest blob met (chunks reach 8 MiB).
 */
let scratch = null;
function scratchOf(n) {
  if (!scratch || scratch.length < n) scratch = Buffer.allocUnsafeSlow(Math.max(n, 1024 * 1024));
  return scratch.subarray(0, n);
}
let cipherScratch = null;
function cipherScratchOf(n) {
  if (!cipherScratch || cipherScratch.length < n) cipherScratch = Buffer.allocUnsafeSlow(Math.max(n, 1024 * 1024));
  return cipherScratch.subarray(0, n);
}

/** Writers (`msg.writer`) whose write failed: later parts of theirs are refused, never written out of order. */
const failedWriters = new Set();

/**
 * Writes one part of a file's content into a descriptor the caller owns and closes: a pipe's
 * write end, whose blocking writes wait for its reader (pg_restore) here instead of on the
 * caller's event loop. Parts of one writer arrive in order; after a failed part, its later
 * parts are refused. Answers `{ seq, bytes }`, or `{ seq, error, code }`.
 */
function writeToJob(msg) {
  if (failedWriters.has(msg.writer)) {
    parentPort.postMessage({ seq: msg.seq, error: 'an earlier part of this content failed to write', code: 'EABORTED' });
    return;
  }
  try {
    parentPort.postMessage({ seq: msg.seq, bytes: writeBlobs(msg.fd, msg.blobs) });
  } catch (err) {
    failedWriters.add(msg.writer);
    parentPort.postMessage({ seq: msg.seq, error: err.message, code: err.code });
  }
}

/** A blob's stored bytes read straight from a local pack file (`{ pack, offset, length }`). */
function readPackRange(b) {
  const out = Buffer.allocUnsafeSlow(b.length);
  let fd;
  try {
    fd = openSync(b.pack, fsc.O_RDONLY);
  } catch (err) {
    throw Object.assign(new Error(`blob ${b.id}${b.where ?? ''}: ${err.message}`), { code: err.code === 'ENOENT' ? 'ENOPACK' : err.code });
  }
  try {
    let got = 0;
    while (got < b.length) {
      const n = readSync(fd, out, got, b.length - got, b.offset + got);
      if (n === 0) break;
      got += n;
    }
    if (got !== b.length) throw Object.assign(new Error(`blob ${b.id}${b.where ?? ''}: pack is truncated`), { code: 'EINTEGRITY' });
  } finally {
    closeSync(fd);
  }
  return out;
}

/** Large Buffers own their ArrayBuffer; small ones may live in Node's shared pool. */
function transferable(buf) {
  return buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength ? buf : Uint8Array.from(buf);
}

parentPort.on('message', (msg) => {
  try {
    if (msg.op === 'init') {
      if (scanner) throw new Error('codec thread is already in use');
      init(msg);
    } else if (!scanner) {
      throw new Error(`codec thread got ${String(msg.op)} before its key`);
    } else if (msg.op === 'scan') {
      batchSeq = msg.seq;
      try {
        scanner.scanBatch(msg.job, emit);
      } finally {
        flush();
      }
      parentPort.postMessage({ seq: msg.seq, type: 'done' });
    } else if (msg.op === 'stream') {
      streamJob(msg);
    } else if (msg.op === 'sealShared') {
      sealSharedJob(msg);
    } else if (msg.op === 'writeFile') {
      writeFileJob(msg);
    } else if (msg.op === 'writeTo') {
      writeToJob(msg);
    } else if (msg.op === 'restorePack') {
      restorePackJob(msg);
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
      throw new Error(`unknown codec operation ${String(msg.op)}`);
    }
  } catch (err) {
    parentPort.postMessage({ seq: msg.seq, error: err instanceof Error ? err.message : String(err) });
  }
});
