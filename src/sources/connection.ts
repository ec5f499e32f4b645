/**
 * How the sources layer reaches an environment's PostgreSQL: a `postgres://` URL turned into
 * libpq environment variables for the client tools (pg_dump, pg_restore, psql), and into URLs
 * of sibling databases for the `pg` driver.
 *
 * The tools get the connection only through their environment: arguments are visible to every
 * user in `ps` and /proc/<pid>/cmdline, a process's environment only to its owner and root.
 */

/** URL query parameters libpq understands, and the environment variable that carries each. */
const LIBPQ_ENV: Record<string, string> = {
  host: 'PGHOST',
  hostaddr: 'PGHOSTADDR',
  port: 'PGPORT',
  user: 'PGUSER',
  password: 'PGPASSWORD',
  dbname: 'PGDATABASE',
  passfile: 'PGPASSFILE',
  service: 'PGSERVICE',
  options: 'PGOPTIONS',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  client_encoding: 'PGCLIENTENCODING',
  sslmode: 'PGSSLMODE',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  sslrootcert: 'PGSSLROOTCERT',
  sslcrl: 'PGSSLCRL',
  sslcrldir: 'PGSSLCRLDIR',
  sslsni: 'PGSSLSNI',
  sslcompression: 'PGSSLCOMPRESSION',
  ssl_min_protocol_version: 'PGSSLMINPROTOCOLVERSION',
  ssl_max_protocol_version: 'PGSSLMAXPROTOCOLVERSION',
  gssencmode: 'PGGSSENCMODE',
  krbsrvname: 'PGKRBSRVNAME',
  gsslib: 'PGGSSLIB',
  channel_binding: 'PGCHANNELBINDING',
  requirepeer: 'PGREQUIREPEER',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
};

/** The parts of a database URL the sources layer needs. */
export interface PgTarget {
  /** The database the URL names. */
  database: string;
  /** libpq variables for the client tools (password included; never put these in argv). */
  env: Record<string, string>;
}

function parseUrl(databaseUrl: string): URL {
  let url: URL;
  try {
    url = new URL(databaseUrl);
  } catch {
    // The URL itself may hold a password: never echo it.
    throw new Error('database URL does not parse');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new Error(`database URL must start with postgres:// or postgresql://, not ${url.protocol}//`);
  }
  return url;
}

/** Splits a database URL into the database name and libpq environment variables. */
export function pgTarget(databaseUrl: string): PgTarget {
  const url = parseUrl(databaseUrl);
  const env: Record<string, string> = {};
  for (const [key, value] of url.searchParams) {
    const name = LIBPQ_ENV[key];
    if (name) env[name] = value;
  }
  // node-pg's `ssl=true` has no libpq spelling; it means "use TLS" without verification.
  const ssl = url.searchParams.get('ssl');
  if (!env.PGSSLMODE && (ssl === 'true' || ssl === '1')) env.PGSSLMODE = 'require';
  // Host, port, user, password and database in the URL body win over the query, as in libpq.
  const host = decodeURIComponent(url.hostname).replace(/^\[(.*)\]$/, '$1');
  if (host) env.PGHOST = host;
  if (url.port) env.PGPORT = url.port;
  if (url.username) env.PGUSER = decodeURIComponent(url.username);
  if (url.password) env.PGPASSWORD = decodeURIComponent(url.password);
  const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || env.PGDATABASE || env.PGUSER;
  if (!database) throw new Error('database URL names no database');
  env.PGDATABASE = database;
  return { database, env };
}

/**
 * The environment for a client tool: ours, without any PG* variable the worker itself was
 * started with (its own PGPASSWORD or PGSERVICE must not leak into another server's connection).
 */
export function toolEnv(target: PgTarget, overrides: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('PG')) env[key] = value;
  return { ...env, ...target.env, ...overrides };
}

/** The same URL pointed at another database on the same server, with the same credentials. */
export function siblingUrl(databaseUrl: string, database: string): string {
  const url = parseUrl(databaseUrl);
  url.searchParams.delete('dbname');
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** The database a URL names. */
export function databaseName(databaseUrl: string): string {
  return pgTarget(databaseUrl).database;
}

/** The same server, user and options as `databaseUrl`, naming database `name` instead. */
export function withDatabase(databaseUrl: string, name: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${encodeURIComponent(name)}`;
  url.searchParams.delete('dbname');
  return url.toString();
}
