import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../src/engine/errors.ts';
import { MasterIndex, indexFromJson, indexToJson, type IndexEntry } from '../../src/engine/master-index.ts';
import type { BlobType, PackedBlobInfo } from '../../src/engine/pack.ts';

/** A deterministic id for a label. */
const idOf = (label: string) => createHash('sha256').update(label).digest('hex');

/**
 * Ids that share their first 64 bits: the table hashes only those, so all of these land in one
 * probe chain whatever the seed, and every lookup among them has to compare whole ids.
 */
const collidingId = (n: number) => '0123456789abcdef' + idOf(`collide ${n}`).slice(16);

const blob = (id: string, type: BlobType, offset: number, length = 100, uncompressedLength?: number): PackedBlobInfo =>
  uncompressedLength === undefined ? { id, type, offset, length } : { id, type, offset, length, uncompressedLength };

/** The previous index's behaviour, as a reference: one Map per type, the first location wins. */
class ModelIndex {
  readonly maps = { data: new Map<string, IndexEntry>(), tree: new Map<string, IndexEntry>() };
  addPack(packId: string, blobs: PackedBlobInfo[]) {
    for (const b of blobs) {
      if (this.maps[b.type].has(b.id)) continue;
      const e: IndexEntry = { packId, type: b.type, offset: b.offset, length: b.length };
      if (b.uncompressedLength !== undefined) e.uncompressedLength = b.uncompressedLength;
      this.maps[b.type].set(b.id, e);
    }
  }
  removePack(packId: string, blobs: PackedBlobInfo[]) {
    for (const b of blobs) if (this.maps[b.type].get(b.id)?.packId === packId) this.maps[b.type].delete(b.id);
  }
  get size() {
    return this.maps.data.size + this.maps.tree.size;
  }
}

/** The index holds exactly what the model holds, looked up one by one and listed whole. */
function expectSame(index: MasterIndex, model: ModelIndex, probes: string[]) {
  expect(index.size).toBe(model.size);
  // Mismatches collected and compared once: an expect per blob would dominate the run time.
  const wrong: string[] = [];
  for (const type of ['data', 'tree'] as const) {
    for (const [id, e] of model.maps[type]) {
      const got = index.lookup(type, id);
      if (JSON.stringify(got) !== JSON.stringify(e)) wrong.push(`${type} ${id}: ${JSON.stringify(got)} != ${JSON.stringify(e)}`);
    }
    for (const id of probes) if (index.has(type, id) !== model.maps[type].has(id)) wrong.push(`has ${type} ${id}`);
  }
  expect(wrong).toEqual([]);
  const listed = [...index.entries()].map((e) => `${e.type} ${e.id} ${e.packId} ${e.offset}`).sort();
  const expected = (['data', 'tree'] as const).flatMap((t) => [...model.maps[t]].map(([id, e]) => `${t} ${id} ${e.packId} ${e.offset}`)).sort();
  expect(listed).toEqual(expected);
}

