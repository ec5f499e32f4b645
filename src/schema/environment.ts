import { endsPromptly } from '../events/bus.ts';
import { GraphQLError } from 'graphql';
import { EnvironmentStatus, EnvironmentType } from '../generated/prisma/enums.ts';
import { createEnvironment, deleteEnvironment, getEnvironment, updateEnvironment } from '../services/environments.ts';
import { lockEnvironment, unlockEnvironment } from '../services/environment-lock.ts';
import { inProjectWhere } from '../services/viewer.ts';
import { isVisible, typeAccess } from './access.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { encodeGlobalID, parseId, tryDecodeId } from './ids.ts';
import { liveEvents, readOnce } from './live.ts';
import { ValidationError } from '../domain/errors.ts';
import { DeletePayload } from './project.ts';
import { viewerOf } from './viewer-of.ts';

export const EnvironmentTypeEnum = builder.enumType(EnvironmentType, { name: 'EnvironmentType' });

const EnvironmentLock = builder.objectRef<{ lockedAt: Date; lockedBy: string | null; lockReason: string | null }>('EnvironmentLock').implement({
  description: 'An operator\'s lock: restores into the environment are refused (ENVIRONMENT_LOCKED) until it is lifted; snapshots still run',
  fields: (t) => ({
    lockedAt: t.expose('lockedAt', { type: 'DateTime' }),
    lockedBy: t.string({ description: 'The API key that set it, by name', resolve: (l) => l.lockedBy ?? 'unknown' }),
    reason: t.string({ resolve: (l) => l.lockReason ?? '' }),
  }),
});

const EnvironmentStatusEnum = builder.enumType(EnvironmentStatus, {
  name: 'EnvironmentStatus',
  description: 'READY: usable. PROVISIONING: made by a restore into a new environment that has not succeeded yet. FAILED: that restore failed; its database and folder were removed, delete the environment to reuse the name.',
});

