/**
 * Short-lived `pg` connections of the sources layer: to the environment's database itself, and
 * to another database of the same server for CREATE, RENAME and DROP DATABASE (a database
 * cannot be renamed or dropped by a session connected to it).
 */
import pg from 'pg';
import { siblingUrl } from './connection.ts';
import { SourceError } from './errors.ts';
import { DRILL_PREFIX, PREVIOUS_INFIX, RESTORE_INFIX } from './names.ts';

/** Runs `fn` with a connection to `url`, closed afterwards. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
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

/**
 * Connects to a database of the same server other than `avoid` (the ones being renamed), with
 * the URL's credentials: `postgres`, else `template1`.
 */
export async function withAdmin<T>(databaseUrl: string, avoid: string[], fn: (client: pg.Client) => Promise<T>): Promise<T> {
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
 * databases, and drills' scratch copies). Only names a restore made are accepted: a bug upstream must not be able to drop
 * an environment's live database through this.
 */
export async function dropDatabase(databaseUrl: string, name: string): Promise<void> {
  if (!name.includes(PREVIOUS_INFIX) && !name.includes(RESTORE_INFIX) && !name.startsWith(DRILL_PREFIX)) {
    throw new SourceError('NOT_A_RESTORE_DATABASE', `refusing to drop ${JSON.stringify(name)}: not a database made by a restore`);
  }
  await withAdmin(databaseUrl, [name], (c) => c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(name)} WITH (FORCE)`));
}

/** Whether the URL's role is a superuser. */
export async function isSuperuser(url: string): Promise<boolean> {
  return withClient(url, async (c) => (await c.query<{ s: boolean }>('SELECT rolsuper AS s FROM pg_roles WHERE rolname = current_user')).rows[0]?.s === true);
}
