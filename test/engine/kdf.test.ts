import { afterEach, describe, expect, it } from 'vitest';
import { LocalBackend } from '../../src/destinations/local.ts';
import { Repository } from '../../src/engine/api.ts';
import { deriveKey } from '../../src/engine/kdf.ts';
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
});
