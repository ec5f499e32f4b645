/**
 * KDF: scrypt turns a password and a random salt into a *user key* (64 bytes: 32 for AES, 16
 * for the MAC's k, 16 for its r), exactly as restic does. The parameters are stored in each key
 * file, so tests can use cheap ones without changing the format.
 */
import { createHash, scrypt } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { Key } from './crypto.ts';
import { backgroundNice } from './priority.ts';

/** scrypt cost parameters as stored in a restic key file. */
export interface KdfParams {
  N: number;
  r: number;
  p: number;
}

/** restic's defaults for new keys (N=2^15, r=8, p=1). */
export const DEFAULT_KDF_PARAMS: KdfParams = { N: 32768, r: 8, p: 1 };

/**
 * The scrypt run for background work: a thread of its own that lowers its priority first
 * (Linux gives each thread its own niceness, as in blob-worker.mjs). Inline, so the bundle in
 * dist/ needs no extra file.
 */
const NICE_SCRYPT = `
const { parentPort, workerData } = require('node:worker_threads');
const { scryptSync } = require('node:crypto');
try {
  const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
  require('node:os').setPriority(tid, workerData.nice);
} catch {}
parentPort.postMessage(scryptSync(workerData.password, workerData.salt, 64, workerData.options));
`;

/**
 * Derives the user key from the password. With a background niceness set (a server's jobs),
 * scrypt runs on a thread at that niceness: a restic-strength run takes a core for about 0.2 s,
 * which otherwise delays API requests at the start of every snapshot. Else on libuv's pool.
 */
export function deriveKey(password: string, salt: Uint8Array, params: KdfParams): Promise<Key> {
  // scrypt needs 128 * N * r bytes; Node refuses above maxmem, so size it to the parameters.
  const options = { N: params.N, r: params.r, p: params.p, maxmem: 128 * params.N * params.r * 2 + 1024 * 1024 };
  const toKey = (buf: Uint8Array): Key => {
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    return { encrypt: b.subarray(0, 32), macK: b.subarray(32, 48), macR: b.subarray(48, 64) };
  };
  const nice = backgroundNice();
  if (nice > 0) {
    return new Promise((resolve, reject) => {
      const worker = new Worker(NICE_SCRYPT, { eval: true, workerData: { password, salt, options, nice } });
      worker.once('message', (buf: Uint8Array) => resolve(toKey(buf)));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the scrypt thread exited with code ${code} before answering`)));
    });
  }
  return new Promise((resolve, reject) => {
    scrypt(password, salt, 64, options, (err, buf) => (err ? reject(err) : resolve(toKey(buf))));
  });
}

/** Derived keys kept per process (deriveKeyCached): enough for the destinations one worker uses. */
const CACHED_KEYS = 64;
const cached = new Map<string, Promise<Key>>();
let derivations = 0;

/**
 * deriveKey through a small per-process cache, for opening a repository: scrypt is a pure
 * function of password, salt and parameters, and every job opens its destination's repository
 * anew, so without this each job paid a restic-strength run (about 0.2 s of a core, and a thread
 * started for it) for the key it derived the job before. Concurrent opens share one run. The
 * entry is named by a hash, not by the password; it holds only what the password already gives.
 */
export function deriveKeyCached(password: string, salt: Uint8Array, params: KdfParams): Promise<Key> {
  const name = createHash('sha256').update(password).update('\0').update(salt).update(`\0${params.N},${params.r},${params.p}`).digest('hex');
  let key = cached.get(name);
  if (key) {
    cached.delete(name); // most recently used last: the oldest goes first
  } else {
    derivations++;
    key = deriveKey(password, salt, params);
    key.catch(() => cached.delete(name));
  }
  cached.set(name, key);
  if (cached.size > CACHED_KEYS) cached.delete(cached.keys().next().value!);
  return key.then(copyKey);
}

/** How many derivations deriveKeyCached has started in this process (for tests). */
export function cachedKeyDerivations(): number {
  return derivations;
}

/** A caller's own copy, so none can change another's key. */
function copyKey(k: Key): Key {
  return { encrypt: Buffer.from(k.encrypt), macK: Buffer.from(k.macK), macR: Buffer.from(k.macR) };
}
