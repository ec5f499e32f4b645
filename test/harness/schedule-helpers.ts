/**
 * Time for schedule, retention and alert tests: a manual clock put into the running app's deps
 * (API and in-process workers share them), and graphile-worker jobs moved to "now" by job key —
 * so a test walks through planned times without waiting for them.
 */
import type { TestApp } from './app.ts';

export interface ManualClock {
  now(): Date;
  set(iso: string | Date): void;
  advance(ms: number): void;
}

/** Replaces the app's clock; returns it. */
export function useManualClock(app: TestApp, start: string | Date): ManualClock {
  let t = new Date(start);
  const clock: ManualClock = {
    now: () => new Date(t),
    set: (iso) => void (t = new Date(iso)),
    advance: (ms) => void (t = new Date(t.getTime() + ms)),
  };
  app.runtime.deps.clock = clock;
  return clock;
}

export interface PendingJob {
  id: string;
  task: string;
  runAt: Date;
  payload: Record<string, unknown>;
  lockedAt: Date | null;
}

/** The pending (not finished) jobs with this key; at most one, by graphile-worker's design. */
export async function jobsWithKey(app: TestApp, key: string): Promise<PendingJob[]> {
  return app.runtime.db.$queryRawUnsafe<PendingJob[]>(
    `SELECT j.id::text AS id, t.identifier AS task, j.run_at AS "runAt", j.payload, j.locked_at AS "lockedAt", j.max_attempts AS "maxAttempts"
       FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE j.key = $1`,
    key,
  );
}

/**
 * Makes the job with this key due now (time "passes" for graphile-worker): added again with the
 * same key, which replaces it and wakes the workers at once.
 */
export async function runJobNow(app: TestApp, key: string): Promise<void> {
  const [job] = await jobsWithKey(app, key);
  if (!job) throw new Error(`no pending job with key ${key}`);
  await app.runtime.db.$queryRawUnsafe(
    'SELECT id::text FROM graphile_worker.add_job(identifier => $1::text, payload => $2::json, run_at => now(), max_attempts => $3::int, job_key => $4::text)',
    job.task,
    JSON.stringify(job.payload),
    (job as PendingJob & { maxAttempts: number }).maxAttempts,
    key,
  );
}

/** Polls until `ok` (for state written by a job running in the background). */
export async function waitFor<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}: ${JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x))}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
