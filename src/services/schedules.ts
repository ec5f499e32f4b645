import { Cron } from 'croner';
import { z } from 'zod';
import { ConflictError, ErrorCode, NotFoundError, ValidationError } from '../domain/errors.ts';
import { parseInput } from '../domain/validation.ts';
import type { Schedule } from '../generated/prisma/client.ts';
import { raiseAlert } from './alerts.ts';
import type { Deps } from './deps.ts';
import { requireVisibleDestinations } from './destination-choice.ts';
import { getEnvironment } from './environments.ts';
import { enqueueJob, removeJob, type SqlTx } from './jobs.ts';
import { applyPitrSettings, checkPitrSource } from './pitr-settings.ts';
import { normalizePolicy, retentionPolicy } from './retention.ts';
import { startRestoreDrill } from './drills.ts';
import { createSnapshot, messageOf } from './snapshots.ts';
import type { Viewer } from './viewer.ts';

/**
 * Schedules: each environment may have one, with up to three five-field crons in an IANA timezone —
 * `dbCron` for database-only snapshots, `fullCron` for database and files, `filesCron` for files
 * only (volume backups), each with its own retention. Each active kind has
 * exactly one pending graphile-worker job (`schedule_fire`, job key `schedule:<id>:<kind>`) whose
 * run_at is the next run; saving the schedule replaces it. So runs are exact, survive restarts
 * (the job is in PostgreSQL) and never double: the job key allows one pending job, and a run
 * claims its planned time with a conditional update, so only one worker takes it.
 *
 * Firing takes the snapshot, then plans the next run after the later of the planned time and
 * now: runs missed while nothing was running collapse into the one that runs at start-up, and a
 * SCHEDULE_MISSED alert says so. croner computes next times in the timezone; a run in a DST gap
 * happens at the first valid time after it, a repeated hour runs once.
 */

export const SCHEDULE_KINDS = ['DB', 'FULL', 'FILES'] as const;
export type ScheduleKind = (typeof SCHEDULE_KINDS)[number];
/** What a schedule fires: its snapshot kinds, and restore drills (`drillCron`, see drills.ts). */
export const FIRE_KINDS = [...SCHEDULE_KINDS, 'DRILL'] as const;
export type FireKind = (typeof FIRE_KINDS)[number];

/** A run later than this after its planned time counts as missed. */
const LATE_MS = 5 * 60_000;

const kindFields = {
  DB: { cron: 'dbCron', next: 'nextDbRunAt', last: 'lastDbRunAt', includes: ['DB'] as ('DB' | 'FILES')[], name: 'database' },
  FULL: { cron: 'fullCron', next: 'nextFullRunAt', last: 'lastFullRunAt', includes: ['DB', 'FILES'] as ('DB' | 'FILES')[], name: 'full' },
  FILES: { cron: 'filesCron', next: 'nextFilesRunAt', last: 'lastFilesRunAt', includes: ['FILES'] as ('DB' | 'FILES')[], name: 'files' },
  DRILL: { cron: 'drillCron', next: 'nextDrillRunAt', last: 'lastDrillRunAt', includes: [] as ('DB' | 'FILES')[], name: 'restore drill' },
} as const;

export const scheduleJobKey = (scheduleId: string, kind: FireKind) => `schedule:${scheduleId}:${kind.toLowerCase()}`;

function cronOf(expression: string, timezone: string): Cron {
  return new Cron(expression, { timezone, mode: '5-part', paused: true });
}

/** The first run strictly after `after`, or null when the expression never matches again. */
export function nextRun(expression: string, timezone: string, after: Date): Date | null {
  return cronOf(expression, timezone).nextRun(after);
}

