import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/app/config.ts';

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
