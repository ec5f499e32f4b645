/**
 * The master index as it was before the compact one (src/engine/master-index.ts): one Map of
 * location objects per blob type, keyed by the id string, loaded through indexFromJson. Kept
 * only as the benchmark's yardstick (bench/index.ts).
 */
import { indexFromJson, type IndexEntry } from '../src/engine/master-index.ts';
import type { BlobType } from '../src/engine/pack.ts';

export class MapIndex {
  private readonly data = new Map<string, IndexEntry>();
  private readonly trees = new Map<string, IndexEntry>();
  private readonly packSet = new Set<string>();

  /** Adds an index file's parsed JSON; the first location seen for a blob wins. */
  load(json: unknown): void {
    for (const p of indexFromJson(json).packs) {
      this.packSet.add(p.packId);
      for (const b of p.blobs) {
        const m = b.type === 'data' ? this.data : this.trees;
        if (m.has(b.id)) continue;
        const e: IndexEntry = { packId: p.packId, type: b.type, offset: b.offset, length: b.length };
        if (b.uncompressedLength !== undefined) e.uncompressedLength = b.uncompressedLength;
        m.set(b.id, e);
      }
    }
  }

  has(type: BlobType, id: string): boolean {
    return (type === 'data' ? this.data : this.trees).has(id);
  }

  get size(): number {
    return this.data.size + this.trees.size;
  }
}
