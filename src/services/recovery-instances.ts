import { z } from 'zod';
import { ConflictError, ErrorCode, NotFoundError, ValidationError } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { publishInTransaction } from '../events/bus.ts';
import { instanceWorkDir, makeWorkDir, type RecoveredInstance } from '../sources/pitr-instance.ts';
import type { Deps } from './deps.ts';
import { getEnvironment } from './environments.ts';
import { idempotencyKey, inputHash, remember, replayed } from './idempotency.ts';
import { enqueueJob, operationJobKey } from './jobs.ts';
import { beginOperation, CancelledError, finishOperation, progressReporter } from './operations.ts';
import { planRecovery, recoverFromArchive } from './pitr-recovery.ts';
import { endInstance, keeperOf, LIVE_INSTANCE } from './recovery-instance-keeper.ts';
import type { OpenedRepository } from './repositories.ts';
import { messageOf, underLimits } from './snapshots.ts';
import { recoveryInstanceWhere, type Viewer } from './viewer.ts';

/**
 * Recovery instances: an environment's whole cluster (all its databases) recovered to a point in
 * time from its base backups and WAL, as a restore to that time recovers it, and then kept,
 * paused at the time in hot standby (read-only), listening on PITR_INSTANCE_LISTEN for the
 * cluster's own roles with their passwords as of that time, until it expires or is closed.
 * Nothing is written into the environment's server. The worker that recovered it holds it
 * (recovery-instance-keeper.ts).
 */

const ttlMinutes = z.number().int().min(1, 'at least 1 minute').max(1440, 'at most 1440 minutes (a day)');

export const openRecoveryInstanceInput = z.object({
  environmentId: z.string(),
  pointInTime: z.date(),
  ttlMinutes: ttlMinutes.default(60),
  idempotencyKey: idempotencyKey.nullish(),
});

export const extendRecoveryInstanceInput = z.object({ id: z.string(), ttlMinutes });

export async function openRecoveryInstance(
  deps: Deps,
  viewer: Viewer,
  raw: z.input<typeof openRecoveryInstanceInput>,
  limits: { max: number },
): Promise<{ operationId: string; recoveryInstanceId: string }> {
  const input = parseInput(openRecoveryInstanceInput, raw);
  const env = await getEnvironment(deps, viewer, input.environmentId);
  const hash = input.idempotencyKey ? inputHash({ environmentId: env.id, pointInTime: input.pointInTime.toISOString(), ttlMinutes: input.ttlMinutes }) : null;
  const earlier = async () => (input.idempotencyKey ? replayed(deps, viewer.organizationId, 'openRecoveryInstance', input.idempotencyKey, hash!) : null);
  const ofOperation = async (operationId: string) => ({ operationId, recoveryInstanceId: (await deps.db.recoveryInstance.findUniqueOrThrow({ where: { operationId } })).id });
  const replay = await earlier();
  if (replay) return ofOperation(replay);
  if (input.pointInTime.getTime() > deps.clock.now().getTime()) throw ValidationError.field(['input', 'pointInTime'], `${input.pointInTime.toISOString()} is in the future`);
  // The same refusals as restoreToPointInTime, before anything is recorded.
  const { opened } = await planRecovery(deps, env.id, input.pointInTime);
  await opened.close().catch(() => undefined);
  return deps.db.$transaction(async (tx) => {
    // One request at a time counts the instances, so two at once cannot both pass the cap.
    await tx.$queryRawUnsafe("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtext('backplane:recovery-instance'))) AS l");
    const again = await earlier();
    if (again) return ofOperation(again);
    const live = await tx.recoveryInstance.count({ where: { status: { in: LIVE_INSTANCE } } });
    if (live >= limits.max) {
      throw new ConflictError(ErrorCode.RECOVERY_INSTANCE_LIMIT, `${live} recovery instance(s) are starting or running, and PITR_INSTANCE_MAX allows ${limits.max}: close one (closeRecoveryInstance) or wait until one expires`);
    }
    const op = await tx.operation.create({
      data: { organizationId: env.organizationId, environmentId: env.id, type: 'RECOVERY_INSTANCE', phase: 'queued', input: { pointInTime: input.pointInTime.toISOString(), ttlMinutes: input.ttlMinutes } },
    });
    const instance = await tx.recoveryInstance.create({
      data: { organizationId: env.organizationId, environmentId: env.id, operationId: op.id, pointInTime: input.pointInTime, ttlMinutes: input.ttlMinutes },
    });
    if (input.idempotencyKey) await remember(tx, deps, { organizationId: viewer.organizationId, mutation: 'openRecoveryInstance', key: input.idempotencyKey, hash: hash!, operationId: op.id });
    // No environment queue: it reads the repository only, and may run beside the environment's own jobs.
    await enqueueJob(tx, 'pitr_instance_open', { operationId: op.id }, { jobKey: operationJobKey(op.id), maxAttempts: 1 });
    await publishInTransaction(tx, 'operation', op.id, { operationId: op.id, status: 'QUEUED' });
    await publishInTransaction(tx, 'environmentActivity', env.id, { kind: 'RECOVERY_INSTANCE', environmentId: env.id, subjectId: instance.id });
    return { operationId: op.id, recoveryInstanceId: instance.id };
  });
}

