/**
 * Migrations through Prisma's own schema engine, compiled to WebAssembly.
 *
 * The Prisma CLI would run its native schema engine, which it downloads on first use; these
 * machines cannot download it. `@prisma/schema-engine-wasm` is the same engine, talking to the
 * database through a driver adapter (`@prisma/adapter-pg`). `applyMigrations` applies
 * `prisma/migrations` and records each in `_prisma_migrations` (name, sha256 checksum, timings)
 * exactly as `prisma migrate deploy` does, so either tool can take over a database from the other.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PrismaPg } from '@prisma/adapter-pg';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';
import pg from 'pg';
import type {
  MigrationDirectory,
  MigrationList,
  SchemaEngine,
  SchemaFilter,
} from '@prisma/schema-engine-wasm';

/** The project root: the nearest directory above this module with prisma/ (src/db/ or dist/). */
const ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'prisma', 'schema.prisma')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
})();

/** Default location of the committed migrations. */
export const DEFAULT_MIGRATIONS_DIR = path.join(ROOT, 'prisma', 'migrations');
/** Default location of the Prisma schema. */
export const DEFAULT_SCHEMA_PATH = path.join(ROOT, 'prisma', 'schema.prisma');

/** Minimal logger; pino's Logger fits. */
export interface MigrationLogger {
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** Options for {@link applyMigrations}. */
export interface ApplyMigrationsOptions {
  /** Directory of `<timestamp>_<name>/migration.sql` folders (default prisma/migrations). */
  migrationsDir?: string;
  logger?: MigrationLogger;
}

const NO_FILTER: SchemaFilter = { externalTables: [], externalEnums: [] };

type WasmModule = typeof import('@prisma/schema-engine-wasm');

let wasmModule: Promise<WasmModule> | undefined;

/**
 * Loads the engine once per process. The package's entry imports the `.wasm` file as an ES
 * module, which Node does not support, so we instantiate it ourselves and hand it to the
 * wasm-bindgen glue (`schema_engine_bg.js`), as that entry would.
 */
function loadEngineModule(): Promise<WasmModule> {
  wasmModule ??= (async () => {
    const require = createRequire(import.meta.url);
    const dir = path.dirname(require.resolve('@prisma/schema-engine-wasm/schema_engine_bg'));
    const glue = (await import(pathToFileURL(path.join(dir, 'schema_engine_bg.js')).href)) as WasmModule & {
      __wbg_set_wasm(exports: WebAssembly.Exports): void;
    };
    const bytes = await fs.readFile(path.join(dir, 'schema_engine_bg.wasm'));
    // The glue reports Rust panics through this global, which Prisma's CLI normally installs.
    const g = globalThis as { PRISMA_WASM_PANIC_REGISTRY?: { set_message(m: string): void } };
    g.PRISMA_WASM_PANIC_REGISTRY ??= {
      set_message(m: string) {
        lastPanic = m;
      },
    };
    const { instance } = await WebAssembly.instantiate(bytes, { './schema_engine_bg.js': glue as never });
    glue.__wbg_set_wasm(instance.exports);
    (instance.exports.__wbindgen_start as () => void)();
    return glue;
  })();
  return wasmModule;
}

let lastPanic: string | undefined;

/** A pg type id the adapter cannot map: PostgreSQL's one-byte internal `"char"`. */
const PG_INTERNAL_CHAR = 18;
const PG_TEXT = 25;

interface Disposable {
  dispose(): Promise<void>;
}

/**
 * The pg driver adapter, made fit for the schema engine. Introspection reads catalog columns of
 * type `"char"` (pg_class.relkind and friends), which adapter-pg 7.10 rejects as an unsupported
 * type; they arrive as one-character strings, so reporting them as text is exact. We also keep
 * every connection the engine opens so we can close the pools it does not close itself.
 */
function engineAdapter(databaseUrl: string) {
  const base = new PrismaPg({ connectionString: databaseUrl, max: 1 });
  const opened: Disposable[] = [];
  const fit = <T extends object>(adapter: T): T => {
    const io = (adapter as { performIO?: (q: unknown) => Promise<{ fields: { dataTypeID: number }[] }> }).performIO;
    if (typeof io !== 'function') {
      throw new Error('@prisma/adapter-pg changed: PgQueryable.performIO is gone; revisit engineAdapter() in src/db/migrate.ts');
    }
    Object.assign(adapter, {
      performIO: async (q: unknown) => {
        const result = await io.call(adapter, q);
        for (const f of result.fields) if (f.dataTypeID === PG_INTERNAL_CHAR) f.dataTypeID = PG_TEXT;
        return result;
      },
    });
    // adapter-pg splits scripts on every ';' and sends the pieces one by one through the pool,
    // which breaks function bodies and string literals and spreads one migration over several
    // connections. PostgreSQL runs a multi-statement simple query as one implicit transaction,
    // which is how Prisma's native engine sends a migration script.
    const raw = adapter as unknown as { client: { query(sql: string): Promise<unknown> }; onError(err: unknown): never };
    Object.assign(adapter, {
      executeScript: async (script: string) => {
        try {
          await raw.client.query(script);
        } catch (err) {
          raw.onError(err);
        }
      },
    });
    const dispose = (adapter as unknown as Disposable).dispose.bind(adapter);
    let disposed: Promise<void> | undefined;
    // The engine may dispose a connection itself; ending a pg pool twice throws.
    (adapter as unknown as Disposable).dispose = () => (disposed ??= dispose());
    opened.push(adapter as unknown as Disposable);
    return adapter;
  };
  const factory = {
    provider: base.provider,
    adapterName: base.adapterName,
    connect: async () => fit(await base.connect()),
    connectToShadowDb: async () => fit(await base.connectToShadowDb()),
  };
  return {
    factory: bindMigrationAwareSqlAdapterFactory(factory as unknown as Parameters<typeof bindMigrationAwareSqlAdapterFactory>[0]),
    close: async () => {
      await Promise.allSettled(opened.map((a) => a.dispose()));
    },
  };
}

/** Runs `fn` with a schema engine connected to `databaseUrl`, and cleans up after it. */
async function withEngine<T>(
  databaseUrl: string,
  schemaFiles: [string, string][] | undefined,
  logger: MigrationLogger | undefined,
  fn: (engine: SchemaEngine) => Promise<T>,
): Promise<T> {
  const wasm = await loadEngineModule();
  const adapter = engineAdapter(databaseUrl);
  let engine: SchemaEngine | undefined;
  try {
    engine = await wasm.SchemaEngine.new(
      { datamodels: schemaFiles },
      (line: string) => forwardLog(line, logger),
      adapter.factory,
    );
    return await fn(engine);
  } catch (err) {
    if (err instanceof Error && err.name === 'RuntimeError') {
      // A Rust panic leaves the instance unusable; the next call instantiates afresh.
      wasmModule = undefined;
      if (lastPanic) err.message = `${err.message}: ${lastPanic}`;
      lastPanic = undefined;
    }
    throw err;
  } finally {
    try {
      engine?.free();
    } catch {
      // Freeing an engine that panicked can fail too; its instance is dropped anyway.
    }
    await adapter.close();
  }
}

function forwardLog(line: string, logger: MigrationLogger | undefined): void {
  if (!logger) return;
  let entry: { level?: string; fields?: { message?: string; [k: string]: unknown } };
  try {
    entry = JSON.parse(line);
  } catch {
    logger.debug({ line }, 'schema engine');
    return;
  }
  const { message, ...fields } = entry.fields ?? {};
  delete fields.script;
  if (entry.level === 'INFO' && typeof message === 'string' && message.startsWith('Applying')) {
    logger.info(fields, message);
  } else {
    logger.debug(fields, `schema engine: ${message ?? ''}`);
  }
}

/**
 * Reads a migrations directory the way Prisma's CLI does: every subdirectory is a migration, its
 * `migration.sql` the script, ordered by name; `migration_lock.toml` is optional.
 */
export async function readMigrationsDir(migrationsDir: string): Promise<MigrationList> {
  const lockPath = 'migration_lock.toml';
  const lockContent = await fs.readFile(path.join(migrationsDir, lockPath), 'utf8').catch(() => null);
  const entries = await fs.readdir(migrationsDir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  const dirs: MigrationDirectory[] = [];
  for (const entry of entries.filter((e) => e.isDirectory())) {
    const file = path.join(migrationsDir, entry.name, 'migration.sql');
    const content = await fs
      .readFile(file, 'utf8')
      .then((value) => ({ tag: 'ok' as const, value }))
      .catch((err: Error) => ({ tag: 'error' as const, value: err.message }));
    dirs.push({ path: entry.name, migrationFile: { path: 'migration.sql', content } });
  }
  dirs.sort((a, b) => a.path.localeCompare(b.path));
  return {
    baseDir: migrationsDir,
    lockfile: { path: lockPath, content: lockContent },
    shadowDbInitScript: '',
    migrationDirectories: dirs,
  };
}

/**
 * Applies every migration in `migrationsDir` that the database has not recorded yet, in name
 * order, each recorded in `_prisma_migrations`. Idempotent: returns the names it applied now
 * (empty when the database was up to date). Fails, applying nothing further, when a recorded
 * migration failed before or a migration does not apply.
 */
export async function applyMigrations(databaseUrl: string, options: ApplyMigrationsOptions = {}): Promise<string[]> {
  const migrationsDir = path.resolve(options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR);
  const migrationsList = await readMigrationsDir(migrationsDir);
  try {
    if (await recordedAsApplied(databaseUrl, migrationsList)) return [];
    const out = await withEngine(databaseUrl, undefined, options.logger, (engine) =>
      engine.applyMigrations({ migrationsList, filters: NO_FILTER }),
    );
    return out.appliedMigrationNames;
  } catch (err) {
    throw new Error(`applying migrations from ${migrationsDir} to ${redactUrl(databaseUrl)} failed: ${errorText(err)}`, {
      cause: err,
    });
  }
}

/**
 * True when `_prisma_migrations` records exactly the directory's migrations, each finished, none
 * rolled back, each with its script's checksum: then there is nothing to apply, and the schema
 * engine is not loaded. The engine stays resident once loaded (its glue module keeps views of
 * its memory), about 15 MiB that every `backplane start` on the embedded catalog kept for
 * nothing. Anything else (a pending, failed, edited or unknown migration, no table yet) is the
 * engine's to decide, as before.
 */
async function recordedAsApplied(databaseUrl: string, list: MigrationList): Promise<boolean> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const table = await client.query<{ t: string | null }>(`SELECT to_regclass('_prisma_migrations')::text AS t`);
    if (!table.rows[0].t) return false;
    const rows = (await client.query<{ migration_name: string; checksum: string; finished_at: Date | null; rolled_back_at: Date | null }>(
      'SELECT migration_name, checksum, finished_at, rolled_back_at FROM _prisma_migrations',
    )).rows;
    const dirs = list.migrationDirectories;
    if (rows.length !== dirs.length) return false;
    const byName = new Map(rows.map((r) => [r.migration_name, r]));
    return dirs.every((d) => {
      const r = byName.get(d.path);
      const file = d.migrationFile.content;
      return r && r.finished_at && !r.rolled_back_at && file.tag === 'ok' && r.checksum === createHash('sha256').update(file.value).digest('hex');
    });
  } finally {
    await client.end();
  }
}

