/**
 * The control-plane commands: start (everything in one process, embedded PostgreSQL when no
 * DATABASE_URL), serve (API only), worker (jobs only), migrate and api-key.
 */
import { parseArgs } from 'node:util';
import { runMigrations as runWorkerMigrations } from 'graphile-worker';
import { buildApp, type App } from '../app/build-app.ts';
import { ensureDemo } from '../app/bootstrap.ts';
import { loadConfig, type Config } from '../app/config.ts';
import { createLogger, type Logger } from '../app/logger.ts';
import { createRuntime, type Runtime } from '../app/runtime.ts';
import { releaseYoungGeneration, restoreYoungGeneration } from '../app/young-generation.ts';
import { startJobThread, startJobs, type Jobs } from '../app/job-host.ts';
import { createDb } from '../db/client.ts';
import { withLiftoffOnly } from '../db/liftoff.ts';
import { applyMigrations } from '../db/migrate.ts';
import { SCOPES, type Scope } from '../domain/scopes.ts';
import { createApiKeyInput, issueApiKey } from '../services/api-keys.ts';
import { findEnvironmentByRef } from '../services/environment-ref.ts';
import { AppError } from '../domain/errors.ts';
import { createSecretBox, resolveSecretKey } from '../app/secrets.ts';
import { runPsql } from './psql.ts';

export const USAGE = `usage: backplane <command>

  start      API and worker in one process; embedded PostgreSQL under BACKPLANE_HOME when DATABASE_URL is unset
  serve      the API only (HTTP and WebSocket on PORT); needs DATABASE_URL
  worker     the job worker only; needs DATABASE_URL
  migrate    apply prisma/migrations to DATABASE_URL (or to the embedded database)
  api-key    create an API key: backplane api-key create --scope admin|backups:write|backups:read [--name NAME]
  psql       psql on an environment's database: backplane psql <environment> [psql options], e.g. backplane psql demo -c 'select 1'
  repo       work with a repository directly: backplane repo --help
`;

interface Database {
  url: string;
  /** URL of another database on the same server (the embedded default creates the demo database). */
  urlFor?: (db: string) => string;
  stop(): Promise<void>;
}

/** DATABASE_URL when set; otherwise the embedded PostgreSQL under BACKPLANE_HOME, started on demand. */
async function openDatabase(config: Config, logger: Logger): Promise<Database> {
  if (config.DATABASE_URL) return { url: config.DATABASE_URL, stop: async () => undefined };
  const { startEmbeddedPostgres } = await import('../db/embedded.ts');
  const pg = await startEmbeddedPostgres({ stateDir: config.home, logger });
  const url = await pg.createDatabase('backplane');
  return { url, urlFor: (db) => pg.url(db), stop: () => pg.stop() };
}

/**
 * Runs `stop` once on SIGINT/SIGTERM, or when the returned function is called (a part of the
 * process failed: exit code 1); a second signal exits at once.
 */
