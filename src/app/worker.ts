import { Logger as WorkerLogger, run, type Runner } from 'graphile-worker';
import { taskList } from '../../jobs/index.ts';
import type { Deps } from '../services/deps.ts';
import { recoverStaleOperations } from '../services/operations.ts';
import { clearStaleLocksEverywhere } from '../services/repositories.ts';
import { reconcileSchedules } from '../services/schedules.ts';
import type { Logger } from './logger.ts';

/** graphile-worker's log lines, as our structured JSON logs. */
function workerLogger(logger: Logger): WorkerLogger {
  return new WorkerLogger((scope) => (level, message, meta) => {
    const method = level === 'warning' ? 'warn' : level === 'error' ? 'error' : level === 'debug' ? 'debug' : 'info';
    logger[method]({ component: 'worker', ...scope, ...meta }, message);
  });
}

export interface Worker {
  runner: Runner;
  stop(): Promise<void>;
}

/**
 * Starts graphile-worker on the shared PostgreSQL (jobs of one environment share a named queue),
 * and a sweeper that recovers operations whose worker died.
 */
export async function startWorker(opts: { deps: Deps; databaseUrl: string; concurrency: number; logger: Logger; staleAfterMs?: number }): Promise<Worker> {
  const runner = await run({
    connectionString: opts.databaseUrl,
    concurrency: opts.concurrency,
    taskList: taskList(opts.deps),
    // Schedules are our own jobs (one pending job per schedule), not graphile-worker's crontab.
    parsedCronItems: [],
    // Our process owns signal handling so the API and worker stop in one order.
    noHandleSignals: true,
    logger: workerLogger(opts.logger),
  });
  const staleMs = opts.staleAfterMs ?? 60_000;
  const sweep = () =>
    recoverStaleOperations(opts.deps, staleMs).then(
      (r) => (r.requeued.length || r.failed.length) && opts.logger.warn(r, 'recovered operations of a stopped worker'),
      (err) => opts.logger.error({ err }, 'stale operation sweep failed'),
    );
  await sweep();
  // Schedules' pending jobs back in place; runs missed while nothing ran are due now (once each).
  await reconcileSchedules(opts.deps);
  const timer = setInterval(sweep, Math.max(1000, staleMs / 2));
  timer.unref();
  // Lock files a killed process left; in the background, since each repository takes a key
  // derivation to open (every job clears its own repositories' too, before it starts).
  const stopping = new AbortController();
  const unlocking = clearStaleLocksEverywhere(opts.deps, stopping.signal).then(
    () => opts.logger.info('stale repository locks cleared'),
    (err: unknown) => opts.logger.warn({ err }, 'clearing stale repository locks failed'),
  );
  opts.logger.info({ concurrency: opts.concurrency }, 'worker started');
  return {
    runner,
    async stop() {
      clearInterval(timer);
      stopping.abort();
      await unlocking;
      await runner.stop();
    },
  };
}