/** Five fields: minute hour day-of-month month day-of-week (no seconds, no years). */
export const cronExpression = z
  .string()
  .trim()
  .max(200, 'must be at most 200 characters')
  .superRefine((v, ctx) => {
    const fields = v.split(/\s+/).filter(Boolean).length;
    if (fields !== 5) {
      ctx.addIssue({ code: 'custom', message: `must have five fields (minute hour day-of-month month day-of-week), not ${fields}` });
      return;
    }
    try {
      if (!cronOf(v, 'UTC').nextRun()) ctx.addIssue({ code: 'custom', message: 'never matches a future time' });
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `is not a valid cron expression: ${(err as Error).message.replace(/^CronPattern: /, '')}` });
    }
  });

export const timezone = z
  .string()
  .trim()
  .max(100, 'must be at most 100 characters')
  .refine((tz) => {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
      cronOf('0 0 * * *', tz).nextRun();
      return true;
    } catch {
      return false;
    }
  }, 'is not a known IANA timezone (such as "UTC" or "Europe/Berlin")');

const upsertScheduleInput = z.object({
  environmentId: z.string(),
  dbCron: cronExpression.nullish(),
  fullCron: cronExpression.nullish(),
  filesCron: cronExpression.nullish(),
  drillCron: cronExpression.nullish(),
  timezone: timezone.optional(),
  /** Omitted: keep; empty: the environment's default destinations. */
  destinationIds: z.array(z.string().min(1)).max(10, 'at most 10 destinations').optional(),
  enabled: z.boolean().optional(),
  paused: z.boolean().optional(),
  dbRetention: retentionPolicy.optional(),
  fullRetention: retentionPolicy.optional(),
  filesRetention: retentionPolicy.optional(),
  /** Point-in-time recovery (see pitr-settings.ts); enabling checks the server first. */
  walEnabled: z.boolean().optional(),
  walRetentionDays: z.number().int().min(1, 'must be at least 1').max(3650, 'must be at most 3650').nullish(),
  walArchiveIntervalSeconds: z.number().int().min(5, 'must be at least 5').max(3600, 'must be at most 3600').optional(),
  baseBackupCron: cronExpression.optional(),
});

/** Common schedules, for pickers. */
export const CRON_PRESETS = [
  { name: 'hourly', cron: '0 * * * *', description: 'Every hour, on the hour' },
  { name: 'every-6-hours', cron: '0 */6 * * *', description: 'Every 6 hours (00:00, 06:00, 12:00, 18:00)' },
  { name: 'daily', cron: '0 2 * * *', description: 'Every day at 02:00' },
  { name: 'weekly', cron: '0 3 * * 0', description: 'Every Sunday at 03:00' },
  { name: 'monthly', cron: '0 4 1 * *', description: 'On the first day of every month at 04:00' },
] as const;

/** The viewer a schedule acts as: the whole organization, writing. */
function systemViewer(organizationId: string): Viewer {
  return { organizationId, apiKeyId: 'scheduler', scopes: new Set(['backups:read', 'backups:write']), projectIds: null };
}

export async function getSchedule(deps: Deps, viewer: Viewer, environmentId: string): Promise<Schedule | null> {
  const env = await getEnvironment(deps, viewer, environmentId);
  return deps.db.schedule.findUnique({ where: { environmentId: env.id } });
}

async function requireSchedule(deps: Deps, viewer: Viewer, environmentId: string): Promise<Schedule> {
  const s = await getSchedule(deps, viewer, environmentId);
  if (!s) throw new NotFoundError(ErrorCode.SCHEDULE_NOT_FOUND, 'This environment has no schedule');
  return s;
}

type Tx = SqlTx & { schedule: Deps['db']['schedule'] };

/** Plans both kinds from `from` and makes the pending jobs match: one per active kind, none otherwise. */
async function replan(deps: Deps, tx: Tx, s: Schedule, from: Date): Promise<void> {
  const active = s.enabled && !s.paused;
  const data: Record<string, Date | null> = {};
  for (const kind of FIRE_KINDS) {
    const f = kindFields[kind];
    const cron = s[f.cron];
    const next = active && cron ? nextRun(cron, s.timezone, from) : null;
    data[f.next] = next;
    if (next) await enqueueJob(tx, 'schedule_fire', { scheduleId: s.id, kind }, { jobKey: scheduleJobKey(s.id, kind), runAt: next, maxAttempts: 5 });
    else await removeJob(tx, scheduleJobKey(s.id, kind));
  }
  await tx.schedule.update({ where: { id: s.id }, data });
}

