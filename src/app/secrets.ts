import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';

/**
 * Secrets at rest: AES-256-GCM with a random 12-byte nonce. Stored form:
 * `v1.<base64 nonce>.<base64 ciphertext>.<base64 tag>`; the version names the algorithm so a
 * future key rotation can tell old values apart.
 */
export interface SecretBox {
  seal(plaintext: string): string;
  open(sealed: string): string;
  /** HMAC-SHA256 (base64url) of data under a key derived from the master key for `purpose`. */
  sign(purpose: string, data: string): string;
}

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new Error('secret key must be 32 bytes');
  return {
    seal(plaintext) {
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return ['v1', nonce.toString('base64'), ct.toString('base64'), cipher.getAuthTag().toString('base64')].join('.');
    },
    open(sealed) {
      const [v, nonce, ct, tag] = sealed.split('.');
      if (v !== 'v1' || !nonce || ct === undefined || !tag) throw new Error('not a sealed secret');
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64'));
      decipher.setAuthTag(Buffer.from(tag, 'base64'));
      return Buffer.concat([decipher.update(Buffer.from(ct, 'base64')), decipher.final()]).toString('utf8');
    },
    sign(purpose, data) {
      // A separate key per purpose: a signature made for one use never verifies for another.
      const k = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), `backplane:${purpose}`, 32));
      return createHmac('sha256', k).update(data).digest('base64url');
    },
  };
}

/** Accepts 32 bytes as 64 hex digits or base64. */
export function parseSecretKey(value: string): Buffer {
  const v = value.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(v) ? Buffer.from(v, 'hex') : Buffer.from(v, 'base64');
  if (key.length !== 32) throw new Error('BACKPLANE_SECRET_KEY must be 32 bytes (64 hex digits or base64)');
  return key;
}

/** The key from BACKPLANE_SECRET_KEY, or a key file under home created on first use (embedded default). */
export function resolveSecretKey(envValue: string | undefined, home: string): Buffer {
  if (envValue) return parseSecretKey(envValue);
  const file = path.join(home, 'secret.key');
  if (!existsSync(file)) {
    mkdirSync(home, { recursive: true });
    writeFileSync(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  }
  return parseSecretKey(readFileSync(file, 'utf8'));
}

/** A URL with its password replaced by `****`, safe to show. */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.password) u.password = '****';
    for (const k of [...u.searchParams.keys()]) {
      if (/pass|secret|token|key/i.test(k)) u.searchParams.set(k, '****');
    }
    return u.toString();
  } catch {
    return '****';
  }
}
