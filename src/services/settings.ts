import { z } from 'zod';
import { parseInput } from '../domain/validation.ts';
import { publishInTransaction } from '../events/bus.ts';
import { requireVisibleDestinations } from './destination-choice.ts';
import type { Deps } from './deps.ts';
import { getEnvironment } from './environments.ts';
import type { Viewer } from './viewer.ts';

/**
 * Per-environment settings: whether schedules run (autoEnabled), what a failed scheduled snapshot
 * leads to (failurePolicy), limits (maxPinned, timeoutSeconds), ages (retentionDays for manual and
 * pre-deploy snapshots, safetyRetentionDays), staleness (staleAfterHours), the restore drill's check (drillCheckQuery) and the default
 * destinations. A row is created with the environment; one missing is created on first read.
 */

export const FAILURE_POLICIES = ['ALERT_ONLY', 'RETRY', 'PAUSE_SCHEDULE'] as const;

const int = (min: number, max: number) => z.number().int('must be a whole number').min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);

const updateSettingsInput = z.object({
  autoEnabled: z.boolean().optional(),
  failurePolicy: z.enum(FAILURE_POLICIES).optional(),
  retryCount: int(1, 10).optional(),
  retryBackoffSeconds: int(1, 86_400).optional(),
  maxPinned: int(0, 1000).optional(),
  retentionDays: int(1, 36_500).nullish(),
  safetyRetentionDays: int(1, 3650).optional(),
  timeoutSeconds: int(1, 7 * 86_400).optional(),
  staleAfterHours: int(1, 8760).nullish(),
  /** Run read-only in a restore drill's scratch copy; must return one boolean true. Syntax is PostgreSQL's to judge, at the drill. */
  drillCheckQuery: z.string().trim().min(1, 'must not be blank (null for no check)').max(4000, 'must be at most 4000 characters').nullish(),
  defaultDestinationIds: z.array(z.string().min(1)).max(10, 'at most 10 destinations').optional(),
});

/** The settings row, created with defaults when missing. */
export async function ensureSettings(deps: Deps, environmentId: string) {
  return deps.db.environmentSettings.upsert({ where: { environmentId }, create: { environmentId }, update: {} });
}

export async function getEnvironmentSettings(deps: Deps, viewer: Viewer, environmentId: string) {
  const env = await getEnvironment(deps, viewer, environmentId);
  return ensureSettings(deps, env.id);
}

/** Changes only the fields given; `null` clears the optional ones (retentionDays, staleAfterHours, drillCheckQuery). */
export async function updateEnvironmentSettings(deps: Deps, viewer: Viewer, environmentId: string, raw: z.input<typeof updateSettingsInput>): Promise<string> {
  const input = parseInput(updateSettingsInput, raw);
  const env = await getEnvironment(deps, viewer, environmentId);
  const destinationIds = input.defaultDestinationIds ? [...new Set(input.defaultDestinationIds)] : undefined;
  if (destinationIds) await requireVisibleDestinations(deps, viewer, destinationIds);
  const { defaultDestinationIds: _ignored, ...fields } = input;
  const data = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
  await deps.db.$transaction(async (tx) => {
    await tx.environmentSettings.upsert({ where: { environmentId: env.id }, create: { environmentId: env.id, ...data }, update: data });
    if (data.retentionDays !== undefined) {
      // Manual and pre-deploy snapshots show the expiry the retention sweep will honour: a new
      // retentionDays moves every one of them (null: none expires), as previewRetention shows.
      await tx.$executeRawUnsafe(
        `UPDATE snapshots SET "expiresAt" = CASE WHEN $2::int IS NULL THEN NULL ELSE "createdAt" + make_interval(days => $2::int) END
          WHERE "environmentId" = $1 AND kind IN ('MANUAL', 'PRE_DEPLOY') AND status NOT IN ('DELETING', 'DELETED')`,
        env.id,
        data.retentionDays,
      );
    }
    if (destinationIds) {
      await tx.environmentDestination.deleteMany({ where: { environmentId: env.id, destinationId: { notIn: destinationIds } } });
      await tx.environmentDestination.createMany({ data: destinationIds.map((destinationId) => ({ environmentId: env.id, destinationId })), skipDuplicates: true });
    }
    await publishInTransaction(tx, 'environmentActivity', env.id, { kind: 'ENVIRONMENT_UPDATED', environmentId: env.id, subjectId: env.id });
  });
  return env.id;
}
