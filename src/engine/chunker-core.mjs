/**
 * Chunker core: FastCDC (Xia et al., 2016) with normalized chunking, in plain JavaScript for
 * the codec threads (scan-core.mjs), which cut files and streams. A rolling "gear" hash over the
 * last 32 bytes is tested against a mask, so inserting bytes early in a file moves only the
 * chunks around the edit. The golden vector test pins the table and the boundaries: they must
 * never change for a given chunker name (chunker.ts).
 */
import { createHash } from 'node:crypto';

const GEAR_SEED = 'backplane-fastcdc-v1-gear';

/** The gear table: 256 pseudo-random 32-bit values derived from a fixed seed. */
export const GEAR = (() => {
  const t = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    const d = createHash('sha256').update(`${GEAR_SEED}:${i}`).digest();
    t[i] = d.readInt32LE(0);
  }
  return t;
})();

/** A mask of the top `bits` bits of a 32-bit word; the top bits mix the most recent bytes. */
export function topMask(bits) {
  return (~0 << (32 - bits)) | 0;
}

/** The two masks of normalized chunking (level 2): harder to cut before the average, easier after. */
export function masksFor(avg) {
  const bits = Math.log2(avg);
  return { maskS: topMask(bits + 2), maskL: topMask(bits - 2) };
}

/**
 * Finds the end of the chunk that starts at buf[start], looking at buf[start, end). Returns the
 * index just after the chunk, or -1 when the bytes given are too few to decide and more may
 * follow (eof false). At eof, the rest is the last chunk. Hashing starts at `min` bytes into
 * the chunk with a zero hash, as FastCDC skips the first `min` bytes.
 *
 * `resume` (optional, `{ rel: -1, h: 0 }` to start) carries the hash across calls for the same
 * chunk: after a -1 it holds how far the chunk was hashed, so the next call with more bytes
 * goes on from there instead of hashing the chunk again from its start.
 */
export function findCut(buf, start, end, params, masks, eof, resume) {
  const { min, avg, max } = params;
  const n = end - start;
  if (n <= min) return eof ? end : -1;
  const gear = GEAR;
  const maskS = masks.maskS;
  const maskL = masks.maskL;
  let h = 0;
  let i = start + min;
  if (resume && resume.rel > 0) {
    i = start + resume.rel;
    h = resume.h;
  }
  let cut = -1;
  const endS = Math.min(end, start + avg);
  for (; i < endS; i++) {
    h = ((h << 1) + gear[buf[i]]) | 0;
    if ((h & maskS) === 0) {
      cut = i + 1;
      break;
    }
  }
  if (cut < 0) {
    const endL = Math.min(end, start + max);
    for (; i < endL; i++) {
      h = ((h << 1) + gear[buf[i]]) | 0;
      if ((h & maskL) === 0) {
        cut = i + 1;
        break;
      }
    }
    if (cut < 0 && i === start + max) cut = i;
  }
  if (cut < 0 && eof) cut = end;
  if (resume) {
    resume.rel = cut < 0 ? i - start : -1;
    resume.h = h;
  }
  return cut;
}

/** Room beyond a maximum chunk in a cutting buffer: each refill reads at least this much. */
export const READ_AHEAD = 2 * 1024 * 1024;

/** The buffer size cutChunks() needs for these parameters. */
export function cutBufferSize(params) {
  return params.max + READ_AHEAD;
}

/**
 * Cuts everything read() delivers into chunks, through `buf` (at least cutBufferSize bytes).
 * read(buf, off, want) stores up to `want` bytes at buf[off] and returns how many, 0 at the
 * end; a short read once `knownSize` bytes have come also ends it (a file's size from lstat;
 * Infinity for a stream). onChunk(view) gets each chunk in order, a view into buf that stays
 * valid until beforeMove() is called, just before the bytes after the last chunk are moved to
 * the front. Returns the number of bytes read.
 *
 * `cuts` (optional, ascending byte offsets) are *forced cut points*: a chunk also ends at each,
 * as if the input ended there, and the next one starts afresh. Each chunk then depends only on
 * the bytes from its start up to the next forced cut, so a file that grows at its end (a WAL
 * segment stored again and again while it fills) and is cut where its earlier copies ended
 * yields their chunks again for every byte before that point: only its new tail is new.
 */
