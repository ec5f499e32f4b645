import { ConflictError, ErrorCode, NotFoundError } from '../domain/errors.ts';
import { notifyRowsSql, publishInTransaction } from '../events/bus.ts';
import type { Operation, OperationStatus, Prisma } from '../generated/prisma/client.ts';
import type { Deps } from './deps.ts';
import { raiseAlert } from './alerts.ts';
import { operationJobKey, removeJob } from './jobs.ts';
import { discardDrillLeftovers, discardRestoreLeftovers } from './restore-leftovers.ts';
import { removeImportFile, sweepImportFiles } from './import-files.ts';
import { baseBackupStopped } from './pitr-leftovers.ts';
import { forgetWrittenSnapshots } from './snapshot-leftovers.ts';
import type { Viewer } from './viewer.ts';

/**
 * Operations: every long-running action (snapshot, restore, delete…) as a row a UI can watch.
 * Workers move it QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED, report phase and bytes at most
 * a few times a second, and publish each change on the `operation` topic.
 */

export const TERMINAL: readonly OperationStatus[] = ['SUCCEEDED', 'FAILED', 'CANCELLED'];
export const isTerminal = (s: OperationStatus) => TERMINAL.includes(s);

/**
 * Prisma `where` for operations the viewer may see: its organization's, and for a key limited to
 * projects only those of their environments (an operation without one, such as a destination's
 * verification, belongs to no project and so to unlimited keys only).
 */
export function operationWhere(viewer: Viewer, where: Prisma.OperationWhereInput = {}): Prisma.OperationWhereInput {
  const visible: Prisma.OperationWhereInput = {
    organizationId: viewer.organizationId,
    ...(viewer.projectIds ? { environment: { projectId: { in: [...viewer.projectIds] } } } : {}),
  };
  return { AND: [visible, where] };
}

/** Reads an operation the viewer may see (through its environment's project). */
export async function getOperation(deps: Deps, viewer: Viewer, id: string): Promise<Operation> {
  const op = await deps.db.operation.findFirst({ where: operationWhere(viewer, { id }) });
  if (!op) throw new NotFoundError(ErrorCode.OPERATION_NOT_FOUND, 'Operation not found');
  return op;
}

/** Publishes an operation's new state to its watchers and its environment's activity stream. */
async function announce(deps: Deps, op: Pick<Operation, 'id' | 'status' | 'environmentId'>, withActivity: boolean): Promise<void> {
  await deps.events.publish('operation', op.id, { operationId: op.id, status: op.status });
  if (withActivity && op.environmentId) {
    await deps.events.publish('environmentActivity', op.environmentId, { kind: 'OPERATION', environmentId: op.environmentId, subjectId: op.id });
  }
}

/**
 * Claims an operation for a run. Returns null when there is nothing to do (already finished, or
 * cancelled while queued); a retry after a crash finds it RUNNING and takes it again.
 */
export async function beginOperation(deps: Deps, id: string): Promise<Operation | null> {
  const op = await deps.db.operation.findUnique({ where: { id } });
  if (!op || isTerminal(op.status)) return null;
  const now = deps.clock.now();
  const updated = await deps.db.operation.update({
    where: { id },
    // A retry's message ("... it will run again") is no longer true once it runs.
    data: { status: 'RUNNING', startedAt: op.startedAt ?? now, heartbeatAt: now, attempts: { increment: 1 }, error: null, message: null },
  });
  await announce(deps, updated, true);
  return updated;
}

export interface Progress {
  phase?: string;
  bytesDone?: number | bigint;
  bytesTotal?: number | bigint | null;
  message?: string | null;
}

/** Throttled progress: at most one write and event per interval, and always the last one on flush. */
/**
 * Turns a total that is only an estimate into one whose percent is honest to watch: it never goes
 * backwards and stays below 100 until the work says it is done (the caller then reports
 * bytesDone = bytesTotal). When the work outgrows the estimate the total grows with it; when the
 * estimate is corrected down, the percent jumps forward, never back.
 */
