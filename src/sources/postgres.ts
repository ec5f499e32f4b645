/**
 * The database half of an environment: a dump to put into a snapshot, and an atomic restore.
 *
 * Words used here:
 * - *target*: the environment's database, named by its URL.
 * - *temp database*: `<target>__bp_restore_<id>`, where a SWAP restore builds the new contents
 *   while the target keeps serving.
 * - *previous database*: `<target>__bp_pre_<id>`, the target as it was before a SWAP restore,
 *   kept until it expires (dropDatabase) so a restore can be taken back by hand.
 * - *prepare / commit*: a restore is done in two phases so that a database and a directory can
 *   be restored together: prepare does the long work and changes nothing the application sees;
 *   commit is one short step. restoreDatabase() is prepare followed by commit.
 */
import { randomBytes } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { startTool, type Tool } from './child.ts';
import { pgTarget, siblingUrl, toolEnv, type PgTarget } from './connection.ts';
import { AbortedError, SourceError } from './errors.ts';
import { restoreSuffix, truncateBytes } from './names.ts';

/** PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes. */
export const MAX_IDENTIFIER_BYTES = 63;

const RESTORE_INFIX = '__bp_restore_';
const PREVIOUS_INFIX = '__bp_pre_';

/** Swap attempts; each can wait PostgreSQL's 5 s for sessions that will not go. */
const SWAP_ATTEMPTS = 3;
/** How often sessions of the target are terminated while the rename waits for them to go. */
const SWEEP_INTERVAL_MS = 100;
/** How long pg_terminate_backend waits for an abandoned IN_PLACE session to roll back. */
const TERMINATE_WAIT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Dump

/** A running pg_dump. */
export interface Dump {
  /**
   * The custom-format dump. It ends only after pg_dump exited 0; if pg_dump fails or is aborted
   * it is destroyed instead (with the error, when anyone listens for errors), so a reader never
   * mistakes a cut-off dump for a whole one.
   */
  stream: Readable;
  /** Resolves when pg_dump exited 0 and the stream has ended; rejects with PgToolError or AbortedError. */
  done: Promise<void>;
  /** pg_dump's process id (for logs and tests). */
  pid: number | undefined;
  /** pg_dump's arguments: no connection details, those travel in its environment. */
  args: readonly string[];
}

/**
 * Starts `pg_dump -Fc -Z0` of the database at `databaseUrl`, streaming to `stream`.
 * Uncompressed because the engine compresses each chunk itself and compression would defeat
 * dedup of unchanged tables. Aborting kills pg_dump; so does destroying `stream` before it ends.
 */
export function startDump(databaseUrl: string, opts: { signal?: AbortSignal } = {}): Dump {
  const target = pgTarget(databaseUrl);
  const args = ['--format=custom', '--compress=0', '--no-password'];
  const stream = new PassThrough({ highWaterMark: 1 << 20 });
  if (opts.signal?.aborted) {
    stream.destroy();
    const done = Promise.reject(new AbortedError({ cause: opts.signal.reason }));
    done.catch(() => {});
    return { stream, done, pid: undefined, args };
  }
  const tool = startTool('pg_dump', args, { env: toolEnv(target, { PGAPPNAME: 'backplane-dump' }), stdin: 'ignore', stdout: 'pipe' });
  const stdout = tool.child.stdout!;
  let settled = false;
  let consumerClosed = false;

  const onAbort = () => tool.kill();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  stdout.pipe(stream, { end: false });
  stream.once('close', () => {
    if (settled) return;
    consumerClosed = true;
    tool.kill();
  });
  const stdoutEnded = new Promise<void>((resolve) => stdout.once('end', resolve));

  const done = (async () => {
    try {
      const exit = await tool.exited;
      const failure = opts.signal?.aborted
        ? new AbortedError({ cause: opts.signal.reason })
        : consumerClosed
          ? new SourceError('DUMP_STREAM_CLOSED', 'the dump stream was closed by its reader before pg_dump finished')
          : tool.failure(exit);
      if (failure) throw failure;
      await stdoutEnded;
      settled = true;
      stream.end();
    } catch (err) {
      settled = true;
      stdout.destroy();
      // Destroying with an error nobody listens for would crash the process; a listener-less
      // reader still sees a premature close instead of a clean end.
      stream.destroy(stream.listenerCount('error') > 0 ? (err as Error) : undefined);
      throw err;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  })();
  // The caller may only watch the stream; its failure must not become an unhandled rejection.
  done.catch(() => {});
  return { stream, done, pid: tool.child.pid, args };
}

// ---------------------------------------------------------------------------------------------
// Small queries

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'backplane' });
  // A connection that dies while idle (terminated, server restart) emits 'error'; the next query
  // reports it, so the event itself must not crash the process.
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Size on disk of the database the URL names (pg_database_size). */
export async function databaseSize(databaseUrl: string): Promise<bigint> {
  return withClient(databaseUrl, async (c) => {
    const { rows } = await c.query<{ size: string }>('SELECT pg_database_size(current_database())::text AS size');
    return BigInt(rows[0].size);
  });
}

