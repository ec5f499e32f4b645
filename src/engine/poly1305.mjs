/**
 * Poly1305 (RFC 8439) in plain JavaScript, about twice as fast as a 16-bit-limb version.
 *
 * The 130-bit accumulator lives in six 22-bit limbs held in doubles: a limb product is below
 * 2^45 and, with the fold factor 20 (2^132 = 4 * 2^130 ≡ 4 * 5 mod p), a row of six such
 * products stays below 2^52, so every sum is exact in float64 arithmetic. Carries divide by
 * 2^22, which is exact too. Carries run in two independent rounds rather than one serial
 * chain (more instruction-level parallelism); after them every limb is below 2^22 + 2^14, so
 * the next block's limbs stay below 2^23 and the bound above holds. Verified against
 * @noble/ciphers on random, extreme and RFC 8439 A.3 inputs (test/engine/crypto.test.ts).
 */
const TWO22 = 4194304;
const INV22 = 1 / 4194304;
const TWO20 = 1048576;

/** The 16-byte Poly1305 tag of msg under a 32-byte one-time key (r || s). */
export function poly1305(msg, key) {
  const rw0 = (key[0] | key[1] << 8 | key[2] << 16 | key[3] << 24) & 0x0fffffff;
  const rw1 = (key[4] | key[5] << 8 | key[6] << 16 | key[7] << 24) & 0x0ffffffc;
  const rw2 = (key[8] | key[9] << 8 | key[10] << 16 | key[11] << 24) & 0x0ffffffc;
  const rw3 = (key[12] | key[13] << 8 | key[14] << 16 | key[15] << 24) & 0x0ffffffc;
  const r0 = rw0 & 0x3fffff;
  const r1 = ((rw0 >>> 22) | ((rw1 & 0xfff) << 10)) >>> 0;
  const r2 = ((rw1 >>> 12) | ((rw2 & 0x3) << 20)) >>> 0;
  const r3 = (rw2 >>> 2) & 0x3fffff;
  const r4 = ((rw2 >>> 24) | ((rw3 & 0x3fff) << 8)) >>> 0;
  const r5 = rw3 >>> 14;
  const s1 = r1 * 20, s2 = r2 * 20, s3 = r3 * 20, s4 = r4 * 20, s5 = r5 * 20;
  let h0 = 0, h1 = 0, h2 = 0, h3 = 0, h4 = 0, h5 = 0;
  const len = msg.length;
  const full = len - (len % 16);
  let pos = 0;
  let buf = msg;
  let end = full;
  // Pass 0: the whole 16-byte blocks in place; pass 1: the padded final partial block.
  for (let pass = 0; pass < 2; pass++) {
    let hib = 1 << 18;
    if (pass === 1) {
      if (len === full) break;
      const last = new Uint8Array(16);
      last.set(msg.subarray(full));
      last[len - full] = 1;
      buf = last; pos = 0; end = 16; hib = 0;
    }
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (; pos < end; pos += 16) {
      const w0 = dv.getUint32(pos, true);
      const w1 = dv.getUint32(pos + 4, true);
      const w2 = dv.getUint32(pos + 8, true);
      const w3 = dv.getUint32(pos + 12, true);
      h0 += w0 & 0x3fffff;
      h1 += ((w0 >>> 22) | ((w1 & 0xfff) << 10)) >>> 0;
      h2 += ((w1 >>> 12) | ((w2 & 0x3) << 20)) >>> 0;
      h3 += (w2 >>> 2) & 0x3fffff;
      h4 += ((w2 >>> 24) | ((w3 & 0x3fff) << 8)) >>> 0;
      h5 += (w3 >>> 14) + hib;
      let d0 = h0 * r0 + h1 * s5 + h2 * s4 + h3 * s3 + h4 * s2 + h5 * s1;
      let d1 = h0 * r1 + h1 * r0 + h2 * s5 + h3 * s4 + h4 * s3 + h5 * s2;
      let d2 = h0 * r2 + h1 * r1 + h2 * r0 + h3 * s5 + h4 * s4 + h5 * s3;
      let d3 = h0 * r3 + h1 * r2 + h2 * r1 + h3 * r0 + h4 * s5 + h5 * s4;
      let d4 = h0 * r4 + h1 * r3 + h2 * r2 + h3 * r1 + h4 * r0 + h5 * s5;
      let d5 = h0 * r5 + h1 * r4 + h2 * r3 + h3 * r2 + h4 * r1 + h5 * r0;
      let c0 = Math.floor(d0 * INV22), c1 = Math.floor(d1 * INV22), c2 = Math.floor(d2 * INV22);
      let c3 = Math.floor(d3 * INV22), c4 = Math.floor(d4 * INV22), c5 = Math.floor(d5 * INV22);
      d0 = d0 - c0 * TWO22 + c5 * 20; d1 = d1 - c1 * TWO22 + c0; d2 = d2 - c2 * TWO22 + c1;
      d3 = d3 - c3 * TWO22 + c2; d4 = d4 - c4 * TWO22 + c3; d5 = d5 - c5 * TWO22 + c4;
      c0 = Math.floor(d0 * INV22); c1 = Math.floor(d1 * INV22); c2 = Math.floor(d2 * INV22);
      c3 = Math.floor(d3 * INV22); c4 = Math.floor(d4 * INV22); c5 = Math.floor(d5 * INV22);
      h0 = d0 - c0 * TWO22 + c5 * 20; h1 = d1 - c1 * TWO22 + c0; h2 = d2 - c2 * TWO22 + c1;
      h3 = d3 - c3 * TWO22 + c2; h4 = d4 - c4 * TWO22 + c3; h5 = d5 - c5 * TWO22 + c4;
    }
  }
  // Carry fully, then reduce modulo p = 2^130 - 5.
  let c;
  c = Math.floor(h1 * INV22); h1 -= c * TWO22; h2 += c;
  c = Math.floor(h2 * INV22); h2 -= c * TWO22; h3 += c;
  c = Math.floor(h3 * INV22); h3 -= c * TWO22; h4 += c;
  c = Math.floor(h4 * INV22); h4 -= c * TWO22; h5 += c;
  c = Math.floor(h5 * INV22); h5 -= c * TWO22; h0 += c * 20;
  c = Math.floor(h0 * INV22); h0 -= c * TWO22; h1 += c;
  c = Math.floor(h1 * INV22); h1 -= c * TWO22; h2 += c;
  c = Math.floor(h5 / TWO20); h5 -= c * TWO20; h0 += c * 5;
  c = Math.floor(h0 * INV22); h0 -= c * TWO22; h1 += c;
  c = Math.floor(h1 * INV22); h1 -= c * TWO22; h2 += c;
  c = Math.floor(h2 * INV22); h2 -= c * TWO22; h3 += c;
  c = Math.floor(h3 * INV22); h3 -= c * TWO22; h4 += c;
  c = Math.floor(h4 * INV22); h4 -= c * TWO22; h5 += c;
  c = Math.floor(h5 / TWO20); h5 -= c * TWO20; h0 += c * 5;
  c = Math.floor(h0 * INV22); h0 -= c * TWO22; h1 += c;
  // h mod p: when h + 5 reaches 2^130, h >= p and the answer is h + 5 - 2^130.
  let g0 = h0 + 5, g1 = h1, g2 = h2, g3 = h3, g4 = h4, g5 = h5;
  c = Math.floor(g0 * INV22); g0 -= c * TWO22; g1 += c;
  c = Math.floor(g1 * INV22); g1 -= c * TWO22; g2 += c;
  c = Math.floor(g2 * INV22); g2 -= c * TWO22; g3 += c;
  c = Math.floor(g3 * INV22); g3 -= c * TWO22; g4 += c;
  c = Math.floor(g4 * INV22); g4 -= c * TWO22; g5 += c;
  if (g5 >= TWO20) { h0 = g0; h1 = g1; h2 = g2; h3 = g3; h4 = g4; h5 = g5 - TWO20; }
  const o0 = (h0 | (h1 << 22)) >>> 0;
  const o1 = ((h1 >>> 10) | (h2 << 12)) >>> 0;
  const o2 = ((h2 >>> 20) | (h3 << 2) | (h4 << 24)) >>> 0;
  const o3 = ((h4 >>> 8) | (h5 << 14)) >>> 0;
  const k = (i) => (key[i] | key[i + 1] << 8 | key[i + 2] << 16 | key[i + 3] << 24) >>> 0;
  const out = new Uint8Array(16);
  let t = o0 + k(16); let carry = t > 0xffffffff ? 1 : 0; const f0 = t >>> 0;
  t = o1 + k(20) + carry; carry = t > 0xffffffff ? 1 : 0; const f1 = t >>> 0;
  t = o2 + k(24) + carry; carry = t > 0xffffffff ? 1 : 0; const f2 = t >>> 0;
  t = o3 + k(28) + carry; const f3 = t >>> 0;
  const ov = new DataView(out.buffer);
  ov.setUint32(0, f0, true); ov.setUint32(4, f1, true); ov.setUint32(8, f2, true); ov.setUint32(12, f3, true);
  return out;
}
