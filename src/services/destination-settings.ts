import { Cron } from 'croner';
import { z } from 'zod';
import { filesPath, name, urlField } from '../domain/validation.ts';
import { withArticle } from '../domain/text.ts';

/**
 * What a destination may be told, per provider (zod): each provider's branch is strict, so a
 * setting that does not apply to it is an error rather than silently ignored.
 */

export const PROVIDERS = ['LOCAL', 'S3', 'R2', 'B2', 'MINIO', 'CUSTOM'] as const;
export type Provider = (typeof PROVIDERS)[number];

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;
const label = (what: string) => z.string().trim().regex(LABEL, `must be ${withArticle(what)}: letters, digits and dashes`);
// S3 bucket names (DNS-compatible): 3–63 of a-z, 0-9, '.', '-'.
const bucket = z.string().trim().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be 3–63 lowercase letters, digits, "." or "-"');
const prefix = z
  .string()
  .trim()
  .max(512, 'must be at most 512 characters')
  .transform((v) => v.replace(/^\/+|\/+$/g, ''))
  .refine((v) => !v.split('/').some((s) => s === '..' || s === '.'), 'must not contain "." or ".." segments');
const endpoint = urlField((u) => {
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must be an http:// or https:// URL';
  if (u.pathname !== '/' || u.search || u.hash || u.username) return 'must be scheme, host and port only (no path, query or credentials)';
  return null;
})
  .transform((v) => new URL(v).origin);
const caCertificate = z.string().trim().max(20_000).refine((v) => v.includes('-----BEGIN CERTIFICATE-----'), 'must be a PEM certificate');
const secret = z.string().min(1, 'must not be empty').max(512, 'must be at most 512 characters');

const credentials = { accessKeyId: secret, secretAccessKey: secret };

const s3Common = { bucket, prefix: prefix.optional(), ...credentials };
const shapes = {
  LOCAL: { provider: z.literal('LOCAL'), path: filesPath },
  S3: { provider: z.literal('S3'), ...s3Common, region: label('region'), endpoint: endpoint.optional() },
  R2: { provider: z.literal('R2'), ...s3Common, accountId: label('Cloudflare account id'), jurisdiction: z.enum(['default', 'eu', 'fedramp']).optional() },
  B2: { provider: z.literal('B2'), ...s3Common, region: label('region') },
  MINIO: { provider: z.literal('MINIO'), ...s3Common, endpoint, region: label('region').optional(), caCertificate: caCertificate.optional() },
  CUSTOM: { provider: z.literal('CUSTOM'), ...s3Common, endpoint, region: label('region').optional(), caCertificate: caCertificate.optional() },
};

/** Settings per provider; each branch is strict, so a field that does not apply is an error. */
export const destinationSettings = z.discriminatedUnion('provider', [
  z.strictObject(shapes.LOCAL),
  z.strictObject(shapes.S3),
  z.strictObject(shapes.R2),
  z.strictObject(shapes.B2),
  z.strictObject(shapes.MINIO),
  z.strictObject(shapes.CUSTOM),
]);
export type DestinationSettings = z.infer<typeof destinationSettings>;

/** When a 5-field cron expression (UTC) next fires after `after`, or null if never. */
export function nextVerifyRun(expression: string, after: Date): Date | null {
  return new Cron(expression, { timezone: 'UTC', mode: '5-part', paused: true }).nextRun(after);
}

/** A 5-field cron expression, in UTC. */
const verifyCron = z
  .string()
  .trim()
  .max(100, 'must be at most 100 characters')
  .refine((v) => {
    try {
      nextVerifyRun(v, new Date());
      return true;
    } catch {
      return false;
    }
  }, 'must be a 5-field cron expression, e.g. "0 3 * * 0"');

const common = { name, verifyCron: verifyCron.optional(), isDefault: z.boolean().optional() };
export const createDestinationInput = z.discriminatedUnion('provider', [
  z.strictObject({ ...common, ...shapes.LOCAL }),
  z.strictObject({ ...common, ...shapes.S3 }),
  z.strictObject({ ...common, ...shapes.R2 }),
  z.strictObject({ ...common, ...shapes.B2 }),
  z.strictObject({ ...common, ...shapes.MINIO }),
  z.strictObject({ ...common, ...shapes.CUSTOM }),
]);

/** Everything but the provider may change; credentials only as a pair. */
export const updateDestinationInput = z
  .object({
    name: name.optional(),
    path: z.string().optional(),
    bucket: z.string().optional(),
    prefix: z.string().optional(),
    region: z.string().optional(),
    endpoint: z.string().optional(),
    accountId: z.string().optional(),
    jurisdiction: z.string().optional(),
    caCertificate: z.string().optional(),
    accessKeyId: z.string().optional(),
    secretAccessKey: z.string().optional(),
    /** '' removes the schedule. */
    verifyCron: z.union([z.literal(''), verifyCron]).optional(),
    isDefault: z.boolean().optional(),
  })
  .refine((v) => Object.values(v).some((x) => x !== undefined), { message: 'nothing to update', path: [] })
  .refine((v) => (v.accessKeyId === undefined) === (v.secretAccessKey === undefined), { message: 'give accessKeyId and secretAccessKey together', path: ['secretAccessKey'] });

/** Fields that say where the repository is: changing them points at another repository. */
export const LOCATION_FIELDS = ['path', 'bucket', 'prefix', 'endpoint', 'accountId', 'jurisdiction'] as const;
