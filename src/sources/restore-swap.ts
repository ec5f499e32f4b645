/**
 * SWAP restore: pg_restore into a fresh twin of the target, `<db>__bp_restore_<id>`, then one
 * transaction renames the target to `<db>__bp_pre_<id>` and the twin to the target.
 */
import type { Readable } from 'node:stream';
import type pg from 'pg';
import { startTool } from './child.ts';
import { toolEnv, type PgTarget } from './connection.ts';
import { SourceError } from './errors.ts';
import { PREVIOUS_INFIX, RESTORE_INFIX, restoreSuffix, truncateBytes } from './names.ts';
import { dropDatabase, withAdmin } from './pg-admin.ts';
import { abortError, conninfoQuote, runRestore, stateError, type PrepareDatabaseOptions, type PreparedDatabase, type RestoreInput } from './restore-common.ts';

/** PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes. */
export const MAX_IDENTIFIER_BYTES = 63;

/** Swap attempts; each can wait PostgreSQL's 5 s for sessions that will not go. */
const SWAP_ATTEMPTS = 3;
/** How often sessions of the target are terminated while the rename waits for them to go. */
const SWEEP_INTERVAL_MS = 100;

/**
 * The temp and previous database names of a restore of `database`. The database name part is
 * cut (at a character boundary) so both fit in 63 bytes; the suffix is never cut, so names of
 * different restores stay distinct.
 */
export function restoreDatabaseNames(database: string, restoreId: string): { temp: string; previous: string } {
  const suffix = restoreSuffix(restoreId);
  const name = (infix: string) =>
    truncateBytes(database, MAX_IDENTIFIER_BYTES - Buffer.byteLength(infix + suffix)) + infix + suffix;
  return { temp: name(RESTORE_INFIX), previous: name(PREVIOUS_INFIX) };
}

export interface TargetInfo {
  owner: string;
  /** Template, encoding, locale and tablespace: what a new database needs to hold this one's dump alike. */
  localeOptions: string;
  allowConnections: boolean;
  createOptions: string;
  aclStatements: string[];
  comment: string | null;
  settings: { role: string | null; setting: string }[];
  superuser: boolean;
}

/** Everything about the target database itself that pg_dump (without --create) does not carry. */
export async function readTarget(c: pg.Client, name: string): Promise<TargetInfo> {
  const { rows } = await c.query<{ d: Record<string, unknown>; owner: string; spc: string; comment: string | null; superuser: boolean }>(
    `SELECT to_jsonb(d) AS d, pg_get_userbyid(d.datdba) AS owner,
            t.spcname AS spc, shobj_description(d.oid, 'pg_database') AS comment,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser
       FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
      WHERE d.datname = $1`,
    [name],
  );
  if (!rows[0]) throw new SourceError('DATABASE_NOT_FOUND', `database ${JSON.stringify(name)} does not exist`);
  const { d, owner, spc, comment, superuser } = rows[0];
  const q = (v: unknown) => c.escapeLiteral(String(v));
  // to_jsonb reads the columns by name, so the same code follows pg_database across versions
  // (datlocprovider since 15, daticulocale renamed datlocale in 17, daticurules since 16).
  const options = [
    `TEMPLATE template0`,
    `ENCODING ${q((await c.query<{ e: string }>('SELECT pg_encoding_to_char($1::int) AS e', [d.encoding])).rows[0].e)}`,
    `LC_COLLATE ${q(d.datcollate)}`,
    `LC_CTYPE ${q(d.datctype)}`,
  ];
  // Naming pg_default explicitly needs CREATE on it, which plain roles lack; it is the default anyway.
  if (spc !== 'pg_default') options.push(`TABLESPACE ${c.escapeIdentifier(spc)}`);
  const provider = d.datlocprovider as string | undefined;
  const locale = (d.datlocale ?? d.daticulocale) as string | null | undefined;
  if (provider === 'i') {
    options.push(`LOCALE_PROVIDER icu`);
    if (locale) options.push(`ICU_LOCALE ${q(locale)}`);
    if (d.daticurules) options.push(`ICU_RULES ${q(d.daticurules)}`);
  } else if (provider === 'b') {
    options.push(`LOCALE_PROVIDER builtin`);
    if (locale) options.push(`BUILTIN_LOCALE ${q(locale)}`);
  } else if (provider === 'c') {
    options.push(`LOCALE_PROVIDER libc`);
  }

  const aclStatements: string[] = [];
  if (d.datacl !== null && d.datacl !== undefined) {
    const acl = await c.query<{ privilege_type: string; grantee: string | null; is_grantable: boolean }>(
      `SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee, a.is_grantable
         FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1`,
      [name],
    );
    aclStatements.push(`REVOKE ALL ON DATABASE %DB% FROM PUBLIC, ${c.escapeIdentifier(owner)}`);
    for (const a of acl.rows) {
      const grantee = a.grantee === null ? 'PUBLIC' : c.escapeIdentifier(a.grantee);
      aclStatements.push(`GRANT ${a.privilege_type} ON DATABASE %DB% TO ${grantee}${a.is_grantable ? ' WITH GRANT OPTION' : ''}`);
    }
  }
  const settings = await c.query<{ role: string | null; setconfig: string[] }>(
    `SELECT r.rolname AS role, s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
       LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = $1`,
    [name],
  );
  return {
    owner,
    localeOptions: options.join(' '),
    allowConnections: d.datallowconn === true,
    createOptions: [...options, `OWNER ${c.escapeIdentifier(owner)}`, `CONNECTION LIMIT ${Number(d.datconnlimit)}`].join(' '),
    aclStatements,
    comment,
    settings: settings.rows.flatMap((r) => r.setconfig.map((setting) => ({ role: r.role, setting }))),
    superuser,
  };
}

