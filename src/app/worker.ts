import path from 'node:path';
import { Logger as WorkerLogger, run, type Job, type Runner, type Task, type TaskList } from 'graphile-worker';
import { taskList } from '../../jobs/index.ts';
import { takeIoTally } from '../destinations/io-tally.ts';
import { ALL } from '../events/bus.ts';
import type { Deps } from '../services/deps.ts';
import { handBackJob } from '../services/jobs.ts';
import { startPitrSupervisor, type PitrSupervisorOptions } from '../services/pitr-streamer.ts';
import { startRecoveryInstanceKeeper, type RecoveryInstanceKeeperOptions } from '../services/recovery-instance-keeper.ts';
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
  /**
   * Takes no more jobs, lets running ones finish within the grace period, then stops those still
   * running and hands them back to the queue (see `handingBack`); resolves once none is left.
   */
  stop(): Promise<void>;
}

/** The reason a job's signal aborts when its worker stops: the job is handed back, not failed. */
export class WorkerStoppingError extends Error {
  constructor() {
    super('The worker is stopping');
    this.name = 'WorkerStoppingError';
  }
}

/**
 * The task list with each task's signal also aborted when the worker's grace period is over, and
 * a task that then ends with an error handed back to the queue: a stop is not a failure, so the
 * attempt does not count against the job's max attempts and the next worker runs it at once. The
 * task itself has already put its operation back to QUEUED (see the services' shutdown branches).
 */
function handingBack(tasks: TaskList, deps: Deps, logger: Logger, stop: { signal: AbortSignal; requested: boolean }, running: Map<string, Job>): TaskList {
  const wrap =
    (name: string, task: Task): Task =>
    async (payload, helpers) => {
      const signal = AbortSignal.any([helpers.abortSignal, stop.signal]);
      running.set(helpers.job.id, helpers.job);
      const started = performance.now();
      let outcome: 'success' | 'error' | 'handed_back' = 'error';
      try {
        const result = await task(payload, { ...helpers, abortSignal: signal });
        outcome = 'success';
        return result;
      } catch (err) {
        if (!stop.requested || !signal.aborted) throw err;
        const job = helpers.job;
        try {
          const jobId = await deps.db.$transaction((tx) => handBackJob(tx, job.id, job.attempts - 1));
          logger.warn({ task: name, jobId, payload, reason: (err as Error).message }, 'worker stopping: job handed back to the queue; it runs again when a worker next starts');
          outcome = 'handed_back';
          return;
        } catch (handBackErr) {
          // graphile-worker then records the attempt as failed and retries it after its back-off.
          logger.error({ err: handBackErr, task: name, payload }, 'worker stopping: could not hand the job back');
          throw err;
        }
      } finally {
        running.delete(helpers.job.id);
        // Every API process hears it, whichever process ran the job (the API's /metrics).
        const jobs = [{ task: name, outcome, seconds: (performance.now() - started) / 1000 }];
        deps.events.publish('workerMetrics', ALL, { jobs, io: takeIoTally() }).catch((err: unknown) => logger.warn({ err }, 'could not publish job metrics'));
      }
    };
  return Object.fromEntries(Object.entries(tasks).map(([name, task]) => [name, wrap(name, task as Task)]));
}

/**
 * Starts graphile-worker on the shared PostgreSQL (jobs of one environment share a named queue),
 * and a sweeper that recovers operations whose worker died.
 */
export async function startWorker(opts: {
  deps: Deps;
  databaseUrl: string;
  concurrency: number;
  logger: Logger;
  staleAfterMs?: number;
  /** How long running jobs may take to finish on stop before they are handed back (default 5 s). */
  shutdownGraceMs?: number;
  /** Point-in-time recovery's WAL streamers (one per cluster across all workers, by lease); unset: none here. */
  pitr?: PitrSupervisorOptions;
  /** The recovery instances' keeper (lease, tick); home, address and cap default to the deps'. */
  instances?: Partial<RecoveryInstanceKeeperOptions>;
}): Promise<Worker> {
  const graceMs = opts.shutdownGraceMs ?? 5_000;
  const stopController = new AbortController();
  const stop = { signal: stopController.signal, requested: false };
  const running = new Map<string, Job>();
  const runner = await run({
    connectionString: opts.databaseUrl,
    concurrency: opts.concurrency,
    taskList: handingBack(taskList(opts.deps), opts.deps, opts.logger, stop, running),
    // Schedules are our own jobs (one pending job per schedule), not graphile-worker's crontab.
    parsedCronItems: [],
    // Our process owns signal handling so the API and worker stop in one order.
    noHandleSignals: true,
    // Our own grace period decides (stop() below); graphile-worker's abort is only a backstop.
    gracefulShutdownAbortTimeout: graceMs + 60_000,
    // Without batching graphile-worker records a job's completion without awaiting it, and a
    // stopping process ended before it landed: the finished (or handed back) job stayed locked,
    // and its environment's queue with it. Batches are flushed before the runner's stop resolves.
    preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
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
  const pitr = opts.pitr ? startPitrSupervisor(opts.deps, opts.pitr) : null;
  // Every worker keeps the recovery instances its jobs open (and sweeps what a dead one left).
  const keeper = startRecoveryInstanceKeeper(opts.deps, {
    home: opts.deps.home ?? path.resolve('.backplane'),
    listen: opts.deps.recoveryInstances?.listen ?? '127.0.0.1',
    max: opts.deps.recoveryInstances?.max ?? 2,
    ...opts.instances,
  });
  opts.logger.info({ concurrency: opts.concurrency }, 'worker started');
  const describe = () => [...running.values()].map((j) => ({ jobId: j.id, task: j.task_identifier, payload: j.payload }));
  return {
    runner,
    async stop() {
      clearInterval(timer);
      stop.requested = true;
      opts.logger.info({ running: describe(), graceMs }, running.size ? 'worker stopping: waiting for running jobs to finish' : 'worker stopping');
      const grace = setTimeout(() => {
        if (running.size) opts.logger.warn({ running: describe() }, 'worker stopping: grace period over; stopping running jobs to hand them back');
        stopController.abort(new WorkerStoppingError());
      }, graceMs);
      stopping.abort();
      await unlocking;
      await pitr?.stop();
      try {
        await runner.stop();
      } finally {
        clearTimeout(grace);
        // After the jobs: one still recovering an instance ends it itself.
        await keeper.stop();
      }
      opts.logger.info('worker stopped');
    },
  };
}
