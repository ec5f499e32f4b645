import path from 'node:path';
import { z } from 'zod';
import { repositoryKdf, TestKdfError } from '../domain/test-kdf.ts';

const intFromEnv = (def: number) => z.coerce.number().int().positive().default(def);
const flagFromEnv = z
  .enum(['true', 'false', '1', '0'])
  .default('false')
  .transform((v) => v === 'true' || v === '1');

/** Every environment variable Backplane reads, parsed once at start-up. The README's table mirrors it. */
export const configSchema = z.object({
  DATABASE_URL: z.string().url().optional(),
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  /** Public base URL, used in signed download links. Defaults to http://HOST:PORT. */
  PUBLIC_URL: z.string().url().optional(),
  /** 32 bytes, base64 or hex, encrypting secrets at rest; the embedded default generates a key file. */
  BACKPLANE_SECRET_KEY: z.string().optional(),
  /** Where the embedded PostgreSQL, the local destination and the key file live. */
  BACKPLANE_HOME: z.string().default('.backplane'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * When set, /metrics answers only requests carrying `Authorization: Bearer <this token>`
   * (Prometheus: `authorization: { credentials_file: ... }`); otherwise it asks for nothing.
   */
  METRICS_TOKEN: z.string().min(16, 'METRICS_TOKEN: at least 16 characters').optional(),
  /** Largest accepted request body. */
  BODY_LIMIT_BYTES: intFromEnv(1_000_000),
  /**
   * Largest dump importDump accepts, uploaded (multipart, streamed to a file under
   * BACKPLANE_HOME/imports, never held in memory) or fetched from a URL or a destination.
   */
  IMPORT_MAX_BYTES: intFromEnv(4 * 1024 ** 3),
  /** Lets importDump fetch http:// URLs (default: https only). */
  IMPORT_ALLOW_HTTP: flagFromEnv,
  /** Lets importDump fetch from loopback, private, link-local and other non-public addresses (default: refused). */
  IMPORT_ALLOW_PRIVATE_URLS: flagFromEnv,
  /** A PEM file of certificate authorities trusted, besides the system's, for importDump's https fetches. */
  IMPORT_CA_FILE: z.string().optional(),
  /** Most operations in one batched request. */
  BATCH_LIMIT: intFromEnv(10),
  MAX_DEPTH: intFromEnv(12),
  MAX_ALIASES: intFromEnv(30),
  /** Most objects one operation may return, each page full (the model: src/app/query-limits.ts). */
  MAX_COST: intFromEnv(10_000),
  MAX_TOKENS: intFromEnv(2000),
  /** Worker concurrency (jobs of one environment still run one at a time). */
  WORKER_CONCURRENCY: intFromEnv(2),
  /** A RUNNING operation without a heartbeat for this long is taken back from its (dead) worker. */
  OPERATION_STALE_MS: intFromEnv(60_000),
  /** How often a running operation writes its heartbeat. */
  OPERATION_HEARTBEAT_MS: intFromEnv(5_000),
  /**
   * Niceness (0-19) of the threads that compress, encrypt and hash for jobs: they run at this
   * lower CPU priority, so API requests (of this process or another on the machine) are
   * answered promptly while a snapshot keeps the cores busy. 0 leaves them at normal priority.
   */
  JOB_NICE: z.coerce.number().int().min(0).max(19).default(10),
  /**
   * How long an API process trusts a key it has checked before looking it up again. Revocations
   * reach every process at once over the event bus; one sent while this process's event
   * connection was down counts here after at most this long. 0 looks the key up on every request.
   */
  API_KEY_CACHE_MS: z.coerce.number().int().min(0).max(300_000).default(5_000),
  /** How long an in-flight request may take to finish on shutdown. */
  SHUTDOWN_GRACE_MS: intFromEnv(10_000),
  /**
   * How long running jobs may take to finish when a worker stops (SIGTERM, Ctrl-C); those still
   * running then are stopped and handed back to the queue, to run again from the start. 0 hands
   * them back at once.
   */
  JOB_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).default(8_000),
  /** Point-in-time recovery: alert when a WAL slot keeps more than this on the source (bytes). */
  PITR_SLOT_WARN_BYTES: z.coerce.bigint().positive().default(1n << 30n),
  /** Drop a WAL slot that keeps more than this on the source, rather than fill its disk (bytes). */
  PITR_SLOT_CAP_BYTES: z.coerce.bigint().positive().default(5n << 30n),
  /**
   * Point-in-time recovery instances (openRecoveryInstance): the address they listen on (one
   * address, IPv4 or IPv6; password authentication only over TCP).
   */
  PITR_INSTANCE_LISTEN: z.union([z.ipv4(), z.ipv6()]).default('127.0.0.1'),
  /** At most this many recovery instances starting or running per worker process. */
  PITR_INSTANCE_MAX: z.coerce.number().int().min(0).default(2),
});

export type Config = z.infer<typeof configSchema> & { home: string };

/** A bad environment variable; the message names each one. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment; throws a ConfigError naming each bad variable. An empty variable counts as unset. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const set = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const parsed = configSchema.safeParse(set);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  // Refused at start-up, not at the first new repository: see test-kdf.ts.
  try {
    repositoryKdf(set);
  } catch (err) {
    if (err instanceof TestKdfError) throw new ConfigError(`invalid configuration:\n  ${err.message}`);
    throw err;
  }
  return { ...parsed.data, home: path.resolve(parsed.data.BACKPLANE_HOME) };
}
