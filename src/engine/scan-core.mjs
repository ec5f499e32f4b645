/**
 * Scan core: what a codec thread does with a batch of directory entries during a backup. For
 * each name it lstats the entry; a regular file that differs from the parent snapshot's (or
 * has none) is read with synchronous reads into a reused buffer, cut by FastCDC, and every
 * chunk hashed, compressed and sealed right there. The main thread only walks directories,
 * keeps the blobs the repository lacks and builds trees: it makes no per-file system calls and
 * sends one message per batch instead of one per chunk. Plain JavaScript, so the threads
 * start without a TypeScript loader.
 *
 * Output, through emit(message, transferList), in entry order:
 *   { type: 'blob', index, id, len, uncompressedLength, plainLength, data | off, cost }
 *       one per chunk read: the stored bytes in `data`, or at `off` in the thread's ring
 *       (see codec-thread.mjs), taking `cost` bytes of it
 *   { type: 'entry', index, stat, content?, size?, unchanged?, linktarget? }
 *   { type: 'entry', index, gone: true }                                  vanished since readdir
 *   { type: 'entry', index, error: { code, message } }
 * Chunks are sealed before the main thread knows whether the repository has them (it drops
 * those it has); only new or changed files are read, so the waste is small. Streams are cut
 * here too (readStream), but a stream is read whole every time, so its chunks are sealed only
 * once the main thread has said the repository lacks them; their blob messages carry the
 * chunk's number in the stream as `index`.
 */
