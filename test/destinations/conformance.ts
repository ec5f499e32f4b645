/**
 * One conformance suite for every Backend: what the engine may rely on, whatever the storage.
 * Each implementation's test file calls `describeBackendConformance` with a factory that makes
 * a fresh, empty backend per test.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BackendNotFoundError,
  FILE_TYPES,
  type Backend,
  type FileInfo,
  type FileType,
  type Handle,
} from '../../src/destinations/backend.ts';

/** A fresh, empty backend, and how to dispose of it. */
export interface BackendFixture {
  backend: Backend;
  cleanup?: () => Promise<void>;
}

export interface ConformanceOptions {
  /** Size of the "large file" case; for S3 pick it above the multipart threshold. */
  largeFileSize: number;
}

/** A 64-hex-digit id, as restic names files; `lead` fixes the first two digits (data subdir). */
export function fileId(lead?: string): string {
  const id = randomBytes(32).toString('hex');
  return lead ? lead + id.slice(2) : id;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Collects a listing into a name → size map, failing on duplicate names. */
export async function listAll(backend: Backend, type: FileType, signal?: AbortSignal): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const f of backend.list(type, { signal }) as AsyncIterable<FileInfo>) {
    expect(out.has(f.name), `${type}/${f.name} listed twice`).toBe(false);
    out.set(f.name, f.size);
  }
  return out;
}