/** Where a database stands against the migrations directory. */
export interface MigrationStatus {
  /** Migrations in the directory the database has not applied yet, in order. */
  pending: string[];
  /** Migrations recorded as failed; deploys stop until they are resolved. */
  failed: string[];
  /** Applied migrations whose script changed since (checksum mismatch). */
  edited: string[];
  /** Applied migrations that are not in the directory (the database is ahead of this code). */
  unknown: string[];
}

/**
 * Compares the database's `_prisma_migrations` with the migrations directory, changing nothing
 * (what `prisma migrate status` reports). Useful for readiness checks and `backplane migrate`.
 */
export async function migrationStatus(databaseUrl: string, options: ApplyMigrationsOptions = {}): Promise<MigrationStatus> {
  const migrationsDir = path.resolve(options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR);
  const migrationsList = await readMigrationsDir(migrationsDir);
  try {
    const out = await withEngine(databaseUrl, undefined, options.logger, (engine) =>
      engine.diagnoseMigrationHistory({ migrationsList, optInToShadowDatabase: false, filters: NO_FILTER }),
    );
    const h = out.history;
    return {
      pending: h && h.diagnostic !== 'migrationsDirectoryIsBehind' ? h.unappliedMigrationNames : [],
      failed: out.failedMigrationNames,
      edited: out.editedMigrationNames,
      unknown: h && h.diagnostic !== 'databaseIsBehind' ? h.unpersistedMigrationNames : [],
    };
  } catch (err) {
    throw new Error(`reading the migration status of ${redactUrl(databaseUrl)} failed: ${errorText(err)}`, { cause: err });
  }
}

