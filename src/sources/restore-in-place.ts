/**
 * IN_PLACE restore, for roles that may not create databases: the dump's objects are dropped and
 * recreated inside the existing database, in one transaction.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { killOnAbort, startTool } from './child.ts';
import { toolEnv, type PgTarget } from './connection.ts';
import { AbortedError, SourceError } from './errors.ts';
import { isSuperuser, withClient } from './pg-admin.ts';
import { abortError, runRestore, stateError, type PrepareDatabaseOptions, type PreparedDatabase, type RestoreInput } from './restore-common.ts';

/** How long pg_terminate_backend waits for an abandoned session to roll back. */
const TERMINATE_WAIT_MS = 10_000;

/**
 * IN_PLACE: `pg_restore --clean --if-exists -f -` turns the dump into SQL, which psql runs in a
 * transaction we open (what `pg_restore --single-transaction` does), and that we leave open
 * until commit(). Holding it open is what makes IN_PLACE two-phase; meanwhile the replaced
 * tables stay locked for the application, so commit promptly.
 */
export async function prepareInPlace(databaseUrl: string, target: PgTarget, dump: RestoreInput, opts: PrepareDatabaseOptions): Promise<PreparedDatabase> {
  let noOwner: boolean;
  try {
    noOwner = opts.noOwner ?? !(await isSuperuser(databaseUrl));
  } catch (err) {
    dump.discard();
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
    stdin: dump.stdin,
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

  // Past runRestore nothing else stops psql on abort, and psql may wait for a lock for as long
  // as the application holds it.
  const stopKilling = killOnAbort(opts.signal, [psql, restore]);
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
    // A psql that stopped (an error in the script's last statements, its session ended) closes
    // its stdin, which unpipes pg_restore's output: what is left of it then never ends.
    await Promise.race([scriptEnded, psqlExited]);
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
  } finally {
    stopKilling();
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