/** Creates or changes an environment's schedule: fields left out keep their value (or the default). */
/** Refused now rather than failing at every run: a schedule whose snapshots would have nowhere to go. */
async function refuseWithoutDestination(deps: Deps, environmentId: string, scheduleDestinationIds: string[]): Promise<void> {
  if (scheduleDestinationIds.length > 0) return;
  if ((await deps.db.environmentDestination.count({ where: { environmentId } })) > 0) return;
  throw new ConflictError(ErrorCode.NO_DESTINATION, 'This environment has no destination to store scheduled snapshots in: set its destinations first, or name destinations in the schedule');
}

export async function upsertSchedule(deps: Deps, viewer: Viewer, raw: z.input<typeof upsertScheduleInput>): Promise<string> {
  const input = parseInput(upsertScheduleInput, raw);
  const env = await getEnvironment(deps, viewer, input.environmentId);
  const existing = await deps.db.schedule.findUnique({ where: { environmentId: env.id } });
  const fullCron = input.fullCron !== undefined ? input.fullCron : existing?.fullCron;
  if (fullCron && !env.filesPath) throw ValidationError.field(['input', 'fullCron'], 'this environment has no files path; use dbCron, or set filesPath first');
  const filesCron = input.filesCron !== undefined ? input.filesCron : existing?.filesCron;
  if (filesCron && !env.filesPath) throw ValidationError.field(['input', 'filesCron'], 'this environment has no files path; use dbCron, or set filesPath first');
  const destinationIds = input.destinationIds ? [...new Set(input.destinationIds)] : undefined;
  if (destinationIds?.length) {
    await requireVisibleDestinations(deps, viewer, destinationIds);
    // Sending an environment's snapshots somewhere new is what the admin-only
    // setEnvironmentDestinations does; without admin a schedule may only pick among its own.
    if (!viewer.scopes.has('admin')) {
      const own = await deps.db.environmentDestination.count({ where: { environmentId: env.id, destinationId: { in: destinationIds } } });
      if (own !== destinationIds.length) {
        throw ValidationError.field(['input', 'destinationIds'], 'names a destination this environment does not use; choosing other destinations needs the admin scope');
      }
    }
  }
  await refuseWithoutDestination(deps, env.id, destinationIds ?? (existing ? (await deps.db.scheduleDestination.findMany({ where: { scheduleId: existing.id } })).map((d) => d.destinationId) : []));
  // Checked on every save that leaves it on: the server may have changed since it was enabled.
  const walOn = input.walEnabled ?? env.walEnabled;
  const pitrFacts = walOn && (input.walEnabled || !env.pitrClusterId) ? await checkPitrSource(deps, env) : null;
  const fields = {
    ...(input.dbCron !== undefined ? { dbCron: input.dbCron } : {}),
    ...(input.fullCron !== undefined ? { fullCron: input.fullCron } : {}),
    ...(input.filesCron !== undefined ? { filesCron: input.filesCron } : {}),
    ...(input.drillCron !== undefined ? { drillCron: input.drillCron } : {}),
    ...(input.timezone !== undefined ? { timezone: input.timezone } : {}),
    ...(input.enabled !== undefined ? { enabled: input.enabled } : {}),
    ...(input.paused !== undefined ? { paused: input.paused } : {}),
    ...(input.dbRetention !== undefined ? { dbRetention: normalizePolicy(input.dbRetention) } : {}),
    ...(input.fullRetention !== undefined ? { fullRetention: normalizePolicy(input.fullRetention) } : {}),
    ...(input.filesRetention !== undefined ? { filesRetention: normalizePolicy(input.filesRetention) } : {}),
  };
  return deps.db.$transaction(async (tx) => {
    const s = await tx.schedule.upsert({
      where: { environmentId: env.id },
      create: { environmentId: env.id, dbRetention: normalizePolicy(null), fullRetention: normalizePolicy(null), filesRetention: normalizePolicy(null), ...fields },
      update: fields,
    });
    if (destinationIds) {
      await tx.scheduleDestination.deleteMany({ where: { scheduleId: s.id } });
      await tx.scheduleDestination.createMany({ data: destinationIds.map((destinationId) => ({ scheduleId: s.id, destinationId })) });
    }
    await applyPitrSettings(
      tx,
      env.id,
      { walEnabled: input.walEnabled, walRetentionDays: input.walRetentionDays, walArchiveIntervalSeconds: input.walArchiveIntervalSeconds, baseBackupCron: input.baseBackupCron },
      pitrFacts,
    );
    await replan(deps, tx, s, deps.clock.now());
    return s.id;
  });
}

