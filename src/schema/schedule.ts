import { previewRetention, RETENTION_RULES, type RetentionPolicy } from '../services/retention.ts';
import { CRON_PRESETS, deleteSchedule, getSchedule, runScheduleNow, SCHEDULE_KINDS, setSchedulePaused, upsertSchedule } from '../services/schedules.ts';
import { typeAccess, visibleWhere } from './access.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { encodeGlobalID, parseId, parseIds } from './ids.ts';
import { DeletePayload } from './project.ts';
import { SnapshotOperationPayload } from './snapshot.ts';
import { viewerOf } from './viewer-of.ts';

export const ScheduleKindEnum = builder.enumType('ScheduleKind', {
  values: SCHEDULE_KINDS,
  description: 'DB: database-only snapshots (dbCron); FULL: database and files (fullCron); FILES: files only, volume backups (filesCron)',
});
const RetentionRuleEnum = builder.enumType('RetentionRule', { values: RETENTION_RULES, description: 'Why retention keeps or deletes a snapshot' });
const RetentionActionEnum = builder.enumType('RetentionAction', { values: ['KEEP', 'DELETE'] as const });

const POLICY_DOCS = {
  last: 'Keep the newest N snapshots of this kind',
  hourly: 'Keep the newest snapshot of each of the last N hours that have one',
  daily: 'Keep the newest snapshot of each of the last N days that have one',
  weekly: 'Keep the newest snapshot of each of the last N ISO weeks that have one',
  monthly: 'Keep the newest snapshot of each of the last N months that have one',
  hourlyWithinHours: 'Keep the newest snapshot of each hour within the last N hours',
  dailyWithinDays: 'Keep the newest snapshot of each day within the last N days',
  weeklyWithinWeeks: 'Keep the newest snapshot of each ISO week within the last N weeks',
  monthlyWithinMonths: 'Keep the newest snapshot of each month within the last N months',
  maxAgeDays: 'Delete snapshots of this kind older than this, whatever the other rules say',
} as const;
const POLICY_FIELDS = Object.keys(POLICY_DOCS) as (keyof typeof POLICY_DOCS)[];

const RetentionPolicyType = builder.objectRef<RetentionPolicy>('RetentionPolicy').implement({
  description: 'Which scheduled snapshots of one kind to keep: the last N, grandfather-father-son counts and age windows per tier (hours, days, ISO weeks, months), and an age limit; a snapshot any rule keeps is kept',
  fields: (t) => Object.fromEntries(POLICY_FIELDS.map((f) => [f, t.int({ nullable: true, description: POLICY_DOCS[f], resolve: (p) => p[f] ?? null })])),
});

export const RetentionPolicyInput = builder.inputType('RetentionPolicyInput', {
  fields: (t) => ({
    last: t.int({ description: POLICY_DOCS.last }),
    hourly: t.int({ description: POLICY_DOCS.hourly }),
    daily: t.int({ description: POLICY_DOCS.daily }),
    weekly: t.int({ description: POLICY_DOCS.weekly }),
    monthly: t.int({ description: POLICY_DOCS.monthly }),
    hourlyWithinHours: t.int({ description: POLICY_DOCS.hourlyWithinHours }),
    dailyWithinDays: t.int({ description: POLICY_DOCS.dailyWithinDays }),
    weeklyWithinWeeks: t.int({ description: POLICY_DOCS.weeklyWithinWeeks }),
    monthlyWithinMonths: t.int({ description: POLICY_DOCS.monthlyWithinMonths }),
    maxAgeDays: t.int({ description: POLICY_DOCS.maxAgeDays }),
  }),
});

const policyOf = (p: typeof RetentionPolicyInput.$inferInput | null | undefined): RetentionPolicy | undefined => (p ? { ...p } : undefined);

