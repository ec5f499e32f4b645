/**
 * `backplane psql <environment> [psql options…]`: psql connected to an environment's database,
 * whose URL the catalog holds encrypted (the API only ever shows it masked).
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';

/**
 * Runs psql on `databaseUrl` with the caller's terminal and arguments; resolves with psql's exit
 * code. The password travels in PGPASSWORD, not on the command line, where `ps` would show it.
 */
export function runPsql(databaseUrl: string, args: string[], psql = process.env.BACKPLANE_PSQL || 'psql'): Promise<number> {
  const url = new URL(databaseUrl);
  const password = decodeURIComponent(url.password);
  url.password = '';
  const env = { ...process.env, ...(password ? { PGPASSWORD: password } : {}) };
  return new Promise((resolve, reject) => {
    const child = spawn(psql, [url.toString(), ...args], { stdio: 'inherit', env });
    // Ctrl-C belongs to psql (it cancels the running query); this process only waits for it.
    const ignore = () => undefined;
    process.on('SIGINT', ignore);
    const done = () => process.off('SIGINT', ignore);
    child.once('error', (err: NodeJS.ErrnoException) => {
      done();
      reject(err.code === 'ENOENT' ? Object.assign(new Error(`${psql} not found: install the PostgreSQL client (Debian: apt-get install postgresql-client) or set BACKPLANE_PSQL`), { name: 'UsageError' }) : err);
    });
    child.once('exit', (code, signal) => {
      done();
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