export async function deleteSchedule(deps: Deps, viewer: Viewer, environmentId: string): Promise<string> {
  const s = await requireSchedule(deps, viewer, environmentId);
  await deps.db.$transaction(async (tx) => {
    for (const kind of FIRE_KINDS) await removeJob(tx, scheduleJobKey(s.id, kind));
    await tx.schedule.delete({ where: { id: s.id } });
  });
  return s.id;
}

/** Pausing drops the pending runs; resuming plans from now (runs skipped while paused are not "missed"). */
export async function setSchedulePaused(deps: Deps, viewer: Viewer, environmentId: string, paused: boolean): Promise<string> {
  const s = await requireSchedule(deps, viewer, environmentId);
  await deps.db.$transaction(async (tx) => {
    const updated = await tx.schedule.update({ where: { id: s.id }, data: { paused } });
    await replan(deps, tx, updated, deps.clock.now());
  });
  return s.id;
}

async function scheduledSnapshot(deps: Deps, viewer: Viewer, s: Schedule & { destinations: { destinationId: string }[] }, kind: ScheduleKind, extra: { label: string; idempotencyKey?: string; attempt?: number }) {
  return createSnapshot(
    deps,
    viewer,
    {
      environmentId: s.environmentId,
      includes: kindFields[kind].includes,
      label: extra.label,
      metadata: { schedule: kind, attempt: String(extra.attempt ?? 1) },
      idempotencyKey: extra.idempotencyKey,
    },
    { kind: 'SCHEDULED', scheduleId: s.id, destinationIds: s.destinations.map((d) => d.destinationId) },
  );
}

/** Takes one scheduled snapshot of the kind now, outside the plan (the next planned run stays). */
export async function runScheduleNow(deps: Deps, viewer: Viewer, environmentId: string, kind: ScheduleKind): Promise<{ operationId: string; snapshotId: string }> {
  const s = await requireSchedule(deps, viewer, environmentId);
  if (!s[kindFields[kind].cron]) throw ValidationError.field(['input', 'kind'], `the schedule has no ${kindFields[kind].cron}`);
  const full = await deps.db.schedule.findUniqueOrThrow({ where: { id: s.id }, include: { destinations: true } });
  return scheduledSnapshot(deps, viewer, full, kind, { label: `Scheduled ${kindFields[kind].name} snapshot (run now)` });
}

const fmt = (d: Date, timeZone: string) => `${d.toLocaleString('sv-SE', { timeZone }).slice(0, 16)} (${timeZone})`;

/**
 * The schedule_fire job. Takes the snapshot of the planned run (idempotent: a retried job gets the
 * same snapshot), then claims the run and plans the next one in one transaction.
 */
