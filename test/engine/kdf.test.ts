import { afterEach, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/destinations/local.ts';
import { Repository } from '../../src/engine/api.ts';
import { cachedKeyDerivations, deriveKey } from '../../src/engine/kdf.ts';
import { setBackgroundNice } from '../../src/engine/priority.ts';
import { cleanupTempDirs, PASSWORD, TEST_KDF, tempDir } from './helpers.ts';

afterEach(async () => {
  setBackgroundNice(0);
  await cleanupTempDirs();
});

describe('deriveKey', () => {
  it('gives the same key on its low-priority thread as on the pool', async () => {
    const salt = Buffer.from('0123456789abcdef0123456789abcdef');
    const onPool = await deriveKey(PASSWORD, salt, TEST_KDF);
    setBackgroundNice(7);
    const onThread = await deriveKey(PASSWORD, salt, TEST_KDF);
    expect(Buffer.concat([onThread.encrypt, onThread.macK, onThread.macR]).toString('hex')).toBe(Buffer.concat([onPool.encrypt, onPool.macK, onPool.macR]).toString('hex'));
    expect(onThread.encrypt).toHaveLength(32);
    // A different password gives a different key, so the comparison above means something.
    const other = await deriveKey(`${PASSWORD}!`, salt, TEST_KDF);
    expect(Buffer.from(other.encrypt).equals(Buffer.from(onThread.encrypt))).toBe(false);
  });

  it('opens a repository made at normal priority, and refuses a wrong password, from its thread', async () => {
    const dir = await tempDir();
    await (await Repository.init(new LocalBackend(dir, { fsync: false }), PASSWORD, { kdf: TEST_KDF })).close();
    setBackgroundNice(7);
    const repo = await Repository.open(new LocalBackend(dir, { fsync: false }), PASSWORD);
    await repo.close();
    await expect(Repository.open(new LocalBackend(dir, { fsync: false }), 'wrong')).rejects.toThrow(/password/i);
  });

  it('derives a repository key once per process for opening it again, and still refuses a wrong password', async () => {
    const dir = await tempDir();
    await (await Repository.init(new LocalBackend(dir, { fsync: false }), PASSWORD, { kdf: TEST_KDF })).close();
    const before = cachedKeyDerivations();
    const opened = await Promise.all([Repository.open(new LocalBackend(dir, { fsync: false }), PASSWORD), Repository.open(new LocalBackend(dir, { fsync: false }), PASSWORD)]);
    const again = await Repository.open(new LocalBackend(dir, { fsync: false }), PASSWORD);
    expect(cachedKeyDerivations() - before).toBe(1);
    // The key is the repository's all the same: what one open wrote, another reads.
    const id = await opened[0].saveJson('snapshots', { probe: 1 });
    expect(await again.loadJson('snapshots', id)).toEqual({ probe: 1 });
    await expect(Repository.open(new LocalBackend(dir, { fsync: false }), 'wrong')).rejects.toThrow(/password/i);
    await expect(Repository.open(new LocalBackend(dir, { fsync: false }), 'wrong')).rejects.toThrow(/password/i);
    // Another repository with the same password has its own salt, so its own derivation.
    const other = await tempDir();
    await (await Repository.init(new LocalBackend(other, { fsync: false }), PASSWORD, { kdf: TEST_KDF })).close();
    await (await Repository.open(new LocalBackend(other, { fsync: false }), PASSWORD)).close();
    expect(cachedKeyDerivations() - before).toBe(3);
    for (const r of [...opened, again]) await r.close();
  });
});

