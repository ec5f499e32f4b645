/**
 * Packs: a *blob* is one chunk of file content (`data`) or one serialized directory (`tree`),
 * stored encrypted (and, in version 2, usually zstd-compressed first). A *pack* is a file in
 * `data/` holding many blobs back to back, followed by an encrypted *header* listing them and
 * the header's length as a 4-byte little-endian integer:
 *
 *     blob_1 || … || blob_n || encrypt(entry_1 || … || entry_n) || uint32le(len(encrypted header))
 *
 * A header entry is `type (1) || length (4, LE) || id (32)` for an uncompressed blob (type 0
 * data, 1 tree) and `type (1) || length (4) || uncompressed length (4) || id (32)` for a
 * compressed one (type 2 data, 3 tree). `length` is the stored (encrypted) size.
 */
import type { Backend } from '../destinations/backend.ts';
import { CRYPTO_OVERHEAD, decrypt, encrypt, type Key } from './crypto.ts';
import { IntegrityError } from './errors.ts';
import { collectGarbage } from './gc.ts';
import { createHash } from 'node:crypto';
import type { Id } from './ids.ts';

/** The two kinds of blob. */
export type BlobType = 'data' | 'tree';

/** Where one blob lives inside a pack, as the index and the pack header record it. */
export interface PackedBlobInfo {
  id: Id;
  type: BlobType;
  /** Byte offset of the encrypted blob inside the pack. */
  offset: number;
  /** Stored (encrypted, maybe compressed) length. */
  length: number;
  /** Plaintext length when the blob is compressed; absent when it is stored uncompressed. */
  uncompressedLength?: number;
}

/** A blob ready to be written into a pack. */
export interface EncodedBlob {
  id: Id;
  type: BlobType;
  /** Encrypted bytes as they go into the pack. */
  data: Buffer;
  uncompressedLength?: number;
}

/** Target pack size: restic writes packs of about 16 MiB. */
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;

const ENTRY_PLAIN = 37;
const ENTRY_COMPRESSED = 41;
/** restic refuses headers larger than this; so do we. */
const MAX_HEADER_SIZE = 16 * 1024 * 1024 + CRYPTO_OVERHEAD;

function entryType(type: BlobType, compressed: boolean): number {
  return (type === 'data' ? 0 : 1) + (compressed ? 2 : 0);
}

/** Serializes header entries (plaintext). */
export function encodeHeader(blobs: PackedBlobInfo[]): Buffer {
  let size = 0;
  for (const b of blobs) size += b.uncompressedLength === undefined ? ENTRY_PLAIN : ENTRY_COMPRESSED;
  const out = Buffer.alloc(size);
  let p = 0;
  for (const b of blobs) {
    const compressed = b.uncompressedLength !== undefined;
    out[p++] = entryType(b.type, compressed);
    out.writeUInt32LE(b.length, p);
    p += 4;
    if (compressed) {
      out.writeUInt32LE(b.uncompressedLength!, p);
      p += 4;
    }
    out.write(b.id, p, 'hex');
    p += 32;
  }
  return out;
}

/** Parses header entries, computing each blob's offset from the lengths before it. */
export function decodeHeader(plain: Buffer): PackedBlobInfo[] {
  const out: PackedBlobInfo[] = [];
  let p = 0;
  let offset = 0;
  while (p < plain.length) {
    const t = plain[p];
    if (t > 3) throw new IntegrityError(`pack header: unknown entry type ${t}`);
    const compressed = t >= 2;
    const need = compressed ? ENTRY_COMPRESSED : ENTRY_PLAIN;
    if (p + need > plain.length) throw new IntegrityError('pack header: truncated entry');
    const length = plain.readUInt32LE(p + 1);
    const uncompressedLength = compressed ? plain.readUInt32LE(p + 5) : undefined;
    const id = plain.toString('hex', p + need - 32, p + need);
    const info: PackedBlobInfo = { id, type: t % 2 === 0 ? 'data' : 'tree', offset, length };
    if (compressed) info.uncompressedLength = uncompressedLength;
    out.push(info);
    offset += length;
    p += need;
  }
  return out;
}

/** The size a pack holding these blobs must have: blobs, encrypted header, length field. */
export function expectedPackSize(blobs: PackedBlobInfo[]): number {
  let size = 4 + CRYPTO_OVERHEAD;
  for (const b of blobs) size += b.length + (b.uncompressedLength === undefined ? ENTRY_PLAIN : ENTRY_COMPRESSED);
  return size;
}

