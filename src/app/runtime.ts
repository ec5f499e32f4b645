import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createDb, type Db } from '../db/client.ts';
import { withLiftoffOnly } from '../db/liftoff.ts';
import { createEventBus, type EventBus } from '../events/bus.ts';
import { ViewerCache, forgetRevokedKeys } from '../services/api-keys.ts';
import { systemClock, type Deps } from '../services/deps.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import { createSecretBox, resolveSecretKey } from './secrets.ts';

/** The long-lived things a process holds: database client, event bus, secrets. */
export interface Runtime {
  deps: Deps;
  db: Db;
  events: EventBus;
  close(): Promise<void>;
}

export async function createRuntime(config: Config, databaseUrl: string, logger: Logger): Promise<Runtime> {
  const db = createDb(databaseUrl);
  // Connecting loads and compiles Prisma's query compiler: now, with Liftoff only (see liftoff.ts).
  await withLiftoffOnly(() => db.$connect());
  const events = await createEventBus(databaseUrl, logger);
  const secrets = createSecretBox(resolveSecretKey(config.BACKPLANE_SECRET_KEY, config.home));
  const deps: Deps = {
    db,
    events,
    secrets,
    clock: systemClock,
    logger,
    heartbeatMs: config.OPERATION_HEARTBEAT_MS,
    home: config.home,
    recoveryInstances: { listen: config.PITR_INSTANCE_LISTEN, max: config.PITR_INSTANCE_MAX },
    viewerCache: new ViewerCache(config.API_KEY_CACHE_MS),
    imports: {
      dir: path.join(config.home, 'imports'),
      maxBytes: config.IMPORT_MAX_BYTES,
      allowHttp: config.IMPORT_ALLOW_HTTP,
      allowPrivateAddresses: config.IMPORT_ALLOW_PRIVATE_URLS,
      ca: config.IMPORT_CA_FILE ? readFileSync(config.IMPORT_CA_FILE, 'utf8') : undefined,
    },
  };
  forgetRevokedKeys(deps);
  return {
    db,
    events,
    deps,
    async close() {
      await events.close();
      await db.$disconnect();
    },
  };
}