/**
 * Whether the URL's role may make a SWAP restore: create a database, and rename the target
 * (which needs CREATEDB and ownership). Superusers always may.
 */
export async function canCreateDatabase(databaseUrl: string): Promise<boolean> {
  return withClient(databaseUrl, async (c) => {
    const { rows } = await c.query<{ ok: boolean }>(
      `SELECT r.rolsuper OR (r.rolcreatedb AND pg_has_role(current_user, d.datdba, 'MEMBER')) AS ok
         FROM pg_roles r, pg_database d
        WHERE r.rolname = current_user AND d.datname = current_database()`,
    );
    return rows[0]?.ok === true;
  });
}

/**
 * Connects to a database of the same server other than `avoid` (the ones being renamed), with
 * the URL's credentials: `postgres`, else `template1`.
 */
async function withAdmin<T>(databaseUrl: string, avoid: string[], fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const candidates = ['postgres', 'template1'].filter((name) => !avoid.includes(name));
  let lastError: unknown;
  for (const name of candidates) {
    const client = new pg.Client({ connectionString: siblingUrl(databaseUrl, name), application_name: 'backplane' });
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (err) {
      lastError = err;
      // Missing database or no CONNECT privilege there: try the next; anything else is final.
      const code = (err as { code?: string }).code;
      if (code === '3D000' || code === '42501') continue;
      throw err;
    }
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => {});
    }
  }
  throw new Error(`no administrative database to connect to (tried ${candidates.join(', ')})`, { cause: lastError });
}

/**
 * Drops database `name` on the URL's server, ending its connections (for expired `__bp_pre_`
 * databases). Only names a restore made are accepted: a bug upstream must not be able to drop
 * an environment's live database through this.
 */