export const Schedule = builder.prismaNode('Schedule', {
  authScopes: typeAccess('Schedule'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  description: "An environment's automatic snapshots: up to three five-field crons (database, full, files) in one IANA timezone, with retention for each",
  fields: (t) => ({
    environment: t.relation('environment'),
    dbCron: t.exposeString('dbCron', { nullable: true, description: 'Database-only snapshots (minute hour day-of-month month day-of-week)' }),
    fullCron: t.exposeString('fullCron', { nullable: true, description: 'Database and files snapshots' }),
    filesCron: t.exposeString('filesCron', { nullable: true, description: 'Files-only snapshots (volume backups)' }),
    drillCron: t.exposeString('drillCron', { nullable: true, description: 'Restore drills: the newest READY snapshot restored into scratch copies, checked and dropped (see runRestoreDrill)' }),
    timezone: t.exposeString('timezone'),
    enabled: t.exposeBoolean('enabled'),
    paused: t.exposeBoolean('paused'),
    dbRetention: t.field({ type: RetentionPolicyType, select: { dbRetention: true }, resolve: (s) => (s.dbRetention ?? {}) as RetentionPolicy }),
    fullRetention: t.field({ type: RetentionPolicyType, select: { fullRetention: true }, resolve: (s) => (s.fullRetention ?? {}) as RetentionPolicy }),
    filesRetention: t.field({ type: RetentionPolicyType, select: { filesRetention: true }, resolve: (s) => (s.filesRetention ?? {}) as RetentionPolicy }),
    nextDbRunAt: t.expose('nextDbRunAt', { type: 'DateTime', nullable: true }),
    nextFullRunAt: t.expose('nextFullRunAt', { type: 'DateTime', nullable: true }),
    nextFilesRunAt: t.expose('nextFilesRunAt', { type: 'DateTime', nullable: true }),
    lastDbRunAt: t.expose('lastDbRunAt', { type: 'DateTime', nullable: true }),
    lastFullRunAt: t.expose('lastFullRunAt', { type: 'DateTime', nullable: true }),
    lastFilesRunAt: t.expose('lastFilesRunAt', { type: 'DateTime', nullable: true }),
    nextDrillRunAt: t.expose('nextDrillRunAt', { type: 'DateTime', nullable: true }),
    lastDrillRunAt: t.expose('lastDrillRunAt', { type: 'DateTime', nullable: true }),
    destinations: t.prismaField({
      type: ['Destination'],
      description: "Where scheduled snapshots go; empty: the environment's default destinations",
      select: { id: true },
      resolve: (query, s, _a, ctx) => ctx.deps.db.destination.findMany({ ...query, where: visibleWhere(ctx, 'Destination', { schedules: { some: { scheduleId: s.id } } }), orderBy: { createdAt: 'asc' } }),
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.prismaObjectFields('Environment', (t) => ({
  schedule: t.relation('schedule', { nullable: true, description: 'Automatic snapshots; null when there is no schedule' }),
}));

builder.prismaObjectFields('Project', (t) => ({
  schedules: t.prismaConnection({
    type: 'Schedule',
    cursor: 'id',
    description: 'The schedules of every environment of this project, oldest first',
    totalCount: (p, _args, ctx) => ctx.deps.db.schedule.count({ where: visibleWhere(ctx, 'Schedule', { environment: { projectId: p.id } }) }),
    resolve: (query, p, _args, ctx) => ctx.deps.db.schedule.findMany({ ...query, where: visibleWhere(ctx, 'Schedule', { environment: { projectId: p.id } }), orderBy: { id: 'asc' } }),
  }),
}));

const CronPreset = builder.objectRef<(typeof CRON_PRESETS)[number]>('CronPreset').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    cron: t.exposeString('cron'),
    description: t.exposeString('description'),
  }),
});

const RetentionDecision = builder.objectRef<{ snapshotId: string; action: 'KEEP' | 'DELETE'; rule: (typeof RETENTION_RULES)[number] }>('RetentionDecision').implement({
  fields: (t) => ({
    snapshot: t.prismaField({ type: 'Snapshot', resolve: (q, d, _a, ctx) => ctx.deps.db.snapshot.findUniqueOrThrow({ ...q, where: { id: d.snapshotId } }) }),
    action: t.field({ type: RetentionActionEnum, resolve: (d) => d.action }),
    rule: t.field({ type: RetentionRuleEnum, resolve: (d) => d.rule }),
  }),
});

export const RetentionPreview = builder.objectRef<{ environmentId: string; decisions: { snapshotId: string; action: 'KEEP' | 'DELETE'; rule: (typeof RETENTION_RULES)[number] }[] }>('RetentionPreview').implement({
  description: "What retention would do now, newest snapshot first; applying the same policy deletes exactly `delete`",
  fields: (t) => ({
    keep: t.field({ type: [RetentionDecision], resolve: (p) => p.decisions.filter((d) => d.action === 'KEEP') }),
    delete: t.field({ type: [RetentionDecision], resolve: (p) => p.decisions.filter((d) => d.action === 'DELETE') }),
  }),
});

const PreviewRetentionInput = builder.inputType('PreviewRetentionInput', {
  description: "Parts to try instead of the environment's current policy; parts left out stay as they are",
  fields: (t) => ({
    db: t.field({ type: RetentionPolicyInput }),
    full: t.field({ type: RetentionPolicyInput }),
    files: t.field({ type: RetentionPolicyInput }),
    retentionDays: t.int({ description: 'Age limit of manual and pre-deploy snapshots' }),
  }),
});

builder.queryFields((t) => ({
  schedule: t.prismaField({
    type: 'Schedule',
    nullable: true,
    authScopes: { read: true },
    description: "An environment's schedule; null when it has none or the environment is not visible",
    args: { environmentId: t.arg.id({ required: true }) },
    resolve: async (query, _root, { environmentId }, ctx) => {
      let envId: string;
      try {
        envId = parseId(String(environmentId), 'Environment', ['environmentId']);
      } catch {
        return null;
      }
      const s = await getSchedule(ctx.deps, viewerOf(ctx), envId).catch(() => null);
      return s ? ctx.deps.db.schedule.findUnique({ ...query, where: { id: s.id } }) : null;
    },
  }),
  cronPresets: t.field({
    type: [CronPreset],
    authScopes: { read: true },
    description: 'Common schedules with their cron expressions',
    resolve: () => [...CRON_PRESETS],
  }),
  previewRetention: t.field({
    type: RetentionPreview,
    authScopes: { read: true },
    errors: { types: allErrors, directResult: true, union: { name: 'PreviewRetentionResult' } },
    args: { environmentId: t.arg.id({ required: true }), policy: t.arg({ type: PreviewRetentionInput }) },
    resolve: async (_root, { environmentId, policy }, ctx) => {
      const envId = parseId(String(environmentId), 'Environment', ['environmentId']);
      const decisions = await previewRetention(ctx.deps, viewerOf(ctx), envId, {
        db: policyOf(policy?.db),
        full: policyOf(policy?.full),
        files: policyOf(policy?.files),
        ...(policy && 'retentionDays' in policy ? { retentionDays: policy.retentionDays } : {}),
      });
      return { environmentId: envId, decisions };
    },
  }),
}));

const UpsertScheduleInput = builder.inputType('UpsertScheduleInput', {
  description: 'Fields left out keep their value; dbCron, fullCron, filesCron or drillCron null turns that kind off',
  fields: (t) => ({
    environmentId: t.id({ required: true }),
    dbCron: t.string({ description: 'Five fields: minute hour day-of-month month day-of-week' }),
    fullCron: t.string({ description: 'Five fields: minute hour day-of-month month day-of-week' }),
    filesCron: t.string({ description: 'Files-only snapshots (volume backups); five fields' }),
    drillCron: t.string({ description: 'Restore drills; five fields as above' }),
    timezone: t.string({ description: 'IANA name, e.g. Europe/Berlin (default UTC)' }),
    destinationIds: t.idList({ description: "Empty: the environment's default destinations" }),
    enabled: t.boolean(),
    paused: t.boolean(),
    dbRetention: t.field({ type: RetentionPolicyInput }),
    fullRetention: t.field({ type: RetentionPolicyInput }),
    filesRetention: t.field({ type: RetentionPolicyInput }),
    walEnabled: t.boolean({ description: "Point-in-time recovery: stream the server's WAL and take base backups. Enabling checks the server first (wal_level, max_wal_senders, the REPLICATION privilege, its version)" }),
    walRetentionDays: t.int({ description: 'WAL and base backups older than this many days may be pruned (null: kept)' }),
    walArchiveIntervalSeconds: t.int({ description: 'The current partial WAL segment is uploaded at least this often (default 60)' }),
    baseBackupCron: t.string({ description: "Base backups of the environment's cluster, five fields, UTC (default daily, 0 3 * * *)" }),
  }),
});

const ScheduleEnvironmentInput = builder.inputType('ScheduleEnvironmentInput', { fields: (t) => ({ environmentId: t.id({ required: true }) }) });
const RunScheduleNowInput = builder.inputType('RunScheduleNowInput', {
  fields: (t) => ({ environmentId: t.id({ required: true }), kind: t.field({ type: ScheduleKindEnum, required: true }) }),
});

const SchedulePayload = builder.objectRef<{ scheduleId: string }>('SchedulePayload').implement({
  fields: (t) => ({
    schedule: t.prismaField({ type: 'Schedule', resolve: (q, p, _a, ctx) => ctx.deps.db.schedule.findUniqueOrThrow({ ...q, where: { id: p.scheduleId } }) }),
  }),
});

const envIdOf = (input: { environmentId: string | number }) => parseId(String(input.environmentId), 'Environment', ['input', 'environmentId']);

builder.mutationFields((t) => ({
  upsertSchedule: t.field({
    type: SchedulePayload,
    authScopes: { write: true },
    description: "Creates or changes an environment's schedule; the next runs are planned at once",
    errors: { types: allErrors, directResult: true, union: { name: 'UpsertScheduleResult' } },
    args: { input: t.arg({ type: UpsertScheduleInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      scheduleId: await upsertSchedule(ctx.deps, viewerOf(ctx), {
        environmentId: envIdOf(input),
        dbCron: input.dbCron,
        fullCron: input.fullCron,
        filesCron: input.filesCron,
        drillCron: input.drillCron,
        timezone: input.timezone ?? undefined,
        destinationIds: input.destinationIds ? parseIds(input.destinationIds.map(String), 'Destination', ['input', 'destinationIds']) : undefined,
        enabled: input.enabled ?? undefined,
        paused: input.paused ?? undefined,
        dbRetention: policyOf(input.dbRetention),
        fullRetention: policyOf(input.fullRetention),
        filesRetention: policyOf(input.filesRetention),
        walEnabled: input.walEnabled ?? undefined,
        walRetentionDays: input.walRetentionDays,
        walArchiveIntervalSeconds: input.walArchiveIntervalSeconds ?? undefined,
        baseBackupCron: input.baseBackupCron ?? undefined,
      }),
    }),
  }),
  deleteSchedule: t.field({
    type: DeletePayload,
    authScopes: { write: true },
    errors: { types: allErrors, directResult: true, union: { name: 'DeleteScheduleResult' } },
    args: { input: t.arg({ type: ScheduleEnvironmentInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = await deleteSchedule(ctx.deps, viewerOf(ctx), envIdOf(input));
      return { deletedId: encodeGlobalID('Schedule', id) };
    },
  }),
  pauseSchedule: t.field({
    type: SchedulePayload,
    authScopes: { write: true },
    errors: { types: allErrors, directResult: true, union: { name: 'PauseScheduleResult' } },
    args: { input: t.arg({ type: ScheduleEnvironmentInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({ scheduleId: await setSchedulePaused(ctx.deps, viewerOf(ctx), envIdOf(input), true) }),
  }),
  resumeSchedule: t.field({
    type: SchedulePayload,
    authScopes: { write: true },
    description: 'Plans the next runs from now; runs skipped while paused are not made up',
    errors: { types: allErrors, directResult: true, union: { name: 'ResumeScheduleResult' } },
    args: { input: t.arg({ type: ScheduleEnvironmentInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({ scheduleId: await setSchedulePaused(ctx.deps, viewerOf(ctx), envIdOf(input), false) }),
  }),
  runScheduleNow: t.field({
    type: SnapshotOperationPayload,
    authScopes: { write: true },
    description: 'Takes one scheduled snapshot of the kind now; the planned runs stay as they are',
    errors: { types: allErrors, directResult: true, union: { name: 'RunScheduleNowResult' } },
    args: { input: t.arg({ type: RunScheduleNowInput, required: true }) },
    resolve: (_root, { input }, ctx) => runScheduleNow(ctx.deps, viewerOf(ctx), envIdOf(input), input.kind),
  }),
}));
