/**
 * Index: the *index* says which pack holds each blob and where. It is stored as encrypted,
 * compressed JSON files in `index/`, each listing some packs with their blobs:
 *
 *     {"supersedes": [...], "packs": [{"id": <pack>, "blobs": [{"id", "type", "offset",
 *      "length", "uncompressed_length"?}]}]}
 *
 * The *master index* is the union of all index files, held in memory for lookups. A blob is
 * known when any index file lists it; a pack no index file lists is unreferenced (left behind by
 * an interrupted backup) and prune removes it.
 */
import { randomBytes } from 'node:crypto';
import { IntegrityError } from './errors.ts';
import type { Id } from './ids.ts';
import type { BlobType, PackedBlobInfo } from './pack.ts';

/** One index file's JSON form. */
export interface IndexJson {
  supersedes?: Id[] | null;
  packs: { id: Id; blobs: { id: Id; type: BlobType; offset: number; length: number; uncompressed_length?: number }[] }[];
}

/** Where one blob is stored. */
export interface IndexEntry {
  packId: Id;
  type: BlobType;
  offset: number;
  length: number;
  uncompressedLength?: number;
}

/** The packs of one index file, parsed. */
export interface PackList {
  packId: Id;
  blobs: PackedBlobInfo[];
}

/** Turns a list of packs into an index file's JSON. */
export function indexToJson(packs: PackList[], supersedes: Id[] = []): IndexJson {
  return {
    supersedes: supersedes.length ? supersedes : undefined,
    packs: packs.map((p) => ({
      id: p.packId,
      blobs: p.blobs.map((b) => {
        const o: IndexJson['packs'][number]['blobs'][number] = { id: b.id, type: b.type, offset: b.offset, length: b.length };
        if (b.uncompressedLength !== undefined) o.uncompressed_length = b.uncompressedLength;
        return o;
      }),
    })),
  };
}

/** Parses an index file's JSON (restic's current format, or the legacy bare array of packs). */
export function indexFromJson(j: unknown): { packs: PackList[]; supersedes: Id[] } {
  const obj: IndexJson = Array.isArray(j) ? { packs: j as IndexJson['packs'] } : (j as IndexJson);
  const packs: PackList[] = (obj.packs ?? []).map((p) => ({
    packId: p.id,
    blobs: (p.blobs ?? []).map((b) => {
      const info: PackedBlobInfo = { id: b.id, type: b.type, offset: b.offset, length: b.length };
      if (b.uncompressed_length) info.uncompressedLength = b.uncompressed_length;
      return info;
    }),
  }));
  return { packs, supersedes: obj.supersedes ?? [] };
}

/** u32 words per entry: the blob id (8), pack number with the type bit, offset, length, uncompressed length + 1. */
const ENTRY_WORDS = 12;
const W_PACK = 8;
const W_OFFSET = 9;
const W_LENGTH = 10;
const W_ULEN = 11;
/** The pack word's top bit marks a tree blob; the other 31 bits number the pack. */
const PACK_MASK = 0x7fffffff;
/**
 * Entries live in pages of this many (768 KiB each): the index grows by adding a page, never by
 * copying what it holds (only the first page doubles while the index is small).
 */
const PAGE_SHIFT = 14;
const PAGE_ENTRIES = 1 << PAGE_SHIFT;
const PAGE_MASK = PAGE_ENTRIES - 1;
const FIRST_PAGE_ENTRIES = 64;
const MIN_SLOTS = 256;
/**
 * The slot table doubles past this load. Linear probing stays short below it, and the tag byte
 * kept beside each slot settles most probes without reading the entry.
 */
const MAX_LOAD = 0.75;
const U32_MAX = 0xffffffff;

/** Hex digit → value; 16 for anything else. */
const NIBBLE = new Uint8Array(128).fill(16);
for (let i = 0; i < 10; i++) NIBBLE[48 + i] = i;
for (let i = 0; i < 6; i++) NIBBLE[97 + i] = 10 + i;

