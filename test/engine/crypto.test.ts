import { describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import { poly1305 as noblePoly1305 } from '@noble/ciphers/_poly1305.js';
import { poly1305 } from '../../src/engine/poly1305.mjs';
import { decrypt, encrypt, newRandomKey } from '../../src/engine/crypto.ts';
import { IntegrityError } from '../../src/engine/errors.ts';
import { compressUnpacked, decompressUnpacked } from '../../src/engine/compress.ts';
import { PackWriter, decodeHeader, encodeHeader, dropPackBuffers, keepPackBuffer, parsePack, takePackBuffer } from '../../src/engine/pack.ts';
import { formatTime, goModeFromUnix, goQuote, goUnquote, parseTime, unixPermissions } from '../../src/engine/tree.ts';

describe('crypto', () => {
  it('uses Poly1305 as RFC 8439 specifies (test vector 2.5.2)', () => {
    const key = Buffer.from('85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b', 'hex');
    const tag = poly1305(Buffer.from('Cryptographic Forum Research Group'), key);
    expect(Buffer.from(tag).toString('hex')).toBe('a8061dc1305136c6c22b8baf0c0127a9');
  });

  it('computes the same Poly1305 tags as @noble/ciphers, edge cases included', () => {
    for (let i = 0; i < 3000; i++) {
      const len = i < 100 ? i : (i * 7919) % 5000;
      const msg = randomBytes(len);
      const key = randomBytes(32);
      if (i % 3 === 0) msg.fill(0xff); // maximal limbs, exercises every carry
      if (i % 5 === 0) key.fill(0xff, 0, 16); // maximal r after clamping
      if (i % 11 === 0) key.fill(0xff, 16);
      expect(Buffer.from(poly1305(msg, key)).toString('hex')).toBe(Buffer.from(noblePoly1305(msg, key)).toString('hex'));
    }
  });

  it('agrees with @noble/ciphers across the 64 KiB pieces of long messages and on any byte offset', () => {
    const hexOf = (tag: Uint8Array) => Buffer.from(tag).toString('hex');
    const lengths = [65536, 131072].flatMap((b) => [-17, -16, -15, -1, 0, 1, 15, 16, 17].map((d) => b + d));
    lengths.push(3 * 1024 * 1024 + 5, 8 * 1024 * 1024);
    for (const [i, len] of lengths.entries()) {
      const msg = randomBytes(len);
      if (i % 2 === 0) msg.fill(0xff);
      const key = i % 3 === 0 ? Buffer.alloc(32, 0xff) : randomBytes(32);
      expect(hexOf(poly1305(msg, key))).toBe(hexOf(noblePoly1305(msg, key)));
    }
    // All key bits set (r clamps to its maximum, s is 2^128 - 1), maximal messages of lengths 0..80.
    const ffKey = Buffer.alloc(32, 0xff);
    for (let len = 0; len <= 80; len++) {
      const msg = Buffer.alloc(len, 0xff);
      expect(hexOf(poly1305(msg, ffKey))).toBe(hexOf(noblePoly1305(msg, ffKey)));
    }
    // Views at odd offsets into larger buffers, and no state carried over from one call to the next.
    const big = randomBytes(70000);
    const key = big.subarray(3, 35);
    const msg = big.subarray(101, 101 + 66001);
    const first = hexOf(poly1305(msg, key));
    expect(first).toBe(hexOf(noblePoly1305(Uint8Array.from(msg), Uint8Array.from(key))));
    poly1305(randomBytes(1000), randomBytes(32));
    expect(hexOf(poly1305(msg, key))).toBe(first);
    expect(() => poly1305(msg, key.subarray(0, 31))).toThrow(RangeError);
  });

  it('handles the RFC 8439 A.3 edge cases where h wraps around p', () => {
    const hex = (h: string) => Buffer.from(h.replace(/ /g, ''), 'hex');
    const r = (first: string) => hex(first.replace(/ /g, '').padEnd(32, '0'));
    const ff16 = 'ff'.repeat(16);
    const cases: [Buffer, Buffer][] = [
      [Buffer.concat([r('02'), Buffer.alloc(16)]), hex(ff16)],
      [Buffer.concat([r('02'), hex(ff16)]), hex('02'.padEnd(32, '0'))],
      [Buffer.concat([r('01'), Buffer.alloc(16)]), hex(ff16 + 'f0' + 'ff'.repeat(15) + '11'.padEnd(32, '0'))],
      [Buffer.concat([r('01'), Buffer.alloc(16)]), hex(ff16 + 'fb' + 'fe'.repeat(15) + '01'.repeat(16))],
      [Buffer.concat([r('02'), Buffer.alloc(16)]), hex('fd' + 'ff'.repeat(15))],
      [Buffer.concat([r('0100000000000000 04'), Buffer.alloc(16)]), hex('e33594d7505e43b9 0000000000000000 3394d7505e4379cd 0100000000000000 ' + '00'.repeat(16) + '01'.padEnd(32, '0'))],
    ];
    for (const [key, msg] of cases) {
      expect(Buffer.from(poly1305(msg, key)).toString('hex')).toBe(Buffer.from(noblePoly1305(msg, key)).toString('hex'));
    }
    expect(Buffer.from(poly1305(cases[0][1], cases[0][0])).toString('hex')).toBe('03'.padEnd(32, '0'));
  });

  it('round-trips and adds 32 bytes', () => {
    const key = newRandomKey();
    const plain = Buffer.from('some plaintext');
    const ct = encrypt(key, plain);
    expect(ct.length).toBe(plain.length + 32);
    expect(decrypt(key, ct).equals(plain)).toBe(true);
  });

  it('rejects a flipped bit and a wrong key', () => {
    const key = newRandomKey();
    const ct = encrypt(key, Buffer.from('some plaintext'));
    const bad = Buffer.from(ct);
    bad[20] ^= 1;
    expect(() => decrypt(key, bad)).toThrow(IntegrityError);
    expect(() => decrypt(newRandomKey(), ct)).toThrow(IntegrityError);
  });
});

describe('format details', () => {
  it('stores unpacked files as version byte 2 + zstd and reads plain JSON too', () => {
    const enc = compressUnpacked(Buffer.from('{"a":1}'));
    expect(enc[0]).toBe(2);
    expect(decompressUnpacked(enc).toString()).toBe('{"a":1}');
    expect(decompressUnpacked(Buffer.from('{"b":2}')).toString()).toBe('{"b":2}');
  });

  it('encodes pack header entries with restic sizes (37 plain, 41 compressed)', () => {
    const id = 'ab'.repeat(32);
    const h = encodeHeader([
      { id, type: 'data', offset: 0, length: 100 },
      { id, type: 'tree', offset: 100, length: 50, uncompressedLength: 80 },
    ]);
    expect(h.length).toBe(37 + 41);
    expect(h[0]).toBe(0);
    expect(h[37]).toBe(3);
    expect(decodeHeader(h)).toEqual([
      { id, type: 'data', offset: 0, length: 100 },
      { id, type: 'tree', offset: 100, length: 50, uncompressedLength: 80 },
    ]);
  });

  // Sealed blobs arrive in a codec thread's ring, a SharedArrayBuffer, at any alignment; the
  // pack writer copies them through a scratch buffer in pieces when the alignments differ.
  it('packs blobs held in shared memory byte for byte, at every alignment and across scratch pieces', () => {
    const key = newRandomKey();
    const ring = Buffer.from(new SharedArrayBuffer(4 * 1024 * 1024));
    ring.set(randomBytes(ring.length));
    const lengths = [1, 7, 300 * 1024 + 3, 5, 256 * 1024, 600 * 1024 + 1, 9, 256 * 1024 + 1];
    const writer = new PackWriter(2 * 1024 * 1024);
    const expected: Buffer[] = [];
    let at = 0;
    lengths.forEach((len, i) => {
      const from = at + (i % 8);
      const data = ring.subarray(from, from + len);
      expected.push(Buffer.from(data));
      writer.add({ id: String(i).padStart(64, '0'), type: 'data', data });
      at = from + len;
    });
    const pack = writer.finish(key);
    expect(parsePack(key, pack.bytes).map((b) => b.length)).toEqual(lengths);
    expect(pack.bytes.subarray(0, lengths.reduce((a, b) => a + b, 0)).equals(Buffer.concat(expected))).toBe(true);
  });

  it('keeps pack buffers for the next packs, the larger ones first', () => {
    dropPackBuffers(); // what other tests left
    const prepared = Buffer.alloc(1024);
    const small = [1, 2, 3, 4].map(() => Buffer.alloc(64));
    for (const b of small) keepPackBuffer(b);
    keepPackBuffer(prepared!);
    keepPackBuffer(prepared!); // kept once
    expect(takePackBuffer(1024)).toBe(prepared);
    expect(takePackBuffer(1024)).toBeUndefined();
  });

  it('drops kept pack buffers once no pack has put one back for a while', () => {
    vi.useFakeTimers();
    try {
      dropPackBuffers();
      const a = Buffer.alloc(1024);
      const b = Buffer.alloc(1024);
      keepPackBuffer(a);
      vi.advanceTimersByTime(9_000);
      keepPackBuffer(b); // a pack put back: the wait starts again
      vi.advanceTimersByTime(9_000);
      expect(takePackBuffer(1024)).toBe(a);
      keepPackBuffer(a);
      vi.advanceTimersByTime(10_000);
      expect(takePackBuffer(1)).toBeUndefined();
    } finally {
      vi.useRealTimers();
    }
  });

  it('writes Go file modes and RFC 3339 nanosecond times', () => {
    expect(goModeFromUnix(0o040755)).toBe(2147484141);
    expect(goModeFromUnix(0o120777)).toBe(134218239);
    expect(unixPermissions(goModeFromUnix(0o104755))).toBe(0o4755);
    expect(formatTime(1_600_000_000_123_456_789n)).toBe('2020-09-13T12:26:40.123456789Z');
    expect(formatTime(1_600_000_000_000_000_000n)).toBe('2020-09-13T12:26:40Z');
    expect(parseTime('2020-09-13T14:26:40.1234+02:00')).toBe(1_600_000_000_123_400_000n);
  });

  it('quotes names the way Go strconv.Quote does', () => {
    expect(goQuote('plain name.txt')).toBe('plain name.txt');
    expect(goQuote('ünï ✓')).toBe('ünï ✓');
    expect(goQuote('a"b\\c\nd\x01')).toBe('a\\"b\\\\c\\nd\\x01');
    for (const s of ['a"b\\c\nd\x01', 'x\u00a0y', 'tab\there']) expect(goUnquote(goQuote(s))).toBe(s);
  });
});
