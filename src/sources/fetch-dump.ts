/**
 * Fetching a dump from a URL into a file, for importDump: streamed to disk with a size limit,
 * https only and public addresses only unless allowed. The address check is made on the
 * address actually connected to (a `lookup` hook), so a name that resolves to a public address
 * when asked and to a private one when fetched (DNS rebinding) is refused too.
 */
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import dns from 'node:dns';
import { pipeline } from 'node:stream/promises';
import { rootCertificates } from 'node:tls';

/** Why a URL was refused or could not be read. */
export class FetchDumpError extends Error {
  constructor(
    readonly reason: 'refused' | 'unreadable' | 'too-large',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FetchDumpError';
  }
}

export interface FetchPolicy {
  allowHttp: boolean;
  allowPrivateAddresses: boolean;
  /** Extra certificate authorities (PEM), added to the system's. */
  ca?: string;
  maxBytes: number;
}

const MAX_REDIRECTS = 5;

/** Addresses that are not the public internet: loopback, private, link-local, CGNAT, multicast, reserved. */
const nonPublic = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) nonPublic.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96], ['2001:db8::', 32]] as const) {
  nonPublic.addSubnet(net, bits, 'ipv6');
}

/** Whether `address` (an IP) is on the public internet. IPv4 mapped into IPv6 counts as its IPv4. */
export function isPublicAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return !nonPublic.check(mapped[1], 'ipv4');
  const family = isIP(address);
  if (family === 0) return false;
  return !nonPublic.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Why the URL may not be fetched under the policy (scheme, literal address), or null. Names are checked when connecting. */
export function urlProblem(raw: string, policy: Pick<FetchPolicy, 'allowHttp' | 'allowPrivateAddresses'>): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && policy.allowHttp)) {
    return policy.allowHttp ? 'must be an https:// or http:// URL' : 'must be an https:// URL (http:// is allowed only with IMPORT_ALLOW_HTTP)';
  }
  if (url.username || url.password) return 'must not carry credentials; use a presigned URL';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!policy.allowPrivateAddresses && (host === 'localhost' || host.endsWith('.localhost') || (isIP(host) && !isPublicAddress(host)))) {
    return 'names a loopback or private address (allowed only with IMPORT_ALLOW_PRIVATE_URLS)';
  }
  return null;
}

/** Resolves as dns.lookup does, refusing non-public addresses unless allowed. */
function guardedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = addresses as dns.LookupAddress[];
      const bad = list.find((a) => !allowPrivate && !isPublicAddress(a.address));
      if (bad) {
        return callback(Object.assign(new Error(`${hostname} resolves to ${bad.address}, a loopback or private address`), { code: 'BP_PRIVATE_ADDRESS' }), '', 0);
      }
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
      callback(null, list[0].address, list[0].family);
    });
  };
}

/**
 * Fetches `url` into `file` (created or replaced), following up to 5 redirects under the same
 * rules. Returns the bytes written. On failure the file is removed.
 */
export async function fetchDump(rawUrl: string, file: string, policy: FetchPolicy, opts: { signal?: AbortSignal; onBytes?: (total: number | null, done: number) => void } = {}): Promise<number> {
  try {
    let url = rawUrl;
    for (let hop = 0; ; hop++) {
      const problem = urlProblem(url, policy);
      if (problem) throw new FetchDumpError('refused', `the URL ${problem}`);
      const res = await get(new URL(url), policy, opts.signal);
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (hop >= MAX_REDIRECTS) throw new FetchDumpError('unreadable', `more than ${MAX_REDIRECTS} redirects`);
        url = new URL(res.headers.location, url).toString();
        continue;
      }
      if (status !== 200) {
        res.resume();
        throw new FetchDumpError('unreadable', `the server answered ${status} ${res.statusMessage ?? ''}`.trim());
      }
      const declared = Number(res.headers['content-length'] ?? NaN);
      if (declared > policy.maxBytes) {
        res.destroy();
        throw new FetchDumpError('too-large', `the dump is ${declared} bytes, more than IMPORT_MAX_BYTES (${policy.maxBytes})`);
      }
      let done = 0;
      res.on('data', (chunk: Buffer) => {
        done += chunk.length;
        if (done > policy.maxBytes) res.destroy(new FetchDumpError('too-large', `the dump is larger than IMPORT_MAX_BYTES (${policy.maxBytes} bytes)`));
        else opts.onBytes?.(Number.isFinite(declared) ? declared : null, done);
      });
      await pipeline(res, createWriteStream(file), { signal: opts.signal });
      return done;
    }
  } catch (err) {
    await rm(file, { force: true });
    if (err instanceof FetchDumpError || opts.signal?.aborted) throw err;
    const code = (err as { code?: string }).code;
    if (code === 'BP_PRIVATE_ADDRESS') throw new FetchDumpError('refused', (err as Error).message, { cause: err });
    throw new FetchDumpError('unreadable', `fetching the URL failed: ${(err as Error).message}`, { cause: err });
  }
}

function get(url: URL, policy: FetchPolicy, signal?: AbortSignal): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const lookup = guardedLookup(policy.allowPrivateAddresses);
    const req =
      url.protocol === 'https:'
        ? https.get(url, { lookup, signal, ca: policy.ca ? [...rootCertificates, policy.ca] : undefined, timeout: 30_000 }, resolve)
        : http.get(url, { lookup, signal, timeout: 30_000 }, resolve);
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', reject);
  });
}