/** Reads a 64-digit lowercase hex id into 8 big-endian words; false when it is not one. */
function parseId(id: string, out: Uint32Array): boolean {
  if (id.length !== 64) return false;
  let bad = 0;
  for (let w = 0, c = 0; w < 8; w++) {
    let v = 0;
    for (let k = 0; k < 8; k++, c++) {
      const ch = id.charCodeAt(c);
      const n = NIBBLE[ch & 0x7f];
      bad |= n | (ch & 0xff80);
      v = (v << 4) | n;
    }
    out[w] = v;
  }
  return (bad & 0xfff0) === 0;
}

/** True when n fits the u32 fields of an entry. */
function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= U32_MAX;
}

/**
 * In-memory union of index files: blob → location, held in typed arrays so that a large
 * repository's index stays small (65 bytes per blob with 5 million blobs, against 218 for a Map
 * of objects: `npm run bench:index`; restic needs ~350). Each blob is one entry of 12 u32 words
 * in pages; pack ids are stored once, in a table the entries refer to by number. Lookups go
 * through an open-addressing table (linear probing) of entry numbers with one tag byte per slot,
 * hashed from the id's first 64 bits with a per-process random seed: ids are SHA-256 sums, but
 * whoever writes the backed-up files could choose contents whose ids share the few bits a table
 * uses, as restic's index notes.
 */
export class MasterIndex {
  private pages: Uint32Array[] = [];
  private count = 0;
  /** Entry number + 1 per slot; 0 is empty. */
  private slots = new Uint32Array(MIN_SLOTS);
  /**
   * The top byte of each slot's hash (never 0, which marks an empty slot), compared before the
   * entry is read: a miss reads only this array until it meets an empty slot.
   */
  private tags = new Uint8Array(MIN_SLOTS);
  private mask = MIN_SLOTS - 1;
  private packIds: Id[] = [];
  private readonly packNumbers = new Map<Id, number>();
  private readonly seed = Uint32Array.from([randomBytes(4).readUInt32LE(0), randomBytes(4).readUInt32LE(0)]);
  /** Scratch for the id being looked up, so a lookup allocates nothing. */
  private readonly key = new Uint32Array(8);

  private hash(w0: number, w1: number, tree: number): number {
    let h = Math.imul(w0 ^ this.seed[0], 0x9e3779b1) ^ Math.imul(w1 ^ this.seed[1], 0x85ebca77) ^ tree;
    h ^= h >>> 16;
    h = Math.imul(h, 0x7feb352d);
    h ^= h >>> 15;
    h = Math.imul(h, 0x846ca68b);
    return (h ^ (h >>> 16)) >>> 0;
  }

  private hashOf(e: number): number {
    const page = this.pages[e >>> PAGE_SHIFT];
    const b = (e & PAGE_MASK) * ENTRY_WORDS;
    return this.hash(page[b], page[b + 1], page[b + W_PACK] >>> 31);
  }

