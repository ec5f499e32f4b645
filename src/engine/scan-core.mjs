/**
 * Scan core: what a codec thread does with a batch of directory entries during a backup. For
 * each name it lstats the entry; a regular file that differs from the parent snapshot's (or
 * has none) is read with synchronous reads into a reused buffer, cut by FastCDC, and every
 * chunk hashed, compressed and sealed right there. The main thread only walks directories,
 * keeps the blobs the repository lacks and builds trees: it makes no per-file system calls and
 * sends one message per batch instead of one per chunk. Plain JavaScript, shared by the
 * threads and the inline (no thread) mode.
 *
 * Output, through emit(message, transferList), in entry order:
 *   { type: 'blob', index, id, len, uncompressedLength, plainLength, data | off, cost }
 *       one per chunk read: the stored bytes in `data`, or at `off` in the thread's ring
 *       (see blob-worker.mjs), taking `cost` bytes of it
 *   { type: 'entry', index, stat, content?, size?, unchanged?, linktarget? }
 *   { type: 'entry', index, gone: true }                                  vanished since readdir
 *   { type: 'entry', index, error: { code, message } }
 * Chunks are sealed before the main thread knows whether the repository has them (it drops
 * those it has); only new or changed files are read, so the waste is small.
 */
import { closeSync, constants, lstatSync, openSync, readSync, readdirSync, readlinkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { findCut, masksFor } from './chunker-core.mjs';
import { encodeBlobInto, freshSlot } from './seal-core.mjs';
import { formatTime } from './time.mjs';

/** Room beyond a maximum chunk in the read buffer (see Scanner.scratch). */
const READ_AHEAD = 2 * 1024 * 1024;

/** Linux only; 0 elsewhere. */
const O_NOATIME = constants.O_NOATIME ?? 0;

/**
 * Opens without updating the access time, as restic does, so that reading a file does not
 * change its metadata for the next backup; falls back for files we do not own (EPERM).
 */
function openForReading(path) {
  if (O_NOATIME) {
    try {
      return openSync(path, constants.O_RDONLY | O_NOATIME);
    } catch (err) {
      if (err.code !== 'EPERM') throw err;
    }
  }
  return openSync(path, constants.O_RDONLY);
}

function kindOf(st) {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'chardev';
  return 'dev';
}

/** The lstat fields a tree node records, times formatted as trees store them. */
export function statFields(st) {
  return {
    kind: kindOf(st),
    mode: Number(st.mode),
    mtime: formatTime(st.mtimeNs),
    atime: formatTime(st.atimeNs),
    ctime: formatTime(st.ctimeNs),
    uid: Number(st.uid),
    gid: Number(st.gid),
    ino: Number(st.ino),
    dev: Number(st.dev),
    nlink: Number(st.nlink),
    size: Number(st.size),
    rdev: Number(st.rdev),
  };
}

/**
 * Per-thread state: the key (encKey, macK, macR), whether blobs may be compressed, and
 * `alloc(n)`, which returns where the next blob's n stored bytes go: `{ view }` for memory of
 * its own (sent as `data`), or `{ view, off, cost }` for a slot of a shared ring. alloc may
 * block until the main thread has made room.
 */
export class Scanner {
  constructor(encKey, macK, macR, compression, alloc = freshSlot) {
    this.encKey = encKey;
    this.macK = macK;
    this.macR = macR;
    this.compression = compression;
    this.alloc = alloc;
    /**
     * Read buffer: a maximum chunk plus 2 MiB, so every refill after the unconsumed rest (always
     * shorter than a maximum chunk) reads at least 2 MiB. The chunk that straddles a refill is
     * scanned again from its start, a small price for half the memory of two maximum chunks.
     */
    this.scratch = null;
  }

  /**
   * Processes one batch: `{ dir, names, parents, params }` where parents[i] is null or the
   * parent snapshot's { size, ino, dev, mtimeNs } for names[i], and params the chunker's.
   */
  scanBatch(job, emit) {
    const masks = masksFor(job.params.avg);
    for (let index = 0; index < job.names.length; index++) {
      const path = join(job.dir, job.names[index]);
      try {
        const st = lstatSync(path, { bigint: true, throwIfNoEntry: false });
        if (!st) {
          emit({ type: 'entry', index, gone: true });
          continue;
        }
        const stat = statFields(st);
        if (stat.kind === 'symlink') {
          emit({ type: 'entry', index, stat, linktarget: readlinkSync(path) });
        } else if (stat.kind !== 'file') {
          emit({ type: 'entry', index, stat });
        } else {
          const old = job.parents[index];
          if (old && old.size === stat.size && old.ino === stat.ino && old.dev === stat.dev && old.mtimeNs === st.mtimeNs) {
            emit({ type: 'entry', index, stat, unchanged: true });
          } else {
            const { content, size } = this.readFile(path, stat.size, job.params, masks, index, emit);
            emit({ type: 'entry', index, stat, content, size });
          }
        }
      } catch (err) {
        if (err.code === 'ENOENT') emit({ type: 'entry', index, gone: true });
        else emit({ type: 'entry', index, error: { code: err.code, message: err.message } });
      }
    }
  }

  /** Reads, chunks and seals one file; returns its blob ids and the bytes read. */
  readFile(path, statSize, params, masks, index, emit) {
    const fd = openForReading(path);
    try {
      if (!this.scratch || this.scratch.length < params.max + READ_AHEAD) this.scratch = Buffer.allocUnsafeSlow(params.max + READ_AHEAD);
      const buf = this.scratch;
      const content = [];
      let filled = 0;
      let pos = 0;
      let size = 0;
      let eof = false;
      for (;;) {
        while (!eof && filled < buf.length) {
          const want = buf.length - filled;
          const n = readSync(fd, buf, filled, want, null);
          filled += n;
          size += n;
          // A short read at the size lstat gave is the end: skip the read that would return 0.
          if (n === 0 || (n < want && size >= statSize)) eof = true;
        }
        for (;;) {
          const cut = findCut(buf, pos, filled, params, masks, eof);
          if (cut <= pos) break;
          content.push(this.emitChunk(buf.subarray(pos, cut), index, emit));
          pos = cut;
        }
        if (eof) break;
        buf.copyWithin(0, pos, filled);
        filled -= pos;
        pos = 0;
      }
      return { content, size };
    } finally {
      closeSync(fd);
    }
  }

  emitChunk(chunk, index, emit) {
    const id = createHash('sha256').update(chunk).digest('hex');
    const { slot, uncompressedLength } = encodeBlobInto(this.encKey, this.macK, this.macR, chunk, this.compression, this.alloc);
    const m = { type: 'blob', index, id, len: slot.view.length, uncompressedLength, plainLength: chunk.length };
    if (slot.off === undefined) {
      m.data = slot.view;
      emit(m, [slot.view.buffer]);
    } else {
      m.off = slot.off;
      m.cost = slot.cost;
      emit(m);
    }
    return id;
  }
}

/**
 * Sums the sizes of the regular files under the given paths (files or directories), for a
 * backup's progress total. Unreadable entries count as empty.
 */
export function diskUsage(paths) {
  let total = 0;
  const walk = (path) => {
    let entries;
    try {
      entries = readdirSync(path, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(path, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const st = lstatSync(p, { throwIfNoEntry: false });
        if (st?.isFile()) total += st.size;
      }
    }
  };
  for (const path of paths) {
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (st?.isFile()) total += st.size;
    else if (st?.isDirectory()) walk(path);
  }
  return total;
}