/** Registers the suite under `describe(name)`. */
export function describeBackendConformance(
  name: string,
  make: () => Promise<BackendFixture>,
  options: ConformanceOptions,
): void {
  describe(`${name}: backend conformance`, () => {
    let fixture: BackendFixture | undefined;
    const fresh = async (): Promise<Backend> => {
      fixture = await make();
      return fixture.backend;
    };
    afterEach(async () => {
      await fixture?.backend.close();
      await fixture?.cleanup?.();
      fixture = undefined;
    });

    it('saves and loads every kind of file byte for byte', async () => {
      const b = await fresh();
      const saved: Array<[Handle, Buffer]> = [];
      for (const type of FILE_TYPES) {
        const h = { type, name: type === 'config' ? 'config' : fileId() };
        const data = randomBytes(1000 + saved.length);
        await b.save(h, data);
        saved.push([h, data]);
      }
      for (const [h, data] of saved) {
        expect(sha256(await b.load(h))).toBe(sha256(data));
      }
    });

    it('stores an empty file', async () => {
      const b = await fresh();
      const h = { type: 'locks' as const, name: fileId() };
      await b.save(h, new Uint8Array(0));
      expect(await b.stat(h)).toEqual({ name: h.name, size: 0 });
      expect((await b.load(h)).length).toBe(0);
    });

    it('accepts a Uint8Array that is a view into a larger buffer', async () => {
      const b = await fresh();
      const whole = randomBytes(4096);
      const part = new Uint8Array(whole.buffer, whole.byteOffset + 100, 1000);
      const h = { type: 'index' as const, name: fileId() };
      await b.save(h, part);
      expect(sha256(await b.load(h))).toBe(sha256(whole.subarray(100, 1100)));
    });

    it('loads byte ranges', async () => {
      const b = await fresh();
      const data = randomBytes(10_000);
      const h = { type: 'data' as const, name: fileId() };
      await b.save(h, data);
      expect(await b.load(h, { offset: 0, length: 10 })).toEqual(data.subarray(0, 10));
      expect(await b.load(h, { offset: 1234, length: 4321 })).toEqual(data.subarray(1234, 1234 + 4321));
      expect(await b.load(h, { offset: 9_990 })).toEqual(data.subarray(9_990));
      expect(await b.load(h, { offset: 9_999, length: 1 })).toEqual(data.subarray(9_999));
      expect(await b.load(h, { offset: 100, length: 0 })).toEqual(Buffer.alloc(0));
    });

    it('returns what there is when a range runs past the end', async () => {
      const b = await fresh();
      const data = randomBytes(100);
      const h = { type: 'data' as const, name: fileId() };
      await b.save(h, data);
      expect(await b.load(h, { offset: 90, length: 50 })).toEqual(data.subarray(90));
      expect((await b.load(h, { offset: 100, length: 10 })).length).toBe(0);
    });

    it('stats files, and answers null for a missing one', async () => {
      const b = await fresh();
      const h = { type: 'snapshots' as const, name: fileId() };
      await b.save(h, randomBytes(777));
      expect(await b.stat(h)).toEqual({ name: h.name, size: 777 });
      expect(await b.stat({ type: 'snapshots', name: fileId() })).toBeNull();
      expect(await b.stat({ type: 'config', name: 'config' })).toBeNull();
    });

    it('lists each kind apart, with data across its subdirectories', async () => {
      const b = await fresh();
      const expected = new Map<FileType, Map<string, number>>(FILE_TYPES.map((t) => [t, new Map()]));
      for (const lead of ['00', '0f', 'a7', 'ff', 'a7']) {
        const name = fileId(lead);
        await b.save({ type: 'data', name }, randomBytes(10 + expected.get('data')!.size));
        expected.get('data')!.set(name, 10 + expected.get('data')!.size);
      }
      for (const type of ['keys', 'index', 'snapshots', 'locks'] as const) {
        for (let i = 0; i < 3; i++) {
          const name = fileId();
          await b.save({ type, name }, randomBytes(i + 1));
          expected.get(type)!.set(name, i + 1);
        }
      }
      expect((await listAll(b, 'config')).size).toBe(0);
      await b.save({ type: 'config', name: 'config' }, randomBytes(33));
      expected.get('config')!.set('config', 33);
      for (const type of FILE_TYPES) {
        expect(await listAll(b, type), type).toEqual(expected.get(type));
      }
    });

    it('lists nothing in an empty repository', async () => {
      const b = await fresh();
      for (const type of FILE_TYPES) expect((await listAll(b, type)).size, type).toBe(0);
    });

    it('removes files; removing a missing file is fine', async () => {
      const b = await fresh();
      const h = { type: 'locks' as const, name: fileId() };
      const other = { type: 'locks' as const, name: fileId() };
      await b.save(h, randomBytes(10));
      await b.save(other, randomBytes(10));
      await b.remove(h);
      expect(await b.stat(h)).toBeNull();
      await expect(b.load(h)).rejects.toBeInstanceOf(BackendNotFoundError);
      expect([...(await listAll(b, 'locks')).keys()]).toEqual([other.name]);
      await b.remove(h);
      await b.remove({ type: 'data', name: fileId() });
    });

    it('replaces a file saved again under the same handle', async () => {
      const b = await fresh();
      const h = { type: 'config' as const, name: 'config' };
      await b.save(h, Buffer.from('first version, longer'));
      await b.save(h, Buffer.from('second'));
      expect((await b.load(h)).toString()).toBe('second');
      expect(await b.stat(h)).toEqual({ name: 'config', size: 6 });
      expect((await listAll(b, 'config')).size).toBe(1);
    });

    it('throws BackendNotFoundError, naming the handle, for a missing file', async () => {
      const b = await fresh();
      const h = { type: 'index' as const, name: fileId() };
      const err = await b.load(h).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendNotFoundError);
      expect((err as BackendNotFoundError).handle).toEqual(h);
      await expect(b.load(h, { offset: 10, length: 10 })).rejects.toBeInstanceOf(BackendNotFoundError);
    });

    it('refuses names that could escape their directory', async () => {
      const b = await fresh();
      for (const name of ['../x', 'a/b', '', '.hidden']) {
        await expect(b.save({ type: 'keys', name }, randomBytes(1))).rejects.toThrow(/invalid file name/);
      }
    });

    it('does nothing when the signal is already aborted', async () => {
      const b = await fresh();
      const signal = AbortSignal.abort();
      const h = { type: 'data' as const, name: fileId() };
      await expect(b.save(h, randomBytes(100), { signal })).rejects.toMatchObject({ name: 'AbortError' });
      expect(await b.stat(h)).toBeNull();
      await b.save(h, randomBytes(100));
      await expect(b.load(h, { signal })).rejects.toMatchObject({ name: 'AbortError' });
      await expect(b.stat(h, { signal })).rejects.toMatchObject({ name: 'AbortError' });
      await expect(b.remove(h, { signal })).rejects.toMatchObject({ name: 'AbortError' });
      await expect(listAll(b, 'data', signal)).rejects.toMatchObject({ name: 'AbortError' });
      expect(await b.stat(h)).not.toBeNull();
    });

    it('leaves nothing or the whole file when a save is aborted under way', async () => {
      const b = await fresh();
      const data = randomBytes(options.largeFileSize);
      const h = { type: 'data' as const, name: fileId() };
      const ac = new AbortController();
      const saving = b.save(h, data, { signal: ac.signal });
      ac.abort();
      const outcome = await saving.then(
        () => 'saved',
        (e: unknown) => e,
      );
      const st = await b.stat(h);
      if (outcome === 'saved') {
        expect(sha256(await b.load(h))).toBe(sha256(data));
      } else {
        expect(outcome).toMatchObject({ name: 'AbortError' });
        // Either nothing is there, or (a backend that finished before it saw the abort) all of it.
        if (st) expect(sha256(await b.load(h))).toBe(sha256(data));
      }
      expect([...(await listAll(b, 'data')).keys()]).toEqual(st ? [h.name] : []);
    });

    it('round-trips a large file', async () => {
      const b = await fresh();
      const data = randomBytes(options.largeFileSize);
      const h = { type: 'data' as const, name: fileId() };
      await b.save(h, data);
      expect(await b.stat(h)).toEqual({ name: h.name, size: data.length });
      expect(sha256(await b.load(h))).toBe(sha256(data));
      const mid = Math.floor(data.length / 2);
      expect(await b.load(h, { offset: mid - 5, length: 10 })).toEqual(data.subarray(mid - 5, mid + 5));
    });

    it('handles many saves and loads at once', async () => {
      const b = await fresh();
      const files = Array.from({ length: 40 }, (_, i) => ({
        h: { type: 'data' as const, name: fileId() },
        data: randomBytes(500 + i * 37),
      }));
      await Promise.all(files.map((f) => b.save(f.h, f.data)));
      const loaded = await Promise.all(files.map((f) => b.load(f.h)));
      loaded.forEach((buf, i) => expect(sha256(buf)).toBe(sha256(files[i].data)));
      expect((await listAll(b, 'data')).size).toBe(files.length);
    });
  });
}
