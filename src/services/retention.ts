import { z } from 'zod';
import { parseInput } from '../domain/validation.ts';
import type { Snapshot } from '../generated/prisma/client.ts';
import { raiseAlert } from './alerts.ts';
import type { Deps } from './deps.ts';
import { getEnvironment } from './environments.ts';
import { enqueueRetention } from './follow-ups.ts';
import { beginOperation, finishOperation } from './operations.ts';
import { requestSnapshotDeletion } from './snapshot-lifecycle.ts';
import type { Viewer } from './viewer.ts';

// Lives with the other follow-up jobs (the snapshot job starts retention); still exported here.
export { enqueueRetention };

/**
 * Retention decides which READY snapshots of an environment to delete. Scheduled snapshots follow
 * a policy per kind (database-only "db", database and files "full", files-only "files"): the newest
 * N (`last`), and grandfather-father-son tiers — the newest snapshot of each of the last N hours,
 * days, ISO weeks and months, and of each such bucket within an age window — buckets counted in the
 * schedule's timezone, as restic's `forget --keep-*` and `--keep-within-*` do; an optional age limit
 * caps them. Manual and pre-deploy snapshots expire at their expiresAt (from the environment's
 * retentionDays); safety snapshots too. Pinned snapshots and the newest READY snapshot are always kept.
 *
 * The plan is one pure function: previewRetention shows it, applyRetention deletes exactly what
 * it says through the ordinary delete job.
 */

const count = z.number().int('must be a whole number').min(0, 'must not be negative').max(10_000, 'must be at most 10000');

const window = (max: number) => z.number().int('must be a whole number').min(1, 'must be at least 1').max(max, `must be at most ${max}`);

/**
 * Retention of one kind of scheduled snapshot: keep the newest `last`; GFS counts (the newest of
 * each of the last N hours, days, ISO weeks, months that have a snapshot); GFS age windows (the
 * newest of each hour, day, week, month that began within the window, counted back from now);
 * and an age limit over all of them. A snapshot any of the first three keeps is kept.
 */
export const retentionPolicy = z.object({
  last: count.nullish(),
  hourly: count.nullish(),
  daily: count.nullish(),
  weekly: count.nullish(),
  monthly: count.nullish(),
  hourlyWithinHours: window(876_000).nullish(),
  dailyWithinDays: window(36_500).nullish(),
  weeklyWithinWeeks: window(5_200).nullish(),
  monthlyWithinMonths: window(1_200).nullish(),
  maxAgeDays: z.number().int('must be a whole number').min(1, 'must be at least 1').max(36_500, 'must be at most 36500').nullish(),
});
export type RetentionPolicy = z.infer<typeof retentionPolicy>;

const POLICY_FIELDS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'hourlyWithinHours', 'dailyWithinDays', 'weeklyWithinWeeks', 'monthlyWithinMonths', 'maxAgeDays'] as const;

/** The stored form: every field present. */
export function normalizePolicy(p: RetentionPolicy | null | undefined): Required<{ [K in keyof RetentionPolicy]: number | null }> {
  return Object.fromEntries(POLICY_FIELDS.map((f) => [f, p?.[f] ?? null])) as Required<{ [K in keyof RetentionPolicy]: number | null }>;
}

export const RETENTION_RULES = [
  'PINNED',
  'NEWEST',
  'LAST',
  'HOURLY',
  'DAILY',
  'WEEKLY',
  'MONTHLY',
  'WITHIN_AGE_LIMIT',
  'NO_LIMIT',
  'SAFETY_PERIOD',
  'OLDER_THAN_AGE_LIMIT',
  'OUTSIDE_GFS',
  'EXPIRED',
] as const;
export type RetentionRule = (typeof RETENTION_RULES)[number];

export interface RetentionDecision {
  snapshotId: string;
  action: 'KEEP' | 'DELETE';
  rule: RetentionRule;
}

