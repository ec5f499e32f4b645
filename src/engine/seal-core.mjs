/**
 * Seal core: the byte-level primitives shared by the TypeScript engine and the encoder worker
 * threads (plain JavaScript so workers start without a TypeScript loader). *Sealing* is restic's
 * authenticated encryption: IV (16) || AES-256-CTR(plaintext) || Poly1305-AES MAC (16), the MAC
 * over the encrypted bytes with the one-time key r || AES-128_k(IV).
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { poly1305 } from '@noble/ciphers/_poly1305.js';
import { compress } from 'zstd-napi';

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

/** Encrypts and authenticates; the result has 32 bytes more than the plaintext. */
export function sealRaw(encKey, macK, macR, plaintext) {
  // allocUnsafe of a large size gets its own ArrayBuffer, so workers can transfer it as is.
  const out = Buffer.allocUnsafe(plaintext.length + 32);
  const iv = randomBytes(16);
  iv.copy(out, 0);
  const c = createCipheriv('aes-256-ctr', encKey, iv);
  const body = c.update(plaintext);
  body.copy(out, 16);
  c.final();
  out.set(macRaw(macK, macR, iv, out.subarray(16, 16 + plaintext.length)), 16 + plaintext.length);
  return out;
}

/**
 * Compresses a blob when that saves space, then seals it. Returns the stored bytes and, when
 * compressed, the plaintext length (which the pack header records).
 */
export function encodeBlobRaw(encKey, macK, macR, plain) {
  const packed = plain.length >= 64 ? compress(plain, { compressionLevel: ZSTD_LEVEL }) : null;
  if (packed && packed.length < plain.length) {
    return { data: sealRaw(encKey, macK, macR, packed), uncompressedLength: plain.length };
  }
  return { data: sealRaw(encKey, macK, macR, plain), uncompressedLength: undefined };
}