export async function fireSchedule(deps: Deps, scheduleId: string, kind: FireKind): Promise<void> {
  const s = await deps.db.schedule.findUnique({ where: { id: scheduleId }, include: { destinations: true, environment: { include: { settings: true } } } });
  const f = kindFields[kind];
  if (!s || !s.enabled || s.paused) return;
  const cron = s[f.cron];
  const planned = s[f.next];
  if (!cron || !planned) return;
  const now = deps.clock.now();
  if (planned > now) {
    // Woken before the planned time (a job queued from an older plan, clocks that disagree): a run
    // never happens early, so wait the time still missing, measured from graphile-worker's clock.
    const runAt = new Date(Date.now() + planned.getTime() - now.getTime());
    await enqueueJob(deps.db, 'schedule_fire', { scheduleId, kind }, { jobKey: scheduleJobKey(s.id, kind), runAt, maxAttempts: 5 });
    return;
  }
  let missed = 0;
  let next = nextRun(cron, s.timezone, planned);
  while (next && next <= now) {
    missed++;
    next = nextRun(cron, s.timezone, next);
  }
  const env = s.environment;
  const late = now.getTime() - planned.getTime() > LATE_MS;

  let operationId: string | null = null;
  if (kind === 'DRILL') {
    try {
      ({ operationId } = await startRestoreDrill(deps, systemViewer(env.organizationId), { environmentId: env.id, idempotencyKey: `schedule:${s.id}:${kind}:${planned.toISOString()}` }, { scheduled: true }));
    } catch (err) {
      if (!(err instanceof NotFoundError || err instanceof ValidationError || err instanceof ConflictError)) throw err;
      // No READY snapshot yet, a drill still running: a drill that could not run is a failed one.
      await raiseAlert(deps, { organizationId: env.organizationId, environmentId: env.id, type: 'DRILL_FAILED', severity: 'CRITICAL', message: `Scheduled restore drill of ${env.name} could not start: ${messageOf(err)}` });
    }
  } else if (env.settings?.autoEnabled !== false) {
    try {
      ({ operationId } = await scheduledSnapshot(deps, systemViewer(env.organizationId), s, kind, {
        label: `Scheduled ${f.name} snapshot`,
        idempotencyKey: `schedule:${s.id}:${kind}:${planned.toISOString()}`,
      }));
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (!(err instanceof NotFoundError || err instanceof ValidationError || code === ErrorCode.NO_DESTINATION || code === ErrorCode.ENVIRONMENT_NOT_READY)) throw err;
      // Nothing a retry fixes (no destination, no files path, an environment whose restore failed): say so, and keep the plan going.
      await raiseAlert(deps, { organizationId: env.organizationId, environmentId: env.id, type: 'SNAPSHOT_FAILED', severity: 'CRITICAL', message: `Scheduled ${f.name} snapshot of ${env.name} could not start: ${messageOf(err)}` });
    }
  }

  const claimed = await deps.db.$transaction(async (tx) => {
    // The planned time is taken once: still the schedule's next run, due, and later than its last run.
    const r = await tx.schedule.updateMany({
      where: { id: s.id, [f.next]: { equals: planned, lte: now }, OR: [{ [f.last]: null }, { [f.last]: { lt: planned } }] },
      data: { [f.last]: planned, [f.next]: next },
    });
    if (r.count !== 1) return false;
    if (next) await enqueueJob(tx, 'schedule_fire', { scheduleId: s.id, kind }, { jobKey: scheduleJobKey(s.id, kind), runAt: next, maxAttempts: 5 });
    return true;
  });
  if (claimed && (late || missed > 0)) {
    const more = missed > 0 ? ` and ${missed} later run${missed === 1 ? '' : 's'}` : '';
    await raiseAlert(deps, {
      organizationId: env.organizationId,
      environmentId: env.id,
      operationId,
      type: 'SCHEDULE_MISSED',
      severity: 'WARNING',
      message:
        kind === 'DRILL'
          ? `The restore drill of ${env.name} planned for ${fmt(planned, s.timezone)}${more} did not run on time; one ${operationId ? 'was started' : 'could not start'} at ${fmt(now, s.timezone)} instead`
          : `The ${f.name} snapshot of ${env.name} planned for ${fmt(planned, s.timezone)}${more} did not run on time; one ${env.settings?.autoEnabled === false ? 'was skipped (automatic snapshots are off)' : 'was taken'} at ${fmt(now, s.timezone)} instead`,
    });
  }
}

