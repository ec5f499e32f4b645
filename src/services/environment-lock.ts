import { z } from 'zod';
import { ConflictError, ErrorCode } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import { publishInTransaction } from '../events/bus.ts';
import type { Deps } from './deps.ts';
import { getEnvironment } from './environments.ts';
import type { Viewer } from './viewer.ts';

/**
 * An operator's lock on an environment ("the app is running, don't restore into it"): while it is
 * set, a restore (or an import) into the environment is refused with ENVIRONMENT_LOCKED, naming who
 * locked it and why. Snapshots still run: reading the environment is harmless.
 *
 * The refusal is checked inside the transaction that creates the restore's operation, after the
 * target's advisory lock; locking takes the same advisory lock, so a lock and a restore request
 * are ordered: either the restore was accepted first, or it sees the lock.
 */

const lockInput = z.object({
  reason: z.string().trim().min(1, 'must say why (it is shown to whoever is refused)').max(500, 'must be at most 500 characters'),
});

type LockTx = { $queryRawUnsafe: Deps['db']['$queryRawUnsafe']; environment: Deps['db']['environment'] };

/** The per-target lock restores take before they check anything (the same key as in restores.ts). */
async function takeTargetLock(tx: LockTx, environmentId: string): Promise<void> {
  await tx.$queryRawUnsafe("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtext('backplane:restore'), hashtext($1))) AS l", environmentId);
}

/** Throws ENVIRONMENT_LOCKED when the environment is locked; call it in the transaction that starts the work. */
export async function refuseIfLocked(tx: Pick<LockTx, 'environment'>, environmentId: string, what = 'a restore'): Promise<void> {
  const env = await tx.environment.findUnique({ where: { id: environmentId }, select: { name: true, lockedAt: true, lockedBy: true, lockReason: true } });
  if (!env?.lockedAt) return;
  throw new ConflictError(
    ErrorCode.ENVIRONMENT_LOCKED,
    `${env.name} is locked by ${env.lockedBy ?? 'an unknown key'} since ${env.lockedAt.toISOString()} (${env.lockReason}); ${what} is refused until it is unlocked`,
  );
}

export async function lockEnvironment(deps: Deps, viewer: Viewer, environmentId: string, raw: z.input<typeof lockInput>): Promise<string> {
  const input = parseInput(lockInput, raw, ['input']);
  const env = await getEnvironment(deps, viewer, environmentId);
  const key = await deps.db.apiKey.findUnique({ where: { id: viewer.apiKeyId }, select: { name: true } });
  const by = key ? `API key "${key.name}"` : viewer.apiKeyId;
  await deps.db.$transaction(async (tx) => {
    await takeTargetLock(tx, env.id);
    // Someone else's lock is theirs to lift: taking it over silently would hide their reason.
    await refuseIfLocked(tx, env.id, 'locking it again');
    await tx.environment.update({ where: { id: env.id }, data: { lockedAt: deps.clock.now(), lockedBy: by, lockedByApiKeyId: viewer.apiKeyId, lockReason: input.reason } });
    await publishInTransaction(tx, 'environmentActivity', env.id, { kind: 'ENVIRONMENT_UPDATED', environmentId: env.id, subjectId: env.id });
  });
  return env.id;
}

/** Lifts the lock, whoever set it (an unlocked environment stays as it is). */
export async function unlockEnvironment(deps: Deps, viewer: Viewer, environmentId: string): Promise<string> {
  const env = await getEnvironment(deps, viewer, environmentId);
  await deps.db.$transaction(async (tx) => {
    await takeTargetLock(tx, env.id);
    await tx.environment.update({ where: { id: env.id }, data: { lockedAt: null, lockedBy: null, lockedByApiKeyId: null, lockReason: null } });
    await publishInTransaction(tx, 'environmentActivity', env.id, { kind: 'ENVIRONMENT_UPDATED', environmentId: env.id, subjectId: env.id });
  });
  return env.id;
}
