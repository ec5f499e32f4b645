import { RecoveryInstanceStatus } from '../generated/prisma/enums.ts';
import { closeRecoveryInstance, extendRecoveryInstance, openRecoveryInstance } from '../services/recovery-instances.ts';
import { isVisible, typeAccess, visibleWhere } from './access.ts';
import { builder } from './builder.ts';
import { EnvironmentActivityEvent } from './environment.ts';
import { allErrors } from './errors.ts';
import { parseId } from './ids.ts';
import { readOnce } from './live.ts';
import { OperationStarted } from './operation.ts';
import { viewerOf } from './viewer-of.ts';

// Recovery instances: an environment's cluster recovered to a point in time, read-only, on a port
// of its own for a while. Seen by the keys that may restore the environment (ACCESS.RecoveryInstance).

const RecoveryInstanceStatusEnum = builder.enumType(RecoveryInstanceStatus, {
  name: 'RecoveryInstanceStatus',
  description:
    'STARTING: its operation recovers it. READY: paused at pointInTime, read-only, reachable at host:port. STOPPED: closed (or its worker stopped, or cancelled before it was ready). EXPIRED: stopped at expiresAt. FAILED: the recovery failed (error). LOST: the worker holding it stopped renewing its lease (killed, or its host lost); whatever it left on that host is swept',
});

builder.prismaNode('RecoveryInstance', {
  authScopes: typeAccess('RecoveryInstance'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  description: 'A copy of an environment’s whole cluster (every database) recovered to a point in time and kept running read-only for a limited time; nothing is written into the environment’s server',
  fields: (t) => ({
    environment: t.relation('environment'),
    operation: t.relation('operation', { description: 'The operation that recovers it (phases fetching-base, replaying-wal, starting-instance, ready)' }),
    pointInTime: t.expose('pointInTime', { type: 'DateTime', description: 'Transactions committed at or before it are in the copy, none after' }),
    status: t.expose('status', { type: RecoveryInstanceStatusEnum }),
    ttlMinutes: t.exposeInt('ttlMinutes'),
    host: t.exposeString('host', { nullable: true, description: 'The address it listens on (PITR_INSTANCE_LISTEN); null until READY' }),
    port: t.exposeInt('port', { nullable: true, description: 'null until READY' }),
    connectionUri: t.string({
      nullable: true,
      description: 'postgresql://host:port/ without user or password: log in with the cluster’s own roles and passwords as they were at pointInTime (password authentication only). null unless READY',
      select: { host: true, port: true, status: true },
      resolve: (i) => (i.status === 'READY' && i.host && i.port ? `postgresql://${i.host.includes(':') ? `[${i.host}]` : i.host}:${i.port}/` : null),
    }),
    error: t.exposeString('error', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    readyAt: t.expose('readyAt', { type: 'DateTime', nullable: true }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true, description: 'When the keeper stops it (readyAt + ttlMinutes)' }),
    stoppedAt: t.expose('stoppedAt', { type: 'DateTime', nullable: true }),
  }),
});

builder.prismaObjectFields('Environment', (t) => ({
  recoveryInstances: t.prismaConnection({
    type: 'RecoveryInstance',
    cursor: 'id',
    description: 'Recovery instances of this environment’s cluster, newest first (for keys that may restore it)',
    totalCount: (env, _args, ctx) => ctx.deps.db.recoveryInstance.count({ where: visibleWhere(ctx, 'RecoveryInstance', { environmentId: env.id }) }),
    resolve: (query, env, _args, ctx) => ctx.deps.db.recoveryInstance.findMany({ ...query, where: visibleWhere(ctx, 'RecoveryInstance', { environmentId: env.id }), orderBy: { id: 'desc' } }),
  }),
}));

builder.objectFields(EnvironmentActivityEvent, (t) => ({
  recoveryInstance: t.prismaField({
    type: 'RecoveryInstance',
    nullable: true,
    description: 'For RECOVERY_INSTANCE events: the instance as it is now',
    resolve: async (query, e, _a, ctx) => {
      if (e.kind !== 'RECOVERY_INSTANCE') return null;
      const row = await readOnce(e.event, 'recoveryInstance', () => ctx.deps.db.recoveryInstance.findUnique({ where: { id: e.subjectId } }));
      if (!row || !(await isVisible(ctx, 'RecoveryInstance', row))) return null;
      return ctx.deps.db.recoveryInstance.findUnique({ ...query, where: { id: row.id } });
    },
  }),
}));

const OpenRecoveryInstanceInput = builder.inputType('OpenRecoveryInstanceInput', {
  fields: (t) => ({
    environmentId: t.id({ required: true, description: 'Whose cluster archive to recover' }),
    pointInTime: t.field({ type: 'DateTime', required: true, description: 'Transactions committed at or before it are kept' }),
    ttlMinutes: t.int({ description: 'How long it stays READY before the keeper stops it: 1 to 1440, default 60' }),
    idempotencyKey: t.string(),
  }),
});

const CloseRecoveryInstanceInput = builder.inputType('CloseRecoveryInstanceInput', {
  fields: (t) => ({ id: t.id({ required: true }) }),
});

const RecoveryInstancePayload = builder.objectRef<{ operationId: string; recoveryInstanceId: string }>('RecoveryInstancePayload').implement({
  interfaces: [OperationStarted],
  fields: (t) => ({
    recoveryInstance: t.prismaField({ type: 'RecoveryInstance', resolve: (q, p, _a, ctx) => ctx.deps.db.recoveryInstance.findUniqueOrThrow({ ...q, where: { id: p.recoveryInstanceId } }) }),
  }),
});

const ExtendRecoveryInstanceInput = builder.inputType('ExtendRecoveryInstanceInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    ttlMinutes: t.int({ required: true, description: 'Minutes from now until the keeper stops it: 1 to 1440' }),
  }),
});

