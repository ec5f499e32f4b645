import { describe, expect, it } from 'vitest';
import { pgTarget, siblingUrl, toolEnv } from '../../src/sources/connection.ts';
import { restoreSuffix } from '../../src/sources/names.ts';
import { restoreDatabaseNames } from '../../src/sources/postgres.ts';

describe('pgTarget', () => {
  it('carries every part of the URL as libpq variables, decoded', () => {
    const t = pgTarget('postgres://app%40eu:p%40ss%3Aw%2Ford%20%C3%A9@db.example.com:6432/shop%20db?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x&schema=public');
    expect(t.database).toBe('shop db');
    expect(t.env).toEqual({
      PGHOST: 'db.example.com',
      PGPORT: '6432',
      PGUSER: 'app@eu',
      PGPASSWORD: 'p@ss:w/ord é',
      PGDATABASE: 'shop db',
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: '/etc/ca.pem',
      PGAPPNAME: 'x',
    });
  });

  it('reads a Unix socket directory from the host part or from ?host=', () => {
    expect(pgTarget('postgres://app@%2Fvar%2Frun%2Fpostgresql/shop').env.PGHOST).toBe('/var/run/postgresql');
    expect(pgTarget('postgresql:///shop?host=/tmp&port=5433').env).toMatchObject({ PGHOST: '/tmp', PGPORT: '5433', PGDATABASE: 'shop' });
  });

  it('takes IPv6 hosts without brackets and node-pg\'s ssl=true as sslmode=require', () => {
    expect(pgTarget('postgres://u:p@[::1]:5432/d?ssl=true').env).toMatchObject({ PGHOST: '::1', PGSSLMODE: 'require' });
  });

  it('refuses other schemes without echoing the URL', () => {
    expect(() => pgTarget('mysql://u:secret@h/d')).toThrow(/postgres:\/\//);
    expect(() => pgTarget('not a url with secret')).toThrow(/does not parse/);
    expect(() => pgTarget('not a url with secret')).not.toThrow(/secret/);
  });
});

describe('toolEnv', () => {
  it('drops the worker\'s own PG* variables and adds the target\'s', () => {
    process.env.PGPASSWORD = 'worker-own';
    process.env.PGSERVICE = 'worker-service';
    try {
      const env = toolEnv(pgTarget('postgres://u@h/d'), { PGAPPNAME: 'tool' });
      expect(env.PGPASSWORD).toBeUndefined();
      expect(env.PGSERVICE).toBeUndefined();
      expect(env).toMatchObject({ PGHOST: 'h', PGUSER: 'u', PGDATABASE: 'd', PGAPPNAME: 'tool' });
      expect(env.PATH).toBe(process.env.PATH);
    } finally {
      delete process.env.PGPASSWORD;
      delete process.env.PGSERVICE;
    }
  });
});

describe('siblingUrl', () => {
  it('names another database with the same credentials and options', () => {
    const url = siblingUrl('postgres://u:p%40w@h:1/app?sslmode=require&dbname=ignored', 'päper 1');
    expect(pgTarget(url).env).toEqual({ PGHOST: 'h', PGPORT: '1', PGUSER: 'u', PGPASSWORD: 'p@w', PGDATABASE: 'päper 1', PGSSLMODE: 'require' });
  });
});

describe('restore names', () => {
  it('uses a short plain id as is and hashes anything else', () => {
    expect(restoreSuffix('a1b2c3d4e5f6')).toBe('a1b2c3d4e5f6');
    expect(restoreSuffix('0b7e1a5c-58a1-4c2e-9f1e-3d1c9b7e2a10')).toMatch(/^[0-9a-f]{12}$/);
    expect(restoreSuffix('Upper')).not.toBe('Upper');
    // cuid-like ids that share a prefix still get different names.
    expect(restoreSuffix('clz9k2a0000001abcdefgh')).not.toBe(restoreSuffix('clz9k2a0000002abcdefgh'));
  });

  it('keeps whole names under 63 bytes without splitting a character', () => {
    const names = restoreDatabaseNames('日本語'.repeat(10), 'r1');
    for (const n of Object.values(names)) expect(Buffer.byteLength(n)).toBeLessThanOrEqual(63);
    expect(names.previous).toBe(`${'日本語'.repeat(10).slice(0, 17)}__bp_pre_r1`);
    expect(names.temp.endsWith('__bp_restore_r1')).toBe(true);
    expect(restoreDatabaseNames('shop', 'r1')).toEqual({ temp: 'shop__bp_restore_r1', previous: 'shop__bp_pre_r1' });
  });
});