/**
 * Data pack buffers kept for the next packs, of any repository in the process. A fresh 17 MiB
 * buffer pays its page faults as blobs are first copied in (in some VMs at a third of a GB/s);
 * a reused one copies at memory speed. At most MAX_SPARE_PACK_BUFFERS are kept, and only while
 * packs are being written: SPARE_PACK_BUFFER_IDLE_MS after the last one was put back they are
 * dropped and collected, so an idle server does not hold a backup's buffers (up to 68 MiB) until
 * its next backup.
 */
const sparePackBuffers: Buffer[] = [];
const MAX_SPARE_PACK_BUFFERS = 4;
const SPARE_PACK_BUFFER_IDLE_MS = 10_000;
let dropTimer: NodeJS.Timeout | undefined;

/** How many bytes a PackWriter for packs of about `packSize` bytes wants. */
export function packBufferBytes(packSize: number): number {
  return packSize + 1024 * 1024;
}

/** A kept buffer of at least `bytes`, if there is one. */
export function takePackBuffer(bytes: number): Buffer | undefined {
  const i = sparePackBuffers.findIndex((b) => b.length >= bytes);
  return i < 0 ? undefined : sparePackBuffers.splice(i, 1)[0];
}

/**
 * Keeps a pack buffer nothing uses any more for the next pack. Past the limit it takes the
 * place of a smaller one, so buffers of small test-sized packs do not crowd out full ones.
 */
export function keepPackBuffer(buf: Buffer): void {
  clearTimeout(dropTimer);
  dropTimer = setTimeout(dropPackBuffers, SPARE_PACK_BUFFER_IDLE_MS).unref();
  if (sparePackBuffers.includes(buf)) return;
  if (sparePackBuffers.length < MAX_SPARE_PACK_BUFFERS) {
    sparePackBuffers.push(buf);
    return;
  }
  let smallest = 0;
  for (let i = 1; i < sparePackBuffers.length; i++) if (sparePackBuffers[i].length < sparePackBuffers[smallest].length) smallest = i;
  if (sparePackBuffers[smallest].length < buf.length) sparePackBuffers[smallest] = buf;
}

/**
 * Drops the kept buffers and has them collected now: nothing else would collect them on an
 * idle thread, and the next backup's fresh buffers would then come on top of them.
 */
export function dropPackBuffers(): void {
  clearTimeout(dropTimer);
  dropTimer = undefined;
  if (sparePackBuffers.length === 0) return;
  sparePackBuffers.length = 0;
  collectGarbage();
}

/** Scratch for copyIn(), small enough to stay in cache. */
const SCRATCH_BYTES = 256 * 1024;
const scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES + 8);

/**
 * Copies `src` into `dst` at `at`. V8 copies out of a SharedArrayBuffer (a codec thread's ring,
 * where sealed blobs arrive) with relaxed atomic loads: a word at a time when source and target
 * addresses agree modulo 8, but a byte at a time otherwise, which is most blobs, since blobs lie
 * back to back in a pack. That ran at about a third of memcpy's speed on the thread that also
 * answers requests. Through a scratch buffer aligned like the source, both copies run at
 * memory speed.
 */
function copyIn(src: Buffer, dst: Buffer, at: number): void {
  const align = src.byteOffset % 8;
  if (!(src.buffer instanceof SharedArrayBuffer) || align === (dst.byteOffset + at) % 8) {
    src.copy(dst, at);
    return;
  }
  for (let done = 0; done < src.length; done += SCRATCH_BYTES) {
    const n = Math.min(SCRATCH_BYTES, src.length - done);
    src.copy(scratch, align, done, done + n);
    scratch.copy(dst, at + done, align, align + n);
  }
}

/** A finished pack, ready to save. */
export interface FinishedPack {
  id: Id;
  bytes: Buffer;
  blobs: PackedBlobInfo[];
  /** The whole buffer behind `bytes`, which may be reused for another pack once saved. */
  buffer: Buffer;
}

/**
 * Collects blobs for one pack, copying them into one growing buffer so that finishing the pack
 * needs no second full-size copy. The pack's id (SHA-256 of the whole file) is hashed as blobs
 * arrive, so finishing does not hash 16 MiB in one go on the thread that answers requests.
 * Not reusable after finish().
 */
export class PackWriter {
  private buf: Buffer;
  private readonly blobs: PackedBlobInfo[] = [];
  private offset = 0;
  private readonly hash = createHash('sha256');

  /**
   * sizeHint: the expected pack size, to allocate once in the common case; reuse: a spare
   * buffer from an earlier pack, used when it is large enough.
   */
  constructor(sizeHint = DEFAULT_PACK_SIZE, reuse?: Buffer) {
    const want = packBufferBytes(sizeHint);
    this.buf = reuse && reuse.length >= want ? reuse : Buffer.allocUnsafe(want);
  }

