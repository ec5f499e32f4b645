/**
 * Ids: every file and blob in a restic repository is named by the SHA-256 of some bytes, written
 * as 64 lowercase hex digits. Blobs are named by the hash of their plaintext, files (packs,
 * index, snapshots, keys, locks) by the hash of the bytes stored.
 */
import { createHash, randomBytes } from 'node:crypto';

/** 64 lowercase hex digits. */
export type Id = string;

const ID_RE = /^[0-9a-f]{64}$/;

/** SHA-256 of the concatenated parts, as an Id. */
export function hashId(...parts: Uint8Array[]): Id {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/** A random Id, for the repository id. */
export function randomId(): Id {
  return randomBytes(32).toString('hex');
}

/** True when s is a well-formed Id. */
export function isId(s: string): boolean {
  return ID_RE.test(s);
}

/** The short form restic prints (first 8 hex digits). */
export function shortId(id: Id): string {
  return id.slice(0, 8);
}