import { closeSync, constants, lstatSync, openSync, readSync, readdirSync, readlinkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { cutBufferSize, cutChunks, tarEntryCuts } from './chunker-core.mjs';
import { encodeBlobInto } from './seal-core.mjs';
import { formatTime } from './time.mjs';

/**
 * Most stream chunks waiting for the main thread's answer (see readStream); the answers'
 * cells in codec-thread.mjs must outnumber them.
 */
export const MAX_UNANSWERED = 256;

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

/** Separates the fields of a signature. */
const SEP = '\x1f';

/**
 * An entry's *signature* for the files cache (files-cache.ts): every lstat field its tree node
 * is made of (times in ns), and a symlink's target, in one string, from a bigint lstat. Equal
 * signatures make equal nodes (given the same content or subtree), so a directory whose
 * entries all kept theirs keeps its tree. Cheaper than statFields: no time is formatted.
 * Fields: kind, mode, mtime, atime, ctime, uid, gid, ino, dev, nlink, size, rdev, linktarget.
 */
export function statSignature(st, linktarget) {
  return `${kindOf(st)}${SEP}${st.mode}${SEP}${st.mtimeNs}${SEP}${st.atimeNs}${SEP}${st.ctimeNs}${SEP}${st.uid}${SEP}${st.gid}${SEP}${st.ino}${SEP}${st.dev}${SEP}${st.nlink}${SEP}${st.size}${SEP}${st.rdev}${SEP}${linktarget ?? ''}`;
}

/** The lstat fields (as statFields gives them) and symlink target a signature holds. */
export function signatureStat(sig) {
  const f = sig.split(SEP);
  const stat = {
    kind: f[0], mode: Number(f[1]), mtime: formatTime(BigInt(f[2])), atime: formatTime(BigInt(f[3])), ctime: formatTime(BigInt(f[4])),
    uid: Number(f[5]), gid: Number(f[6]), ino: Number(f[7]), dev: Number(f[8]), nlink: Number(f[9]), size: Number(f[10]), rdev: Number(f[11]),
  };
  // The target is last and may itself hold the separator.
  return { stat, linktarget: f.length > 12 ? f.slice(12).join(SEP) : '' };
}

/** A chunk's blob id: its SHA-256, in hex. */
function chunkId(chunk) {
  return createHash('sha256').update(chunk).digest('hex');
}

/**
 * Per-thread state: the key (encKey, macK, macR), whether blobs may be compressed, and
 * `alloc(n)`, which returns where the next blob's n stored bytes go: `{ view }` for memory of
 * its own (sent as `data`), or `{ view, off, cost }` for a slot of a shared ring. alloc may
 * block until the main thread has made room.
 */
export class Scanner {
  constructor(encKey, macK, macR, compression, alloc) {
    this.encKey = encKey;
    this.macK = macK;
    this.macR = macR;
    this.compression = compression;
    this.alloc = alloc;
    this.scratch = null;
  }

  /**
   * Processes one batch: `{ dir, names, parents, sigs?, racyNs, params, cuts? }` where
   * parents[i] is null or what the last backup recorded for names[i] ({ size, ino, dev, mtime,
   * ctime }, times as trees store them), sigs[i] null or its signature in the files cache,
   * params the chunker's and cuts[i] null or the forced cut points of names[i] (cutChunks). A
   * file matching either is not read unless its mtime or ctime is at or after racyNs (ns): it may have changed since without either moving. An entry whose signature is
   * unchanged is reported as `{ type: 'entry', index, same: true }`, without its lstat.
   * With `maxBytes`, a file to read that would take the bytes this batch has read past it is
   * left unread and reported as `{ type: 'entry', index, later: size }`: the caller scans it in
   * another batch, so that a folder of large files spreads over the threads instead of
   * keeping one busy while the others wait.
   */
  scanBatch(job, emit) {
    let readBytes = 0;
    for (let index = 0; index < job.names.length; index++) {
      const path = join(job.dir, job.names[index]);
      try {
        let st = lstatSync(path, { bigint: true, throwIfNoEntry: false });
        if (!st) {
          emit({ type: 'entry', index, gone: true });
          continue;
        }
        const sig = job.sigs?.[index] ?? null;
        if (st.isSymbolicLink()) {
          const linktarget = readlinkSync(path);
          // readlink may set the link's atime (relatime): the lstat after it is what the next
          // backup finds, so an unchanged link keeps its node (and its directory its tree).
          const after = lstatSync(path, { bigint: true, throwIfNoEntry: false });
          if (after?.isSymbolicLink()) st = after;
          const now = statSignature(st, linktarget);
          if (sig !== null && sig === now) emit({ type: 'entry', index, same: true });
          else emit({ type: 'entry', index, stat: statFields(st), sig: now, linktarget });
        } else if (!st.isFile()) {
          const now = statSignature(st);
          if (sig !== null && sig === now) emit({ type: 'entry', index, same: true });
          else emit({ type: 'entry', index, stat: statFields(st), sig: now });
        } else {
          const now = statSignature(st);
          const trusted = job.racyNs !== undefined && st.mtimeNs < job.racyNs && st.ctimeNs < job.racyNs;
          if (trusted && sig !== null && sig === now) {
            emit({ type: 'entry', index, same: true });
            continue;
          }
          const stat = statFields(st);
          const old = job.parents[index] ?? (sig !== null ? signatureStat(sig).stat : null);
          if (
            trusted && old && old.size === stat.size && old.ino === stat.ino && old.dev === stat.dev && old.mtime === stat.mtime && old.ctime === stat.ctime
          ) {
            emit({ type: 'entry', index, stat, sig: now, unchanged: true });
          } else if (job.maxBytes !== undefined && readBytes > 0 && readBytes + stat.size > job.maxBytes) {
            emit({ type: 'entry', index, later: stat.size });
          } else {
            const { content, size } = this.readFile(path, stat.size, job.params, index, emit, job.cuts?.[index] ?? undefined);
            readBytes += size;
            emit({ type: 'entry', index, stat, sig: now, content, size });
          }
        }
      } catch (err) {
        if (err.code === 'ENOENT') emit({ type: 'entry', index, gone: true });
        else emit({ type: 'entry', index, error: { code: err.code, message: err.message } });
      }
    }
  }

  /** The cutting buffer, kept for the thread's lifetime (a maximum chunk plus READ_AHEAD). */
  buffer(params) {
    const n = cutBufferSize(params);
    if (!this.scratch || this.scratch.length < n) this.scratch = Buffer.allocUnsafeSlow(n);
    return this.scratch;
  }

  /** Reads, chunks (with forced cuts, if any: see cutChunks) and seals one file; returns its blob ids and the bytes read. */
  readFile(path, statSize, params, index, emit, cuts) {
    const fd = openForReading(path);
    try {
      const content = [];
      const read = (buf, off, want) => readSync(fd, buf, off, want, null);
      const onChunk = (chunk) => {
        const id = chunkId(chunk);
        this.sealChunk(chunk, { type: 'blob', index, id }, emit);
        content.push(id);
      };
      const size = cutChunks(this.buffer(params), read, statSize, params, onChunk, () => {}, cuts);
      return { content, size };
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Cuts a stream into chunks, through `buf` (at least cutBufferSize bytes; shared memory, so
   * that other threads may seal chunks straight from it), and seals the ones it is told to,
   * never speculatively: each chunk's id goes to the main thread at once (announce(k, id, len,
   * off), k counting from 0, off its place in buf) and the chunk stays in buf until answered.
   * decide(k, wait) returns true (seal it here), false (nothing to do: the repository has it,
   * or another thread sealed it) or, unless wait, undefined while unanswered. Answers may come
   * in any order; hashing goes on while they travel. read(buf, off, want, idle) delivers the
   * bytes as cutChunks() describes and calls idle() before it blocks, which seals what has been
   * answered meanwhile. `tar`: the stream is a tar archive, cut at its entries too
   * (tarEntryCuts). Returns the stream's size.
   */
  readStream(buf, read, params, announce, decide, emit, tar = false) {
    let pending = [];
    let k = 0;
    const settle = (wait) => {
      const left = [];
      for (const p of pending) {
        const store = decide(p.k, wait);
        if (store === undefined) left.push(p);
        else if (store) this.sealChunk(p.chunk, { type: 'blob', index: p.k, id: p.id }, emit);
      }
      pending = left;
    };
    const onChunk = (chunk) => {
      const id = chunkId(chunk);
      announce(k, id, chunk.length, chunk.byteOffset - buf.byteOffset);
      pending.push({ chunk, k: k++, id });
      settle(pending.length >= MAX_UNANSWERED);
    };
    const idle = () => settle(false);
    const entries = tar ? tarEntryCuts() : null;
    const readSome = (b, off, want) => {
      const n = read(b, off, want, idle);
      entries?.push(b.subarray(off, off + n));
      return n;
    };
    const size = cutChunks(buf, readSome, Infinity, params, onChunk, () => settle(true), entries?.cuts);
    settle(true);
    return size;
  }

  /** Seals a chunk and emits message m with where its stored bytes are. */
  sealChunk(chunk, m, emit) {
    const { slot, uncompressedLength } = encodeBlobInto(this.encKey, this.macK, this.macR, chunk, this.compression, this.alloc);
    m.len = slot.view.length;
    m.uncompressedLength = uncompressedLength;
    m.plainLength = chunk.length;
    if (slot.off === undefined) {
      m.data = slot.view;
      emit(m, [slot.view.buffer]);
    } else {
      m.off = slot.off;
      m.cost = slot.cost;
      emit(m);
    }
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
