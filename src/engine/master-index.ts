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
import type { BlobType, PackedBlobInfo } from './pack.ts';
import type { Id } from './ids.ts';

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

/** In-memory union of index files: blob → location. */
export class MasterIndex {
  /** One map per blob type, keyed by id: no key string is built per lookup. */
  private readonly data = new Map<Id, IndexEntry>();
  private readonly trees = new Map<Id, IndexEntry>();
  private readonly packSet = new Set<Id>();

  private mapOf(type: BlobType): Map<Id, IndexEntry> {
    return type === 'data' ? this.data : this.trees;
  }

  /** Adds every blob of a pack. The first location seen for a blob wins. */
  addPack(packId: Id, blobs: PackedBlobInfo[]): void {
    this.packSet.add(packId);
    for (const b of blobs) {
      const m = this.mapOf(b.type);
      if (m.has(b.id)) continue;
      const e: IndexEntry = { packId, type: b.type, offset: b.offset, length: b.length };
      if (b.uncompressedLength !== undefined) e.uncompressedLength = b.uncompressedLength;
      m.set(b.id, e);
    }
  }

  /**
   * Forgets a pack that no index file will list (a backup that wrote it was discarded). Blobs
   * located in it are dropped, not moved to another copy: the next index load finds those.
   */
  removePack(packId: Id, blobs: PackedBlobInfo[]): void {
    this.packSet.delete(packId);
    for (const b of blobs) {
      const m = this.mapOf(b.type);
      if (m.get(b.id)?.packId === packId) m.delete(b.id);
    }
  }

  /** Forgets everything (before reloading after maintenance). */
  clear(): void {
    this.data.clear();
    this.trees.clear();
    this.packSet.clear();
  }

  /** Location of a blob, or undefined. */
  lookup(type: BlobType, id: Id): IndexEntry | undefined {
    return this.mapOf(type).get(id);
  }

  /** True when the blob is indexed. */
  has(type: BlobType, id: Id): boolean {
    return this.mapOf(type).has(id);
  }

  /** True when some index file lists the pack. */
  hasPack(id: Id): boolean {
    return this.packSet.has(id);
  }

  /** Every indexed pack id. */
  packs(): IterableIterator<Id> {
    return this.packSet.values();
  }

  /** Number of distinct blobs. */
  get size(): number {
    return this.data.size + this.trees.size;
  }

  /** Every blob with its location. */
  *entries(): IterableIterator<{ id: Id } & IndexEntry> {
    for (const m of [this.data, this.trees]) for (const [id, e] of m) yield { id, ...e };
  }
}
