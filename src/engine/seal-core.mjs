/**
 * Seal core: the byte-level primitives shared by the TypeScript engine and the encoder worker
 * threads (plain JavaScript so workers start without a TypeScript loader). *Sealing* is restic's
 * authenticated encryption: IV (16) || AES-256-CTR(plaintext) || Poly1305-AES MAC (16), the MAC
 * over the encrypted bytes with the one-time key r || AES-128_k(IV).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { poly1305 } from './poly1305.mjs';
import zstd from 'zstd-napi/binding.js';

/** zstd level for blobs and unpacked files: zstd's default, as restic's "auto" mode uses. */
export const ZSTD_LEVEL = 3;

/** Poly1305-AES tag of `ciphertext` under MAC key (k, r) with the given IV as nonce. */
export function macRaw(macK, macR, iv, ciphertext) {
  const s = ecbFor(macK).update(iv);
  const polyKey = new Uint8Array(32);
  polyKey.set(macR, 0);
  polyKey.set(s, 16);
  return poly1305(ciphertext, polyKey);
}

/**
 * The AES-128 cipher of the MAC key k, kept across blobs: ECB without padding turns each
 * 16-byte block given to update() into one block out, with no state between calls, so one
 * cipher serves every IV of that key instead of one set up per blob.
 */
let ecbKey = null;
let ecb = null;

function ecbFor(macK) {
  if (!ecb || !ecbKey.equals(macK)) {
    ecb = createCipheriv('aes-128-ecb', macK, null).setAutoPadding(false);
    ecbKey = Buffer.from(macK);
  }
  return ecb;
}

/** Random bytes fetched 4 KiB at a time: one system call per 256 IVs instead of one each. */
let ivPool = Buffer.alloc(0);
let ivUsed = 0;

function nextIv() {
  if (ivUsed + 16 > ivPool.length) {
    ivPool = randomBytes(4096);
    ivUsed = 0;
  }
  ivUsed += 16;
  return ivPool.subarray(ivUsed - 16, ivUsed);
}

const CIPHER_PIECE = 64 * 1024;

/** Seals payload into target (payload.length + 32 bytes): IV || AES-256-CTR(payload) || MAC. */
export function sealInto(encKey, macK, macR, payload, target) {
  const iv = nextIv();
  target.set(iv, 0);
  const c = createCipheriv('aes-256-ctr', encKey, iv);
  // CTR output has the input's length. In pieces, every temporary buffer has the same small
  // size, which the C heap reuses, instead of one per blob of every size up to 8 MiB.
  for (let off = 0; off < payload.length; off += CIPHER_PIECE) {
    target.set(c.update(payload.subarray(off, off + CIPHER_PIECE)), 16 + off);
  }
  c.final();
  target.set(macRaw(macK, macR, iv, target.subarray(16, 16 + payload.length)), 16 + payload.length);
}

/** Encrypts and authenticates; the result has 32 bytes more than the plaintext. */
export function sealRaw(encKey, macK, macR, plaintext) {
  // Its own ArrayBuffer (never Node's shared pool), so threads can transfer it as is.
  const out = Buffer.allocUnsafeSlow(plaintext.length + 32);
  sealInto(encKey, macK, macR, plaintext, out);
  return out;
}

/**
 * This thread's zstd context and output buffer, reused for every blob: a fresh context and
 * a fresh compressBound-sized buffer per blob cost time and, across threads, left the C heap
 * fragmented (peak memory grew by tens of MiB per thread).
 */
let cctx = null;
let cctxLevel = 0;
let cdest = null;

/** Compresses at `level` into the reused buffer; the result is valid until the next call. */
function compressReused(plain, level) {
  cctx ??= new zstd.CCtx();
  if (cctxLevel !== level) {
    cctx.setParameter(zstd.CParameter.compressionLevel, level);
    cctxLevel = level;
  }
  const bound = zstd.compressBound(plain.length);
  if (!cdest || cdest.length < bound) cdest = Buffer.allocUnsafeSlow(Math.max(bound, 64 * 1024));
  return cdest.subarray(0, cctx.compress2(cdest, plain));
}

/** Memory of its own for a sealed blob: never Node's shared pool, so it can be transferred. */
export const freshSlot = (n) => ({ view: Buffer.allocUnsafeSlow(n) });

