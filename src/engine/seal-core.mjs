/**
 * Seal core: the byte-level primitives shared by the TypeScript engine and the encoder worker
 * threads (plain JavaScript so workers start without a TypeScript loader). *Sealing* is restic's
 * authenticated encryption: IV (16) || AES-256-CTR(plaintext) || Poly1305-AES MAC (16), the MAC
 * over the encrypted bytes with the one-time key r || AES-128_k(IV).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { poly1305 } from './poly1305.mjs';
import { compress, decompress } from 'zstd-napi';

/** zstd level for blobs and unpacked files: zstd's default, as restic's "auto" mode uses. */
export const ZSTD_LEVEL = 3;

/** Poly1305-AES tag of `ciphertext` under MAC key (k, r) with the given IV as nonce. */
export function macRaw(macK, macR, iv, ciphertext) {
  const s = createCipheriv('aes-128-ecb', macK, null).update(iv);
  const polyKey = new Uint8Array(32);
  polyKey.set(macR, 0);
  polyKey.set(s, 16);
  return poly1305(ciphertext, polyKey);
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

/** Encrypts and authenticates; the result has 32 bytes more than the plaintext. */
export function sealRaw(encKey, macK, macR, plaintext) {
  // Its own ArrayBuffer (never Node's shared pool), so threads can transfer it as is.
  const out = Buffer.allocUnsafeSlow(plaintext.length + 32);
  const iv = nextIv();
  iv.copy(out, 0);
  const c = createCipheriv('aes-256-ctr', encKey, iv);
  const body = c.update(plaintext);
  body.copy(out, 16);
  c.final();
  out.set(macRaw(macK, macR, iv, out.subarray(16, 16 + plaintext.length)), 16 + plaintext.length);
  return out;
}

/**
 * Compresses a blob when allowed (repository version 2) and when that saves space, then seals
 * it. Returns the stored bytes and, when compressed, the plaintext length (which the pack
 * header records).
 */
export function encodeBlobRaw(encKey, macK, macR, plain, allowCompression = true) {
  const packed = allowCompression && plain.length >= 64 ? compress(plain, { compressionLevel: ZSTD_LEVEL }) : null;
  if (packed && packed.length < plain.length) {
    return { data: sealRaw(encKey, macK, macR, packed), uncompressedLength: plain.length };
  }
  return { data: sealRaw(encKey, macK, macR, plain), uncompressedLength: undefined };
}

/** Verifies the MAC and decrypts; returns null when the MAC does not match. */
export function openRaw(encKey, macK, macR, ciphertext) {
  if (ciphertext.length < 32) return null;
  const iv = ciphertext.subarray(0, 16);
  const body = ciphertext.subarray(16, ciphertext.length - 16);
  const tag = macRaw(macK, macR, iv, body);
  if (!timingSafeEqual(tag, ciphertext.subarray(ciphertext.length - 16))) return null;
  const d = createDecipheriv('aes-256-ctr', encKey, iv);
  const out = d.update(body);
  d.final();
  return out;
}

/**
 * Opens a stored blob: MAC, decryption, decompression (when uncompressedLength is given) and
 * the content hash against the expected id. Returns the plaintext or a reason it is not valid.
 */
export function decodeBlobRaw(encKey, macK, macR, id, stored, uncompressedLength) {
  let plain = openRaw(encKey, macK, macR, stored);
  if (!plain) return { error: 'ciphertext verification failed (MAC mismatch)' };
  if (uncompressedLength !== undefined && uncompressedLength !== null) {
    try {
      plain = decompress(plain);
    } catch (err) {
      return { error: `zstd decompression failed: ${err instanceof Error ? err.message : String(err)}` };
    }
    if (plain.length !== uncompressedLength) return { error: `decompressed ${plain.length} bytes, expected ${uncompressedLength}` };
  }
  const got = createHash('sha256').update(plain).digest('hex');
  if (got !== id) return { error: `content hash is ${got}` };
  return { plain };
}
