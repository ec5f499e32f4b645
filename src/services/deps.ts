import type { Db } from '../db/client.ts';
import type { Logger } from '../app/logger.ts';
import type { SecretBox } from '../app/secrets.ts';
import type { EventBus } from '../events/bus.ts';
import type { Viewer } from './viewer.ts';

/** Time, injected so tests control it. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** What every service function receives first. */
export interface Deps {
  db: Db;
  events: EventBus;
  secrets: SecretBox;
  clock: Clock;
  logger: Logger;
  /** How often a running operation proves it is alive (default 5 s); keep it well under OPERATION_STALE_MS. */
  heartbeatMs?: number;
  /**
   * BACKPLANE_HOME: where a restore to a point in time puts its temporary PostgreSQL instance
   * (default ./.backplane, as the config's).
   */
  home?: string;
  /** Recovery instances (PITR_INSTANCE_LISTEN, PITR_INSTANCE_MAX); unset: 127.0.0.1 and 2. */
  recoveryInstances?: { listen: string; max: number };
  /** Where and how importDump reads dumps (see imports.ts); unset, imports are refused. */
  imports?: ImportSettings;
  /** Authenticated keys, remembered for a few seconds (see ViewerCache); unset, every request looks its key up. */
  viewerCache?: KeyCache;
}

/** importDump's settings, from the configuration. */
export interface ImportSettings {
  /** Where uploads and fetched dumps wait for their job: BACKPLANE_HOME/imports. */
  dir: string;
  maxBytes: number;
  allowHttp: boolean;
  allowPrivateAddresses: boolean;
  /** Extra certificate authorities (PEM) for https fetches. */
  ca?: string;
}

/**
 * What services need of the process's key cache (ViewerCache in api-keys.ts implements it);
 * declared here so deps.ts, which every service imports, imports none of them back.
 */
export interface KeyCache {
  authenticate(db: Db, token: string, now: Date): Promise<Viewer>;
  forget(apiKeyId: string, now: Date): void;
}
