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
export type TaskName = 'snapshot_create' | 'snapshot_restore' | 'pitr_restore' | 'dump_import' | 'snapshot_delete' | 'snapshot_copy' | 'snapshot_verify' | 'destination_verify'
  | 'schedule_fire' | 'schedule_retry' | 'schedule_react' | 'schedule_watch' | 'retention_apply' | 'retention_sweep' | 'webhook_deliver'
  | 'repository_heal' | 'restore_drill' | 'pitr_base_backup' | 'pitr_instance_open';

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

/**
 * Puts a running job back in the queue, due now, as if this attempt had not happened: the same
 * task, payload, queue, key and priority, with `attempts` (the count before this attempt). The
 * running job loses its key (graphile-worker's rule for a locked job) and is completed by its
 * worker afterwards; a worker killed in between leaves it locked with no attempts left, never run
 * again. The new job waits for the queue, which the running one holds until it completes. (The
 * public jobs view has no payload, hence graphile-worker's own tables.)
 */
export async function handBackJob(tx: SqlTx, jobId: string, attempts: number): Promise<string | null> {
  const [added] = await tx.$queryRawUnsafe<{ id: string }[]>(
    `SELECT (graphile_worker.add_job(
       identifier => t.identifier, payload => j.payload, queue_name => q.queue_name, run_at => now(),
       max_attempts => j.max_attempts, job_key => j.key, priority => j.priority)).id::text AS id
     FROM graphile_worker._private_jobs j
     JOIN graphile_worker._private_tasks t ON t.id = j.task_id
     LEFT JOIN graphile_worker._private_job_queues q ON q.id = j.job_queue_id
     WHERE j.id = $1::bigint`,
    jobId,
  );
  if (!added) return null;
  await tx.$queryRawUnsafe('SELECT id::text FROM graphile_worker.reschedule_jobs(ARRAY[$1::bigint], run_at => now(), attempts => $2::int)', added.id, Math.max(0, attempts));
  return added.id;
}
