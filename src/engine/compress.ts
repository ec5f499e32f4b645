/**
 * Compression: repository version 2 compresses with zstd. Blobs are compressed on their own
 * (the pack header records their uncompressed length); *unpacked files* (index, snapshots,
 * locks — not config, not keys) are stored as a version byte `2` followed by one zstd frame.
 * A file that starts with `{` or `[` is plain JSON from a version 1 writer.
 */
import { compress as zstdCompress, decompress as zstdDecompress } from 'zstd-napi';
import { IntegrityError } from './errors.ts';
import { ZSTD_LEVEL } from './seal-core.mjs';

export { ZSTD_LEVEL };

/** Compresses one buffer into one zstd frame. */
export function compress(data: Uint8Array): Buffer {
  return zstdCompress(data, { compressionLevel: ZSTD_LEVEL });
}

/** Decompresses one zstd frame, checking the expected length when given. */
export function decompress(data: Uint8Array, expectedLength?: number): Buffer {
  let out: Buffer;
  try {
    out = zstdDecompress(data);
  } catch (cause) {
    throw new IntegrityError('zstd decompression failed', { cause });
  }
  if (expectedLength !== undefined && out.length !== expectedLength) {
    throw new IntegrityError(`decompressed ${out.length} bytes, expected ${expectedLength}`);
  }
  return out;
}

/** Encodes an unpacked file's plaintext for a version 2 repository. */
export function compressUnpacked(plain: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([2]), compress(plain)]);
}

/** Decodes an unpacked file's plaintext (version byte 2 + zstd, or plain JSON). */
export function decompressUnpacked(data: Buffer): Buffer {
  if (data.length === 0) return data;
  if (data[0] === 0x7b || data[0] === 0x5b) return data;
  if (data[0] !== 2) throw new IntegrityError(`unknown unpacked file encoding ${data[0]}`);
  return decompress(data.subarray(1));
}
