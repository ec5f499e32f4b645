/**
 * Enqueuing graphile-worker jobs from inside our own transactions, so a job never exists without
 * its Operation row and an Operation never without its job.
 */

/** Anything that can run raw SQL: the Prisma client or a transaction client. */
export interface SqlTx {
  $queryRawUnsafe<T = unknown>(sql: string, ...values: unknown[]): Promise<T>;
}

export interface EnqueueOptions {
  /** Jobs with the same queue name run one at a time, in order (we use the environment id). */
  queueName?: string;
  /** Replaces a pending job with the same key instead of adding a second one. */
  jobKey?: string;
  runAt?: Date;
  maxAttempts?: number;
}

/** Every task name, so a typo is a type error rather than a job nobody runs. */
export type TaskName = 'snapshot_create' | 'snapshot_restore' | 'snapshot_delete' | 'snapshot_copy' | 'snapshot_verify' | 'destination_verify'
  | 'schedule_fire' | 'schedule_retry' | 'schedule_watch' | 'retention_apply' | 'retention_sweep' | 'webhook_deliver'
  | 'repository_heal';

export async function enqueueJob(tx: SqlTx, task: TaskName, payload: Record<string, unknown>, opts: EnqueueOptions = {}): Promise<void> {
  await tx.$queryRawUnsafe(
    `SELECT id::text FROM graphile_worker.add_job(
       identifier => $1::text, payload => $2::json, queue_name => $3::text, run_at => $4::timestamptz,
       max_attempts => $5::int, job_key => $6::text)`,
    task,
    JSON.stringify(payload),
    opts.queueName ?? null,
    opts.runAt ?? null,
    opts.maxAttempts ?? 3,
    opts.jobKey ?? null,
  );
}

/** Removes a job that has not started (no-op if it is running or gone). */
export async function removeJob(tx: SqlTx, jobKey: string): Promise<void> {
  await tx.$queryRawUnsafe('SELECT id::text FROM graphile_worker.remove_job($1::text)', jobKey);
}

/** The job key of the job that runs an operation. */
export const operationJobKey = (operationId: string) => `op:${operationId}`;
