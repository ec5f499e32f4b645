import { describe, expect, it } from 'vitest';
import {
  awsEndpoint,
  b2Endpoint,
  formatS3Location,
  parseS3Location,
  r2Endpoint,
  s3ConnectionFor,
} from '../../src/destinations/s3-config.ts';

describe('parseS3Location', () => {
  it('reads endpoint, bucket and prefix of a restic-style location', () => {
    expect(parseS3Location('s3:http://127.0.0.1:9000/backups/prod/db')).toEqual({
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      bucket: 'backups',
      prefix: 'prod/db',
      forcePathStyle: true,
    });
    expect(parseS3Location('s3:https://minio.example.com/b/')).toMatchObject({
      endpoint: 'https://minio.example.com',
      bucket: 'b',
      prefix: '',
    });
  });

  it('takes a location without a scheme as https, and a region when given', () => {
    expect(parseS3Location('s3:s3.eu-west-1.amazonaws.com/bucket/x', 'eu-west-1')).toMatchObject({
      endpoint: 'https://s3.eu-west-1.amazonaws.com',
      region: 'eu-west-1',
      bucket: 'bucket',
      prefix: 'x',
    });
  });

  it('round-trips through formatS3Location', () => {
    const loc = 's3:http://localhost:4568/bucket/a/b';
    expect(formatS3Location(parseS3Location(loc))).toBe(loc);
  });

  it('rejects what is not an S3 location', () => {
    expect(() => parseS3Location('/srv/repo')).toThrow(/not an S3 location/);
    expect(() => parseS3Location('s3:http://host:9000/')).toThrow(/no bucket/);
    expect(() => parseS3Location('s3:http://user:pw@host/b')).toThrow(/credentials/);
  });
});

describe('provider endpoints', () => {
  it('builds R2 endpoints, with and without a jurisdiction', () => {
    const id = '0123456789abcdef0123456789abcdef';
    expect(r2Endpoint(id)).toBe(`https://${id}.r2.cloudflarestorage.com`);
    expect(r2Endpoint(id, 'eu')).toBe(`https://${id}.eu.r2.cloudflarestorage.com`);
    expect(r2Endpoint(id, 'fedramp')).toBe(`https://${id}.fedramp.r2.cloudflarestorage.com`);
    expect(() => r2Endpoint('evil.com/x')).toThrow(/letters, digits and dashes/);
  });

  it('builds B2 and AWS endpoints from the region', () => {
    expect(b2Endpoint('us-west-004')).toBe('https://s3.us-west-004.backblazeb2.com');
    expect(awsEndpoint('eu-central-1')).toBe('https://s3.eu-central-1.amazonaws.com');
  });

  it('resolves each provider into connection settings', () => {
    expect(s3ConnectionFor({ provider: 'S3', region: 'eu-central-1', bucket: 'b', prefix: '/p/' })).toEqual({
      endpoint: 'https://s3.eu-central-1.amazonaws.com',
      region: 'eu-central-1',
      bucket: 'b',
      prefix: 'p',
      forcePathStyle: false,
    });
    expect(s3ConnectionFor({ provider: 'R2', accountId: 'abc123', jurisdiction: 'eu', bucket: 'b' })).toMatchObject({
      endpoint: 'https://abc123.eu.r2.cloudflarestorage.com',
      region: 'auto',
    });
    expect(s3ConnectionFor({ provider: 'B2', region: 'eu-central-003', bucket: 'b' })).toMatchObject({
      endpoint: 'https://s3.eu-central-003.backblazeb2.com',
      region: 'eu-central-003',
    });
    expect(s3ConnectionFor({ provider: 'MINIO', endpoint: 'http://minio:9000', bucket: 'b' })).toMatchObject({
      endpoint: 'http://minio:9000',
      region: 'us-east-1',
      forcePathStyle: true,
    });
    expect(s3ConnectionFor({ provider: 'CUSTOM', endpoint: 'https://s3.example.net/', region: 'x1', bucket: 'b' }))
      .toMatchObject({ endpoint: 'https://s3.example.net', region: 'x1', forcePathStyle: true });
  });

  it('refuses incomplete or malformed settings', () => {
    expect(() => s3ConnectionFor({ provider: 'S3', bucket: 'b' })).toThrow(/AWS region/);
    expect(() => s3ConnectionFor({ provider: 'R2', bucket: 'b' })).toThrow(/R2 account id/);
    expect(() => s3ConnectionFor({ provider: 'CUSTOM', bucket: 'b' })).toThrow(/needs an endpoint/);
    expect(() => s3ConnectionFor({ provider: 'MINIO', endpoint: 'ftp://x', bucket: 'b' })).toThrow(/http\(s\)/);
    expect(() => s3ConnectionFor({ provider: 'MINIO', endpoint: 'http://x/path', bucket: 'b' })).toThrow(/path/);
    expect(() => s3ConnectionFor({ provider: 'MINIO', endpoint: 'http://x', bucket: '' })).toThrow(/bucket/);
  });
});