export function steadyTotal(): (bytesDone: number, estimate: number | null | undefined) => number | null {
  const ceiling = 0.99;
  let last = 0;
  return (bytesDone, estimate) => {
    if (estimate === null || estimate === undefined) return null;
    let total = Math.max(estimate, Math.ceil(bytesDone / ceiling), 1);
    if (last > 0 && bytesDone / total < last) total = Math.floor(bytesDone / last);
    last = bytesDone / total;
    return total;
  };
}

export function progressReporter(deps: Deps, operationId: string, intervalMs = 250) {
  let pending: Progress | null = null;
  let last = 0;
  let writing: Promise<void> = Promise.resolve();
  // One statement writes the row and publishes its event (stamped with the row's updatedAt): a
  // worker busy with the job's bytes took a turn of its event loop and a second round trip
  // between the two, which watchers saw as lag.
  const write = (p: Progress) => {
    writing = writing.then(async () => {
      const params: unknown[] = [operationId];
      const sets: string[] = [];
      const set = (column: string, value: unknown, sql: (param: string) => string) => {
        params.push(value);
        sets.push(`"${column}" = ${sql(`$${params.length}`)}`);
      };
      const text = (x: string) => `${x}::text`;
      const bigint = (x: string) => `${x}::bigint`;
      // DateTime columns are timestamp(3) holding UTC, as Prisma writes them.
      const utc = (x: string) => `(${x}::timestamptz AT TIME ZONE 'UTC')`;
      if (p.phase !== undefined) set('phase', p.phase, text);
      if (p.bytesDone !== undefined) set('bytesDone', String(p.bytesDone), bigint);
      if (p.bytesTotal !== undefined) set('bytesTotal', p.bytesTotal === null ? null : String(p.bytesTotal), bigint);
      if (p.message !== undefined) set('message', p.message, text);
      set('heartbeatAt', deps.clock.now().toISOString(), utc);
      const at = Date.now();
      set('updatedAt', new Date(at).toISOString(), utc);
      params.push(String(at));
      const publish = notifyRowsSql('operation', 'op', 'op.id', "json_build_object('operationId', op.id, 'status', op.status)", params.length);
      await deps.db.$queryRawUnsafe(`WITH op AS (UPDATE operations SET ${sets.join(', ')} WHERE id = $1 RETURNING id, status) ${publish}`, ...params);
    }).catch((err) => deps.logger.warn({ err, operationId }, 'progress update failed'));
  };
  return {
    report(p: Progress) {
      pending = { ...pending, ...p };
      const now = Date.now();
      if (p.phase !== undefined || now - last >= intervalMs) {
        last = now;
        const next = pending;
        pending = null;
        write(next);
      }
    },
    async flush() {
      if (pending) write(pending);
      pending = null;
      await writing;
    },
  };
}

/** Records the end of an operation and tells everyone watching. */
export async function finishOperation(deps: Deps, id: string, status: 'SUCCEEDED' | 'FAILED' | 'CANCELLED', error?: string, errorCode?: ErrorCode): Promise<Operation> {
  const op = await deps.db.operation.update({
    where: { id },
    data: { status, error: error ?? null, errorCode: errorCode ?? null, finishedAt: deps.clock.now(), ...(status === 'SUCCEEDED' ? { phase: 'done' } : {}) },
  });
  await announce(deps, op, true);
  return op;
}

/**
 * Puts a running operation back in the queue because its worker is stopping: not a failure, so no
 * error and no alert; the job is handed back and the next worker runs it again from the start.
 */
export async function requeueOperation(deps: Deps, id: string, message: string): Promise<Operation> {
  const op = await deps.db.operation.update({ where: { id }, data: { status: 'QUEUED', phase: 'queued', bytesDone: 0, message } });
  await announce(deps, op, true);
  return op;
}

/** Why a stopped worker's operation is back in the queue. */
export const HANDED_BACK_MESSAGE = 'The worker stopped before this finished; it runs again from the start when a worker next runs';

/**
 * Cancels an operation. A queued one is cancelled at once (its job removed); a running one is
 * asked to stop: its worker hears the request and aborts, then records CANCELLED itself.
 */