/**
 * The SQL that would bring the database at `databaseUrl` to the Prisma schema at `schemaPath`
 * (default prisma/schema.prisma); an empty string when they already match. Reads the live
 * database through introspection, so point it at a database that has the migrations applied and
 * you get the next migration.
 */
export async function diffToSchema(databaseUrl: string, schemaPath: string = DEFAULT_SCHEMA_PATH): Promise<string> {
  const absSchema = path.resolve(schemaPath);
  const files = await schemaFiles(absSchema);
  try {
    const result = await withEngine(databaseUrl, undefined, undefined, (engine) =>
      engine.diff({
        from: { tag: 'schemaDatasource', configDir: path.dirname(absSchema), files },
        to: { tag: 'schemaDatamodel', files },
        script: true,
        exitCode: true,
        filters: NO_FILTER,
      }),
    );
    // With exitCode requested the engine answers 2 for "differs", 0 for "no difference".
    return result.exitCode === 2 ? (result.stdout ?? '') : '';
  } catch (err) {
    throw new Error(`diffing ${redactUrl(databaseUrl)} against ${absSchema} failed: ${errorText(err)}`, { cause: err });
  }
}

/** The schema's files: one file, or every `.prisma` file of a schema folder (Prisma's multi-file schemas). */
async function schemaFiles(schemaPath: string): Promise<{ path: string; content: string }[]> {
  if (!existsSync(schemaPath)) throw new Error(`Prisma schema not found at ${schemaPath}`);
  const st = await fs.stat(schemaPath);
  const paths = st.isDirectory()
    ? (await fs.readdir(schemaPath, { recursive: true }))
        .filter((f) => f.endsWith('.prisma'))
        .sort()
        .map((f) => path.join(schemaPath, f))
    : [schemaPath];
  return Promise.all(paths.map(async (p) => ({ path: p, content: await fs.readFile(p, 'utf8') })));
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // Engine errors carry a Rust span trace after the message; the first lines say what happened.
  return err.message.split('\n   0: ')[0].trim();
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<invalid database url>';
  }
}