/**
 * Asks for instance `id` to be closed: a READY one is stopped by its keeper at its next tick
 * (STOPPED); a STARTING one has its operation cancelled, which stops the recovery. Closing one
 * that has ended already changes nothing.
 */
export async function closeRecoveryInstance(deps: Deps, viewer: Viewer, id: string): Promise<string> {
  const row = await deps.db.recoveryInstance.findFirst({ where: { AND: [recoveryInstanceWhere(viewer), { id }] } });
  if (!row) throw new NotFoundError(ErrorCode.RECOVERY_INSTANCE_NOT_FOUND, 'Recovery instance not found');
  if (!LIVE_INSTANCE.includes(row.status)) return row.id;
  const now = deps.clock.now();
  await deps.db.$transaction(async (tx) => {
    await tx.recoveryInstance.updateMany({ where: { id, closeRequestedAt: null }, data: { closeRequestedAt: now } });
    if (row.status === 'STARTING') {
      await tx.operation.updateMany({ where: { id: row.operationId, status: { in: ['QUEUED', 'RUNNING'] }, cancelRequestedAt: null }, data: { cancelRequestedAt: now } });
      await publishInTransaction(tx, 'operation', row.operationId, { operationId: row.operationId, status: 'CANCELLING' });
    }
  });
  return row.id;
}

/**
 * Gives a READY instance `ttlMinutes` more from now (its `expiresAt` moves; the keeper reads it
 * each tick). Refused for one that is not READY.
 */
export async function extendRecoveryInstance(deps: Deps, viewer: Viewer, raw: z.input<typeof extendRecoveryInstanceInput>): Promise<string> {
  const input = parseInput(extendRecoveryInstanceInput, raw);
  const row = await deps.db.recoveryInstance.findFirst({ where: { AND: [recoveryInstanceWhere(viewer), { id: input.id }] } });
  if (!row) throw new NotFoundError(ErrorCode.RECOVERY_INSTANCE_NOT_FOUND, 'Recovery instance not found');
  const now = deps.clock.now();
  await deps.db.$transaction(async (tx) => {
    const r = await tx.recoveryInstance.updateMany({ where: { id: row.id, status: 'READY', closeRequestedAt: null }, data: { expiresAt: new Date(now.getTime() + input.ttlMinutes * 60_000), ttlMinutes: input.ttlMinutes } });
    if (r.count === 0) throw new ConflictError(ErrorCode.RECOVERY_INSTANCE_NOT_READY, `The recovery instance is ${row.status.toLowerCase()}${row.closeRequestedAt ? ' and being closed' : ''}: only a READY one can be extended`);
    await publishInTransaction(tx, 'environmentActivity', row.environmentId, { kind: 'RECOVERY_INSTANCE', environmentId: row.environmentId, subjectId: row.id });
  });
  return row.id;
}

