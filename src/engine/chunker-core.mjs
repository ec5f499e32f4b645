/**
 * Chunker core: FastCDC's gear table and a stateless cut finder, in plain JavaScript so the
 * file reader threads (scan-core.mjs) use exactly the bytes-to-boundaries rule the streaming
 * Chunker (chunker.ts) uses. Both must cut identically: the golden vector test pins the table
 * and the boundaries.
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
 */
export function findCut(buf, start, end, params, masks, eof) {
  const { min, avg, max } = params;
  const n = end - start;
  if (n <= min) return eof ? end : -1;
  const gear = GEAR;
  const maskS = masks.maskS;
  const maskL = masks.maskL;
  let h = 0;
  let i = start + min;
  const endS = Math.min(end, start + avg);
  for (; i < endS; i++) {
    h = ((h << 1) + gear[buf[i]]) | 0;
    if ((h & maskS) === 0) return i + 1;
  }
  const endL = Math.min(end, start + max);
  for (; i < endL; i++) {
    h = ((h << 1) + gear[buf[i]]) | 0;
    if ((h & maskL) === 0) return i + 1;
  }
  if (i === start + max) return i;
  return eof ? end : -1;
}