export interface FullPolicy {
  db: RetentionPolicy;
  full: RetentionPolicy;
  /** Files-only scheduled snapshots (volume backups); left out: no policy, all kept. */
  files?: RetentionPolicy;
  /** Age limit in days for MANUAL and PRE_DEPLOY snapshots; null keeps them. */
  retentionDays: number | null;
  safetyRetentionDays: number;
  timezone: string;
}

type Candidate = Pick<Snapshot, 'id' | 'kind' | 'includes' | 'pinned' | 'createdAt' | 'expiresAt'>;

const DAY_MS = 86_400_000;

/** Local calendar parts of an instant in a timezone. */
function localParts(d: Date, timeZone: string): { y: number; m: number; day: number; h: number } {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', hourCycle: 'h23' }).formatToParts(d);
  const get = (t: string) => Number(parts.find((p) => p.type === t)!.value);
  return { y: get('year'), m: get('month'), day: get('day'), h: get('hour') };
}

/** ISO 8601 week of a calendar date, as "YYYY-Www". */
function isoWeek(y: number, m: number, day: number): string {
  const d = new Date(Date.UTC(y, m - 1, day));
  d.setUTCDate(d.getUTCDate() + 4 - (d.getUTCDay() || 7));
  const week = Math.ceil(((d.getTime() - Date.UTC(d.getUTCFullYear(), 0, 1)) / DAY_MS + 1) / 7);
  return `${d.getUTCFullYear()}-W${week}`;
}

const LEVELS = [
  ['hourly', 'HOURLY', 'hourlyWithinHours'],
  ['daily', 'DAILY', 'dailyWithinDays'],
  ['weekly', 'WEEKLY', 'weeklyWithinWeeks'],
  ['monthly', 'MONTHLY', 'monthlyWithinMonths'],
] as const;

/** The start of a level's age window: `n` hours, days, weeks or calendar months before now. */
function windowStart(level: (typeof LEVELS)[number][0], n: number, now: Date): Date {
  if (level === 'hourly') return new Date(now.getTime() - n * 3_600_000);
  if (level === 'daily') return new Date(now.getTime() - n * DAY_MS);
  if (level === 'weekly') return new Date(now.getTime() - n * 7 * DAY_MS);
  const d = new Date(now);
  d.setUTCMonth(d.getUTCMonth() - n);
  return d;
}

function bucketKey(level: (typeof LEVELS)[number][0], d: Date, tz: string): string {
  const p = localParts(d, tz);
  if (level === 'hourly') return `${p.y}-${p.m}-${p.day}T${p.h}`;
  if (level === 'daily') return `${p.y}-${p.m}-${p.day}`;
  if (level === 'weekly') return isoWeek(p.y, p.m, p.day);
  return `${p.y}-${p.m}`;
}

/**
 * The retention plan for an environment's READY snapshots (any order). Each snapshot gets one
 * decision and the rule behind it.
 */