/** A small deterministic generator (mulberry32). */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('MasterIndex', () => {
  it('keeps every field of a location, data and tree blobs of the same id apart', () => {
    const index = new MasterIndex();
    const id = idOf('x');
    index.addPack(idOf('p1'), [blob(id, 'data', 0, 50, 80), blob(id, 'tree', 50, 60), blob(idOf('y'), 'data', 110, 7, 0xfffffffe)]);
    expect(index.lookup('data', id)).toEqual({ packId: idOf('p1'), type: 'data', offset: 0, length: 50, uncompressedLength: 80 });
    expect(index.lookup('tree', id)).toEqual({ packId: idOf('p1'), type: 'tree', offset: 50, length: 60 });
    expect(index.lookup('data', idOf('y'))?.uncompressedLength).toBe(0xfffffffe);
    expect(index.lookup('tree', idOf('y'))).toBeUndefined();
    expect(index.size).toBe(3);
    expect(index.hasPack(idOf('p1'))).toBe(true);
    expect([...index.packs()]).toEqual([idOf('p1')]);
  });

  it('keeps the first location of a blob listed in several packs, and knows every pack', () => {
    const index = new MasterIndex();
    const id = idOf('dup');
    index.addPack(idOf('p1'), [blob(id, 'data', 10)]);
    index.addPack(idOf('p2'), [blob(id, 'data', 20), blob(idOf('other'), 'data', 120)]);
    expect(index.lookup('data', id)).toMatchObject({ packId: idOf('p1'), offset: 10 });
    expect(index.size).toBe(2);
    expect(new Set(index.packs())).toEqual(new Set([idOf('p1'), idOf('p2')]));

    // Forgetting the pack that is not the blob's location leaves the blob where it was.
    index.removePack(idOf('p2'), [blob(id, 'data', 20), blob(idOf('other'), 'data', 120)]);
    expect(index.lookup('data', id)).toMatchObject({ packId: idOf('p1'), offset: 10 });
    expect(index.has('data', idOf('other'))).toBe(false);
    expect(index.hasPack(idOf('p2'))).toBe(false);
    expect(index.size).toBe(1);
  });

  it('finds ids whose hashed bits collide, and removes from the middle of their chain', () => {
    const index = new MasterIndex();
    const model = new ModelIndex();
    const ids = Array.from({ length: 300 }, (_, n) => collidingId(n));
    for (let p = 0; p < 3; p++) {
      const blobs = ids.slice(p * 100, p * 100 + 100).map((id, n) => blob(id, n % 7 ? 'data' : 'tree', n * 100));
      index.addPack(idOf(`pack ${p}`), blobs);
      model.addPack(idOf(`pack ${p}`), blobs);
    }
    const absent = Array.from({ length: 20 }, (_, n) => collidingId(1000 + n));
    expectSame(index, model, [...ids, ...absent]);
    const middle = ids.slice(100, 200).map((id, n) => blob(id, n % 7 ? 'data' : 'tree', n * 100));
    index.removePack(idOf('pack 1'), middle);
    model.removePack(idOf('pack 1'), middle);
    expectSame(index, model, [...ids, ...absent]);
  });

  it('grows past many pages and table sizes and still answers like a Map, through removals', () => {
    const index = new MasterIndex();
    const model = new ModelIndex();
    const rand = random(7);
    const packs: { id: string; blobs: PackedBlobInfo[] }[] = [];
    let n = 0;
    // 70,000 blobs: more than four pages of entries, and the slot table doubles nine times.
    for (let p = 0; p < 700; p++) {
      const blobs: PackedBlobInfo[] = [];
      for (let b = 0; b < 100; b++) {
        // Some blobs repeat an earlier one (the same blob in two packs), some collide.
        const id = rand() < 0.05 && n > 0 ? idOf(`blob ${Math.floor(rand() * n)}`) : rand() < 0.02 ? collidingId(n++) : idOf(`blob ${n++}`);
        blobs.push(blob(id, rand() < 0.1 ? 'tree' : 'data', b * 1000, 1 + Math.floor(rand() * 1e6), rand() < 0.5 ? Math.floor(rand() * 1e7) : undefined));
      }
      packs.push({ id: idOf(`pack ${p}`), blobs });
      index.addPack(packs[p].id, blobs);
      model.addPack(packs[p].id, blobs);
    }
    const probes = Array.from({ length: 2000 }, (_, i) => (i % 2 ? idOf(`blob ${Math.floor(rand() * n)}`) : idOf(`never ${i}`)));
    expectSame(index, model, probes);

    // Forget a third of the packs in random order (each removal moves the last entry into the hole).
    for (let p = 0; p < 700; p++) {
      if (rand() < 0.33) {
        index.removePack(packs[p].id, packs[p].blobs);
        model.removePack(packs[p].id, packs[p].blobs);
      }
    }
    expectSame(index, model, probes);

    // And it keeps working after: add everything again.
    for (const p of packs) {
      index.addPack(p.id, p.blobs);
      model.addPack(p.id, p.blobs);
    }
    expectSame(index, model, probes);
  });

  it('removes down to empty and grows again', () => {
    const index = new MasterIndex();
    const blobs = Array.from({ length: 20_000 }, (_, i) => blob(idOf(`b ${i}`), 'data', i));
    index.addPack(idOf('p'), blobs);
    index.removePack(idOf('p'), blobs);
    expect(index.size).toBe(0);
    expect(index.has('data', blobs[0].id)).toBe(false);
    index.addPack(idOf('q'), blobs.slice(0, 10));
    expect(index.size).toBe(10);
    expect(index.lookup('data', blobs[9].id)).toMatchObject({ packId: idOf('q'), offset: 9 });
    index.clear();
    expect(index.size).toBe(0);
    expect(index.hasPack(idOf('q'))).toBe(false);
    expect(index.has('data', blobs[9].id)).toBe(false);
  });

  it('loads an index file the way indexFromJson reads it, legacy form included', () => {
    const packs = [
      { packId: idOf('p1'), blobs: [blob(idOf('a'), 'data', 0, 10, 30), blob(idOf('b'), 'tree', 10, 20)] },
      { packId: idOf('p2'), blobs: [blob(idOf('a'), 'data', 0, 11), blob(idOf('c'), 'data', 11, 12)] },
    ];
    const json = JSON.parse(JSON.stringify(indexToJson(packs, [idOf('old')])));
    const direct = new MasterIndex();
    direct.addIndexJson(json);
    const legacy = new MasterIndex();
    legacy.addIndexJson(json.packs);
    const model = new ModelIndex();
    for (const p of indexFromJson(json).packs) model.addPack(p.packId, p.blobs);
    expectSame(direct, model, [idOf('a'), idOf('b'), idOf('c'), idOf('d')]);
    expectSame(legacy, model, [idOf('a'), idOf('b'), idOf('c'), idOf('d')]);
  });

  it('refuses an index entry it cannot hold, and finds nothing for what is not an id', () => {
    const index = new MasterIndex();
    const file = (b: object) => ({ packs: [{ id: idOf('p'), blobs: [{ id: idOf('a'), type: 'data', offset: 0, length: 1, ...b }] }] });
    expect(() => index.addIndexJson(file({ id: 'A'.repeat(64) }))).toThrow(IntegrityError);
    expect(() => index.addIndexJson(file({ id: idOf('a').slice(1) }))).toThrow(IntegrityError);
    expect(() => index.addIndexJson(file({ id: idOf('a').slice(1) + 'é' }))).toThrow(IntegrityError);
    expect(() => index.addIndexJson(file({ type: 'blob' }))).toThrow(IntegrityError);
    expect(() => index.addIndexJson(file({ offset: -1 }))).toThrow(IntegrityError);
    expect(() => index.addIndexJson(file({ length: 2 ** 32 }))).toThrow(IntegrityError);
    expect(() => index.addIndexJson(file({ offset: 1.5 }))).toThrow(IntegrityError);
    expect(index.size).toBe(0);
    expect([...index.packs()]).toEqual([]);
    index.addIndexJson(file({}));
    expect(index.size).toBe(1);

    // A bad entry after good ones: the file adds nothing, what was there stays.
    const mixed = {
      packs: [
        { id: idOf('q'), blobs: Array.from({ length: 500 }, (_, i) => ({ id: idOf(`m ${i}`), type: 'data', offset: i, length: 1 })) },
        { id: idOf('r'), blobs: [{ id: idOf('a'), type: 'data', offset: 9, length: 1 }, { id: 'nope', type: 'data', offset: 0, length: 1 }] },
      ],
    };
    expect(() => index.addIndexJson(mixed)).toThrow(IntegrityError);
    expect(index.size).toBe(1);
    expect([...index.packs()]).toEqual([idOf('p')]);
    expect(index.has('data', idOf('m 0'))).toBe(false);
    expect(index.lookup('data', idOf('a'))).toMatchObject({ packId: idOf('p'), offset: 0 });
    for (const bad of ['', 'zz', idOf('a').toUpperCase(), idOf('a').slice(0, 63) + 'g', idOf('a') + '0']) {
      expect(index.has('data', bad)).toBe(false);
      expect(index.lookup('data', bad)).toBeUndefined();
    }
  });
});
