/**
 * What importDump may fetch: https only and public addresses only unless the configuration says
 * otherwise. A name is checked on the address it resolves to when connecting, so a host name
 * that points at this machine is refused like 127.0.0.1 itself.
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchDump, isPublicAddress, urlProblem } from '../../src/sources/fetch-dump.ts';

const strict = { allowHttp: false, allowPrivateAddresses: false };

describe('urlProblem and isPublicAddress', () => {
  it('refuses http, credentials, and loopback or private literal addresses unless allowed', () => {
    expect(urlProblem('https://example.com/dump.sql.gz', strict)).toBeNull();
    expect(urlProblem('https://93.184.216.34/d', strict)).toBeNull();
    expect(urlProblem('http://example.com/d', strict)).toMatch(/https/);
    expect(urlProblem('http://example.com/d', { ...strict, allowHttp: true })).toBeNull();
    expect(urlProblem('ftp://example.com/d', { ...strict, allowHttp: true })).toMatch(/https/);
    expect(urlProblem('https://user:pw@example.com/d', strict)).toMatch(/credentials/);
    expect(urlProblem('not a url', strict)).toMatch(/not a URL/);
    for (const host of ['127.0.0.1', 'localhost', '10.1.2.3', '192.168.0.10', '172.16.5.4', '169.254.169.254', '[::1]', '[::ffff:127.0.0.1]', '[fd00::1]', '0.0.0.0', '100.64.0.1']) {
      expect([host, urlProblem(`https://${host}/d`, strict)]).toEqual([host, expect.stringMatching(/private/)]);
      expect([host, urlProblem(`https://${host}/d`, { ...strict, allowPrivateAddresses: true })]).toEqual([host, null]);
    }
    expect(isPublicAddress('8.8.8.8')).toBe(true);
    expect(isPublicAddress('2001:4860:4860::8888')).toBe(true);
    expect(isPublicAddress('::ffff:10.0.0.1')).toBe(false);
    expect(isPublicAddress('not-an-ip')).toBe(false);
  });
});

describe('fetchDump', () => {
  let server: http.Server;
  let port: number;
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bp-fetch-'));
    server = http.createServer((_req, res) => res.end('SELECT 1;\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('refuses a host name that resolves to a loopback address, and fetches it when private addresses are allowed', async () => {
    // This machine's own name resolves to a loopback address (/etc/hosts), not a literal the URL check sees.
    const url = `http://${os.hostname()}:${port}/dump.sql`;
    const file = path.join(dir, 'dump.sql');
    expect(urlProblem(url, { allowHttp: true, allowPrivateAddresses: false })).toBeNull();
    await expect(fetchDump(url, file, { allowHttp: true, allowPrivateAddresses: false, maxBytes: 1000 })).rejects.toMatchObject({ reason: 'refused' });
    await expect(fs.stat(file)).rejects.toThrow(/ENOENT/);
    expect(await fetchDump(url, file, { allowHttp: true, allowPrivateAddresses: true, maxBytes: 1000 })).toBe(10);
    expect(await fs.readFile(file, 'utf8')).toBe('SELECT 1;\n');
    await expect(fetchDump(url, file, { allowHttp: true, allowPrivateAddresses: true, maxBytes: 5 })).rejects.toMatchObject({ reason: 'too-large' });
    await expect(fs.stat(file)).rejects.toThrow(/ENOENT/);
  });
});