async function databaseExists(c: pg.Client, name: string): Promise<boolean> {
  return ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount ?? 0) > 0;
}

/** Creates the temp database as a twin of the target: same owner, locale, ACL, settings and comment. */
async function createTwin(c: pg.Client, info: TargetInfo, temp: string): Promise<void> {
  const id = c.escapeIdentifier(temp);
  await c.query(`CREATE DATABASE ${id} WITH ${info.createOptions}`);
  for (const sql of info.aclStatements) await c.query(sql.replaceAll('%DB%', id));
  if (info.comment !== null) await c.query(`COMMENT ON DATABASE ${id} IS ${c.escapeLiteral(info.comment)}`);
  for (const { role, setting } of info.settings) {
    const eq = setting.indexOf('=');
    const name = setting.slice(0, eq);
    const value = setting.slice(eq + 1);
    const alter = role === null ? `ALTER DATABASE ${id}` : `ALTER ROLE ${c.escapeIdentifier(role)} IN DATABASE ${id}`;
    // The stored value is in the GUC's own input syntax (a list such as search_path included):
    // set_config() parses it exactly as the original SET did, and FROM CURRENT copies it over.
    try {
      await c.query('BEGIN');
      await c.query('SELECT set_config($1, $2, true)', [name, value]);
      await c.query(`${alter} SET ${c.escapeIdentifier(name)} FROM CURRENT`);
      await c.query('COMMIT');
      continue;
    } catch {
      await c.query('ROLLBACK');
    }
    try {
      await c.query(`${alter} SET ${c.escapeIdentifier(name)} TO ${c.escapeLiteral(value)}`);
    } catch (err) {
      throw new SourceError('DATABASE_SETTINGS_NOT_COPIED', `could not copy database setting ${name} to the restored database`, { cause: err });
    }
  }
}

/**
 * pg_restore's session settings (after the URL's own options): no commit waits for its WAL to
 * reach the disk, since the temp database is dropped whatever a crash leaves of it, and the swap's
 * commit, in a session of its own, flushes every WAL record before it; and enough memory that
 * the index builds sort in memory (PostgreSQL's default of 64 MB spills a few million keys to disk).
 */
function restoreSessionOptions(target: PgTarget): string {
  return [target.env.PGOPTIONS, '-c synchronous_commit=off', '-c maintenance_work_mem=256MB'].filter(Boolean).join(' ');
}