/**
 * Compresses a blob when allowed and worthwhile and seals it into memory from alloc(n), which
 * returns `{ view }` (n bytes; e.g. a slot of a ring shared with the main thread) plus whatever
 * the caller needs to find it again. Returns that slot and, when compressed, the plaintext length.
 * allowCompression: false, true (at ZSTD_LEVEL) or the zstd level to compress at.
 */
export function encodeBlobInto(encKey, macK, macR, plain, allowCompression, alloc) {
  let payload = plain;
  let uncompressedLength;
  if (allowCompression && plain.length >= 64) {
    const packed = compressReused(plain, allowCompression === true ? ZSTD_LEVEL : allowCompression);
    if (packed.length < plain.length) {
      payload = packed;
      uncompressedLength = plain.length;
    }
  }
  const slot = alloc(payload.length + 32);
  sealInto(encKey, macK, macR, payload, slot.view);
  return { slot, uncompressedLength };
}

/**
 * Compresses a blob when allowed (repository version 2) and when that saves space, then seals
 * it. Returns the stored bytes and, when compressed, the plaintext length (which the pack
 * header records).
 */
export function encodeBlobRaw(encKey, macK, macR, plain, allowCompression = true) {
  const { slot, uncompressedLength } = encodeBlobInto(encKey, macK, macR, plain, allowCompression, freshSlot);
  return { data: slot.view, uncompressedLength };
}

/** This thread's zstd decompression context, reused for every blob (a fresh one per blob costs). */
let dctx = null;

/**
 * Verifies the MAC and decrypts; returns null when the MAC does not match. `into(n)`, when
 * given, lends the buffer the plaintext is decrypted into, in pieces (as sealInto encrypts),
 * so that no buffer of the blob's size is allocated.
 */
export function openRaw(encKey, macK, macR, ciphertext, into) {
  if (ciphertext.length < 32) return null;
  const iv = ciphertext.subarray(0, 16);
  const body = ciphertext.subarray(16, ciphertext.length - 16);
  const tag = macRaw(macK, macR, iv, body);
  if (!timingSafeEqual(tag, ciphertext.subarray(ciphertext.length - 16))) return null;
  const d = createDecipheriv('aes-256-ctr', encKey, iv);
  if (!into) {
    const out = d.update(body);
    d.final();
    return out;
  }
  const out = into(body.length);
  for (let off = 0; off < body.length; off += CIPHER_PIECE) out.set(d.update(body.subarray(off, off + CIPHER_PIECE)), off);
  d.final();
  return out;
}

/**
 * Opens a stored blob: MAC, decryption, decompression (when uncompressedLength is given) and
 * the content hash against the expected id. Returns the plaintext or a reason it is not valid.
 * `scratch(n)`, when given, lends the buffer a compressed blob is decompressed into (the result
 * is then a view of it, valid until the next use): a caller that writes the plaintext out and
 * drops it saves a fresh allocation, and its page faults, per blob. `cipherScratch(n)` does the
 * same for the decrypted bytes (see openRaw), which such a caller also drops.
 */
export function decodeBlobRaw(encKey, macK, macR, id, stored, uncompressedLength, scratch, cipherScratch) {
  let plain = openRaw(encKey, macK, macR, stored, cipherScratch);
  if (!plain) return { error: 'ciphertext verification failed (MAC mismatch)' };
  if (uncompressedLength !== undefined && uncompressedLength !== null) {
    // Straight into a buffer of the recorded size: a frame that would not fit fails here
    // instead of allocating whatever it claims.
    const out = scratch ? scratch(uncompressedLength) : Buffer.allocUnsafeSlow(uncompressedLength);
    let n;
    try {
      dctx ??= new zstd.DCtx();
      n = dctx.decompress(out, plain);
    } catch (err) {
      return { error: `zstd decompression failed: ${err instanceof Error ? err.message : String(err)}` };
    }
    if (n !== uncompressedLength) return { error: `decompressed ${n} bytes, expected ${uncompressedLength}` };
    plain = out;
  }
  const got = createHash('sha256').update(plain).digest('hex');
  if (got !== id) return { error: `content hash is ${got}` };
  return { plain };
}