export async function cancelOperation(deps: Deps, viewer: Viewer, id: string): Promise<string> {
  const op = await getOperation(deps, viewer, id);
  if (isTerminal(op.status)) throw new ConflictError(ErrorCode.OPERATION_FINISHED, `Operation already ${op.status.toLowerCase()}`);
  const now = deps.clock.now();
  await deps.db.$transaction(async (tx) => {
    const claimed = await tx.operation.updateMany({ where: { id, status: 'QUEUED' }, data: { status: 'CANCELLED', cancelRequestedAt: now, finishedAt: now, error: 'Cancelled before it started' } });
    if (claimed.count === 1) {
      await removeJob(tx, operationJobKey(id));
      await cancelledBeforeStart(tx, op);
    } else {
      await tx.operation.update({ where: { id }, data: { cancelRequestedAt: now } });
    }
    await publishInTransaction(tx, 'operation', id, { operationId: id, status: claimed.count === 1 ? 'CANCELLED' : 'CANCELLING' });
  });
  return id;
}

/**
 * What an operation that will never run (again) leaves behind: its snapshot is marked failed,
 * never half-visible; `reason` says why (else it was cancelled before it started).
 */
async function cancelledBeforeStart(tx: Parameters<Parameters<Deps['db']['$transaction']>[0]>[0], op: Operation, reason?: string, at?: Date): Promise<void> {
  if (op.type === 'SNAPSHOT' && op.snapshotId) {
    await tx.snapshot.update({ where: { id: op.snapshotId }, data: { status: 'FAILED', error: reason ?? 'Cancelled before it started' } });
    await tx.snapshotCopy.updateMany({ where: { snapshotId: op.snapshotId }, data: { status: 'FAILED', repoSnapshotId: null, error: reason ?? 'Cancelled' } });
  }
  if (op.type === 'RESTORE' || op.type === 'IMPORT') {
    await tx.restoreLog.updateMany({ where: { operationId: op.id }, data: { status: 'FAILED', error: reason ?? 'It never completed', ...(at ? { completedAt: at } : {}) } });
    // A new environment whose restore will never run (again) never becomes usable.
    if (op.environmentId) await tx.environment.updateMany({ where: { id: op.environmentId, status: 'PROVISIONING' }, data: { status: 'FAILED' } });
  }
  // Never started, or its worker died while it recovered: the keepers sweep any folder it left.
  if (op.type === 'RECOVERY_INSTANCE') {
    await tx.recoveryInstance.updateMany({ where: { operationId: op.id, status: 'STARTING' }, data: { status: reason ? 'FAILED' : 'STOPPED', error: reason ?? 'Cancelled before it started', stoppedAt: at ?? new Date() } });
  }
  if (op.type === 'RESTORE_DRILL') {
    await tx.restoreDrill.updateMany({ where: { operationId: op.id }, data: { status: reason ? 'FAILED' : 'CANCELLED', error: reason ?? 'Cancelled before it started', ...(at ? { completedAt: at } : {}) } });
  }
  // An import's IMPORT snapshot never became what it was to hold (one that did stays READY).
  if (op.type === 'IMPORT' && op.snapshotId) {
    await tx.snapshot.updateMany({ where: { id: op.snapshotId, status: 'CREATING' }, data: { status: 'FAILED', error: reason ?? 'Cancelled before it started' } });
    await tx.snapshotCopy.updateMany({ where: { snapshotId: op.snapshotId, status: { in: ['PENDING', 'UPLOADING'] } }, data: { status: 'FAILED', repoSnapshotId: null, error: reason ?? 'Cancelled' } });
  }
}

/** Aborts when a cancel is requested for the operation (checked now, then on every event). */
export function watchCancellation(deps: Deps, operationId: string): { signal: AbortSignal; stop(): void } {
  const ac = new AbortController();
  const events = deps.events.subscribe('operation', operationId);
  void (async () => {
    const op = await deps.db.operation.findUnique({ where: { id: operationId } });
    if (op?.cancelRequestedAt) ac.abort(new CancelledError());
    for await (const e of events) {
      if (e.status === 'CANCELLING') ac.abort(new CancelledError());
    }
  })().catch(() => undefined);
  return { signal: ac.signal, stop: () => void events.return?.() };
}

