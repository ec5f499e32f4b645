import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Backend, SaveOptions } from '../../src/destinations/backend.ts';
import { LocalBackend } from '../../src/destinations/local.ts';
import { Repository } from '../../src/engine/api.ts';
import { PASSWORD, TEST_KDF, cleanupTempDirs, seededBytes, tempDir } from './helpers.ts';

afterAll(cleanupTempDirs);

/**
 * A real local backend whose data saves start only when the test lets them: it counts the saves
 * begun and those that still hold their pack's bytes (until the backend says dataConsumed).
 */
function gatedLocal(dir: string) {
  const local = new LocalBackend(dir, { fsync: false });
  const gates: (() => void)[] = [];
  const state = { started: 0, holding: 0, maxHolding: 0, open: false };
  const save = async (h: Parameters<Backend['save']>[0], data: Uint8Array, opts?: SaveOptions): Promise<void> => {
    if (h.type !== 'data') return local.save(h, data, opts);
    state.started++;
    state.maxHolding = Math.max(state.maxHolding, ++state.holding);
    if (!state.open) await new Promise<void>((resolve) => gates.push(resolve));
    let consumed = false;
    const done = () => {
      if (consumed) return;
      consumed = true;
      state.holding--;
      opts?.dataConsumed?.();
    };
    try {
      await local.save(h, data, { ...opts, dataConsumed: done });
    } finally {
      done();
    }
  };
  const backend = new Proxy(local, {
    get(target, prop) {
      if (prop === 'save') return save;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const openAll = () => {
    state.open = true;
    for (const g of gates.splice(0)) g();
  };
  return { backend, state, openAll };
}

describe('pack buffers', () => {
  it('a local destination holds one pack in a save besides the one being filled, and every pack lands', async () => {
    const { backend, state, openAll } = gatedLocal(join(await tempDir('bp-packs-'), 'repo'));
    // 64 KiB packs: two 40 KiB incompressible blobs finish one.
    const repo = await Repository.init(backend, PASSWORD, { kdf: TEST_KDF, open: { packSize: 64 * 1024 } });
    const blobs = Array.from({ length: 8 }, (_, i) => seededBytes(`blob ${i}`, 40 * 1024));
    const ids: string[] = [];
    const adding = (async () => {
      for (const b of blobs) ids.push((await repo.saveBlob('data', b)).id);
    })();
    // The first pack's save waits at its gate; everything else the writer can do without it
    // runs to its end within this turn of the event loop.
    await new Promise((resolve) => setImmediate(resolve));
    expect(state.started).toBe(1);
    openAll();
    await adding;
    await repo.flush();
    expect(state.started).toBe(4);
    expect(state.maxHolding).toBe(1);
    for (const [i, id] of ids.entries()) expect((await repo.loadBlob('data', id)).equals(blobs[i])).toBe(true);
    await repo.close();
  });
});