/** Prepares a SWAP restore (see PreparedDatabase); on failure the temp database is gone. */
export async function prepareSwap(databaseUrl: string, target: PgTarget, dump: RestoreInput, opts: PrepareDatabaseOptions): Promise<PreparedDatabase> {
  const targetName = target.database;
  const { temp, previous } = restoreDatabaseNames(targetName, opts.restoreId);
  let info: TargetInfo;
  try {
    info = await withAdmin(databaseUrl, [targetName, temp], async (c) => {
      const info = await readTarget(c, targetName);
      if (await databaseExists(c, previous)) {
        throw new SourceError('RESTORE_ALREADY_COMMITTED', `database ${JSON.stringify(previous)} exists: restore ${opts.restoreId} was already committed`);
      }
      // Left behind by an earlier attempt of this same restore that died: never live, ours to drop.
      await c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(temp)} WITH (FORCE)`);
      await createTwin(c, info, temp);
      return info;
    });
  } catch (err) {
    dump.discard();
    await dropDatabase(databaseUrl, temp).catch(() => {});
    throw err;
  }

  const dropTemp = () => dropDatabase(databaseUrl, temp);
  try {
    opts.onPhase?.('restoring');
    const noOwner = opts.noOwner ?? !info.superuser;
    // pg_restore insists on -d; a conninfo holding only the name keeps it safe from names that
    // look like conninfo themselves, and host, user and password still come from the environment.
    const args = ['--exit-on-error', '--no-password', `--dbname=dbname=${conninfoQuote(temp)}`, ...(noOwner ? ['--no-owner'] : [])];
    // Plain SQL (an import) runs through psql, stopping at its first error; ownership is as the SQL says.
    const tool =
      opts.format === 'plain'
        ? startTool('psql', ['--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=1', '--output=/dev/null', `--dbname=dbname=${conninfoQuote(temp)}`], {
            env: toolEnv(target, { PGDATABASE: temp, PGAPPNAME: 'backplane-import' }),
            stdin: dump.stdin,
            stdout: 'ignore',
          })
        : startTool('pg_restore', args, {
            env: toolEnv(target, { PGDATABASE: temp, PGAPPNAME: 'backplane-restore', PGOPTIONS: restoreSessionOptions(target) }),
            stdin: dump.stdin,
            stdout: 'ignore',
          });
    await runRestore(tool, dump, opts.signal);
    const aborted = abortError(opts.signal);
    if (aborted) throw aborted;
  } catch (err) {
    await dropTemp().catch(() => {});
    throw err;
  }

  let state: 'prepared' | 'committed' | 'rolledBack' | 'undone' = 'prepared';
  return {
    strategy: 'SWAP',
    targetName,
    tempName: temp,
    previousName: previous,
    canUndo: true,
    async commit() {
      if (state !== 'prepared') throw stateError(`cannot commit a restore that is ${state}`);
      opts.onPhase?.('swapping');
      await swapNames(databaseUrl, { live: targetName, incoming: temp, outgoing: previous, allowConnections: info.allowConnections });
      state = 'committed';
      return { previousDatabaseName: previous };
    },
    async rollback() {
      if (state === 'rolledBack') return;
      if (state !== 'prepared') throw stateError(`cannot roll back a restore that is ${state}`);
      await dropTemp();
      state = 'rolledBack';
    },
    async undo() {
      if (state !== 'committed') throw stateError(`cannot undo a restore that is ${state}`);
      await swapNames(databaseUrl, { live: targetName, incoming: previous, outgoing: temp, allowConnections: info.allowConnections });
      state = 'undone';
      await dropTemp();
    },
    async discardPrevious() {
      if (state !== 'committed') throw stateError(`cannot discard the previous database of a restore that is ${state}`);
      await dropDatabase(databaseUrl, previous);
    },
    async keepAs(name: string) {
      if (state !== 'prepared') throw stateError(`cannot keep a restore that is ${state}`);
      await withAdmin(databaseUrl, [temp, name], async (c) => {
        if (await databaseExists(c, name)) throw new SourceError('DATABASE_EXISTS', `database ${JSON.stringify(name)} already exists`);
        await c.query(`ALTER DATABASE ${c.escapeIdentifier(temp)} RENAME TO ${c.escapeIdentifier(name)}`);
        if (!info.allowConnections) await c.query(`ALTER DATABASE ${c.escapeIdentifier(name)} WITH ALLOW_CONNECTIONS false`);
      });
      state = 'committed';
    },
  };
}

/**
 * The one short step of a SWAP: `live` becomes `outgoing` and `incoming` becomes `live`, in one
 * transaction, so `live` is never missing and a crash changes nothing.
 *
 * Why no client can slip in: ALTER DATABASE RENAME takes an exclusive lock on the database
 * before it checks that no one else is connected, and a new connection waits for that lock
 * (then finds the name gone and fails cleanly; its retry reaches the restored database). While
 * the rename waits for the sessions already there, a second connection terminates them. A
 * session we may not terminate makes the rename fail with 55006 after PostgreSQL's 5 s wait;
 * that is retried a few times, then reported, with nothing changed.
 */
async function swapNames(
  databaseUrl: string,
  n: { live: string; incoming: string; outgoing: string; allowConnections: boolean },
): Promise<void> {
  const avoid = [n.live, n.incoming, n.outgoing];
  await withAdmin(databaseUrl, avoid, (killer) =>
    withAdmin(databaseUrl, avoid, async (c) => {
      const live = c.escapeIdentifier(n.live);
      const incoming = c.escapeIdentifier(n.incoming);
      const outgoing = c.escapeIdentifier(n.outgoing);
      const swapperPid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      // Only sessions this role may signal (PostgreSQL's own rule): asking for another would be
      // an error that hides the useful one, "being accessed by other users", from the rename.
      const terminate = () =>
        killer.query(
          `SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
            WHERE a.datname = ANY($1) AND a.pid <> pg_backend_pid() AND a.pid <> $2
              AND (pg_has_role(a.usesysid, 'MEMBER') OR (pg_has_role('pg_signal_backend', 'MEMBER') AND NOT r.rolsuper))`,
          [[n.live, n.incoming], swapperPid],
        );
      for (let attempt = 1; ; attempt++) {
        await terminate().catch(() => {});
        let renaming = true;
        // Sessions that connected after the terminate above and before the rename's lock.
        const sweeping = (async () => {
          while (renaming) {
            await new Promise((r) => setTimeout(r, SWEEP_INTERVAL_MS));
            if (renaming) await terminate().catch(() => {});
          }
        })();
        try {
          await c.query('BEGIN');
          await c.query(`ALTER DATABASE ${live} RENAME TO ${outgoing}`);
          await c.query(`ALTER DATABASE ${incoming} RENAME TO ${live}`);
          if (!n.allowConnections) await c.query(`ALTER DATABASE ${live} WITH ALLOW_CONNECTIONS false`);
          await c.query('COMMIT');
          return;
        } catch (err) {
          await c.query('ROLLBACK').catch(() => {});
          if ((err as { code?: string }).code !== '55006' || attempt >= SWAP_ATTEMPTS) {
            throw new SourceError(
              'DATABASE_SWAP_FAILED',
              `could not swap database ${JSON.stringify(n.live)} with ${JSON.stringify(n.incoming)}: ${(err as Error).message}`,
              { cause: err },
            );
          }
        } finally {
          renaming = false;
          await sweeping;
        }
      }
    }),
  );
}

/**
 * Puts back the target of a SWAP restore whose process was killed after the swap but before the
 * restore ended (the files swap, the record of success): `<db>__bp_pre_<id>` becomes the target
 * again, in the same one-transaction swap, and the restored database is dropped. A restore that
 * did not succeed then leaves the target as it was. Returns whether there was a swap to undo.
 */
export async function undoSwap(databaseUrl: string, database: string, restoreId: string): Promise<boolean> {
  const { temp, previous } = restoreDatabaseNames(database, restoreId);
  const allowConnections = await withAdmin(databaseUrl, [database, temp, previous], async (c) => {
    const found = await c.query<{ datallowconn: boolean }>('SELECT datallowconn FROM pg_database WHERE datname = $1', [previous]);
    return found.rows[0]?.datallowconn ?? null;
  });
  if (allowConnections === null) return false;
  // A temp database still there as well was never swapped in; it goes first so its name is free.
  await dropDatabase(databaseUrl, temp);
  await swapNames(databaseUrl, { live: database, incoming: previous, outgoing: temp, allowConnections });
  await dropDatabase(databaseUrl, temp);
  return true;
}
