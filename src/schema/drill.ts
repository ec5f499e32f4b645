import { restoreDrillStatsOf, startRestoreDrill } from '../services/drills.ts';
import { batched } from './batch.ts';
import { typeAccess, visibleWhere } from './access.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { parseId } from './ids.ts';
import { OperationStarted, OperationStatusEnum } from './operation.ts';
import { viewerOf } from './viewer-of.ts';

builder.prismaNode('RestoreDrill', {
  authScopes: typeAccess('RestoreDrill'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  description: 'One restore drill: the newest READY snapshot restored into scratch copies on the environment’s server, checked, timed and dropped',
  fields: (t) => ({
    environment: t.relation('environment'),
    snapshot: t.relation('snapshot', { nullable: true, description: 'The snapshot restored; null once deleted' }),
    operation: t.relation('operation'),
    scheduled: t.exposeBoolean('scheduled', { description: 'Started by the schedule’s drillCron (else by runRestoreDrill)' }),
    status: t.expose('status', { type: OperationStatusEnum }),
    checkQuery: t.exposeString('checkQuery', { nullable: true, description: 'The environment’s drillCheckQuery when the drill was started' }),
    checkPassed: t.exposeBoolean('checkPassed', { nullable: true, description: 'null: no check query, or the drill failed before it' }),
    filesExpected: t.exposeInt('filesExpected', { nullable: true, description: 'Regular files in the snapshot' }),
    filesFound: t.exposeInt('filesFound', { nullable: true, description: 'Regular files in the restored folder' }),
    bytesExpected: t.expose('bytesExpected', { type: 'BigInt', nullable: true }),
    bytesFound: t.expose('bytesFound', { type: 'BigInt', nullable: true }),
    rtoSeconds: t.float({
      nullable: true,
      description: 'From the drill’s start until the data was restored and checked (recovery time); null unless it succeeded',
      select: { rtoMs: true },
      resolve: (d) => (d.rtoMs === null ? null : d.rtoMs / 1000),
    }),
    error: t.exposeString('error', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    completedAt: t.expose('completedAt', { type: 'DateTime', nullable: true }),
  }),
});

const RestoreDrillStats = builder
  .objectRef<{ count: number; failures: number; medianRtoSeconds: number | null; lastRtoSeconds: number | null }>('RestoreDrillStats')
  .implement({
    description: 'The trend of an environment’s finished drills',
    fields: (t) => ({
      count: t.exposeInt('count', { description: 'Finished drills (succeeded or failed)' }),
      failures: t.exposeInt('failures'),
      medianRtoSeconds: t.exposeFloat('medianRtoSeconds', { nullable: true, description: 'Median RTO of the drills that succeeded' }),
      lastRtoSeconds: t.exposeFloat('lastRtoSeconds', { nullable: true, description: 'RTO of the newest drill that succeeded' }),
    }),
  });

builder.prismaObjectFields('Environment', (t) => ({
  restoreDrills: t.prismaConnection({
    type: 'RestoreDrill',
    cursor: 'id',
    description: 'Restore drills of this environment, newest first',
    totalCount: (env, _args, ctx) => ctx.deps.db.restoreDrill.count({ where: visibleWhere(ctx, 'RestoreDrill', { environmentId: env.id }) }),
    resolve: (query, env, _args, ctx) => ctx.deps.db.restoreDrill.findMany({ ...query, where: visibleWhere(ctx, 'RestoreDrill', { environmentId: env.id }), orderBy: { id: 'desc' } }),
  }),
  // The environment is already visible here, and its drills with it (same rule).
  restoreDrillStats: t.field({
    type: RestoreDrillStats,
    select: { id: true },
    // One statement for a whole list of environments, not one each.
    resolve: async (env, _args, ctx) => (await batched(ctx, 'Environment.restoreDrillStats', env.id, (ids) => restoreDrillStatsOf(ctx.deps, ids)))!,
  }),
}));

const RunRestoreDrillInput = builder.inputType('RunRestoreDrillInput', {
  fields: (t) => ({
    environmentId: t.id({ required: true }),
    idempotencyKey: t.string(),
  }),
});

const RestoreDrillPayload = builder.objectRef<{ operationId: string; drillId: string }>('RestoreDrillPayload').implement({
  interfaces: [OperationStarted],
  fields: (t) => ({
    restoreDrill: t.prismaField({ type: 'RestoreDrill', resolve: (q, p, _a, ctx) => ctx.deps.db.restoreDrill.findUniqueOrThrow({ ...q, where: { id: p.drillId } }) }),
  }),
});

builder.mutationFields((t) => ({
  runRestoreDrill: t.field({
    type: RestoreDrillPayload,
    authScopes: { write: true },
    description: 'Runs a restore drill of the environment now: its newest READY snapshot into a scratch database and folder, the check query, then both dropped. Its own database and folder are never touched.',
    errors: { types: allErrors, directResult: true, union: { name: 'RunRestoreDrillResult' } },
    args: { input: t.arg({ type: RunRestoreDrillInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      startRestoreDrill(ctx.deps, viewerOf(ctx), {
        environmentId: parseId(String(input.environmentId), 'Environment', ['input', 'environmentId']),
        idempotencyKey: input.idempotencyKey ?? ctx.idempotencyKey ?? null,
      }),
  }),
}));