export function planRetention(snapshots: Candidate[], policy: FullPolicy, now: Date): RetentionDecision[] {
  const sorted = [...snapshots].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
  const decisions = new Map<string, RetentionDecision>();
  const decide = (s: Candidate, action: 'KEEP' | 'DELETE', rule: RetentionRule) => decisions.set(s.id, { snapshotId: s.id, action, rule });
  const ageDays = (s: Candidate) => (now.getTime() - s.createdAt.getTime()) / DAY_MS;

  const scheduled: Record<'db' | 'full' | 'files', Candidate[]> = { db: [], full: [], files: [] };
  sorted.forEach((s) => {
    if (s.pinned) return decide(s, 'KEEP', 'PINNED');
    // Manual and pre-deploy snapshots get theirs from retentionDays, their age limit (older ones may lack it).
    if (s.expiresAt) {
      const safety = s.kind === 'SAFETY';
      return s.expiresAt <= now ? decide(s, 'DELETE', safety ? 'EXPIRED' : 'OLDER_THAN_AGE_LIMIT') : decide(s, 'KEEP', safety ? 'SAFETY_PERIOD' : 'WITHIN_AGE_LIMIT');
    }
    if (s.kind === 'SAFETY') {
      return ageDays(s) > policy.safetyRetentionDays ? decide(s, 'DELETE', 'EXPIRED') : decide(s, 'KEEP', 'SAFETY_PERIOD');
    }
    // An import is a person's act like a manual snapshot: kept by the same age limit, never by GFS.
    if (s.kind === 'MANUAL' || s.kind === 'PRE_DEPLOY' || s.kind === 'IMPORT') {
      if (policy.retentionDays == null) return decide(s, 'KEEP', 'NO_LIMIT');
      return ageDays(s) > policy.retentionDays ? decide(s, 'DELETE', 'OLDER_THAN_AGE_LIMIT') : decide(s, 'KEEP', 'WITHIN_AGE_LIMIT');
    }
    scheduled[!s.includes.includes('FILES') ? 'db' : s.includes.includes('DB') ? 'full' : 'files'].push(s);
  });

  for (const kind of ['db', 'full', 'files'] as const) {
    const p = policy[kind] ?? {};
    const left = { hourly: p.hourly ?? 0, daily: p.daily ?? 0, weekly: p.weekly ?? 0, monthly: p.monthly ?? 0 };
    const windows = Object.fromEntries(LEVELS.map(([level, , field]) => [level, p[field] != null ? windowStart(level, p[field], now) : null])) as Record<(typeof LEVELS)[number][0], Date | null>;
    const levels = LEVELS.filter(([level]) => left[level] > 0 || windows[level] !== null);
    let lastLeft = p.last ?? 0;
    const any = lastLeft > 0 || levels.length > 0;
    const lastKey: Record<string, string | undefined> = {};
    for (const s of scheduled[kind]) {
      if (p.maxAgeDays != null && ageDays(s) > p.maxAgeDays) {
        decide(s, 'DELETE', 'OLDER_THAN_AGE_LIMIT');
        continue;
      }
      if (!any) {
        decide(s, 'KEEP', p.maxAgeDays != null ? 'WITHIN_AGE_LIMIT' : 'NO_LIMIT');
        continue;
      }
      let rule: RetentionRule | null = null;
      if (lastLeft > 0) {
        lastLeft--;
        rule = 'LAST';
      }
      // Newest first: a snapshot opening a new bucket of a level is kept while the level's count
      // has room (each bucket uses one, as restic's --keep-daily), or when the bucket lies in the
      // level's window (as --keep-within-daily). Every level counts, whichever rule is named.
      for (const [level, name] of levels) {
        const k = bucketKey(level, s.createdAt, policy.timezone);
        if (k === lastKey[level]) continue;
        lastKey[level] = k;
        if (left[level] > 0) {
          left[level]--;
          rule ??= name;
        } else if (windows[level] && s.createdAt >= windows[level]) {
          rule ??= name;
        }
      }
      decide(s, rule ? 'KEEP' : 'DELETE', rule ?? 'OUTSIDE_GFS');
    }
  }
  // The newest READY snapshot is never deleted, whatever the policy says; it still counted in its GFS buckets.
  const newest = sorted[0];
  if (newest && decisions.get(newest.id)?.action === 'DELETE') decide(newest, 'KEEP', 'NEWEST');
  return sorted.map((s) => decisions.get(s.id)!);
}

/** The policy in force for an environment: its schedule's GFS (or none) and its settings. */
export async function currentPolicy(deps: Deps, environmentId: string): Promise<FullPolicy> {
  const [schedule, settings] = await Promise.all([
    deps.db.schedule.findUnique({ where: { environmentId } }),
    deps.db.environmentSettings.findUnique({ where: { environmentId } }),
  ]);
  return {
    db: (schedule?.dbRetention as RetentionPolicy | null) ?? {},
    full: (schedule?.fullRetention as RetentionPolicy | null) ?? {},
    files: (schedule?.filesRetention as RetentionPolicy | null) ?? {},
    retentionDays: settings?.retentionDays ?? null,
    safetyRetentionDays: settings?.safetyRetentionDays ?? 7,
    timezone: schedule?.timezone ?? 'UTC',
  };
}

