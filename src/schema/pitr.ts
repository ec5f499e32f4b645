import { PitrGapReason } from '../generated/prisma/enums.ts';
import { createBaseBackup } from '../services/pitr-base-backups.ts';
import { planPitrRetention } from '../services/pitr-retention.ts';
import { clusterArchives, windowOf, windowWithoutArchive, type RecoveryGap, type RecoveryWindow } from '../services/pitr-window.ts';
import { typeAccess } from './access.ts';
import { batched } from './batch.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { parseId } from './ids.ts';
import { OperationStarted } from './operation.ts';
import { RetentionPreview } from './schedule.ts';
import { viewerOf } from './viewer-of.ts';

const PitrGapReasonEnum = builder.enumType(PitrGapReason, { name: 'PitrGapReason' });
const PitrStatusEnum = builder.enumType('PitrStatus', {
  values: ['OFF', 'STARTING', 'ARCHIVING', 'LAGGING'] as const,
  description: 'OFF: not enabled; STARTING: no base backup with archived WAL after it yet; LAGGING: nothing archived for two archive intervals',
});
const SnapshotStatusRef = builder.enumType('BaseBackupStatus', { values: ['CREATING', 'READY', 'FAILED', 'DAMAGED', 'DELETING', 'DELETED'] as const });

export const BaseBackup = builder.prismaObject('BaseBackup', {
  authScopes: typeAccess('BaseBackup'),
  description: "A pg_basebackup of the environment's PostgreSQL cluster, stored as a `pitr-base` snapshot in each destination's repository",
  fields: (t) => ({
    id: t.exposeID('id'),
    status: t.field({ type: SnapshotStatusRef, select: { status: true }, resolve: (b) => b.status }),
    error: t.exposeString('error', { nullable: true }),
    timeline: t.exposeInt('timeline', { nullable: true }),
    startWal: t.exposeString('startWal', { nullable: true, description: 'The first WAL segment recovery needs' }),
    endWal: t.exposeString('endWal', { nullable: true, description: 'Replayed up to here, the backup is consistent' }),
    startLsn: t.exposeString('startLsn', { nullable: true }),
    endLsn: t.exposeString('endLsn', { nullable: true }),
    sizeBytes: t.expose('sizeBytes', { type: 'BigInt' }),
    addedBytes: t.expose('addedBytes', { type: 'BigInt', description: 'Bytes the repositories grew by (new chunks in their packs, pack headers, index and snapshot files), summed over destinations; chunks already stored are not counted' }),
    startedAt: t.expose('startedAt', { type: 'DateTime' }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true, description: 'The earliest time it can recover to' }),
  }),
});

const PitrGap = builder.objectRef<RecoveryGap>('PitrGap').implement({
  description: 'A stretch of time the WAL archive cannot recover to',
  fields: (t) => ({
    reason: t.field({ type: PitrGapReasonEnum, resolve: (g) => g.reason }),
    from: t.field({ type: 'DateTime', resolve: (g) => g.from }),
    to: t.field({ type: 'DateTime', nullable: true, description: 'null: open until the next base backup finishes', resolve: (g) => g.to }),
    detail: t.string({ nullable: true, resolve: (g) => g.detail }),
  }),
});

const PitrTimelineSwitch = builder.objectRef<RecoveryWindow['timelineSwitches'][number]>('PitrTimelineSwitch').implement({
  description: 'A new timeline of the PostgreSQL cluster (a standby promoted) that the WAL archive followed: its history file is archived, so recovery crosses it',
  fields: (t) => ({
    timeline: t.int({ resolve: (s) => s.timeline }),
    parentTimeline: t.int({ resolve: (s) => s.parentTimeline }),
    switchLsn: t.string({ description: 'Where the new timeline leaves its parent (the WAL position, from the history file)', resolve: (s) => s.switchLsn }),
    seenAt: t.field({ type: 'DateTime', description: 'When the WAL streamer first saw the new timeline', resolve: (s) => s.seenAt }),
  }),
});

const PointInTimeRecovery = builder.objectRef<RecoveryWindow>('PointInTimeRecovery').implement({
  description: 'The recovery window, from the catalog: any time from earliestRecoveryTime to latestRecoveryTime outside the gaps',
  fields: (t) => ({
    enabled: t.boolean({ resolve: (w) => w.enabled }),
    status: t.field({ type: PitrStatusEnum, resolve: (w) => w.status }),
    systemIdentifier: t.string({ nullable: true, description: "The PostgreSQL cluster's system identifier (the `cluster:` tag in the repositories)", resolve: (w) => w.systemIdentifier }),
    earliestRecoveryTime: t.field({ type: 'DateTime', nullable: true, resolve: (w) => w.earliest }),
    latestRecoveryTime: t.field({ type: 'DateTime', nullable: true, resolve: (w) => w.latest }),
    lagSeconds: t.int({ nullable: true, description: 'Seconds since the newest archived moment', resolve: (w) => w.lagSeconds }),
    archivedBytes: t.field({ type: 'BigInt', description: 'WAL bytes archived, summed over destinations', resolve: (w) => w.archivedBytes }),
    baseBackups: t.field({ type: [BaseBackup], description: 'Newest first', resolve: (w) => w.baseBackups }),
    gaps: t.field({ type: [PitrGap], resolve: (w) => w.gaps }),
    timelineSwitches: t.field({
      type: [PitrTimelineSwitch],
      description: 'Timeline switches the archive followed, oldest first: boundaries recovery crosses (WAL the old timeline had past the switch point is a TIMELINE_SWITCH gap)',
      resolve: (w) => w.timelineSwitches,
    }),
  }),
});

