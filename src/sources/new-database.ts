/**
 * Databases Backplane makes itself on an environment's server, beside the environment's own: the
 * database of a new environment (filled under its restore name `<db>__bp_restore_<id>`, renamed
 * when the restore is done) and a restore drill's scratch copy (`bp_drill_<id>`). Both are made
 * with the connection of the environment they come from, like the source database (encoding,
 * locale), and owned by that connection's role. Every name made here carries a marker that
 * recovery recognises (the infix, and a database comment naming who made it), so a process
 * killed halfway leaves nothing that is not found and dropped again.
 */
import { siblingUrl, toolEnv, pgTarget } from './connection.ts';
import { startTool } from './child.ts';
import { SourceError } from './errors.ts';
import { DRILL_PREFIX, restoreSuffix } from './names.ts';
import { withAdmin, withClient } from './pg-admin.ts';
import { abortError, conninfoQuote, restoreInput, runRestore, stateError, type DumpSource, type PreparedDatabase } from './restore-common.ts';
import { readTarget, restoreDatabaseNames } from './restore-swap.ts';

/** A drill's scratch database: `bp_drill_<id>`. */
export function drillDatabaseName(drillId: string): string {
  return DRILL_PREFIX + restoreSuffix(drillId);
}

/**
 * Whether the URL's role may create databases at all (superuser or CREATEDB): asked before a
 * restore into a new environment is accepted, so a refusal comes with nothing created.
 */
export async function mayCreateDatabases(databaseUrl: string): Promise<boolean> {
  return withClient(databaseUrl, async (c) => {
    const { rows } = await c.query<{ ok: boolean }>('SELECT rolsuper OR rolcreatedb AS ok FROM pg_roles WHERE rolname = current_user');
    return rows[0]?.ok === true;
  });
}

/** Whether database `name` exists on the URL's server. */
export async function databaseExists(databaseUrl: string, name: string): Promise<boolean> {
  return withAdmin(databaseUrl, [name], async (c) => ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount ?? 0) > 0);
}

/**
 * Creates database `name` on the server of `sourceUrl`, with the encoding and locale of the
 * source database, owned by the URL's role, and `comment` as its database comment (the marker
 * recovery checks before it drops a database under a name that is not a restore's own).
 * DATABASE_CREATE_FORBIDDEN when the role may not; DATABASE_EXISTS when the name is taken.
 */
export async function createDatabaseLike(sourceUrl: string, name: string, comment: string): Promise<void> {
  const source = pgTarget(sourceUrl).database;
  await withAdmin(sourceUrl, [source, name], async (c) => {
    const info = await readTarget(c, source);
    const id = c.escapeIdentifier(name);
    try {
      await c.query(`CREATE DATABASE ${id} WITH ${info.localeOptions}`);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '42501') throw new SourceError('DATABASE_CREATE_FORBIDDEN', `the role of ${JSON.stringify(source)}'s connection may not create databases (it needs CREATEDB)`, { cause: err });
      if (code === '42P04') throw new SourceError('DATABASE_EXISTS', `a database named ${JSON.stringify(name)} already exists on the server`, { cause: err });
      throw err;
    }
    await c.query(`COMMENT ON DATABASE ${id} IS ${c.escapeLiteral(comment)}`);
  });
}

/**
 * Creates database `name` like the source (createDatabaseLike) and pg_restores `dump` into it.
 * Returns its URL (the source's credentials). If it throws, the database is gone again.
 */
export async function restoreNewDatabase(
  sourceUrl: string,
  name: string,
  dump: DumpSource,
  opts: { comment: string; signal?: AbortSignal; onPhase?: (phase: 'restoring') => void },
): Promise<string> {
  const aborted = abortError(opts.signal);
  if (aborted) {
    dump.destroy();
    throw aborted;
  }
  const input = await restoreInput(dump);
  try {
    await createDatabaseLike(sourceUrl, name, opts.comment);
  } catch (err) {
    input.discard();
    throw err;
  }
  try {
    opts.onPhase?.('restoring');
    const superuser = await withClient(sourceUrl, async (c) => (await c.query<{ s: boolean }>('SELECT rolsuper AS s FROM pg_roles WHERE rolname = current_user')).rows[0]?.s === true);
    const target = pgTarget(sourceUrl);
    const args = ['--exit-on-error', '--no-password', `--dbname=dbname=${conninfoQuote(name)}`, ...(superuser ? [] : ['--no-owner'])];
    const tool = startTool('pg_restore', args, { env: toolEnv(target, { PGDATABASE: name, PGAPPNAME: 'backplane-restore' }), stdin: input.stdin, stdout: 'ignore' });
    await runRestore(tool, input, opts.signal);
    const late = abortError(opts.signal);
    if (late) throw late;
  } catch (err) {
    await dropMarkedDatabase(sourceUrl, name, opts.comment).catch(() => {});
    throw err;
  }
  return siblingUrl(sourceUrl, name);
}

