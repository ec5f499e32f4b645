/**
 * Chunker: content-defined chunking with FastCDC (Xia et al., 2016) and normalized chunking.
 * A *chunk* is a run of bytes whose end is chosen by the content itself: a rolling "gear" hash
 * over the last 32 bytes is tested against a mask, so inserting bytes early in a file moves only
 * the chunks around the edit and later chunks keep their boundaries (and so their blob ids).
 *
 * The algorithm is named `fastcdc-v1-<min>-<avg>-<max>` in the repository config; the gear table
 * comes from a fixed seed and must never change for a given name.
 */
import { GEAR, masksFor } from './chunker-core.mjs';

export { GEAR };

/** Chunk size limits in bytes. avg must be a power of two. */
export interface ChunkerParams {
  min: number;
  avg: number;
  max: number;
}

/** The default: 512 KiB minimum, 1 MiB average, 8 MiB maximum. */
export const DEFAULT_CHUNKER_PARAMS: ChunkerParams = { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 };

function sizeName(n: number): string {
  if (n % (1024 * 1024) === 0) return `${n / (1024 * 1024)}m`;
  if (n % 1024 === 0) return `${n / 1024}k`;
  return String(n);
}

/** The name recorded in the repository config, e.g. `fastcdc-v1-512k-1m-8m`. */
export function chunkerName(p: ChunkerParams): string {
  return `fastcdc-v1-${sizeName(p.min)}-${sizeName(p.avg)}-${sizeName(p.max)}`;
}

function parseSize(s: string): number {
  const m = /^(\d+)([km]?)$/.exec(s);
  if (!m) throw new Error(`bad chunker size ${s}`);
  return Number(m[1]) * (m[2] === 'm' ? 1024 * 1024 : m[2] === 'k' ? 1024 : 1);
}

/** Parses a chunker name back into parameters; throws on names this version does not know. */
export function parseChunkerName(name: string): ChunkerParams {
  const m = /^fastcdc-v1-(\w+)-(\w+)-(\w+)$/.exec(name);
  if (!m) throw new Error(`unknown chunker ${name}`);
  const p = { min: parseSize(m[1]), avg: parseSize(m[2]), max: parseSize(m[3]) };
  validateParams(p);
  return p;
}

function validateParams(p: ChunkerParams): void {
  if (!(p.min > 64 && p.min < p.avg && p.avg < p.max) || (p.avg & (p.avg - 1)) !== 0) {
    throw new Error(`invalid chunker parameters ${JSON.stringify(p)}`);
  }
}

/** The hash at the end of the last scan() that found no cut (a scratch register). */
let scanHash = 0;

/**
 * Rolls the gear hash over buf[start, end) from hash h; returns the index just after the first
 * position whose hash has all `mask` bits clear, or -1 (leaving the hash in scanHash). Kept a
 * small standalone function because V8 optimizes it far better than the same loop in push().
 */
function scan(buf: Uint8Array, start: number, end: number, mask: number, h: number, gear: Int32Array): number {
  for (let i = start; i < end; i++) {
    h = ((h << 1) + gear[buf[i]]) | 0;
    if ((h & mask) === 0) return i + 1;
  }
  scanHash = h;
  return -1;
}

/**
 * Splits a byte stream into chunks. Feed data with push(), which returns the chunks completed so
 * far; call finish() at the end for the last, short chunk.
 */
export class Chunker {
  private pending: Buffer[] = [];
  private size = 0;
  private hash = 0;
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(private readonly params: ChunkerParams = DEFAULT_CHUNKER_PARAMS) {
    validateParams(params);
    ({ maskS: this.maskS, maskL: this.maskL } = masksFor(params.avg));
  }

  /** Adds data; returns the chunks that end inside it. The data buffer must not be reused. */
  push(buf: Buffer): Buffer[] {
    return this.pushParts(buf).map((parts) => (parts.length === 1 ? parts[0] : Buffer.concat(parts)));
  }

  /**
   * Like push(), but returns each chunk as the list of input slices it spans, saving a copy
   * for callers that hash and copy the parts anyway.
   */
  pushParts(buf: Buffer): Buffer[][] {
    const out: Buffer[][] = [];
    const { min, avg, max } = this.params;
    const maskS = this.maskS;
    const maskL = this.maskL;
    const gear = GEAR;
    let start = 0;
    let i = 0;
    let h = this.hash;
    const len = buf.length;
    while (i < len) {
      const base = this.size - start; // chunk length at index i is base + i
      if (base + i < min) {
        // FastCDC skips the first `min` bytes without hashing: no cut can fall there.
        i = Math.min(len, min - base);
        h = 0;
        continue;
      }
      let cut = -1;
      const endS = Math.min(len, avg - base);
      if (i < endS) {
        cut = scan(buf, i, endS, maskS, h, gear);
        if (cut < 0) {
          h = scanHash;
          i = endS;
        }
      }
      if (cut < 0) {
        const endL = Math.min(len, max - base);
        if (i < endL) {
          cut = scan(buf, i, endL, maskL, h, gear);
          if (cut < 0) {
            h = scanHash;
            i = endL;
          }
        }
        if (cut < 0 && i === max - base) cut = i;
      }
      if (cut < 0) break;
      const piece = buf.subarray(start, cut);
      out.push(this.pending.length === 0 ? [piece] : [...this.pending, piece]);
      this.pending = [];
      this.size = 0;
      h = 0;
      start = cut;
      i = cut;
    }
    if (start < len) {
      this.pending.push(buf.subarray(start));
      this.size += len - start;
    }
    this.hash = h;
    return out;
  }

  /** Returns the final chunk (bytes since the last cut), or null when there are none. */
  finish(): Buffer | null {
    const parts = this.finishParts();
    return parts && (parts.length === 1 ? parts[0] : Buffer.concat(parts));
  }

  /** Like finish(), as slices. */
  finishParts(): Buffer[] | null {
    if (this.size === 0) return null;
    const last = this.pending;
    this.pending = [];
    this.size = 0;
    this.hash = 0;
    return last;
  }
}