/** The job: recovers the instance and leaves it running, held by this process's keeper. */
export async function runOpenRecoveryInstance(deps: Deps, operationId: string, jobSignal?: AbortSignal): Promise<void> {
  const op = await beginOperation(deps, operationId);
  if (!op) return;
  const row = await deps.db.recoveryInstance.findUniqueOrThrow({ where: { operationId } });
  const keeper = keeperOf(deps);
  const progress = progressReporter(deps, operationId);
  const fail = async (status: 'FAILED' | 'CANCELLED', message: string) => {
    await endInstance(deps, keeper?.home ?? deps.home ?? '.backplane', row.id, status === 'CANCELLED' ? 'STOPPED' : 'FAILED', message);
    await progress.flush();
    await finishOperation(deps, operationId, status, message);
  };
  if (!keeper) return fail('FAILED', 'this worker keeps no recovery instances');
  const mine = await deps.db.recoveryInstance.count({ where: { leaseOwner: keeper.workerId, status: { in: LIVE_INSTANCE } } });
  if (mine >= keeper.max) return fail('FAILED', `this worker runs ${mine} recovery instance(s), and PITR_INSTANCE_MAX allows ${keeper.max}`);
  const held = await deps.db.recoveryInstance.updateMany({
    where: { id: row.id, status: 'STARTING', closeRequestedAt: null },
    data: { leaseOwner: keeper.workerId, leaseExpiresAt: new Date(deps.clock.now().getTime() + keeper.leaseMs) },
  });
  if (held.count === 0) return fail('CANCELLED', 'closed before it started');
  const dirs = instanceWorkDir(keeper.home, row.id);
  let opened: OpenedRepository | undefined;
  let instance: RecoveredInstance | undefined;
  try {
    await underLimits(deps, operationId, 3600, jobSignal, async (signal) => {
      progress.report({ phase: 'fetching-base' });
      const planned = await planRecovery(deps, row.environmentId, row.pointInTime, signal);
      opened = planned.opened;
      await makeWorkDir(dirs);
      instance = await recoverFromArchive(opened, planned, dirs, { signal, listen: keeper.listen, onReplaying: () => progress.report({ phase: 'replaying-wal' }) });
      progress.report({ phase: 'starting-instance' });
      if (signal.aborted) throw signal.reason;
      const now = deps.clock.now();
      const ready = await deps.db.$transaction(async (tx) => {
        const r = await tx.recoveryInstance.updateMany({
          where: { id: row.id, status: 'STARTING', leaseOwner: keeper.workerId, closeRequestedAt: null },
          data: { status: 'READY', host: keeper.listen, port: instance!.port, readyAt: now, expiresAt: new Date(now.getTime() + row.ttlMinutes * 60_000) },
        });
        if (r.count === 1) await publishInTransaction(tx, 'environmentActivity', row.environmentId, { kind: 'RECOVERY_INSTANCE', environmentId: row.environmentId, subjectId: row.id });
        return r.count === 1;
      });
      // Closed, or lost (its lease lapsed), while it recovered.
      if (!ready) throw new CancelledError();
      progress.report({ phase: 'ready' });
    });
    await progress.flush();
    await finishOperation(deps, operationId, 'SUCCEEDED');
  } catch (err) {
    // Whatever stopped it: nothing of the instance stays (process, folder), and its row ends.
    await instance?.stop().catch(() => undefined);
    const cancelled = err instanceof CancelledError;
    await fail(cancelled ? 'CANCELLED' : 'FAILED', cancelled ? 'cancelled before it was ready' : messageOf(err));
  } finally {
    await opened?.close().catch(() => undefined);
  }
}
