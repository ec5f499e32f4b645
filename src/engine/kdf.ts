/**
 * KDF: scrypt turns a password and a random salt into a *user key* (64 bytes: 32 for AES, 16
 * for the MAC's k, 16 for its r), exactly as restic does. The parameters are stored in each key
 * file, so tests can use cheap ones without changing the format.
 */
import { scrypt } from 'node:crypto';
import type { Key } from './crypto.ts';

/** scrypt cost parameters as stored in a restic key file. */
export interface KdfParams {
  N: number;
  r: number;
  p: number;
}

/** restic's defaults for new keys (N=2^15, r=8, p=1). */
export const DEFAULT_KDF_PARAMS: KdfParams = { N: 32768, r: 8, p: 1 };

/** Derives the user key from the password. */
export function deriveKey(password: string, salt: Uint8Array, params: KdfParams): Promise<Key> {
  return new Promise((resolve, reject) => {
    // scrypt needs 128 * N * r bytes; Node refuses above maxmem, so size it to the parameters.
    const maxmem = 128 * params.N * params.r * 2 + 1024 * 1024;
    scrypt(password, salt, 64, { N: params.N, r: params.r, p: params.p, maxmem }, (err, buf) => {
      if (err) return reject(err);
      resolve({ encrypt: buf.subarray(0, 32), macK: buf.subarray(32, 48), macR: buf.subarray(48, 64) });
    });
  });
}
