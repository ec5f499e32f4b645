/**
 * Where an S3-compatible repository lives: restic-style location strings
 * (`s3:https://host:port/bucket/prefix`) and the endpoints of the providers a Destination can
 * name (S3, R2, B2, MINIO, CUSTOM).
 */

/** The S3-compatible providers a Destination can name. */
export type S3Provider = 'S3' | 'R2' | 'B2' | 'MINIO' | 'CUSTOM';

/** Cloudflare R2 jurisdictions; `default` has no subdomain of its own. */
export type R2Jurisdiction = 'default' | 'eu' | 'fedramp';

/** Connection settings shared by every S3 backend; what `S3BackendOptions` is built from. */
export interface S3Connection {
  /** Base URL such as `https://s3.eu-central-1.amazonaws.com`; scheme and port included. */
  endpoint: string;
  region: string;
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing slashes; '' for the root. */
  prefix: string;
  /** Path-style (`endpoint/bucket/key`) instead of virtual-host (`bucket.endpoint/key`) URLs. */
  forcePathStyle: boolean;
}

/** What a Destination row holds about an S3-compatible provider (credentials apart). */
export interface S3ProviderSettings {
  provider: S3Provider;
  bucket: string;
  prefix?: string;
  /** AWS and B2: required. R2: ignored (`auto`). MINIO/CUSTOM: defaults to `us-east-1`. */
  region?: string;
  /** MINIO and CUSTOM: required. Others: overrides the provider's endpoint. */
  endpoint?: string;
  /** R2: the Cloudflare account id. */
  accountId?: string;
  /** R2: where the bucket's data is kept. */
  jurisdiction?: R2Jurisdiction;
}

// Host labels only: these values are pasted into a URL, so nothing that could change its shape.
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

function checkLabel(what: string, value: string | undefined): string {
  if (!value || !LABEL.test(value)) {
    throw new TypeError(`${what} must be letters, digits and dashes, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** The Cloudflare R2 endpoint of an account, e.g. `https://<accountId>.eu.r2.cloudflarestorage.com`. */
export function r2Endpoint(accountId: string, jurisdiction: R2Jurisdiction = 'default'): string {
  checkLabel('R2 account id', accountId);
  const sub = jurisdiction === 'default' ? '' : `.${jurisdiction}`;
  return `https://${accountId}${sub}.r2.cloudflarestorage.com`;
}

/** The Backblaze B2 S3 endpoint of a region, e.g. `https://s3.us-west-004.backblazeb2.com`. */
export function b2Endpoint(region: string): string {
  return `https://s3.${checkLabel('B2 region', region)}.backblazeb2.com`;
}

/** The AWS S3 regional endpoint, e.g. `https://s3.eu-central-1.amazonaws.com`. */
export function awsEndpoint(region: string): string {
  return `https://s3.${checkLabel('AWS region', region)}.amazonaws.com`;
}

/** Removes leading and trailing slashes so keys never hold `//`. */
export function normalizePrefix(prefix: string | undefined): string {
  return (prefix ?? '').replace(/^\/+|\/+$/g, '');
}

function normalizeEndpoint(endpoint: string): string {
  const url = new URL(endpoint);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`S3 endpoint must be http(s), got ${endpoint}`);
  }
  if (url.pathname !== '/' || url.search || url.hash) {
    throw new TypeError(`S3 endpoint must not have a path or query, got ${endpoint}`);
  }
  return url.origin;
}

/** Resolves a provider's settings into concrete connection settings. */
export function s3ConnectionFor(settings: S3ProviderSettings): S3Connection {
  const prefix = normalizePrefix(settings.prefix);
  const { bucket } = settings;
  if (!bucket) throw new TypeError('bucket is required');
  switch (settings.provider) {
    case 'S3': {
      const region = checkLabel('AWS region', settings.region);
      const endpoint = settings.endpoint ? normalizeEndpoint(settings.endpoint) : awsEndpoint(region);
      return { endpoint, region, bucket, prefix, forcePathStyle: false };
    }
    case 'R2': {
      const endpoint = settings.endpoint
        ? normalizeEndpoint(settings.endpoint)
        : r2Endpoint(checkLabel('R2 account id', settings.accountId), settings.jurisdiction);
      // R2 takes any region string in the signature and documents `auto`.
      return { endpoint, region: 'auto', bucket, prefix, forcePathStyle: true };
    }
    case 'B2': {
      const region = checkLabel('B2 region', settings.region);
      const endpoint = settings.endpoint ? normalizeEndpoint(settings.endpoint) : b2Endpoint(region);
      return { endpoint, region, bucket, prefix, forcePathStyle: false };
    }
    case 'MINIO':
    case 'CUSTOM': {
      if (!settings.endpoint) throw new TypeError(`${settings.provider} needs an endpoint`);
      return {
        endpoint: normalizeEndpoint(settings.endpoint),
        region: settings.region || 'us-east-1',
        bucket,
        prefix,
        // Self-hosted servers rarely have wildcard DNS for bucket subdomains.
        forcePathStyle: true,
      };
    }
  }
}

/**
 * Parses a restic-style location: `s3:http(s)://host[:port]/bucket[/prefix]`, or
 * `s3:host[:port]/bucket[/prefix]` meaning https. The region is not part of the string;
 * it defaults to `us-east-1` (what restic assumes for custom endpoints).
 */
export function parseS3Location(location: string, region = 'us-east-1'): S3Connection {
  if (!location.startsWith('s3:')) {
    throw new TypeError(`not an S3 location (expected s3:…): ${location}`);
  }
  let rest = location.slice(3);
  if (!/^https?:\/\//.test(rest)) rest = `https://${rest}`;
  const url = new URL(rest);
  if (url.search || url.hash || url.username || url.password) {
    throw new TypeError(`S3 location must not hold a query or credentials: ${location}`);
  }
  const [bucket, ...prefixParts] = url.pathname.replace(/^\/+/, '').split('/');
  if (!bucket) throw new TypeError(`S3 location has no bucket: ${location}`);
  return {
    endpoint: url.origin,
    region,
    bucket: decodeURIComponent(bucket),
    prefix: normalizePrefix(prefixParts.map(decodeURIComponent).join('/')),
    forcePathStyle: true,
  };
}

/** The restic-style location string of a connection, for `Backend.location`. */
export function formatS3Location(c: Pick<S3Connection, 'endpoint' | 'bucket' | 'prefix'>): string {
  return `s3:${c.endpoint}/${c.bucket}${c.prefix ? `/${c.prefix}` : ''}`;
}
