/**
 * Blob codec: turns a plaintext blob into the bytes stored in a pack and back. Compression is
 * kept only when it saves space (a version 2 pack may hold both kinds), so incompressible data
 * costs no decompression on restore. Shared by the main thread and the encoder workers.
 */
import type { Key } from './crypto.ts';
import { decodeBlobRaw, encodeBlobRaw } from './seal-core.mjs';
import { IntegrityError } from './errors.ts';
import type { Id } from './ids.ts';
import type { BlobType, EncodedBlob } from './pack.ts';

/** Compresses (when worthwhile) and encrypts a blob whose id is already known. */
export function encodeBlob(key: Key, type: BlobType, id: Id, plain: Uint8Array, allowCompression = true): EncodedBlob {
  const { data, uncompressedLength } = encodeBlobRaw(key.encrypt, key.macK, key.macR, plain, allowCompression);
  return uncompressedLength === undefined ? { id, type, data } : { id, type, data, uncompressedLength };
}

/** Decrypts, decompresses and verifies a stored blob; throws IntegrityError naming the blob. */
export function decodeBlob(key: Key, id: Id, stored: Uint8Array, uncompressedLength: number | undefined, where = ''): Buffer {
  const r = decodeBlobRaw(key.encrypt, key.macK, key.macR, id, stored, uncompressedLength);
  if (r.error !== undefined) throw new IntegrityError(`blob ${id}${where}: ${r.error}`);
  return r.plain;
}