export function cutChunks(buf, read, knownSize, params, onChunk, beforeMove, cuts) {
  const masks = masksFor(params.avg);
  const resume = { rel: -1, h: 0 };
  let filled = 0;
  let pos = 0;
  let size = 0;
  let eof = false;
  let next = 0;
  for (;;) {
    // At least READ_AHEAD new bytes per pass (or up to the end), so a chunk takes few passes.
    const target = Math.min(buf.length, filled + READ_AHEAD);
    while (!eof && filled < target) {
      const want = buf.length - filled;
      const n = read(buf, filled, want);
      filled += n;
      size += n;
      // A short read at the size lstat gave is the end: skip the read that would return 0.
      if (n === 0 || (n < want && size >= knownSize)) eof = true;
    }
    for (;;) {
      let end = filled;
      let last = eof;
      if (cuts) {
        // buf[0] is the input's byte (size - filled).
        const base = size - filled;
        while (next < cuts.length && cuts[next] <= base + pos) next++;
        if (next < cuts.length && cuts[next] - base <= filled) {
          end = cuts[next] - base;
          last = true;
        }
      }
      const cut = findCut(buf, pos, end, params, masks, last, resume);
      if (cut <= pos) break;
      onChunk(buf.subarray(pos, cut));
      pos = cut;
    }
    if (eof) return size;
    // The bytes after the last cut are less than a maximum chunk, so moving them to the front
    // leaves at least READ_AHEAD free.
    if (buf.length - filled < READ_AHEAD) {
      beforeMove();
      buf.copyWithin(0, pos, filled);
      filled -= pos;
      pos = 0;
    }
  }
}

/** Tar entry types whose header is followed by another header of the same entry (GNU long names, pax). */
const TAR_PREFIX_TYPES = new Set(['L', 'K', 'x', 'g'].map((c) => c.charCodeAt(0)));

/**
 * Forced cut points at the entries of a tar archive read as a stream (pg_basebackup's base.tar):
 * a chunk never spans two entries, as restic chunks each file on its own, so an entry whose
 * header and content did not change is the same blobs again whatever its neighbours did, and a
 * changed small file costs itself, not the megabyte of unchanged neighbours content-defined
 * chunking put in its chunk. push(bytes) is given every byte of the stream in order, before the
 * chunker sees them; `cuts` (ascending, growing) then holds the offset of each entry's first
 * header once the stream reached it, which is before cutChunks looks there. Stops at the
 * archive's end (a zero block) or at anything that is not a ustar/GNU header: from there on the
 * chunker cuts by content alone.
 */
export function tarEntryCuts() {
  const cuts = [];
  const head = Buffer.alloc(512);
  let headFill = 0;
  /** Offset of the next header. */
  let at = 0;
  /** Bytes pushed so far. */
  let seen = 0;
  let prefix = false;
  let stopped = false;
  const push = (bytes) => {
    let i = 0;
    while (!stopped && i < bytes.length) {
      const pos = seen + i;
      if (pos < at) {
        i += Math.min(bytes.length - i, at - pos);
        continue;
      }
      if (headFill === 0 && at > 0 && !prefix) cuts.push(at);
      const take = Math.min(512 - headFill, bytes.length - i);
      head.set(bytes.subarray(i, i + take), headFill);
      headFill += take;
      i += take;
      if (headFill < 512) break;
      headFill = 0;
      const size = tarEntrySize(head);
      if (size < 0) {
        stopped = true;
        break;
      }
      prefix = TAR_PREFIX_TYPES.has(head[156]);
      at += 512 + Math.ceil(size / 512) * 512;
    }
    seen += bytes.length;
  };
  return { cuts, push };
}

/** The content size a tar header announces; -1 for a zero block or a header whose checksum is wrong. */
function tarEntrySize(h) {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  const stored = parseInt(h.toString('latin1', 148, 156).replace(/[\0 ]+$/, '').trim(), 8);
  if (sum === 256 || sum !== stored) return -1;
  // Base-256 (GNU) for sizes beyond the 11 octal digits' 8 GiB.
  if (h[124] & 0x80) {
    let n = h[124] & 0x7f;
    for (let i = 125; i < 136; i++) n = n * 256 + h[i];
    return n;
  }
  return parseInt(h.toString('latin1', 124, 136).replace(/[\0 ]+$/, '').trim() || '0', 8);
}
