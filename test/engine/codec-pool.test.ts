import { afterAll, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { CodecPool } from '../../src/engine/codec-pool.ts';
import { decodeBlob } from '../../src/engine/blob-codec.ts';
import { newRandomKey } from '../../src/engine/crypto.ts';
import { hashId } from '../../src/engine/ids.ts';
import { cleanupTempDirs, seededBytes, tempDir } from './helpers.ts';

afterAll(cleanupTempDirs);

const PARAMS = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

describe('codec pool scans', () => {
  // A ring smaller than the largest blobs: blobs wrap around it, threads wait for room, and
  // blobs larger than the whole ring travel in buffers of their own. Every blob must arrive
  // intact however slowly the main thread takes them.
  it('hands every blob over intact through a small ring, slow consumer included', async () => {
    const dir = await tempDir();
    const files: Record<string, Buffer> = {
      empty: Buffer.alloc(0),
      small: seededBytes('small', 10_000),
      text: Buffer.from('compressible line\n'.repeat(40_000)),
      random: seededBytes('random', 1024 * 1024 + 77),
      zeros: Buffer.alloc(700 * 1024),
    };
    for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
    const names = Object.keys(files).sort();
    const key = newRandomKey();
    const pool = new CodecPool(key, 2, true, 96 * 1024);
    try {
      const blobs = new Map<string, Buffer>();
      const contents = new Map<string, string[]>();
      let slow = 0;
      await pool.scan(
        { dir, names, parents: names.map(() => null), params: PARAMS },
        {
          onBlob: async (m, data) => {
            // Every other blob is taken a turn later, so the thread finds the ring full.
            if (slow++ % 2 === 0) await nextTurn();
            blobs.set(m.id, decodeBlob(key, m.id, data, m.uncompressedLength ?? undefined));
          },
          onEntry: (m) => {
            expect(m.error).toBeUndefined();
            contents.set(names[m.index], m.content ?? []);
          },
        },
      );
      for (const name of names) {
        const ids = contents.get(name)!;
        const back = Buffer.concat(ids.map((id) => blobs.get(id)!));
        expect(back.equals(files[name]), name).toBe(true);
        for (const id of ids) expect(hashId(blobs.get(id)!)).toBe(id);
      }
      // 256 KiB chunks of random data do not fit the 96 KiB ring: that path was taken too.
      expect(contents.get('random')!.length).toBeGreaterThan(4);
    } finally {
      await pool.close();
    }
  });

  it('rejects a scan whose blob handler fails, and hands the failure to the caller', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'a'), seededBytes('a', 300 * 1024));
    const pool = new CodecPool(newRandomKey(), 1, true, 96 * 1024);
    try {
      const err = await pool
        .scan({ dir, names: ['a'], parents: [null], params: PARAMS }, { onBlob: () => Promise.reject(new Error('disk full')), onEntry: () => {} })
        .catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/disk full/);
    } finally {
      await pool.close();
    }
  });
});