builder.prismaObjectFields('Environment', (t) => ({
  pointInTimeRecovery: t.field({
    type: PointInTimeRecovery,
    select: { id: true, walEnabled: true, pitrClusterId: true, walArchiveIntervalSeconds: true },
    // A list of environments (the console's overview) reads the archives of all their clusters in
    // one batch of five statements, not five per environment.
    resolve: (env, _a, ctx) => {
      const clusterId = env.pitrClusterId;
      if (!clusterId) return windowWithoutArchive(env);
      return batched(ctx, 'Environment.pointInTimeRecovery', clusterId, (ids) => clusterArchives(ctx.deps, ids)).then((archive) => {
        if (!archive) throw new Error(`PITR cluster ${clusterId} of environment ${env.id} not found`);
        return windowOf(env, archive, ctx.deps.clock.now());
      });
    },
  }),
}));

const CreateBaseBackupInput = builder.inputType('CreateBaseBackupInput', {
  fields: (t) => ({
    environmentId: t.id({ required: true, description: "A base backup of this environment's PostgreSQL cluster (shared by every environment on it)" }),
    idempotencyKey: t.string({ description: 'Same key and input: the same operation back. Also read from the Idempotency-Key header.' }),
  }),
});

const BaseBackupOperationPayload = builder.objectRef<{ operationId: string; baseBackupId: string }>('BaseBackupOperationPayload').implement({
  interfaces: [OperationStarted],
  fields: (t) => ({
    baseBackup: t.prismaField({ type: 'BaseBackup', resolve: (q, p, _a, ctx) => ctx.deps.db.baseBackup.findUniqueOrThrow({ ...q, where: { id: p.baseBackupId } }) }),
  }),
});

builder.mutationFields((t) => ({
  createBaseBackup: t.field({
    type: BaseBackupOperationPayload,
    authScopes: { write: true },
    description: "Starts a base backup of the environment's cluster now (besides its cron); returns the operation to watch",
    errors: { types: allErrors, directResult: true, union: { name: 'CreateBaseBackupResult' } },
    args: { input: t.arg({ type: CreateBaseBackupInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      createBaseBackup(ctx.deps, viewerOf(ctx), {
        environmentId: parseId(String(input.environmentId), 'Environment', ['input', 'environmentId']),
        idempotencyKey: input.idempotencyKey ?? ctx.idempotencyKey ?? undefined,
      }),
  }),
}));

const PitrRetentionPreview = builder.objectRef<{ baseBackups: { id: string }[]; walSnapshots: number; walBefore: string | null }>('PitrRetentionPreview').implement({
  description: 'What PITR retention (walRetentionDays) would remove now from every repository of the cluster',
  fields: (t) => ({
    baseBackups: t.prismaField({ type: ['BaseBackup'], resolve: (q, p, _a, ctx) => ctx.deps.db.baseBackup.findMany({ ...q, where: { id: { in: p.baseBackups.map((b) => b.id) } }, orderBy: { startedAt: 'desc' } }) }),
    walSnapshots: t.int({ description: 'WAL snapshots to forget (summed over destinations)', resolve: (p) => p.walSnapshots }),
    walBefore: t.string({ nullable: true, description: 'WAL segments before this one go', resolve: (p) => p.walBefore }),
  }),
});

builder.objectFields(RetentionPreview, (t) => ({
  pointInTimeRecovery: t.field({
    type: PitrRetentionPreview,
    nullable: true,
    description: 'null when point-in-time recovery is off for the environment',
    resolve: async (p, _a, ctx) => {
      const env = await ctx.deps.db.environment.findUniqueOrThrow({ where: { id: p.environmentId }, select: { pitrClusterId: true, walEnabled: true } });
      if (!env.walEnabled || !env.pitrClusterId) return null;
      const plan = await planPitrRetention(ctx.deps, env.pitrClusterId, ctx.deps.clock.now());
      return { baseBackups: plan.baseBackups, walSnapshots: plan.walUploads.length, walBefore: plan.walBefore };
    },
  }),
}));
