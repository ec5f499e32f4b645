import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/app/config.ts';
import { kdfParams } from '../../src/cli/repo-open.ts';
import { UsageError } from '../../src/cli/repo-args.ts';
import { repositoryKdf, TestKdfError } from '../../src/domain/test-kdf.ts';
import { DEFAULT_KDF_PARAMS } from '../../src/engine/kdf.ts';

describe('JOB_NICE', () => {
  it('defaults to 10 and takes 0 to 19', () => {
    expect(loadConfig({}).JOB_NICE).toBe(10);
    expect(loadConfig({ JOB_NICE: '0' }).JOB_NICE).toBe(0);
    expect(loadConfig({ JOB_NICE: '19' }).JOB_NICE).toBe(19);
  });

  it.each(['20', '-1', '2.5', 'low'])('refuses %s with a ConfigError naming it', (value) => {
    expect(() => loadConfig({ JOB_NICE: value })).toThrow(ConfigError);
    expect(() => loadConfig({ JOB_NICE: value })).toThrow(/JOB_NICE/);
  });
});

describe('API_KEY_CACHE_MS', () => {
  it('defaults to 5 s; 0 turns the cache off; at most 5 minutes', () => {
    expect(loadConfig({}).API_KEY_CACHE_MS).toBe(5_000);
    expect(loadConfig({ API_KEY_CACHE_MS: '0' }).API_KEY_CACHE_MS).toBe(0);
    expect(loadConfig({ API_KEY_CACHE_MS: '300000' }).API_KEY_CACHE_MS).toBe(300_000);
    for (const value of ['300001', '-1', 'soon']) expect(() => loadConfig({ API_KEY_CACHE_MS: value })).toThrow(/API_KEY_CACHE_MS/);
  });
});

describe('BACKPLANE_REPO_KDF', () => {
  it('is a test setting: refused at start-up unless NODE_ENV=test, so no real repository gets a weak key', () => {
    for (const NODE_ENV of [undefined, 'production', 'development']) {
      expect(() => loadConfig({ BACKPLANE_REPO_KDF: 'fast', NODE_ENV })).toThrow(ConfigError);
      expect(() => loadConfig({ BACKPLANE_REPO_KDF: 'fast', NODE_ENV })).toThrow(/BACKPLANE_REPO_KDF.*test setting/);
    }
    expect(() => loadConfig({ BACKPLANE_REPO_KDF: 'fast', NODE_ENV: 'test' })).not.toThrow();
    expect(() => loadConfig({ BACKPLANE_REPO_KDF: '1000,8,1', NODE_ENV: 'test' })).toThrow(/power of two/);
  });

  it('new keys get the defaults without it, the cheap parameters with it under tests, and nothing weaker anywhere else', () => {
    expect(repositoryKdf({})).toEqual(DEFAULT_KDF_PARAMS);
    expect(repositoryKdf({ NODE_ENV: 'production' })).toEqual(DEFAULT_KDF_PARAMS);
    expect(repositoryKdf({ BACKPLANE_REPO_KDF: 'fast', NODE_ENV: 'test' })).toEqual({ N: 1024, r: 8, p: 1 });
    expect(repositoryKdf({ BACKPLANE_REPO_KDF: '2048,8,1', NODE_ENV: 'test' })).toEqual({ N: 2048, r: 8, p: 1 });
    expect(() => repositoryKdf({ BACKPLANE_REPO_KDF: 'fast' })).toThrow(TestKdfError);
    expect(() => kdfParams({ BACKPLANE_REPO_KDF: '1024,8,1', NODE_ENV: 'production' })).toThrow(UsageError);
  });
});
