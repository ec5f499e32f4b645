import { RestoreStrategy } from '../generated/prisma/enums.ts';
import { restoreSnapshot } from '../services/restores.ts';
import { restoreLogWhere } from '../services/viewer.ts';
import { typeAccess, visibleWhere } from './access.ts';
import { batched, byId, withId } from './batch.ts';
import { builder } from './builder.ts';
import { EnvironmentActivityEvent, EnvironmentTypeEnum } from './environment.ts';
import { allErrors } from './errors.ts';
import { parseId } from './ids.ts';
import { OperationStarted, OperationStatusEnum } from './operation.ts';
import { SnapshotIncludeEnum } from './snapshot.ts';
import { viewerOf } from './viewer-of.ts';

export const RestoreStrategyEnum = builder.enumType(RestoreStrategy, {
  name: 'RestoreStrategy',
  description: 'SWAP: restore beside the live database, then swap names in one short step (needs CREATEDB). IN_PLACE: pg_restore --clean in one transaction.',
});

builder.prismaNode('RestoreLog', {
  authScopes: typeAccess('RestoreLog'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  description: 'One restore: what went where, and how it ended',
  fields: (t) => ({
    // A restore may cross projects: the log is its target's, and a key of the target's project
    // alone sees the restore but not where it came from (null, as node(id) would answer).
    snapshot: t.prismaField({
      type: 'Snapshot',
      nullable: true,
      description: 'The snapshot restored (for a restore to a point in time, the files snapshot used); null when there is none or this key may not see it (another project)',
      select: { snapshotId: true },
      // Batched: a page of restore logs reads their snapshots in one statement.
      resolve: async (query, log, _a, ctx) =>
        log.snapshotId
          ? ((await batched(ctx, `RestoreLog.snapshot ${JSON.stringify(query)}`, log.snapshotId, async (ids) => byId(await ctx.deps.db.snapshot.findMany({ ...withId(query), where: visibleWhere(ctx, 'Snapshot', { id: { in: ids } }) })))) ?? null)
          : null,
    }),
    sourceEnvironment: t.prismaField({
      type: 'Environment',
      nullable: true,
      description: 'Where the snapshot was taken; null when this key may not see it (another project)',
      select: { sourceEnvironmentId: true },
      resolve: async (query, log, _a, ctx) =>
        (await batched(ctx, `RestoreLog.sourceEnvironment ${JSON.stringify(query)}`, log.sourceEnvironmentId, async (ids) => byId(await ctx.deps.db.environment.findMany({ ...withId(query), where: visibleWhere(ctx, 'Environment', { id: { in: ids } }) })))) ?? null,
    }),
    targetEnvironment: t.relation('targetEnvironment'),
    operation: t.relation('operation'),
    safetySnapshot: t.relation('safetySnapshot', { nullable: true, description: 'The snapshot of the target taken just before' }),
    strategy: t.expose('strategy', { type: RestoreStrategyEnum }),
    includes: t.expose('includes', { type: [SnapshotIncludeEnum] }),
    status: t.expose('status', { type: OperationStatusEnum }),
    error: t.exposeString('error', { nullable: true }),
    previousDatabaseName: t.exposeString('previousDatabaseName', { nullable: true, description: 'Where the replaced database was kept (SWAP)' }),
    pointInTime: t.expose('pointInTime', { type: 'DateTime', nullable: true, description: 'A restore to a point in time: the time asked for' }),
    cloneDatabaseName: t.exposeString('cloneDatabaseName', { nullable: true, description: 'A clone: the new database the recovered one went to' }),
    recoveredFrom: t.exposeString('recoveredFrom', { nullable: true, description: 'A restore to a point in time: the base backup, WAL range and files snapshot it used' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    completedAt: t.expose('completedAt', { type: 'DateTime', nullable: true }),
  }),
});

const RestoreRole = builder.enumType('RestoreRole', { values: ['SOURCE', 'TARGET', 'ANY'] as const });

builder.prismaObjectFields('Environment', (t) => ({
  restoreLogs: t.prismaConnection({
    type: 'RestoreLog',
    cursor: 'id',
    description: 'Restores from or into this environment, newest first',
    args: { role: t.arg({ type: RestoreRole, defaultValue: 'ANY' }) },
    totalCount: (env, args, ctx) => ctx.deps.db.restoreLog.count({ where: restoreLogWhere(viewerOf(ctx), roleWhere(env.id, args.role ?? 'ANY')) }),
    resolve: (query, env, args, ctx) => ctx.deps.db.restoreLog.findMany({ ...query, where: restoreLogWhere(viewerOf(ctx), roleWhere(env.id, args.role ?? 'ANY')), orderBy: { id: 'desc' } }),
  }),
}));

function roleWhere(environmentId: string, role: 'SOURCE' | 'TARGET' | 'ANY') {
  if (role === 'SOURCE') return { sourceEnvironmentId: environmentId };
  if (role === 'TARGET') return { targetEnvironmentId: environmentId };
  return { OR: [{ sourceEnvironmentId: environmentId }, { targetEnvironmentId: environmentId }] };
}

const NewEnvironmentInput = builder.inputType('NewEnvironmentInput', {
  description:
    'An environment this restore creates in the snapshot’s project: its database `<source db>_<name>` on the source’s server (the source’s role needs CREATEDB), its folder `<source folder>-<name>` beside the source’s. It is PROVISIONING until the restore succeeds (then READY), FAILED if it does not, with its database and folder removed.',
  fields: (t) => ({
    name: t.string({ required: true }),
    type: t.field({ type: EnvironmentTypeEnum, description: 'Defaults to DEVELOPMENT' }),
  }),
});

const RestoreSnapshotInput = builder.inputType('RestoreSnapshotInput', {
  fields: (t) => ({
    snapshotId: t.id({ required: true }),
    targetEnvironmentId: t.id({ description: 'Default: the snapshot’s own environment' }),
    newEnvironment: t.field({ type: NewEnvironmentInput, description: 'Restore into a new environment instead (not with targetEnvironmentId); createSafetySnapshot is ignored then: there is nothing to protect' }),
    includes: t.field({ type: [SnapshotIncludeEnum], description: 'Default: what the snapshot holds' }),
    createSafetySnapshot: t.boolean({ defaultValue: true }),
    strategy: t.field({ type: RestoreStrategyEnum, defaultValue: 'SWAP' }),
    idempotencyKey: t.string(),
  }),
});

export const RestorePayload = builder.objectRef<{ operationId: string; restoreLogId: string }>('RestorePayload').implement({
  interfaces: [OperationStarted],
  fields: (t) => ({
    restoreLog: t.prismaField({ type: 'RestoreLog', resolve: (q, p, _a, ctx) => ctx.deps.db.restoreLog.findUniqueOrThrow({ ...q, where: { id: p.restoreLogId } }) }),
  }),
});

builder.mutationFields((t) => ({
  restoreSnapshot: t.field({
    type: RestorePayload,
    authScopes: { write: true },
    description: 'Restores a snapshot atomically into its environment or another one; a safety snapshot of the target is taken first.',
    errors: { types: allErrors, directResult: true, union: { name: 'RestoreSnapshotResult' } },
    args: { input: t.arg({ type: RestoreSnapshotInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      restoreSnapshot(ctx.deps, viewerOf(ctx), {
        snapshotId: parseId(String(input.snapshotId), 'Snapshot', ['input', 'snapshotId']),
        targetEnvironmentId: input.targetEnvironmentId ? parseId(String(input.targetEnvironmentId), 'Environment', ['input', 'targetEnvironmentId']) : null,
        newEnvironment: input.newEnvironment ? { name: input.newEnvironment.name, type: input.newEnvironment.type ?? null } : null,
        includes: input.includes ?? null,
        createSafetySnapshot: input.createSafetySnapshot ?? true,
        strategy: input.strategy ?? 'SWAP',
        idempotencyKey: input.idempotencyKey ?? ctx.idempotencyKey ?? null,
      }),
  }),
}));


builder.objectFields(EnvironmentActivityEvent, (t) => ({
  restoreLog: t.prismaField({
    type: 'RestoreLog',
    nullable: true,
    description: 'For RESTORE events: the restore as it is now',
    resolve: (query, e, _a, ctx) =>
      e.kind === 'RESTORE' ? ctx.deps.db.restoreLog.findFirst({ ...query, where: visibleWhere(ctx, 'RestoreLog', { id: e.subjectId }) }) : null,
  }),
}));