export const Environment = builder.prismaNode('Environment', {
  authScopes: typeAccess('Environment'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  fields: (t) => ({
    name: t.exposeString('name'),
    type: t.expose('type', { type: EnvironmentTypeEnum }),
    status: t.expose('status', { type: EnvironmentStatusEnum, description: 'Snapshots, restores into it and drills are refused unless READY' }),
    databaseUrl: t.exposeString('databaseUrlRedacted', { description: 'The database URL with its password masked; the real one is never returned.' }),
    databaseName: t.exposeString('databaseName'),
    filesPath: t.exposeString('filesPath', { nullable: true }),
    project: t.relation('project'),
    lock: t.field({
      type: EnvironmentLock,
      nullable: true,
      description: 'Set while the environment is locked against restores; null when it is not',
      select: { lockedAt: true, lockedBy: true, lockReason: true },
      resolve: (e) => (e.lockedAt ? { lockedAt: e.lockedAt, lockedBy: e.lockedBy, lockReason: e.lockReason } : null),
    }),
    walEnabled: t.exposeBoolean('walEnabled', { description: 'Point-in-time recovery is on: WAL is streamed and base backups taken (set on upsertSchedule)' }),
    walRetentionDays: t.exposeInt('walRetentionDays', { nullable: true }),
    walArchiveIntervalSeconds: t.exposeInt('walArchiveIntervalSeconds'),
    baseBackupCron: t.exposeString('baseBackupCron'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.prismaObjectFields('Project', (t) => ({
  environments: t.relatedConnection('environments', {
    cursor: 'id',
    totalCount: true,
    args: { types: t.arg({ type: [EnvironmentTypeEnum], description: 'Only environments of these types' }) },
    query: (args) => ({ where: args.types?.length ? { type: { in: [...args.types] } } : {}, orderBy: { id: 'asc' } }),
    description: 'Environments of this project, oldest first',
  }),
}));

builder.queryFields((t) => ({
  environments: t.prismaConnection({
    type: 'Environment',
    cursor: 'id',
    authScopes: { read: true },
    description: 'Environments visible to this key, oldest first; optionally of one project, of some types.',
    args: { projectId: t.arg.id(), types: t.arg({ type: [EnvironmentTypeEnum] }) },
    totalCount: (_conn, args, ctx) => ctx.deps.db.environment.count({ where: environmentListWhere(ctx, args.projectId, args.types) }),
    resolve: (query, _root, args, ctx) =>
      ctx.deps.db.environment.findMany({ ...query, where: environmentListWhere(ctx, args.projectId, args.types), orderBy: { id: 'asc' } }),
  }),
  environment: t.prismaField({
    type: 'Environment',
    nullable: true,
    authScopes: { read: true },
    description: 'One environment, by id or by project (name or id) and name; null when it does not exist or is not visible to this key.',
    args: {
      id: t.arg.id(),
      project: t.arg.string({ description: "The project's name or id, with `name`" }),
      name: t.arg.string({ description: "The environment's name in `project`" }),
    },
    resolve: (query, _root, args, ctx) => {
      const where = environmentLookupWhere(args);
      return where ? ctx.deps.db.environment.findFirst({ ...query, where: inProjectWhere(viewerOf(ctx), where) }) : null;
    },
  }),
}));

/** The one environment `environment(…)` names, or null for an id that cannot be one; a wrong mix of arguments is a ValidationError. */
function environmentLookupWhere(args: { id?: string | number | null; project?: string | null; name?: string | null }) {
  const byName = args.project != null || args.name != null;
  if (args.id != null && byName) throw ValidationError.field(['id'], 'give either id, or project and name, not both');
  if (args.id != null) {
    try {
      return { id: parseId(String(args.id), 'Environment', ['id']) };
    } catch {
      return null;
    }
  }
  if (!args.project?.trim()) throw ValidationError.field(['project'], 'give id, or project and name');
  if (!args.name?.trim()) throw ValidationError.field(['name'], 'give id, or project and name');
  const project = args.project.trim();
  const projectId = tryDecodeId(project);
  return { name: args.name.trim(), project: projectId?.typename === 'Project' ? { id: projectId.id } : { name: project } };
}

function environmentListWhere(ctx: Parameters<typeof viewerOf>[0], projectGlobalId: string | number | null | undefined, types?: readonly EnvironmentType[] | null) {
  const ofTypes = types?.length ? { type: { in: [...types] } } : {};
  if (projectGlobalId == null) return inProjectWhere(viewerOf(ctx), ofTypes);
  // An unknown or malformed project id filters to nothing rather than failing the list.
  let projectId = '';
  try {
    projectId = parseId(String(projectGlobalId), 'Project', ['projectId']);
  } catch {
    projectId = '';
  }
  return inProjectWhere(viewerOf(ctx), { projectId, ...ofTypes });
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

const LockEnvironmentInput = builder.inputType('LockEnvironmentInput', {
  fields: (t) => ({
    environmentId: t.id({ required: true }),
    reason: t.string({ required: true, description: 'Shown to whoever is refused, e.g. "app running: stop it before restoring"' }),
  }),
});
const UnlockEnvironmentInput = builder.inputType('UnlockEnvironmentInput', { fields: (t) => ({ environmentId: t.id({ required: true }) }) });

const DeleteEnvironmentInput = builder.inputType('DeleteEnvironmentInput', { fields: (t) => ({ id: t.id({ required: true }) }) });

export const EnvironmentPayload = builder.objectRef<{ environmentId: string }>('EnvironmentPayload').implement({
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
  lockEnvironment: t.field({
    type: EnvironmentPayload,
    authScopes: { write: true },
    description: 'Refuses restores into the environment until unlockEnvironment; records who and when. Already locked: ENVIRONMENT_LOCKED.',
    errors: { types: allErrors, directResult: true, union: { name: 'LockEnvironmentResult' } },
    args: { input: t.arg({ type: LockEnvironmentInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      environmentId: await lockEnvironment(ctx.deps, viewerOf(ctx), parseId(String(input.environmentId), 'Environment', ['input', 'environmentId']), { reason: input.reason }),
    }),
  }),
  unlockEnvironment: t.field({
    type: EnvironmentPayload,
    authScopes: { write: true },
    errors: { types: allErrors, directResult: true, union: { name: 'UnlockEnvironmentResult' } },
    args: { input: t.arg({ type: UnlockEnvironmentInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      environmentId: await unlockEnvironment(ctx.deps, viewerOf(ctx), parseId(String(input.environmentId), 'Environment', ['input', 'environmentId'])),
    }),
  }),
  deleteEnvironment: t.field({
    type: DeletePayload,
    description: 'Deletes the environment and its catalog rows. Refused with OPERATION_RUNNING while a job of it, or a restore reading one of its snapshots, is queued or running.',
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
  values: ['ENVIRONMENT_UPDATED', 'ENVIRONMENT_DELETED', 'SNAPSHOT', 'RESTORE', 'OPERATION', 'RECOVERY_INSTANCE'] as const,
});

export interface ActivityShape {
  kind: 'ENVIRONMENT_UPDATED' | 'ENVIRONMENT_DELETED' | 'SNAPSHOT' | 'RESTORE' | 'OPERATION' | 'RECOVERY_INSTANCE';
  environmentId: string;
  subjectId: string;
  at: Date;
  /** The published event, the same object for every subscriber of this process: what its fields read is read once for all (readOnce). */
  event: object;
}

export const EnvironmentActivityEvent = builder.objectRef<ActivityShape>('EnvironmentActivityEvent').implement({
  description: 'Something happened to an environment. Fields re-read the current state when the event is delivered.',
  fields: (t) => ({
    kind: t.field({ type: ActivityKind, resolve: (e) => e.kind }),
    environmentId: t.id({ resolve: (e) => encodeGlobalID('Environment', e.environmentId) }),
    at: t.field({ type: 'DateTime', description: 'When it happened: the moment the event was published, by the process that published it', resolve: (e) => e.at }),
    environment: t.field({
      type: Environment,
      nullable: true,
      description: 'The environment as it is now; null once deleted.',
      resolve: async (e, _args, ctx) => {
        const env = await readOnce(e.event, 'environment', () => ctx.deps.db.environment.findUnique({ where: { id: e.environmentId } }));
        return env && (await isVisible(ctx, 'Environment', env)) ? env : null;
      },
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
      const events = liveEvents(ctx, track, 'environmentActivity', id);
      try {
        await getEnvironment(ctx.deps, viewerOf(ctx), id).catch(() => {
          throw new GraphQLError('Environment not found', { extensions: { code: 'ENVIRONMENT_NOT_FOUND' } });
        });
        // The same object for every subscriber of the event, so that its execution is shared too (app/shared-events.ts).
        for await (const e of events) yield readOnce(e.payload, 'activity', (): ActivityShape => ({ ...e.payload, at: e.at, event: e.payload }));
      } finally {
        await events.return?.();
      }
    }),
    resolve: (e) => e,
  }),
}));
