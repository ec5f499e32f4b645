import { Logger as WorkerLogger, run, type Runner } from 'graphile-worker';
import { taskList } from '../../jobs/index.ts';
import type { Logger } from './logger.ts';

/** graphile-worker's log lines, as our structured JSON logs. */
function workerLogger(logger: Logger): WorkerLogger {
  return new WorkerLogger((scope) => (level, message, meta) => {
    const method = level === 'warning' ? 'warn' : level === 'error' ? 'error' : level === 'debug' ? 'debug' : 'info';
    logger[method]({ component: 'worker', ...scope, ...meta }, message);
  });
}

/** Starts graphile-worker on the shared PostgreSQL; jobs of one environment share a named queue. */
export async function startWorker(opts: { databaseUrl: string; concurrency: number; logger: Logger }): Promise<Runner> {
  const runner = await run({
    connectionString: opts.databaseUrl,
    concurrency: opts.concurrency,
    taskList,
    // Schedules are our own jobs (one pending job per schedule), not graphile-worker's crontab.
    parsedCronItems: [],
    // Our process owns signal handling so the API and worker stop in one order.
    noHandleSignals: true,
    logger: workerLogger(opts.logger),
  });
  opts.logger.info({ concurrency: opts.concurrency }, 'worker started');
  return runner;
}