/** Renames database `from` to `to` (a new environment's restore name to its own). DATABASE_EXISTS when `to` is taken. */
export async function renameDatabase(databaseUrl: string, from: string, to: string): Promise<void> {
  await withAdmin(databaseUrl, [from, to], async (c) => {
    try {
      await c.query(`ALTER DATABASE ${c.escapeIdentifier(from)} RENAME TO ${c.escapeIdentifier(to)}`);
    } catch (err) {
      if ((err as { code?: string }).code === '42P04') throw new SourceError('DATABASE_EXISTS', `a database named ${JSON.stringify(to)} already exists on the server`, { cause: err });
      throw err;
    }
  });
}

/**
 * Drops database `name` only when its comment is `comment`, the marker its maker gave it: recovery
 * may then drop a new environment's database under the environment's own name without any risk
 * of dropping one it did not make. Returns whether it dropped one.
 */
export async function dropMarkedDatabase(databaseUrl: string, name: string, comment: string): Promise<boolean> {
  return withAdmin(databaseUrl, [name], async (c) => {
    const { rows } = await c.query<{ comment: string | null }>("SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1", [name]);
    if (!rows[0] || rows[0].comment !== comment) return false;
    await c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(name)} WITH (FORCE)`);
    return true;
  });
}

/**
 * Runs `query` in database `url`, read-only, with a statement timeout: the check of a restore
 * drill. It passes when it returns one row of one column holding boolean true; CHECK_QUERY_FAILED
 * says why otherwise.
 */
export async function runCheckQuery(url: string, query: string, timeoutMs: number): Promise<void> {
  await withClient(url, async (c) => {
    await c.query('BEGIN READ ONLY');
    try {
      await c.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}`);
      let result: { rows: unknown[] };
      try {
        // The extended protocol takes one statement only: a `COMMIT; …` in the query cannot
        // end the read-only transaction and run the rest outside it.
        result = await c.query({ text: query, rowMode: 'array', queryMode: 'extended' } as unknown as string);
      } catch (err) {
        throw new SourceError('CHECK_QUERY_FAILED', `the check query failed: ${(err as Error).message}`, { cause: err });
      }
      const rows = result.rows as unknown[][];
      if (rows.length !== 1 || rows[0].length !== 1) throw new SourceError('CHECK_QUERY_FAILED', `the check query must return one row of one boolean column; it returned ${rows.length} row(s)`);
      if (rows[0][0] !== true) throw new SourceError('CHECK_QUERY_FAILED', `the check query returned ${JSON.stringify(rows[0][0])}, not true`);
    } finally {
      await c.query('ROLLBACK').catch(() => {});
    }
  });
}

/** The comment a new environment's database carries from its creation: recovery drops it only with this. */
export function newDatabaseMarker(restoreId: string): string {
  return `backplane: made by restore ${restoreSuffix(restoreId)} for a new environment`;
}

/**
 * Prepares the database of a new environment (`targetUrl` names it; it must not exist yet):
 * pg_restore into `<db>__bp_restore_<id>`, created like the source database; commit() renames it
 * to its own name. Nothing under the environment's name exists before commit, and the database
 * carries newDatabaseMarker() under either name, so recovery finds it after a crash at any point.
 */
export async function prepareNewDatabase(
  sourceUrl: string,
  targetUrl: string,
  dump: DumpSource,
  opts: { restoreId: string; signal?: AbortSignal; onPhase?: (phase: 'restoring' | 'swapping') => void },
): Promise<PreparedDatabase> {
  const targetName = pgTarget(targetUrl).database;
  const { temp } = restoreDatabaseNames(targetName, opts.restoreId);
  const marker = newDatabaseMarker(opts.restoreId);
  if (await databaseExists(targetUrl, targetName)) {
    dump.destroy();
    throw new SourceError('DATABASE_EXISTS', `a database named ${JSON.stringify(targetName)} already exists on the server`);
  }
  // Left by an earlier run of this same restore that was stopped: never live, ours.
  await dropMarkedDatabase(targetUrl, temp, marker);
  await restoreNewDatabase(sourceUrl, temp, dump, { comment: marker, signal: opts.signal, onPhase: opts.onPhase });
  let state: 'prepared' | 'committed' | 'rolledBack' | 'undone' = 'prepared';
  return {
    strategy: 'SWAP',
    targetName,
    tempName: temp,
    previousName: null,
    canUndo: true,
    async commit() {
      if (state !== 'prepared') throw stateError(`cannot commit a restore that is ${state}`);
      opts.onPhase?.('swapping');
      await renameDatabase(targetUrl, temp, targetName);
      state = 'committed';
      return { previousDatabaseName: null };
    },
    async rollback() {
      if (state === 'rolledBack') return;
      if (state !== 'prepared') throw stateError(`cannot roll back a restore that is ${state}`);
      await dropMarkedDatabase(targetUrl, temp, marker);
      state = 'rolledBack';
    },
    async undo() {
      if (state !== 'committed') throw stateError(`cannot undo a restore that is ${state}`);
      await dropMarkedDatabase(targetUrl, targetName, marker);
      state = 'undone';
    },
    async discardPrevious() {},
  };
}
