import { switchDatabase } from '../services/database-switch.ts';
import { restoreToPointInTime } from '../services/pitr-restores.ts';
import { builder } from './builder.ts';
import { EnvironmentPayload } from './environment.ts';
import { allErrors } from './errors.ts';
import { parseId } from './ids.ts';
import { RestorePayload, RestoreStrategyEnum } from './restore.ts';
import { SnapshotIncludeEnum } from './snapshot.ts';
import { viewerOf } from './viewer-of.ts';

// Point-in-time recovery, the recovery side: restore or clone to a time, and switching an
// environment between its database and a clone.

builder.prismaObjectFields('Environment', (t) => ({
  previousDatabaseName: t.exposeString('previousDatabaseName', { nullable: true, description: 'The database switchDatabase moved away from; switch to it to go back' }),
}));

const RestoreToPointInTimeInput = builder.inputType('RestoreToPointInTimeInput', {
  fields: (t) => ({
    environmentId: t.id({ required: true, description: 'Whose cluster archive to recover from (and, by default, where to restore)' }),
    pointInTime: t.field({ type: 'DateTime', required: true, description: 'The moment to restore (the platforms call it pitrTimestamp); transactions committed at or before it are kept' }),
    targetEnvironmentId: t.id({ description: 'Default: the environment itself' }),
    includes: t.field({ type: [SnapshotIncludeEnum], description: 'Default: DB, and FILES when the environment has a files snapshot finished at or before pointInTime (the newest such one is used)' }),
    createSafetySnapshot: t.boolean({ defaultValue: true, description: 'Ignored for a clone, which changes nothing live' }),
    strategy: t.field({ type: RestoreStrategyEnum, defaultValue: 'SWAP' }),
    cloneDatabaseName: t.string({ description: 'Restore into this new database on the target’s server instead, leaving the environment as it is (see switchDatabase)' }),
    idempotencyKey: t.string(),
  }),
});

const SwitchDatabaseInput = builder.inputType('SwitchDatabaseInput', {
  fields: (t) => ({
    environmentId: t.id({ required: true }),
    databaseName: t.string({ required: true, description: 'A database on the environment’s server: a clone, or previousDatabaseName to switch back' }),
  }),
});

builder.mutationFields((t) => ({
  restoreToPointInTime: t.field({
    type: RestorePayload,
    authScopes: { write: true },
    description: 'Restores an environment’s database (and files) as they were at a point in time, from its cluster’s base backups and WAL, atomically; or clones it into a new database.',
    errors: { types: allErrors, directResult: true, union: { name: 'RestoreToPointInTimeResult' } },
    args: { input: t.arg({ type: RestoreToPointInTimeInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      restoreToPointInTime(ctx.deps, viewerOf(ctx), {
        environmentId: parseId(String(input.environmentId), 'Environment', ['input', 'environmentId']),
        pointInTime: input.pointInTime as Date,
        targetEnvironmentId: input.targetEnvironmentId ? parseId(String(input.targetEnvironmentId), 'Environment', ['input', 'targetEnvironmentId']) : null,
        includes: input.includes ?? null,
        createSafetySnapshot: input.createSafetySnapshot ?? true,
        strategy: input.strategy ?? 'SWAP',
        cloneDatabaseName: input.cloneDatabaseName ?? null,
        idempotencyKey: input.idempotencyKey ?? ctx.idempotencyKey ?? null,
      }),
  }),
  switchDatabase: t.field({
    type: EnvironmentPayload,
    authScopes: { write: true },
    description: 'Points the environment at another database of its server (a clone); the one it leaves is kept as previousDatabaseName.',
    errors: { types: allErrors, directResult: true, union: { name: 'SwitchDatabaseResult' } },
    args: { input: t.arg({ type: SwitchDatabaseInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      environmentId: await switchDatabase(ctx.deps, viewerOf(ctx), { environmentId: parseId(String(input.environmentId), 'Environment', ['input', 'environmentId']), databaseName: input.databaseName }),
    }),
  }),
}));
