import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { DEFAULT_CHUNKER_PARAMS, GEAR, chunkerName, parseChunkerName, type ChunkerParams } from '../../src/engine/chunker.ts';
import { hashId } from '../../src/engine/ids.ts';
import { cutBufferSize, cutChunks, findCut, masksFor } from '../../src/engine/chunker-core.mjs';
import { seededBytes } from './helpers.ts';

/** Cuts data as the codec threads cut a stream whose reads return at most pieceSize bytes. */
function chunkAll(data: Buffer, params: ChunkerParams, pieceSize: number, cuts?: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  const read = (buf: Buffer, off: number, want: number): number => {
    const n = Math.min(want, pieceSize, data.length - at);
    data.copy(buf, off, at, at + n);
    at += n;
    return n;
  };
  let handedOut: Buffer[] = [];
  const size = cutChunks(Buffer.alloc(cutBufferSize(params)), read, Infinity, params, (c) => handedOut.push(c), () => {
    out.push(...handedOut.map((c) => Buffer.from(c))); // views die when the buffer moves
    handedOut = [];
  }, cuts);
  out.push(...handedOut.map((c) => Buffer.from(c)));
  expect(size).toBe(data.length);
  return out;
}

describe('FastCDC chunker', () => {
  const data = seededBytes('chunker', 24 * 1024 * 1024);

  it('names its default parameters', () => {
    expect(chunkerName(DEFAULT_CHUNKER_PARAMS)).toBe('fastcdc-v1-512k-1m-8m');
    expect(parseChunkerName('fastcdc-v1-512k-1m-8m')).toEqual(DEFAULT_CHUNKER_PARAMS);
  });

  // Golden values: fastcdc-v1 must cut the same bytes forever, or dedup against old snapshots
  // silently stops working. If this fails, the change needs a new chunker name, not new values.
  it('keeps fastcdc-v1 boundaries fixed (golden vector)', () => {
    expect(createHash('sha256').update(Buffer.from(GEAR.buffer)).digest('hex')).toBe('40e812accbfae16b759e27ad89876c22d8225f56431094c6489c97408f9a16dd');
    const sizes = chunkAll(seededBytes('golden', 12 * 1024 * 1024), DEFAULT_CHUNKER_PARAMS, 1 << 20).map((c) => c.length);
    expect(sizes).toEqual([1617064, 1210367, 924750, 1052661, 876261, 1113100, 2297455, 1262941, 1160870, 1067443]);
  });

  it('cuts within the limits, near the average, and reassembles the input', () => {
    const chunks = chunkAll(data, DEFAULT_CHUNKER_PARAMS, 1 << 20);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    for (const c of chunks.slice(0, -1)) {
      expect(c.length).toBeGreaterThanOrEqual(DEFAULT_CHUNKER_PARAMS.min);
      expect(c.length).toBeLessThanOrEqual(DEFAULT_CHUNKER_PARAMS.max);
    }
    const avg = data.length / chunks.length;
    expect(avg).toBeGreaterThan(700 * 1024);
    expect(avg).toBeLessThan(1600 * 1024);
  });

  it('does not depend on how the input is split into pieces', () => {
    const a = chunkAll(data, DEFAULT_CHUNKER_PARAMS, 1 << 20).map((c) => hashId(c));
    const b = chunkAll(data, DEFAULT_CHUNKER_PARAMS, 65_537).map((c) => hashId(c));
    expect(b).toEqual(a);
  });

  it('keeps most later chunks after inserting bytes near the start', () => {
    const before = chunkAll(data, DEFAULT_CHUNKER_PARAMS, 1 << 20).map((c) => hashId(c));
    const edited = Buffer.concat([data.subarray(0, 1000), Buffer.from('inserted bytes!'), data.subarray(1000)]);
    const after = new Set(chunkAll(edited, DEFAULT_CHUNKER_PARAMS, 1 << 20).map((c) => hashId(c)));
    const kept = before.filter((id) => after.has(id)).length;
    expect(kept).toBeGreaterThanOrEqual(before.length - 2);
  });

  it('cuts at max on data without any boundary', () => {
    const zeros = Buffer.alloc(20 * 1024 * 1024);
    const chunks = chunkAll(zeros, DEFAULT_CHUNKER_PARAMS, 1 << 20);
    expect(Buffer.concat(chunks).length).toBe(zeros.length);
    expect(chunks[0].length).toBeLessThanOrEqual(DEFAULT_CHUNKER_PARAMS.max);
  });

  // Streams and files are cut in pieces that each read delivers, resuming the rolling hash
  // across reads; one findCut over the whole input must give the same cuts, or a file and the
  // same bytes piped in would not deduplicate.
  it('cuts identically through findCut over the whole input', () => {
    const small = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };
    const inputs = [data.subarray(0, 6 * 1024 * 1024), Buffer.alloc(3 * 1024 * 1024 + 7), Buffer.from('a'.repeat(100_000) + 'b'.repeat(90_001))];
    for (const params of [DEFAULT_CHUNKER_PARAMS, small]) {
      for (const input of inputs) {
        const expected = chunkAll(input, params, 65_536).map((c) => c.length);
        const masks = masksFor(params.avg);
        const got: number[] = [];
        for (let pos = 0; pos < input.length; ) {
          const cut = findCut(input, pos, input.length, params, masks, true);
          got.push(cut - pos);
          pos = cut;
        }
        expect(got).toEqual(expected);
        // Without eof, an undecidable tail is left for later: -1, never a wrong cut.
        expect(findCut(input, 0, Math.min(input.length, params.min), params, masks, false)).toBe(-1);
      }
    }
  });

  // A WAL segment is stored again as it fills (`.partial` copies, then the whole segment): cut
  // where each earlier copy ended, every chunk before that point is an earlier copy's chunk.
  it('ends chunks at forced cut points, so a growing file shares every chunk before them', () => {
    const segment = data.subarray(0, 16 * 1024 * 1024);
    const ends = [2_345_679, 5_000_001, 5_100_000, 9_876_543];
    // Each copy: the bytes written so far, then zeros (a pre-allocated segment), cut where the
    // copies before it ended and where it ends itself.
    const copies = ends.map((end, i) => {
      const copy = Buffer.alloc(segment.length);
      segment.copy(copy, 0, 0, end);
      return chunkAll(copy, DEFAULT_CHUNKER_PARAMS, 1 << 20, ends.slice(0, i + 1));
    });
    const whole = chunkAll(segment, DEFAULT_CHUNKER_PARAMS, 65_537, ends);
    expect(Buffer.concat(whole).equals(segment)).toBe(true);
    for (const [i, end] of ends.entries()) {
      const offsets = [0];
      for (const c of copies[i]) offsets.push(offsets.at(-1)! + c.length);
      expect(offsets).toContain(end);
      // Every chunk of this copy that ends by its own end is a chunk of the whole segment.
      const before = copies[i].filter((_, k) => offsets[k + 1] <= end).map((c) => hashId(c));
      const wholeIds = new Set(whole.map((c) => hashId(c)));
      expect(before.filter((id) => !wholeIds.has(id))).toEqual([]);
      expect(Buffer.concat(copies[i]).equals(Buffer.concat([segment.subarray(0, end), Buffer.alloc(segment.length - end)]))).toBe(true);
    }
    // Between forced cuts the content still decides: the same as cutting each stretch alone.
    const masks = masksFor(DEFAULT_CHUNKER_PARAMS.avg);
    const expected: number[] = [];
    for (const [from, to] of [0, ...ends].map((e, k, a) => [e, a[k + 1] ?? segment.length])) {
      for (let pos = from; pos < to; ) {
        const cut = findCut(segment, pos, to, DEFAULT_CHUNKER_PARAMS, masks, true);
        expected.push(cut - pos);
        pos = cut;
      }
    }
    expect(whole.map((c) => c.length)).toEqual(expected);
  });
});