/** The reason an operation's signal aborts when a person cancelled it. */
export class CancelledError extends Error {
  constructor() {
    super('Cancelled');
    this.name = 'CancelledError';
  }
}

/** The reason an operation's signal aborts when it ran past the environment's timeoutSeconds. */
export class TimedOutError extends Error {
  constructor(seconds: number) {
    super(`Timed out after ${seconds} s`);
    this.name = 'TimedOutError';
  }
}


/**
 * Finds operations whose worker stopped sending heartbeats (killed, machine lost) and makes them
 * runnable again: the job's lock is released so graphile-worker retries it, or, when it has no
 * attempts left, the operation is marked FAILED. Nothing stays RUNNING forever.
 */
export async function recoverStaleOperations(deps: Deps, staleMs: number): Promise<{ requeued: string[]; failed: string[] }> {
  const cutoff = new Date(deps.clock.now().getTime() - staleMs);
  const stale = await deps.db.operation.findMany({ where: { status: 'RUNNING', OR: [{ heartbeatAt: { lt: cutoff } }, { heartbeatAt: null }] } });
  const requeued: string[] = [];
  const failed: string[] = [];
  for (const op of stale) {
    const [job] = await deps.db.$queryRawUnsafe<{ locked_by: string | null; attempts: number; max_attempts: number }[]>(
      'SELECT locked_by, attempts, max_attempts FROM graphile_worker.jobs WHERE key = $1',
      operationJobKey(op.id),
    );
    if (job && job.attempts < job.max_attempts) {
      if (job.locked_by) {
        await deps.db.$queryRawUnsafe('SELECT count(*)::int AS n FROM (SELECT graphile_worker.force_unlock_workers(ARRAY[$1]::text[])) AS u', job.locked_by);
      }
      await deps.db.operation.update({ where: { id: op.id }, data: { status: 'QUEUED', phase: 'queued', message: `The worker running this stopped while ${describePhase(op.phase)}; it will run again` } });
      requeued.push(op.id);
      await announce(deps, { id: op.id, status: 'QUEUED', environmentId: op.environmentId }, true);
    } else {
      const reason = `The worker running this stopped responding while ${describePhase(op.phase)}`;
      const now = deps.clock.now();
      // Conditional, so that of two workers sweeping at once only one fails it (and alerts).
      const claimed = await deps.db.$transaction(async (tx) => {
        const c = await tx.operation.updateMany({ where: { id: op.id, status: 'RUNNING' }, data: { status: 'FAILED', error: reason, finishedAt: now } });
        if (c.count === 1) await cancelledBeforeStart(tx, op, reason, now);
        return c.count === 1;
      });
      if (!claimed) continue;
      failed.push(op.id);
      await announce(deps, { id: op.id, status: 'FAILED', environmentId: op.environmentId }, true);
      if (op.type === 'RESTORE' || op.type === 'IMPORT') await restoreStopped(deps, op, reason);
      if (op.type === 'RESTORE_DRILL') await drillStopped(deps, op, reason);
      if (op.type === 'BASE_BACKUP') await baseBackupStopped(deps, op, reason);
      if ((op.type === 'SNAPSHOT' || op.type === 'IMPORT') && op.snapshotId) await snapshotStopped(deps, op.snapshotId);
      if (op.type === 'IMPORT') await removeImportFile(deps, (op.input as { file?: string } | null)?.file).catch(() => undefined);
    }
  }
  await releaseFinishedLocks(deps, cutoff);
  await sweepImportFiles(deps).catch((err: unknown) => deps.logger.error({ err }, 'sweeping import files failed'));
  return { requeued, failed };
}

/**
 * A restore whose worker died is not retried (a person decides), so its recovery is where the
 * temp database and staging folder it was filling go (else they stay forever) and where the
 * failure is raised as any failed restore's would be.
 */