  private reserve(n: number): void {
    if (this.offset + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.offset + n));
    this.buf.copy(grown, 0, 0, this.offset);
    this.buf = grown;
  }

  /** Appends one encoded blob. */
  add(blob: EncodedBlob): void {
    const info: PackedBlobInfo = { id: blob.id, type: blob.type, offset: this.offset, length: blob.data.length };
    if (blob.uncompressedLength !== undefined) info.uncompressedLength = blob.uncompressedLength;
    this.blobs.push(info);
    this.reserve(blob.data.length);
    copyIn(blob.data, this.buf, this.offset);
    this.hash.update(blob.data);
    this.offset += blob.data.length;
  }

  /** Bytes of blob data so far. */
  get size(): number {
    return this.offset;
  }

  /** Number of blobs so far. */
  get count(): number {
    return this.blobs.length;
  }

  /** True when a blob of n bytes fits the buffer together with the header (no reallocation). */
  fits(n: number): boolean {
    return this.offset + n + 4 + CRYPTO_OVERHEAD + (this.blobs.length + 1) * ENTRY_COMPRESSED <= this.buf.length;
  }

  /** Encrypts the header, assembles the pack and checks the header reads back. */
  finish(key: Key): FinishedPack {
    const header = encrypt(key, encodeHeader(this.blobs));
    this.reserve(header.length + 4);
    header.copy(this.buf, this.offset);
    this.buf.writeUInt32LE(header.length, this.offset + header.length);
    const bytes = this.buf.subarray(0, this.offset + header.length + 4);
    // Verify what we wrote: a header that does not decode would make the whole pack useless.
    const back = decodeHeader(decrypt(key, bytes.subarray(this.offset, this.offset + header.length)));
    if (back.length !== this.blobs.length || back.some((b, i) => b.id !== this.blobs[i].id || b.offset !== this.blobs[i].offset)) {
      throw new IntegrityError('pack header does not read back as written');
    }
    const id = this.hash.update(bytes.subarray(this.offset)).digest('hex');
    return { id, bytes, blobs: this.blobs.slice(), buffer: this.buf };
  }
}

/** Parses the header of a whole pack held in memory. */
export function parsePack(key: Key, bytes: Buffer): PackedBlobInfo[] {
  if (bytes.length < 4 + CRYPTO_OVERHEAD) throw new IntegrityError('pack too short');
  const hlen = bytes.readUInt32LE(bytes.length - 4);
  if (hlen < CRYPTO_OVERHEAD || hlen > bytes.length - 4 || hlen > MAX_HEADER_SIZE) {
    throw new IntegrityError(`pack header length ${hlen} invalid`);
  }
  const headerEnd = bytes.length - 4;
  const blobs = decodeHeader(decrypt(key, bytes.subarray(headerEnd - hlen, headerEnd)));
  const dataEnd = headerEnd - hlen;
  for (const b of blobs) {
    if (b.offset + b.length > dataEnd) throw new IntegrityError('pack header points past the blob area');
  }
  return blobs;
}

/** Reads only the header of a pack in a backend (two small range reads). */
export async function readPackHeader(backend: Backend, key: Key, id: Id, signal?: AbortSignal): Promise<PackedBlobInfo[]> {
  const st = await backend.stat({ type: 'data', name: id }, { signal });
  if (!st) throw new IntegrityError(`pack ${id} does not exist`);
  if (st.size < 4 + CRYPTO_OVERHEAD) throw new IntegrityError(`pack ${id} too short`);
  // Most headers are small; read a generous tail in one request and only fall back when needed.
  const eager = Math.min(st.size, 64 * 1024);
  let tail = await backend.load({ type: 'data', name: id }, { offset: st.size - eager, length: eager, signal });
  const hlen = tail.readUInt32LE(tail.length - 4);
  if (hlen < CRYPTO_OVERHEAD || hlen > st.size - 4 || hlen > MAX_HEADER_SIZE) {
    throw new IntegrityError(`pack ${id}: header length ${hlen} invalid`);
  }
  if (hlen + 4 > tail.length) {
    tail = await backend.load({ type: 'data', name: id }, { offset: st.size - 4 - hlen, length: hlen + 4, signal });
  }
  const header = tail.subarray(tail.length - 4 - hlen, tail.length - 4);
  try {
    return decodeHeader(decrypt(key, header));
  } catch (cause) {
    throw new IntegrityError(`pack ${id}: header unreadable`, { cause });
  }
}