const RecoveryInstanceChangePayload = builder.objectRef<{ recoveryInstanceId: string }>('RecoveryInstanceChangePayload').implement({
  fields: (t) => ({
    recoveryInstance: t.prismaField({
      type: 'RecoveryInstance',
      description: 'As it is now (after a close, its keeper stops a READY instance within a second or so: STOPPED; watch environmentActivity)',
      resolve: (q, p, _a, ctx) => ctx.deps.db.recoveryInstance.findUniqueOrThrow({ ...q, where: { id: p.recoveryInstanceId } }),
    }),
  }),
});

builder.mutationFields((t) => ({
  openRecoveryInstance: t.field({
    type: RecoveryInstancePayload,
    authScopes: { write: true },
    description: 'Recovers the environment’s whole cluster to a point in time into a read-only PostgreSQL instance on a port of its own, kept for ttlMinutes: query it or pg_dump from it, then close it. Nothing is written into the environment’s server.',
    errors: { types: allErrors, directResult: true, union: { name: 'OpenRecoveryInstanceResult' } },
    args: { input: t.arg({ type: OpenRecoveryInstanceInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      openRecoveryInstance(
        ctx.deps,
        viewerOf(ctx),
        {
          environmentId: parseId(String(input.environmentId), 'Environment', ['input', 'environmentId']),
          pointInTime: input.pointInTime as Date,
          ttlMinutes: input.ttlMinutes ?? undefined,
          idempotencyKey: input.idempotencyKey ?? ctx.idempotencyKey ?? null,
        },
        { max: ctx.deps.recoveryInstances?.max ?? 2 },
      ),
  }),
  closeRecoveryInstance: t.field({
    type: RecoveryInstanceChangePayload,
    authScopes: { write: true },
    description: 'Stops a recovery instance (a STARTING one has its operation cancelled). Closing one that has ended changes nothing.',
    errors: { types: allErrors, directResult: true, union: { name: 'CloseRecoveryInstanceResult' } },
    args: { input: t.arg({ type: CloseRecoveryInstanceInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      recoveryInstanceId: await closeRecoveryInstance(ctx.deps, viewerOf(ctx), parseId(String(input.id), 'RecoveryInstance', ['input', 'id'])),
    }),
  }),
  extendRecoveryInstance: t.field({
    type: RecoveryInstanceChangePayload,
    authScopes: { write: true },
    description: 'Keeps a READY recovery instance ttlMinutes more from now (expiresAt moves).',
    errors: { types: allErrors, directResult: true, union: { name: 'ExtendRecoveryInstanceResult' } },
    args: { input: t.arg({ type: ExtendRecoveryInstanceInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      recoveryInstanceId: await extendRecoveryInstance(ctx.deps, viewerOf(ctx), { id: parseId(String(input.id), 'RecoveryInstance', ['input', 'id']), ttlMinutes: input.ttlMinutes }),
    }),
  }),
}));
