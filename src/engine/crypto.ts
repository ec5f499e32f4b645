/**
 * Crypto: restic's authenticated encryption. A *key* is an AES-256 encryption key plus a
 * Poly1305-AES MAC key (k: 16-byte AES-128 key, r: 16-byte Poly1305 multiplier). A ciphertext is
 * `IV (16) || AES-256-CTR(plaintext) || MAC (16)`, where the MAC is Poly1305 over the encrypted
 * bytes with the one-time key `r || AES-128_k(IV)`. The *master key* encrypts everything in the
 * repository; a *user key* derived from the password (kdf.ts) only encrypts the master key.
 */
import { randomBytes } from 'node:crypto';
import { openRaw, sealRaw } from './seal-core.mjs';
import { IntegrityError } from './errors.ts';

/** Bytes added to every plaintext: IV and MAC. */
export const CRYPTO_OVERHEAD = 32;

/** An encryption key and its MAC key, as restic's `crypto.Key`. */
export interface Key {
  /** AES-256 key, 32 bytes. */
  encrypt: Buffer;
  /** MAC key part k (AES-128 key for the Poly1305 nonce), 16 bytes. */
  macK: Buffer;
  /** MAC key part r (Poly1305 multiplier), 16 bytes, stored unclamped as restic does. */
  macR: Buffer;
}

/** The master key's JSON form inside a key file's encrypted `data`. */
export interface KeyJson {
  mac: { k: string; r: string };
  encrypt: string;
}

/** A fresh random key. */
export function newRandomKey(): Key {
  const b = randomBytes(64);
  return { encrypt: b.subarray(0, 32), macK: b.subarray(32, 48), macR: clampR(b.subarray(48, 64)) };
}

/** Poly1305 requires certain bits of r cleared; restic clears them when creating keys too. */
function clampR(r: Buffer): Buffer {
  const c = Buffer.from(r);
  c[3] &= 15; c[7] &= 15; c[11] &= 15; c[15] &= 15;
  c[4] &= 252; c[8] &= 252; c[12] &= 252;
  return c;
}

/** Encodes a key the way restic stores the master key. */
export function keyToJson(key: Key): KeyJson {
  return {
    mac: { k: key.macK.toString('base64'), r: key.macR.toString('base64') },
    encrypt: key.encrypt.toString('base64'),
  };
}

/** Parses a master key from its JSON form. */
export function keyFromJson(j: KeyJson): Key {
  const key = {
    encrypt: Buffer.from(j.encrypt, 'base64'),
    macK: Buffer.from(j.mac.k, 'base64'),
    macR: Buffer.from(j.mac.r, 'base64'),
  };
  if (key.encrypt.length !== 32 || key.macK.length !== 16 || key.macR.length !== 16) {
    throw new IntegrityError('master key has the wrong size');
  }
  return key;
}

/** Serializable key for passing to worker threads. */
export function keyToBytes(key: Key): Uint8Array {
  return Buffer.concat([key.encrypt, key.macK, key.macR]);
}

/** Inverse of keyToBytes. */
export function keyFromBytes(b: Uint8Array): Key {
  const buf = Buffer.from(b);
  return { encrypt: buf.subarray(0, 32), macK: buf.subarray(32, 48), macR: buf.subarray(48, 64) };
}

/** Encrypts and authenticates plaintext; the result is `plaintext.length + 32` bytes. */
export function encrypt(key: Key, plaintext: Uint8Array): Buffer {
  return sealRaw(key.encrypt, key.macK, key.macR, plaintext);
}

/** Verifies the MAC and decrypts; throws IntegrityError when the MAC does not match. */
export function decrypt(key: Key, ciphertext: Uint8Array): Buffer {
  if (ciphertext.length < CRYPTO_OVERHEAD) throw new IntegrityError('ciphertext too short');
  const plain = openRaw(key.encrypt, key.macK, key.macR, ciphertext);
  if (!plain) throw new IntegrityError('ciphertext verification failed (MAC mismatch)');
  return plain;
}