function onShutdown(logger: Logger, stop: () => Promise<void>): (reason: string) => void {
  let stopping = false;
  const shutdown = (reason: string, code: number) => {
    if (stopping) process.exit(130);
    stopping = true;
    logger.info({ reason }, 'shutting down');
    stop().then(
      () => process.exit(code),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT', 0));
  process.on('SIGTERM', () => shutdown('SIGTERM', 0));
  return (reason) => shutdown(reason, 1);
}

async function serveCommand(config: Config, logger: Logger, opts: { worker: boolean; api: boolean; demo: boolean }) {
  const database = await openDatabase(config, logger);
  let runtime: Runtime | undefined;
  let app: App | undefined;
  let jobs: Jobs | undefined;
  const stop = async () => {
    // Requests and jobs get their grace periods at the same time, so a service manager's stop
    // timeout has to cover the longer of the two, not their sum.
    const stopped = await Promise.allSettled([app?.stop(), jobs?.stop()]);
    for (const r of stopped) if (r.status === 'rejected') throw r.reason;
    await runtime?.close();
    await database.stop();
  };
  const fail = onShutdown(logger, stop);
  // The cap is for the API's thread; a worker alone grows its young generation as V8 would.
  const afterStart = opts.api ? () => releaseYoungGeneration() : restoreYoungGeneration;
  try {
    if (!config.DATABASE_URL) {
      // The schema engine is WebAssembly too; compiled with Liftoff only, as the query compiler is (db/liftoff.ts).
      await withLiftoffOnly(() => applyMigrations(database.url, { logger }));
      await runWorkerMigrations({ connectionString: database.url });
    }
    runtime = await createRuntime(config, database.url, logger);
    const demo = opts.demo && database.urlFor ? await ensureDemo(runtime.deps, { home: config.home, databaseUrlFor: database.urlFor }) : null;
    if (opts.worker && opts.api) {
      jobs = await startJobThread({ databaseUrl: database.url, logger, onExit: (code) => fail(`the job thread stopped (exit code ${code})`) });
    } else if (opts.worker) {
      jobs = await startJobs(config, runtime, database.url, logger);
    }
    let port: number | undefined;
    if (opts.api) {
      app = buildApp({ config, deps: runtime.deps, logger });
      port = await app.start(config.PORT, config.HOST);
      logger.info({ port, host: config.HOST }, 'listening');
    }
    if (demo && port !== undefined) printBanner(config, port, demo);
    afterStart();
  } catch (err) {
    afterStart();
    await stop().catch(() => undefined);
    throw err;
  }
}

function printBanner(config: Config, port: number, demo: { created: boolean; adminKey?: string }) {
  const origin = `http://${config.HOST === '0.0.0.0' ? 'localhost' : config.HOST}:${port}`;
  const lines = ['', `  Backplane is running.`, `  Console:   ${origin}/`, `  GraphiQL:  ${origin}/graphql`];
  if (demo.adminKey) {
    lines.push(
      `  Admin API key (shown once, keep it):`,
      `    ${demo.adminKey}`,
      `  Sign in to the console with it. In GraphiQL, add the header  {"Authorization": "Bearer ${demo.adminKey}"}`,
    );
  } else {
    lines.push(`  Reusing ${config.home}. Need a key again?  npx backplane api-key create --name me --scope admin`);
  }
  lines.push(`  Demo database:  npx backplane psql demo`, `  Stop with Ctrl-C.`, '');
  process.stderr.write(lines.join('\n') + '\n');
}

async function migrateCommand(config: Config, logger: Logger) {
  const database = await openDatabase(config, logger);
  try {
    const applied = await applyMigrations(database.url, { logger });
    // The job queue's own schema, so API processes can enqueue before any worker has started.
    await runWorkerMigrations({ connectionString: database.url });
    process.stdout.write(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}\n` : 'database is up to date\n');
  } finally {
    await database.stop();
  }
}

const SCOPE_MEANING: Record<Scope, string> = {
  'backups:read': 'read-only: list and download snapshots, watch operations',
  'backups:write': 'read and write: take, restore, copy and delete snapshots; schedules',
  admin: 'FULL ACCESS: everything, including API keys, destinations and repository passwords',
};

async function apiKeyCommand(config: Config, logger: Logger, argv: string[]) {
  const usage = `usage: backplane api-key create --scope SCOPE [--scope SCOPE]... [--name NAME] [--organization ID]\n  SCOPE: ${SCOPES.join(', ')} (admin includes write, write includes read)`;
  let parsedArgs;
  try {
    parsedArgs = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { name: { type: 'string', default: 'cli' }, scope: { type: 'string', multiple: true }, organization: { type: 'string' } },
    });
  } catch (err) {
    // An unknown option (`--scopes`) is a typo to point at, not a crash with a stack.
    throw new UsageError(`${(err as Error).message}\n${usage}`);
  }
  const { positionals, values } = parsedArgs;
  if (positionals[0] !== 'create' || positionals.length > 1) throw new UsageError(usage);
  // No default scope: a key that can do everything must be asked for by name.
  if (!values.scope?.length) throw new UsageError(`say what the key may do with --scope (${SCOPES.join(', ')})\n${usage}`);
  const scopes = values.scope.flatMap((s) => s.split(',')).map((s) => s.trim());
  // The API's own rules for names and scopes, so the CLI makes no key the API would refuse.
  const parsed = createApiKeyInput.pick({ name: true, scopes: true }).safeParse({ name: values.name, scopes });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const option = issue.path[0] === 'name' ? `--name ${JSON.stringify(values.name)}` : `--scope ${JSON.stringify(scopes[Number(issue.path[1] ?? 0)] ?? scopes.join(','))}`;
    throw new UsageError(`${option}: ${issue.path[0] === 'scopes' && issue.code === 'invalid_value' ? `unknown scope; one of ${SCOPES.join(', ')}` : issue.message}`);
  }
  const input = { name: parsed.data.name, scopes: [...new Set(parsed.data.scopes)] };
  const database = await openDatabase(config, logger);
  const db = createDb(database.url, { max: 1 });
  try {
    const org = values.organization
      ? await db.organization.findUnique({ where: { id: values.organization } })
      : await db.organization.findFirst({ orderBy: { createdAt: 'asc' } });
    if (!org) throw new UsageError('no organization found: run `backplane start` once first');
    const key = await issueApiKey(db, { organizationId: org.id, ...input });
    const lines = [`Created API key "${input.name}" for organization "${org.name}" with scope${input.scopes.length > 1 ? 's' : ''}:`, ...input.scopes.map((s) => `  ${s}  ${SCOPE_MEANING[s]}`), 'The key (shown once) is on stdout.'];
    process.stderr.write(lines.join('\n') + '\n');
    process.stdout.write(key.secret + '\n');
  } finally {
    await db.$disconnect();
    await database.stop();
  }
}

/** Execs psql on an environment's database; exits with psql's exit code. */
async function psqlCommand(config: Config, logger: Logger, argv: string[]) {
  const [ref, ...psqlArgs] = argv;
  if (!ref || ref.startsWith('-')) throw new UsageError("usage: backplane psql <environment name, project/name or id> [psql options], e.g. backplane psql demo -c 'select 1'");
  if (!config.DATABASE_URL && !(await import('../db/embedded.ts')).hasEmbeddedCluster(config.home)) throw new UsageError(`no catalog here: set DATABASE_URL, or run \`backplane start\` once (it keeps its database under ${config.home})`);
  const database = await openDatabase(config, logger);
  const db = createDb(database.url, { max: 1 });
  let url: string;
  try {
    const env = await findEnvironmentByRef(db, ref).catch((err: unknown) => {
      throw err instanceof AppError ? new UsageError(err.message.replace(/^environment: /, '')) : err;
    });
    try {
      url = createSecretBox(resolveSecretKey(config.BACKPLANE_SECRET_KEY, config.home)).open(env.databaseUrlEncrypted);
    } catch (err) {
      throw new Error('cannot decrypt the database URL: BACKPLANE_SECRET_KEY is not the key it was stored with', { cause: err });
    }
    await db.$disconnect();
    process.exitCode = await runPsql(url, psqlArgs);
  } finally {
    await db.$disconnect();
    await database.stop();
  }
}

/** Bad arguments: exit code 2 with the message alone. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Runs one control-plane command; throws UsageError for bad arguments. */
export async function serverMain(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const config = loadConfig();
  // Commands whose stdout is their answer (a key, psql's output, migrate's report) log to stderr,
  // so scripts capture the answer alone; api-key and psql log only warnings unless LOG_LEVEL asks
  // for more: a person is reading that terminal.
  const quiet = command === 'api-key' || command === 'psql';
  const logger = createLogger(quiet && !process.env.LOG_LEVEL ? 'warn' : config.LOG_LEVEL, {}, quiet || command === 'migrate' ? 2 : 1);
  switch (command) {
    case 'start':
      return serveCommand(config, logger, { api: true, worker: true, demo: true });
    case 'serve':
      if (!config.DATABASE_URL) throw new UsageError('serve needs DATABASE_URL (or use `backplane start` for the embedded default)');
      return serveCommand(config, logger, { api: true, worker: false, demo: false });
    case 'worker':
      if (!config.DATABASE_URL) throw new UsageError('worker needs DATABASE_URL (or use `backplane start` for the embedded default)');
      return serveCommand(config, logger, { api: false, worker: true, demo: false });
    case 'migrate':
      return migrateCommand(config, logger);
    case 'api-key':
      return apiKeyCommand(config, logger, rest);
    case 'psql':
      return psqlCommand(config, logger, rest);
    default:
      throw new UsageError(`unknown command "${command}"\n\n${USAGE}`);
  }
}
