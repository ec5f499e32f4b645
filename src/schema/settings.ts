import { FailurePolicy } from '../generated/prisma/enums.ts';
import { getEnvironmentSettings, updateEnvironmentSettings } from '../services/settings.ts';
import { typeAccess, visibleWhere } from './access.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { parseId, parseIds } from './ids.ts';
import { viewerOf } from './viewer-of.ts';

const FailurePolicyEnum = builder.enumType(FailurePolicy, {
  name: 'FailurePolicy',
  description: 'What a failed scheduled snapshot leads to, besides its alert',
});

const EnvironmentSettings = builder.prismaObject('EnvironmentSettings', {
  authScopes: typeAccess('EnvironmentSettings'),
  description: "An environment's automation settings",
  fields: (t) => ({
    environment: t.relation('environment'),
    autoEnabled: t.exposeBoolean('autoEnabled', { description: 'Whether schedules take snapshots at all' }),
    failurePolicy: t.expose('failurePolicy', { type: FailurePolicyEnum }),
    retryCount: t.exposeInt('retryCount', { description: 'RETRY: attempts after the first' }),
    retryBackoffSeconds: t.exposeInt('retryBackoffSeconds', { description: 'RETRY: wait before the first retry, doubled for each next one' }),
    maxPinned: t.exposeInt('maxPinned'),
    retentionDays: t.exposeInt('retentionDays', { nullable: true, description: 'Age limit of manual and pre-deploy snapshots; null keeps them' }),
    safetyRetentionDays: t.exposeInt('safetyRetentionDays', { description: 'How long safety snapshots taken before a restore are kept' }),
    timeoutSeconds: t.exposeInt('timeoutSeconds', { description: 'A snapshot running longer fails' }),
    staleAfterHours: t.exposeInt('staleAfterHours', { nullable: true, description: 'Alert when no snapshot has succeeded for this long; null: never' }),
    drillCheckQuery: t.exposeString('drillCheckQuery', { nullable: true, description: 'Run read-only in each restore drill’s scratch database; it must return one boolean true (e.g. `select count(*) > 0 from orders`). null: a drill checks only that the restore succeeds' }),
    defaultDestinations: t.prismaField({
      type: ['Destination'],
      description: "Where this environment's snapshots go (unless a schedule names its own)",
      select: { environmentId: true },
      resolve: (query, s, _a, ctx) =>
        ctx.deps.db.destination.findMany({ ...query, where: visibleWhere(ctx, 'Destination', { environments: { some: { environmentId: s.environmentId } } }), orderBy: { createdAt: 'asc' } }),
    }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

const UpdateEnvironmentSettingsInput = builder.inputType('UpdateEnvironmentSettingsInput', {
  description: 'Fields left out stay as they are; retentionDays, staleAfterHours and drillCheckQuery null turn them off',
  fields: (t) => ({
    environmentId: t.id({ required: true }),
    autoEnabled: t.boolean(),
    failurePolicy: t.field({ type: FailurePolicyEnum }),
    retryCount: t.int(),
    retryBackoffSeconds: t.int(),
    maxPinned: t.int(),
    retentionDays: t.int(),
    safetyRetentionDays: t.int(),
    timeoutSeconds: t.int(),
    staleAfterHours: t.int(),
    drillCheckQuery: t.string(),
    defaultDestinationIds: t.idList(),
  }),
});

const EnvironmentSettingsPayload = builder.objectRef<{ environmentId: string }>('EnvironmentSettingsPayload').implement({
  fields: (t) => ({
    settings: t.prismaField({
      type: 'EnvironmentSettings',
      resolve: (q, p, _a, ctx) => ctx.deps.db.environmentSettings.findUniqueOrThrow({ ...q, where: { environmentId: p.environmentId } }),
    }),
  }),
});

builder.queryFields((t) => ({
  environmentSettings: t.field({
    type: EnvironmentSettings,
    authScopes: { read: true },
    description: "An environment's settings (defaults are created on first read)",
    errors: { types: allErrors, directResult: true, union: { name: 'EnvironmentSettingsResult' } },
    args: { environmentId: t.arg.id({ required: true }) },
    resolve: (_root, { environmentId }, ctx) => getEnvironmentSettings(ctx.deps, viewerOf(ctx), parseId(String(environmentId), 'Environment', ['environmentId'])),
  }),
}));

builder.mutationFields((t) => ({
  updateEnvironmentSettings: t.field({
    type: EnvironmentSettingsPayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'UpdateEnvironmentSettingsResult' } },
    args: { input: t.arg({ type: UpdateEnvironmentSettingsInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const { environmentId, defaultDestinationIds, ...rest } = input;
      // Absent fields stay; an explicit null clears the nullable ones and is refused by the others' validation.
      const fields = Object.fromEntries(Object.entries(rest).filter(([k, v]) => v !== undefined && (v !== null || k === 'retentionDays' || k === 'staleAfterHours' || k === 'drillCheckQuery')));
      return {
        environmentId: await updateEnvironmentSettings(ctx.deps, viewerOf(ctx), parseId(String(environmentId), 'Environment', ['input', 'environmentId']), {
          ...fields,
          defaultDestinationIds: defaultDestinationIds ? parseIds(defaultDestinationIds.map(String), 'Destination', ['input', 'defaultDestinationIds']) : undefined,
        }),
      };
    },
  }),
}));

builder.prismaObjectFields('Environment', (t) => ({
  settings: t.relation('settings', { nullable: true }),
}));
