import { endsPromptly } from '../events/bus.ts';
import { GraphQLError } from 'graphql';
import { EnvironmentType } from '../generated/prisma/enums.ts';
import { createEnvironment, deleteEnvironment, getEnvironment, updateEnvironment } from '../services/environments.ts';
import { inProjectWhere } from '../services/viewer.ts';
import { typeAccess } from './access.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { encodeGlobalID, parseId } from './ids.ts';
import { DeletePayload } from './project.ts';
import { viewerOf } from './viewer-of.ts';

export const EnvironmentTypeEnum = builder.enumType(EnvironmentType, { name: 'EnvironmentType' });

export const Environment = builder.prismaNode('Environment', {
  authScopes: typeAccess('Environment'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  fields: (t) => ({
    name: t.exposeString('name'),
    type: t.expose('type', { type: EnvironmentTypeEnum }),
    databaseUrl: t.exposeString('databaseUrlRedacted', { description: 'The database URL with its password masked; the real one is never returned.' }),
    databaseName: t.exposeString('databaseName'),
    filesPath: t.exposeString('filesPath', { nullable: true }),
    project: t.relation('project'),
    walEnabled: t.exposeBoolean('walEnabled', { description: 'Point-in-time recovery is on: WAL is streamed and base backups taken (set on upsertSchedule)' }),
    walRetentionDays: t.exposeInt('walRetentionDays', { nullable: true }),
    walArchiveIntervalSeconds: t.exposeInt('walArchiveIntervalSeconds'),
    baseBackupCron: t.exposeString('baseBackupCron'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.queryFields((t) => ({
  environments: t.prismaConnection({
    type: 'Environment',
    cursor: 'id',
    authScopes: { read: true },
    description: 'Environments visible to this key, oldest first; optionally of one project.',
    args: { projectId: t.arg.id() },
    totalCount: (_conn, args, ctx) => ctx.deps.db.environment.count({ where: environmentListWhere(ctx, args.projectId) }),
    resolve: (query, _root, args, ctx) =>
      ctx.deps.db.environment.findMany({ ...query, where: environmentListWhere(ctx, args.projectId), orderBy: { id: 'asc' } }),
  }),
  environment: t.prismaField({
    type: 'Environment',
    nullable: true,
    authScopes: { read: true },
    description: 'One environment; null when it does not exist or is not visible to this key.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, { id }, ctx) => {
      let envId: string;
      try {
        envId = parseId(String(id), 'Environment', ['id']);
      } catch {
        return null;
      }
      return ctx.deps.db.environment.findFirst({ ...query, where: inProjectWhere(viewerOf(ctx), { id: envId }) });
    },
  }),
}));

function environmentListWhere(ctx: Parameters<typeof viewerOf>[0], projectGlobalId: string | number | null | undefined) {
  if (projectGlobalId == null) return inProjectWhere(viewerOf(ctx));
  // An unknown or malformed project id filters to nothing rather than failing the list.
  let projectId = '';
  try {
    projectId = parseId(String(projectGlobalId), 'Project', ['projectId']);
  } catch {
    projectId = '';
  }
  return inProjectWhere(viewerOf(ctx), { projectId });
}

const CreateEnvironmentInput = builder.inputType('CreateEnvironmentInput', {
  fields: (t) => ({
    projectId: t.id({ required: true }),
    name: t.string({ required: true }),
    type: t.field({ type: EnvironmentTypeEnum, description: 'Defaults to DEVELOPMENT' }),
    databaseUrl: t.string({ required: true, description: 'postgres://user:password@host:port/database — stored encrypted' }),
    filesPath: t.string({ description: 'Absolute path of the files directory on the worker machine' }),
  }),
});

const UpdateEnvironmentInput = builder.inputType('UpdateEnvironmentInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    name: t.string(),
    type: t.field({ type: EnvironmentTypeEnum }),
    databaseUrl: t.string(),
    filesPath: t.string(),
  }),
});

const DeleteEnvironmentInput = builder.inputType('DeleteEnvironmentInput', { fields: (t) => ({ id: t.id({ required: true }) }) });

const EnvironmentPayload = builder.objectRef<{ environmentId: string }>('EnvironmentPayload').implement({
  fields: (t) => ({
    environment: t.prismaField({
      type: 'Environment',
      resolve: (query, p, _args, ctx) => ctx.deps.db.environment.findUniqueOrThrow({ ...query, where: { id: p.environmentId } }),
    }),
  }),
});

builder.mutationFields((t) => ({
  createEnvironment: t.field({
    type: EnvironmentPayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'CreateEnvironmentResult' } },
    args: { input: t.arg({ type: CreateEnvironmentInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const projectId = parseId(String(input.projectId), 'Project', ['input', 'projectId']);
      const id = await createEnvironment(ctx.deps, viewerOf(ctx), { ...input, projectId, type: input.type ?? undefined });
      return { environmentId: id };
    },
  }),
  updateEnvironment: t.field({
    type: EnvironmentPayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'UpdateEnvironmentResult' } },
    args: { input: t.arg({ type: UpdateEnvironmentInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const id = parseId(String(input.id), 'Environment', ['input', 'id']);
      const { id: _id, ...changes } = input;
      return { environmentId: await updateEnvironment(ctx.deps, viewerOf(ctx), id, { ...changes, name: changes.name ?? undefined, type: changes.type ?? undefined, databaseUrl: changes.databaseUrl ?? undefined }) };
    },
  }),
  deleteEnvironment: t.field({
    type: DeletePayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'DeleteEnvironmentResult' } },
    args: { input: t.arg({ type: DeleteEnvironmentInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      await deleteEnvironment(ctx.deps, viewerOf(ctx), parseId(String(input.id), 'Environment', ['input', 'id']));
      return { deletedId: String(input.id) };
    },
  }),
}));

// ---------------------------------------------------------------- live activity

const ActivityKind = builder.enumType('EnvironmentActivityKind', {
  values: ['ENVIRONMENT_UPDATED', 'ENVIRONMENT_DELETED', 'SNAPSHOT', 'RESTORE', 'OPERATION'] as const,
});

export interface ActivityShape {
  kind: 'ENVIRONMENT_UPDATED' | 'ENVIRONMENT_DELETED' | 'SNAPSHOT' | 'RESTORE' | 'OPERATION';
  environmentId: string;
  subjectId: string;
  at: Date;
}

export const EnvironmentActivityEvent = builder.objectRef<ActivityShape>('EnvironmentActivityEvent').implement({
  description: 'Something happened to an environment. Fields re-read the current state when the event is delivered.',
  fields: (t) => ({
    kind: t.field({ type: ActivityKind, resolve: (e) => e.kind }),
    environmentId: t.id({ resolve: (e) => encodeGlobalID('Environment', e.environmentId) }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
    environment: t.prismaField({
      type: 'Environment',
      nullable: true,
      description: 'The environment as it is now; null once deleted.',
      resolve: (query, e, _args, ctx) => ctx.deps.db.environment.findFirst({ ...query, where: inProjectWhere(viewerOf(ctx), { id: e.environmentId }) }),
    }),
  }),
});

builder.subscriptionFields((t) => ({
  environmentActivity: t.field({
    type: EnvironmentActivityEvent,
    authScopes: { read: true },
    description: 'Live events of one environment: changes, snapshots, restores and operations.',
    args: { environmentId: t.arg.id({ required: true }) },
    subscribe: (_root, { environmentId }, ctx) => endsPromptly(async function* (track) {
      let id: string;
      try {
        id = parseId(String(environmentId), 'Environment', ['environmentId']);
      } catch (err) {
        throw new GraphQLError((err as Error).message, { extensions: { code: 'BAD_USER_INPUT' } });
      }
      // Subscribing first, then checking, means no event between the check and the listen is lost.
      const events = track(ctx.deps.events.subscribe('environmentActivity', id));
      try {
        await getEnvironment(ctx.deps, viewerOf(ctx), id).catch(() => {
          throw new GraphQLError('Environment not found', { extensions: { code: 'ENVIRONMENT_NOT_FOUND' } });
        });
        for await (const e of events) yield { ...e, at: ctx.deps.clock.now() };
      } finally {
        await events.return?.();
      }
    }),
    resolve: (e) => e,
  }),
}));