/**
 * What a failed scheduled snapshot leads to, by the environment's failurePolicy: RETRY takes
 * another one after retryBackoffSeconds · 2^(attempt-1), up to retryCount times; PAUSE_SCHEDULE
 * pauses the schedule; ALERT_ONLY leaves it at the failure alert already raised.
 */
export async function afterScheduledSnapshotFailed(deps: Deps, snapshotId: string): Promise<void> {
  const snap = await deps.db.snapshot.findUnique({ where: { id: snapshotId }, include: { schedule: true, environment: { include: { settings: true } } } });
  if (!snap?.schedule || snap.kind !== 'SCHEDULED') return;
  const settings = snap.environment.settings;
  const policy = settings?.failurePolicy ?? 'ALERT_ONLY';
  if (policy === 'RETRY') {
    const attempt = Number((snap.metadata as Record<string, string> | null)?.attempt ?? '1');
    if (attempt > (settings?.retryCount ?? 3)) return;
    const delayMs = (settings?.retryBackoffSeconds ?? 60) * 1000 * 2 ** (attempt - 1);
    await enqueueJob(deps.db, 'schedule_retry', { snapshotId }, { jobKey: `schedule-retry:${snapshotId}`, runAt: new Date(Date.now() + delayMs), maxAttempts: 3 });
  } else if (policy === 'PAUSE_SCHEDULE' && !snap.schedule.paused) {
    const s = snap.schedule;
    await deps.db.$transaction(async (tx) => {
      const updated = await tx.schedule.update({ where: { id: s.id }, data: { paused: true } });
      await replan(deps, tx, updated, deps.clock.now());
    });
    await raiseAlert(deps, {
      organizationId: snap.organizationId,
      environmentId: snap.environmentId,
      type: 'SNAPSHOT_FAILED',
      severity: 'CRITICAL',
      message: `The schedule of ${snap.environment.name} was paused after a scheduled snapshot failed (failure policy PAUSE_SCHEDULE); resume it when the cause is fixed`,
    });
  }
}

/** The schedule_retry job: another attempt of a failed scheduled snapshot. */
export async function retryScheduledSnapshot(deps: Deps, failedSnapshotId: string): Promise<void> {
  const failed = await deps.db.snapshot.findUnique({ where: { id: failedSnapshotId }, include: { schedule: { include: { destinations: true } } } });
  if (!failed?.schedule || !failed.schedule.enabled || failed.schedule.paused) return;
  const meta = (failed.metadata as Record<string, string> | null) ?? {};
  const kind: ScheduleKind = meta.schedule === 'FULL' || meta.schedule === 'FILES' ? meta.schedule : 'DB';
  const attempt = Number(meta.attempt ?? '1') + 1;
  await scheduledSnapshot(deps, systemViewer(failed.organizationId), failed.schedule, kind, {
    label: `Scheduled ${kindFields[kind].name} snapshot (retry ${attempt - 1})`,
    idempotencyKey: `schedule-retry:${failedSnapshotId}`,
    attempt,
  });
}

/**
 * At worker start: every active schedule gets its pending job back (replacing an identical one),
 * and one whose planned time passed while nothing ran is due now — it runs once, with an alert.
 * Also makes sure the daily retention sweep and the hourly staleness watch are queued.
 */