async function restoreStopped(deps: Deps, op: Operation, reason: string): Promise<void> {
  const log = await deps.db.restoreLog.findFirst({ where: { operationId: op.id }, include: { targetEnvironment: true } });
  if (!log) return;
  let cleanup = '';
  try {
    const found = await discardRestoreLeftovers(deps, log.id);
    if (found.length) cleanup = `; removed what it left: ${found.join(', ')}`;
  } catch (err) {
    deps.logger.error({ err, operationId: op.id }, 'could not clear what a stopped restore left');
    cleanup = `; what it left could not be removed yet: ${err instanceof Error ? err.message : String(err)}`;
  }
  await raiseAlert(deps, {
    organizationId: op.organizationId,
    environmentId: log.targetEnvironmentId,
    operationId: op.id,
    type: 'RESTORE_FAILED',
    severity: 'CRITICAL',
    message: `${op.type === 'IMPORT' ? 'Import' : 'Restore'} into ${log.targetEnvironment.name} failed: ${reason}${cleanup}`,
  });
}

/** A drill whose worker died: its scratch copies go, and it counts as a failed drill. */
async function drillStopped(deps: Deps, op: Operation, reason: string): Promise<void> {
  const drill = await deps.db.restoreDrill.findUnique({ where: { operationId: op.id }, include: { environment: true } });
  if (!drill) return;
  let cleanup = '';
  try {
    const found = await discardDrillLeftovers(deps, drill.id);
    if (found.length) cleanup = `; removed what it left: ${found.join(', ')}`;
  } catch (err) {
    deps.logger.error({ err, operationId: op.id }, 'could not drop what a stopped drill left');
    cleanup = `; what it left could not be removed yet: ${err instanceof Error ? err.message : String(err)}`;
  }
  await raiseAlert(deps, { organizationId: op.organizationId, environmentId: drill.environmentId, operationId: op.id, type: 'DRILL_FAILED', severity: 'CRITICAL', message: `Restore drill of ${drill.environment.name} failed: ${reason}${cleanup}` });
}

/**
 * A snapshot failed here is not retried, so no retry forgets what its killed worker may already
 * have written (its copies no longer name it): the destinations it was going to are searched by tag.
 */
async function snapshotStopped(deps: Deps, snapshotId: string): Promise<void> {
  const copies = await deps.db.snapshotCopy.findMany({ where: { snapshotId }, select: { destinationId: true } });
  await forgetWrittenSnapshots(deps, snapshotId, copies.map((c) => c.destinationId));
}

/**
 * A worker stopped between finishing an operation and telling graphile-worker so leaves the job
 * locked, and with it the environment's whole queue, for graphile-worker's four-hour lock
 * timeout. Releasing it is safe: the job runs again, finds its operation finished, and ends.
 */
async function releaseFinishedLocks(deps: Deps, cutoff: Date): Promise<void> {
  const locked = await deps.db.$queryRawUnsafe<{ key: string; locked_by: string }[]>(
    "SELECT key, locked_by FROM graphile_worker.jobs WHERE key LIKE 'op:%' AND locked_by IS NOT NULL AND locked_at < $1",
    cutoff,
  );
  if (!locked.length) return;
  const ops = await deps.db.operation.findMany({ where: { id: { in: locked.map((j) => j.key.slice(3)) }, status: { in: [...TERMINAL] } }, select: { id: true } });
  const finished = new Set(ops.map((o) => `op:${o.id}`));
  const workers = [...new Set(locked.filter((j) => finished.has(j.key)).map((j) => j.locked_by))];
  if (workers.length) {
    await deps.db.$queryRawUnsafe('SELECT count(*)::int AS n FROM (SELECT graphile_worker.force_unlock_workers($1::text[])) AS u', workers);
    deps.logger.warn({ workers }, 'released job locks left by stopped workers');
  }
}

/** Says in words what a job was doing in `phase`, for the message of an operation whose worker stopped. */
function describePhase(phase: string | null): string {
  const words: Record<string, string> = {
    queued: 'before it started',
    'safety-snapshot': 'taking the safety snapshot',
    restoring: 'restoring the database (pg_restore) and files beside the live ones',
    swapping: 'swapping the restored database and files in',
    preparing: 'preparing',
    dumping: 'dumping the database',
    uploading: 'uploading',
    copying: 'copying to the other destinations',
    finalizing: 'finalizing',
    checking: 'running the drill’s check query',
  };
  return phase ? `${words[phase] ?? phase} (phase ${phase})` : 'in an unknown phase';
}