export const previewRetentionInput = z.object({
  db: retentionPolicy.nullish(),
  full: retentionPolicy.nullish(),
  files: retentionPolicy.nullish(),
  retentionDays: z.number().int('must be a whole number').min(1, 'must be at least 1').max(36_500, 'must be at most 36500').nullish(),
});

async function candidates(deps: Deps, environmentId: string) {
  return deps.db.snapshot.findMany({
    where: { environmentId, status: 'READY' },
    select: { id: true, kind: true, includes: true, pinned: true, createdAt: true, expiresAt: true },
  });
}

/**
 * What retention would do now: the environment's current policy, with any part the caller gives
 * replaced (`retentionDays: null` is "keep manual snapshots"; leaving it out keeps the setting).
 */
export async function previewRetention(deps: Deps, viewer: Viewer, environmentId: string, raw: z.input<typeof previewRetentionInput> = {}): Promise<RetentionDecision[]> {
  const input = parseInput(previewRetentionInput, raw, ['policy']);
  const env = await getEnvironment(deps, viewer, environmentId);
  const policy = await currentPolicy(deps, env.id);
  if (input.db) policy.db = input.db;
  if (input.full) policy.full = input.full;
  if (input.files) policy.files = input.files;
  let snapshots = await candidates(deps, env.id);
  if (input.retentionDays !== undefined) {
    policy.retentionDays = input.retentionDays;
    // As updateEnvironmentSettings would store it: every manual and pre-deploy snapshot's expiry moves.
    const days = input.retentionDays;
    snapshots = snapshots.map((s) => (s.kind === 'MANUAL' || s.kind === 'PRE_DEPLOY' ? { ...s, expiresAt: days == null ? null : new Date(s.createdAt.getTime() + days * DAY_MS) } : s));
  }
  return planRetention(snapshots, policy, deps.clock.now());
}

/**
 * The retention job: plans with the current policy and deletes what the plan says, through the
 * delete job of each snapshot, recorded as a RETENTION operation; an alert lists what went.
 */
export async function applyRetention(deps: Deps, environmentId: string): Promise<{ operationId: string | null; deleted: string[] }> {
  const env = await deps.db.environment.findUnique({ where: { id: environmentId } });
  if (!env) return { operationId: null, deleted: [] };
  const plan = planRetention(await candidates(deps, env.id), await currentPolicy(deps, env.id), deps.clock.now());
  const doomed = plan.filter((d) => d.action === 'DELETE');
  if (doomed.length === 0) return { operationId: null, deleted: [] };
  const op = await deps.db.operation.create({ data: { organizationId: env.organizationId, environmentId: env.id, type: 'RETENTION', phase: 'queued' } });
  await beginOperation(deps, op.id);
  const deleted: string[] = [];
  for (const d of doomed) {
    // A snapshot pinned or deleted since the plan was made is simply skipped.
    const done = await requestSnapshotDeletion(deps, d.snapshotId).catch((err) => {
      deps.logger.warn({ err, snapshotId: d.snapshotId }, 'retention could not delete a snapshot');
      return null;
    });
    if (done) deleted.push(d.snapshotId);
  }
  const rules = [...new Set(doomed.filter((d) => deleted.includes(d.snapshotId)).map((d) => d.rule.toLowerCase().replaceAll('_', ' ')))].join(', ');
  await deps.db.operation.update({ where: { id: op.id }, data: { message: `Deleting ${deleted.length} snapshot(s)` } });
  await finishOperation(deps, op.id, 'SUCCEEDED');
  if (deleted.length > 0) {
    await raiseAlert(deps, {
      organizationId: env.organizationId,
      environmentId: env.id,
      operationId: op.id,
      type: 'RETENTION_DELETED',
      severity: 'INFO',
      message: `Retention deleted ${deleted.length} snapshot(s) of ${env.name} (${rules})`,
    });
  }
  return { operationId: op.id, deleted };
}

/** The daily sweep: a retention run for every environment. */
export async function sweepRetention(deps: Deps): Promise<number> {
  const envs = await deps.db.environment.findMany({ select: { id: true } });
  for (const e of envs) await enqueueRetention(deps.db, e.id);
  return envs.length;
}