export async function reconcileSchedules(deps: Deps): Promise<void> {
  const now = deps.clock.now();
  const listed = await deps.db.schedule.findMany({ where: { enabled: true, paused: false }, select: { id: true } });
  for (const { id } of listed) {
    await deps.db.$transaction(async (tx) => {
      // Read again under the row's lock: a fire job that graphile-worker started meanwhile may have
      // claimed a run and queued the next one, and a plan read before that would replace its job
      // with one due now. Its claim takes the same lock, so the two cannot interleave.
      await tx.$queryRawUnsafe('SELECT id FROM schedules WHERE id = $1 FOR UPDATE', id);
      const s = await tx.schedule.findUnique({ where: { id } });
      if (!s || !s.enabled || s.paused) return;
      for (const kind of FIRE_KINDS) {
        const f = kindFields[kind];
        const cron = s[f.cron];
        if (!cron) continue;
        let planned = s[f.next];
        if (!planned) {
          planned = nextRun(cron, s.timezone, now);
          await tx.schedule.update({ where: { id: s.id }, data: { [f.next]: planned } });
        }
        if (!planned) continue;
        await enqueueJob(tx, 'schedule_fire', { scheduleId: s.id, kind }, { jobKey: scheduleJobKey(s.id, kind), runAt: planned <= now ? undefined : planned, maxAttempts: 5 });
      }
    });
  }
  // graphile-worker's own time: these are "soon after start", whatever the injected clock says.
  await ensurePeriodic(deps, 'retention_sweep', 'retention:sweep', new Date(Date.now() + 60_000));
  await ensurePeriodic(deps, 'schedule_watch', 'schedule:watch', new Date(Date.now() + 60_000));
}

/** Queues the next run of a periodic job from inside its current run (replaces any pending one). */
export async function schedulePeriodic(deps: Deps, task: 'retention_sweep' | 'schedule_watch', jobKey: string, runAt: Date): Promise<void> {
  await enqueueJob(deps.db, task, {}, { jobKey, runAt, maxAttempts: 3 });
}

/** Queues a periodic job unless one is already pending (a restart does not push it back). */
export async function ensurePeriodic(deps: Deps, task: 'retention_sweep' | 'schedule_watch', jobKey: string, runAt: Date): Promise<void> {
  const [row] = await deps.db.$queryRawUnsafe<{ n: number }[]>('SELECT count(*)::int AS n FROM graphile_worker.jobs WHERE key = $1', jobKey);
  if (row.n === 0) await enqueueJob(deps.db, task, {}, { jobKey, runAt, maxAttempts: 3 });
}

/**
 * The hourly watch: an environment whose settings allow at most staleAfterHours without a
 * successful snapshot, and has gone longer, gets one SNAPSHOT_STALE alert (until a snapshot
 * succeeds again), so silence is never mistaken for success.
 */
export async function checkStaleness(deps: Deps): Promise<string[]> {
  const now = deps.clock.now();
  const envs = await deps.db.environment.findMany({ where: { settings: { staleAfterHours: { not: null } } }, include: { settings: true } });
  const raised: string[] = [];
  for (const env of envs) {
    const hours = env.settings!.staleAfterHours!;
    const last = await deps.db.snapshot.findFirst({ where: { environmentId: env.id, status: 'READY' }, orderBy: { completedAt: 'desc' }, select: { completedAt: true, createdAt: true } });
    const since = last ? (last.completedAt ?? last.createdAt) : env.createdAt;
    if (now.getTime() - since.getTime() <= hours * 3_600_000) continue;
    const already = await deps.db.alert.count({ where: { environmentId: env.id, type: 'SNAPSHOT_STALE', createdAt: { gte: since }, dismissedAt: null } });
    if (already > 0) continue;
    const ago = Math.floor((now.getTime() - since.getTime()) / 3_600_000);
    raised.push(
      await raiseAlert(deps, {
        organizationId: env.organizationId,
        environmentId: env.id,
        type: 'SNAPSHOT_STALE',
        severity: 'CRITICAL',
        message: last
          ? `No snapshot of ${env.name} has succeeded for ${ago} hours (the environment allows ${hours})`
          : `${env.name} has had no successful snapshot since it was added ${ago} hours ago (the environment allows ${hours})`,
      }),
    );
  }
  return raised;
}