  /** Slot of the entry for this.key and the type bit, or -1. */
  private find(tree: number): number {
    const k = this.key;
    const h = this.hash(k[0], k[1], tree);
    const tag = h >>> 24 || 1;
    const { slots, tags, mask, pages } = this;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const t = tags[i];
      if (t === 0) return -1;
      if (t !== tag) continue;
      const e = slots[i] - 1;
      const page = pages[e >>> PAGE_SHIFT];
      const b = (e & PAGE_MASK) * ENTRY_WORDS;
      if (
        page[b] === k[0] && page[b + 1] === k[1] && page[b + 2] === k[2] && page[b + 3] === k[3] &&
        page[b + 4] === k[4] && page[b + 5] === k[5] && page[b + 6] === k[6] && page[b + 7] === k[7] &&
        page[b + W_PACK] >>> 31 === tree
      ) return i;
    }
  }

  /** Puts entry e into the first free slot of its probe sequence. */
  private place(e: number, h: number): void {
    const { tags, mask } = this;
    let i = h & mask;
    while (tags[i] !== 0) i = (i + 1) & mask;
    this.slots[i] = e + 1;
    tags[i] = h >>> 24 || 1;
  }

  private growSlots(): void {
    const size = this.slots.length * 2;
    this.slots = new Uint32Array(size);
    this.tags = new Uint8Array(size);
    this.mask = size - 1;
    for (let e = 0; e < this.count; e++) this.place(e, this.hashOf(e));
  }

  /** Room for entry number e. */
  private pageFor(e: number): Uint32Array {
    const p = e >>> PAGE_SHIFT;
    if (p < this.pages.length) {
      const page = this.pages[p];
      if ((e & PAGE_MASK) * ENTRY_WORDS < page.length) return page;
      // Only the first page is ever short: double it, up to a whole page.
      const bigger = new Uint32Array(Math.min(page.length * 2, PAGE_ENTRIES * ENTRY_WORDS));
      bigger.set(page);
      return (this.pages[p] = bigger);
    }
    const page = new Uint32Array((p === 0 ? FIRST_PAGE_ENTRIES : PAGE_ENTRIES) * ENTRY_WORDS);
    this.pages.push(page);
    return page;
  }

  private packNumber(packId: Id): number {
    let n = this.packNumbers.get(packId);
    if (n === undefined) {
      n = this.packIds.length;
      if (n > PACK_MASK) throw new IntegrityError('the index lists more packs than it can hold');
      this.packIds.push(packId);
      this.packNumbers.set(packId, n);
    }
    return n;
  }

  /** Adds one blob of pack number `pack` unless it is already indexed (the first location wins). */
  private insert(pack: number, id: Id, type: string, offset: number, length: number, uncompressedLength: number | undefined): void {
    if (!parseId(id, this.key)) throw new IntegrityError(`index: ${JSON.stringify(id)} is not a blob id`);
    const tree = type === 'tree' ? 1 : 0;
    if (!tree && type !== 'data') throw new IntegrityError(`index: blob ${id} has unknown type ${JSON.stringify(type)}`);
    if (!isU32(offset) || !isU32(length) || (uncompressedLength !== undefined && !(isU32(uncompressedLength) && uncompressedLength < U32_MAX))) {
      throw new IntegrityError(`index: blob ${id} has an impossible offset or length`);
    }
    if (this.find(tree) >= 0) return;
    if (this.count + 1 > this.slots.length * MAX_LOAD) this.growSlots();
    const e = this.count;
    const page = this.pageFor(e);
    const b = (e & PAGE_MASK) * ENTRY_WORDS;
    page.set(this.key, b);
    page[b + W_PACK] = pack | (tree << 31);
    page[b + W_OFFSET] = offset;
    page[b + W_LENGTH] = length;
    page[b + W_ULEN] = uncompressedLength === undefined ? 0 : uncompressedLength + 1;
    this.count++;
    this.place(e, this.hash(this.key[0], this.key[1], tree));
  }

  /** Runs add; when it throws, takes back every entry and pack it added. */
  private allOrNothing(add: () => void): void {
    const entries = this.count;
    const packs = this.packIds.length;
    try {
      add();
    } catch (err) {
      for (let e = this.count - 1; e >= entries; e--) {
        let s = this.hashOf(e) & this.mask;
        while (this.slots[s] !== e + 1) s = (s + 1) & this.mask;
        this.removeAt(s);
      }
      for (const id of this.packIds.splice(packs)) this.packNumbers.delete(id);
      throw err;
    }
  }

  /** Adds every blob of a pack. The first location seen for a blob wins. */
  addPack(packId: Id, blobs: PackedBlobInfo[]): void {
    this.allOrNothing(() => {
      const pack = this.packNumber(packId);
      for (const b of blobs) this.insert(pack, b.id, b.type, b.offset, b.length, b.uncompressedLength);
    });
  }

  /**
   * Adds every pack of an index file's parsed JSON (as indexFromJson reads it, without making
   * its objects first): what loading a repository does for each index file. A file with an
   * entry the index cannot hold adds nothing.
   */
  addIndexJson(j: unknown): void {
    const obj: IndexJson = Array.isArray(j) ? { packs: j as IndexJson['packs'] } : (j as IndexJson);
    this.allOrNothing(() => {
      for (const p of obj.packs ?? []) {
        const pack = this.packNumber(p.id);
        for (const b of p.blobs ?? []) this.insert(pack, b.id, b.type, b.offset, b.length, b.uncompressed_length || undefined);
      }
    });
  }

  /** Removes the entry in slot i (backward-shift deletion: no tombstones) and keeps entries dense. */
  private removeAt(i: number): void {
    const { slots, tags, mask } = this;
    const e = slots[i] - 1;
    let hole = i;
    for (let j = (i + 1) & mask; tags[j] !== 0; j = (j + 1) & mask) {
      const home = this.hashOf(slots[j] - 1) & mask;
      // The entry at j may fill the hole unless its home lies after the hole (cyclically).
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        slots[hole] = slots[j];
        tags[hole] = tags[j];
        hole = j;
      }
    }
    slots[hole] = 0;
    tags[hole] = 0;
    const last = --this.count;
    if (e !== last) {
      // Move the last entry into the freed one and repoint its slot.
      let s = this.hashOf(last) & mask;
      while (slots[s] !== last + 1) s = (s + 1) & mask;
      slots[s] = e + 1;
      const from = this.pages[last >>> PAGE_SHIFT];
      const fb = (last & PAGE_MASK) * ENTRY_WORDS;
      this.pages[e >>> PAGE_SHIFT].set(from.subarray(fb, fb + ENTRY_WORDS), (e & PAGE_MASK) * ENTRY_WORDS);
    }
    if ((last & PAGE_MASK) === 0 && last > 0) this.pages.pop();
  }

  /**
   * Forgets a pack that no index file will list (a backup that wrote it was discarded). Blobs
   * located in it are dropped, not moved to another copy: the next index load finds those.
   */
  removePack(packId: Id, blobs: PackedBlobInfo[]): void {
    const pack = this.packNumbers.get(packId);
    if (pack === undefined) return;
    this.packNumbers.delete(packId);
    for (const b of blobs) {
      if (!parseId(b.id, this.key)) continue;
      const i = this.find(b.type === 'tree' ? 1 : 0);
      if (i < 0) continue;
      const e = this.slots[i] - 1;
      if ((this.pages[e >>> PAGE_SHIFT][(e & PAGE_MASK) * ENTRY_WORDS + W_PACK] & PACK_MASK) === pack) this.removeAt(i);
    }
  }

  /** Forgets everything (before reloading after maintenance). */
  clear(): void {
    this.pages = [];
    this.count = 0;
    this.slots = new Uint32Array(MIN_SLOTS);
    this.tags = new Uint8Array(MIN_SLOTS);
    this.mask = MIN_SLOTS - 1;
    this.packIds = [];
    this.packNumbers.clear();
  }

  private entryAt(e: number): IndexEntry {
    const page = this.pages[e >>> PAGE_SHIFT];
    const b = (e & PAGE_MASK) * ENTRY_WORDS;
    const packWord = page[b + W_PACK];
    const entry: IndexEntry = {
      packId: this.packIds[packWord & PACK_MASK],
      type: packWord >>> 31 ? 'tree' : 'data',
      offset: page[b + W_OFFSET],
      length: page[b + W_LENGTH],
    };
    const ulen = page[b + W_ULEN];
    if (ulen !== 0) entry.uncompressedLength = ulen - 1;
    return entry;
  }

  /** Location of a blob, or undefined. */
  lookup(type: BlobType, id: Id): IndexEntry | undefined {
    if (!parseId(id, this.key)) return undefined;
    const i = this.find(type === 'tree' ? 1 : 0);
    return i < 0 ? undefined : this.entryAt(this.slots[i] - 1);
  }

  /** True when the blob is indexed. */
  has(type: BlobType, id: Id): boolean {
    return parseId(id, this.key) && this.find(type === 'tree' ? 1 : 0) >= 0;
  }

  /** True when some index file lists the pack. */
  hasPack(id: Id): boolean {
    return this.packNumbers.has(id);
  }

  /** Every indexed pack id. */
  packs(): IterableIterator<Id> {
    return this.packNumbers.keys();
  }

  /** Number of distinct blobs. */
  get size(): number {
    return this.count;
  }

  /** Every blob with its location. */
  *entries(): IterableIterator<{ id: Id } & IndexEntry> {
    const idBytes = Buffer.alloc(32);
    for (let e = 0; e < this.count; e++) {
      const page = this.pages[e >>> PAGE_SHIFT];
      const b = (e & PAGE_MASK) * ENTRY_WORDS;
      for (let w = 0; w < 8; w++) idBytes.writeUInt32BE(page[b + w], w * 4);
      yield { id: idBytes.toString('hex'), ...this.entryAt(e) };
    }
  }
}