export async function dropDatabase(databaseUrl: string, name: string): Promise<void> {
  if (!name.includes(PREVIOUS_INFIX) && !name.includes(RESTORE_INFIX)) {
    throw new SourceError('NOT_A_RESTORE_DATABASE', `refusing to drop ${JSON.stringify(name)}: not a database made by a restore`);
  }
  await withAdmin(databaseUrl, [name], (c) => c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(name)} WITH (FORCE)`));
}

// ---------------------------------------------------------------------------------------------
// Names

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

// ---------------------------------------------------------------------------------------------
// Restore

/** Options of prepareDatabase(). */
export interface PrepareDatabaseOptions {
  /**
   * SWAP: restore into a new database, then swap names (needs canCreateDatabase).
   * IN_PLACE: drop and recreate the objects inside the existing database, in one transaction.
   * Default SWAP.
   */
  strategy?: 'SWAP' | 'IN_PLACE';
  /** The restore's id; names the temp and previous databases. */
  restoreId: string;
  /** Kills pg_restore and undoes everything prepare did. Commit itself is not interruptible. */
  signal?: AbortSignal;
  /** Told when the long restore starts and when the short swap (or commit) starts. */
  onPhase?: (phase: 'restoring' | 'swapping') => void;
  /**
   * Restore without object ownership (`--no-owner`): everything belongs to the URL's role.
   * Default: only when that role is not a superuser, because only a superuser can give objects
   * to other roles; a superuser restores owners exactly as dumped.
   */
  noOwner?: boolean;
}

/** A restore whose long part is done and which waits to be committed or rolled back. */
export interface PreparedDatabase {
  readonly strategy: 'SWAP' | 'IN_PLACE';
  /** The environment's database. */
  readonly targetName: string;
  /** SWAP: where the restored contents wait. IN_PLACE: null. */
  readonly tempName: string | null;
  /** SWAP: the name the old database will have after commit. IN_PLACE: null. */
  readonly previousName: string | null;
  /**
   * Whether undo() can take a commit back. False for IN_PLACE, whose commit is final: commit it
   * last in a combined restore.
   */
  readonly canUndo: boolean;
  /**
   * SWAP: terminates the target's sessions and renames target → previous and temp → target in
   * one transaction; new sessions wait meanwhile and then reach the restored database.
   * IN_PLACE: commits the restore transaction.
   * On failure nothing has changed (and rollback() is still due). Returns the previous
   * database's name (SWAP) or null (IN_PLACE).
   */
  commit(): Promise<{ previousDatabaseName: string | null }>;
  /** Before commit: drops the temp database (SWAP) or rolls the transaction back (IN_PLACE). Idempotent. */
  rollback(): Promise<void>;
  /** After a SWAP commit: swaps the previous database back under the target's name and drops the restored one. */
  undo(): Promise<void>;
  /** After a SWAP commit: drops the previous database (keepPrevious: false). */
  discardPrevious(): Promise<void>;
}

interface TargetInfo {
  owner: string;
  ownerIsMember: boolean;
  allowConnections: boolean;
  createOptions: string;
  aclStatements: string[];
  comment: string | null;
  settings: { role: string | null; setting: string }[];
  superuser: boolean;
}

/** Everything about the target database itself that pg_dump (without --create) does not carry. */
async function readTarget(c: pg.Client, name: string): Promise<TargetInfo> {
  const { rows } = await c.query<{ d: Record<string, unknown>; owner: string; member: boolean; spc: string; comment: string | null; superuser: boolean }>(
    `SELECT to_jsonb(d) AS d, pg_get_userbyid(d.datdba) AS owner, pg_has_role(current_user, d.datdba, 'MEMBER') AS member,
            t.spcname AS spc, shobj_description(d.oid, 'pg_database') AS comment,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser
       FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
      WHERE d.datname = $1`,
    [name],
  );
  if (!rows[0]) throw new SourceError('DATABASE_NOT_FOUND', `database ${JSON.stringify(name)} does not exist`);
  const { d, owner, member, spc, comment, superuser } = rows[0];
  const q = (v: unknown) => c.escapeLiteral(String(v));
  // to_jsonb reads the columns by name, so the same code follows pg_database across versions
  // (datlocprovider since 15, daticulocale renamed datlocale in 17, daticurules since 16).
  const options = [
    `TEMPLATE template0`,
    `OWNER ${c.escapeIdentifier(owner)}`,
    `ENCODING ${q((await c.query<{ e: string }>('SELECT pg_encoding_to_char($1::int) AS e', [d.encoding])).rows[0].e)}`,
    `LC_COLLATE ${q(d.datcollate)}`,
    `LC_CTYPE ${q(d.datctype)}`,
    `CONNECTION LIMIT ${Number(d.datconnlimit)}`,
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
    ownerIsMember: member,
    allowConnections: d.datallowconn === true,
    createOptions: options.join(' '),
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

/** A libpq conninfo value in single quotes. */
function conninfoQuote(value: string): string {
  return `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/** Feeds `dump` to a tool's stdin; resolves with the dump's own error, if it failed. */
function feed(dump: Readable, stdin: Writable): Promise<Error | null> {
  return new Promise((resolve) => {
    // EPIPE when the tool stops reading: the tool's exit status tells why.
    stdin.on('error', () => {});
    if (dump.errored) return resolve(dump.errored);
    if (dump.destroyed) return resolve(new Error('the dump stream was destroyed before it was read'));
    dump.once('error', (err) => {
      resolve(err);
    });
    dump.once('end', () => {
      stdin.end();
      resolve(null);
    });
    dump.pipe(stdin, { end: false });
  });
}

function abortError(signal: AbortSignal | undefined): AbortedError | null {
  return signal?.aborted ? new AbortedError({ cause: signal.reason }) : null;
}

/** Runs pg_restore to completion, fed from `dump`; throws abort, dump, or tool errors in that order. */
async function runRestore(
  tool: Tool,
  dump: Readable,
  signal: AbortSignal | undefined,
  extraTools: Tool[] = [],
): Promise<void> {
  const all = [tool, ...extraTools];
  const onAbort = () => all.forEach((t) => t.kill());
  signal?.addEventListener('abort', onAbort, { once: true });
  // Aborted while the temp database was being made: the listener above will never fire.
  if (signal?.aborted) onAbort();
  try {
    const fed = feed(dump, tool.child.stdin!);
    let dumpError: Error | null = null;
    void fed.then((err) => {
      if (err) {
        dumpError = err;
        all.forEach((t) => t.kill());
      }
    });
    const exit = await tool.exited;
    const aborted = abortError(signal);
    if (aborted) throw aborted;
    // A failed tool no longer reads its stdin, so 'end' may never come: only wait for the dump
    // when the tool succeeded (it then read to the end).
    const failure = tool.failure(exit);
    if (!failure) dumpError = await fed;
    if (dumpError) throw new SourceError('DUMP_STREAM_FAILED', `reading the dump failed: ${(dumpError as Error).message}`, { cause: dumpError });
    if (failure) throw failure;
  } catch (err) {
    onAbort();
    dump.unpipe();
    dump.destroy();
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

async function isSuperuser(url: string): Promise<boolean> {
  return withClient(url, async (c) => (await c.query<{ s: boolean }>('SELECT rolsuper AS s FROM pg_roles WHERE rolname = current_user')).rows[0]?.s === true);
}

/**
 * Restores `dump` (pg_dump custom format) for the database at `databaseUrl` up to the point
 * where only commit() is left. If it throws, everything it did is undone.
 */
export async function prepareDatabase(databaseUrl: string, dump: Readable, opts: PrepareDatabaseOptions): Promise<PreparedDatabase> {
  const aborted = abortError(opts.signal);
  if (aborted) {
    dump.destroy();
    throw aborted;
  }
  // The dump may fail while the temp database is still being made; feed() finds the error in
  // dump.errored, and until then it must not be an uncaught 'error' event.
  dump.on('error', () => {});
  const target = pgTarget(databaseUrl);
  return (opts.strategy ?? 'SWAP') === 'SWAP' ? prepareSwap(databaseUrl, target, dump, opts) : prepareInPlace(databaseUrl, target, dump, opts);
}

function stateError(message: string): SourceError {
  return new SourceError('INVALID_HANDLE_STATE', message);
}

async function prepareSwap(databaseUrl: string, target: PgTarget, dump: Readable, opts: PrepareDatabaseOptions): Promise<PreparedDatabase> {
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
    dump.destroy();
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
    const tool = startTool('pg_restore', args, {
      env: toolEnv(target, { PGDATABASE: temp, PGAPPNAME: 'backplane-restore' }),
      stdin: 'pipe',
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
      const terminate = () =>
        killer.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = ANY($1) AND pid <> pg_backend_pid() AND pid <> $2`,
          [[n.live, n.incoming], swapperPid],
        );
      for (let attempt = 1; ; attempt++) {
        await terminate();
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
 * IN_PLACE: `pg_restore --clean --if-exists -f -` turns the dump into SQL, which psql runs in a
 * transaction we open (what `pg_restore --single-transaction` does), and that we leave open
 * until commit(). Holding it open is what makes IN_PLACE two-phase; meanwhile the replaced
 * tables stay locked for the application, so commit promptly.
 */
async function prepareInPlace(databaseUrl: string, target: PgTarget, dump: Readable, opts: PrepareDatabaseOptions): Promise<PreparedDatabase> {
  let noOwner: boolean;
  try {
    noOwner = opts.noOwner ?? !(await isSuperuser(databaseUrl));
  } catch (err) {
    dump.destroy();
    throw err;
  }
  opts.onPhase?.('restoring');
  const appName = `backplane-restore-${randomBytes(6).toString('hex')}`;
  const marker = `__bp_prepared_${randomBytes(8).toString('hex')}`;
  const psql = startTool('psql', ['--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=1', '--output=/dev/null'], {
    env: toolEnv(target, { PGAPPNAME: appName }),
    stdin: 'pipe',
    stdout: 'pipe',
  });
  const restore = startTool('pg_restore', ['--clean', '--if-exists', '--exit-on-error', '--file=-', ...(noOwner ? ['--no-owner'] : [])], {
    env: toolEnv(target),
    stdin: 'pipe',
    stdout: 'pipe',
  });
  const psqlIn = psql.child.stdin!;
  psqlIn.on('error', () => {});
  const ready = new Promise<boolean>((resolve) => {
    let seen = '';
    psql.child.stdout!.setEncoding('utf8');
    psql.child.stdout!.on('data', (text: string) => {
      seen = (seen + text).slice(-(marker.length + 2));
      if (seen.includes(marker)) resolve(true);
    });
    psql.child.stdout!.once('end', () => resolve(false));
  });

  // Ends the session so the server rolls back, and waits until it has: a terminated backend
  // releases its locks, while one whose client merely went away might finish a long statement first.
  const abandon = async () => {
    psql.kill();
    restore.kill();
    await withClient(databaseUrl, (c) =>
      c.query(`SELECT pg_terminate_backend(pid, ${TERMINATE_WAIT_MS}) FROM pg_stat_activity WHERE application_name = $1`, [appName]),
    ).catch(() => {});
    await Promise.all([psql.exited, restore.exited]);
  };

  try {
    psqlIn.write('BEGIN;\n');
    restore.child.stdout!.pipe(psqlIn, { end: false });
    const scriptEnded = new Promise<void>((resolve) => restore.child.stdout!.once('end', resolve));
    const psqlExited = psql.exited.then((exit) => {
      // psql stops at the first error; pg_restore may still be writing into the closed pipe.
      restore.kill();
      return exit;
    });
    await runRestore(restore, dump, opts.signal, [psql]);
    await scriptEnded;
    psqlIn.write(`\\echo ${marker}\n`);
    const ok = await Promise.race([ready, psqlExited.then(() => false)]);
    const aborted = abortError(opts.signal);
    if (aborted) throw aborted;
    if (!ok) throw psql.failure(await psql.exited) ?? new Error('psql ended before the restore was applied');
  } catch (err) {
    // psql's own error says why pg_restore could not write on.
    const psqlFailure = psql.child.exitCode !== null ? psql.failure(await psql.exited) : null;
    await abandon();
    if (err instanceof AbortedError || !psqlFailure) throw err;
    throw psqlFailure;
  }

  let state: 'prepared' | 'committed' | 'rolledBack' = 'prepared';
  return {
    strategy: 'IN_PLACE',
    targetName: target.database,
    tempName: null,
    previousName: null,
    canUndo: false,
    async commit() {
      if (state !== 'prepared') throw stateError(`cannot commit a restore that is ${state}`);
      opts.onPhase?.('swapping');
      psqlIn.end('COMMIT;\n');
      const failure = psql.failure(await psql.exited);
      if (failure) {
        state = 'rolledBack';
        throw failure;
      }
      state = 'committed';
      return { previousDatabaseName: null };
    },
    async rollback() {
      if (state === 'rolledBack') return;
      if (state !== 'prepared') throw stateError(`cannot roll back a restore that is ${state}`);
      psqlIn.end('ROLLBACK;\n');
      const failure = psql.failure(await psql.exited);
      state = 'rolledBack';
      if (failure) await abandon();
    },
    async undo() {
      throw new SourceError('UNDO_NOT_POSSIBLE', 'an IN_PLACE restore cannot be undone once committed');
    },
    async discardPrevious() {
      // IN_PLACE keeps no previous database.
    },
  };
}

/** Options of restoreDatabase(). */
export interface RestoreDatabaseOptions extends PrepareDatabaseOptions {
  /** Keep the old database as `<db>__bp_pre_<id>` (default true); false drops it after the swap. */
  keepPrevious?: boolean;
}

/**
 * Restores `dump` into the database at `databaseUrl` atomically: on failure or abort the
 * database is exactly as it was. Returns the name the old database now has (SWAP with
 * keepPrevious), else null.
 */
export async function restoreDatabase(databaseUrl: string, dump: Readable, opts: RestoreDatabaseOptions): Promise<{ previousDatabaseName: string | null }> {
  const prepared = await prepareDatabase(databaseUrl, dump, opts);
  try {
    const aborted = abortError(opts.signal);
    if (aborted) throw aborted;
    await prepared.commit();
  } catch (err) {
    await prepared.rollback().catch(() => {});
    throw err;
  }
  if (prepared.previousName === null) return { previousDatabaseName: null };
  if (opts.keepPrevious === false) {
    await prepared.discardPrevious();
    return { previousDatabaseName: null };
  }
  return { previousDatabaseName: prepared.previousName };
}
