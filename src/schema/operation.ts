import { endsPromptly } from '../events/bus.ts';
import type { Operation as OperationRow } from '../generated/prisma/client.ts';
import { GraphQLError } from 'graphql';
import { OperationStatus, OperationType } from '../generated/prisma/enums.ts';
import { cancelOperation, getOperation, isTerminal } from '../services/operations.ts';
import { isVisible, typeAccess, visibleWhere } from './access.ts';
import { builder, type Context } from './builder.ts';
import { EnvironmentActivityEvent } from './environment.ts';
import type { ErrorCode } from '../domain/errors.ts';
import { allErrors, ErrorCodeEnum } from './errors.ts';
import { parseId } from './ids.ts';
import { liveEvents, readOnce } from './live.ts';
import { viewerOf } from './viewer-of.ts';

export const OperationTypeEnum = builder.enumType(OperationType, { name: 'OperationType' });
export const OperationStatusEnum = builder.enumType(OperationStatus, { name: 'OperationStatus' });

export const Operation = builder.prismaNode('Operation', {
  authScopes: typeAccess('Operation'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  description: 'A long-running action: a snapshot, a restore, a delete…',
  fields: (t) => ({
    type: t.expose('type', { type: OperationTypeEnum }),
    status: t.expose('status', { type: OperationStatusEnum }),
    phase: t.exposeString('phase', { nullable: true, description: 'queued, preparing, dumping, uploading, copying, safety-snapshot, restoring, swapping, checking (a drill’s check query), forgetting, pruning, finalizing, done' }),
    bytesDone: t.expose('bytesDone', { type: 'BigInt' }),
    bytesTotal: t.expose('bytesTotal', { type: 'BigInt', nullable: true }),
    percent: t.float({
      nullable: true,
      description: '0–100 when the total is known',
      select: { bytesDone: true, bytesTotal: true, status: true },
      resolve: (o) => {
        if (o.status === 'SUCCEEDED') return 100;
        if (!o.bytesTotal || o.bytesTotal === 0n) return null;
        return Math.min(100, Math.round((Number(o.bytesDone) / Number(o.bytesTotal)) * 1000) / 10);
      },
    }),
    message: t.exposeString('message', { nullable: true }),
    error: t.exposeString('error', { nullable: true }),
    errorCode: t.field({ type: ErrorCodeEnum, nullable: true, description: 'The catalog code of a failure a caller can act on (e.g. IMPORT_FORMAT_UNKNOWN); null for others', select: { errorCode: true }, resolve: (o) => (o.errorCode as ErrorCode | null) ?? null }),
    cancelRequested: t.boolean({ select: { cancelRequestedAt: true }, resolve: (o) => o.cancelRequestedAt !== null }),
    environment: t.relation('environment', { nullable: true }),
    snapshot: t.relation('snapshot', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    startedAt: t.expose('startedAt', { type: 'DateTime', nullable: true }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime', description: 'When the operation last changed (status, phase or progress); each change is published to its watchers right after' }),
  }),
});

const OperationFilter = builder.inputType('OperationFilter', {
  fields: (t) => ({
    statuses: t.field({ type: [OperationStatusEnum], description: 'Only operations in these statuses (e.g. QUEUED and RUNNING: the work under way)' }),
    types: t.field({ type: [OperationTypeEnum], description: 'Only operations of these types' }),
    environmentId: t.id({ description: 'Only operations of this environment' }),
  }),
});

type OperationFilterShape = { statuses?: readonly OperationStatus[] | null; types?: readonly OperationType[] | null; environmentId?: string | number | null };

function operationListWhere(ctx: Context, filter: OperationFilterShape | null | undefined, ofEnvironment?: string) {
  const where: Record<string, unknown> = ofEnvironment ? { environmentId: ofEnvironment } : {};
  if (filter?.statuses?.length) where.status = { in: [...filter.statuses] };
  if (filter?.types?.length) where.type = { in: [...filter.types] };
  if (filter?.environmentId != null) {
    // An unknown or malformed environment id filters to nothing rather than failing the list, as environments(projectId) does.
    let environmentId = '';
    try {
      environmentId = parseId(String(filter.environmentId), 'Environment', ['filter', 'environmentId']);
    } catch {
      environmentId = '';
    }
    where.environmentId = environmentId || { in: [] };
  }
  return visibleWhere(ctx, 'Operation', where);
}

builder.prismaObjectFields('Environment', (t) => ({
  operations: t.prismaConnection({
    type: 'Operation',
    cursor: 'id',
    description: 'Operations of this environment, newest first',
    args: { statuses: t.arg({ type: [OperationStatusEnum], description: 'Only operations in these statuses' }), types: t.arg({ type: [OperationTypeEnum], description: 'Only operations of these types' }) },
    totalCount: (env, args, ctx) => ctx.deps.db.operation.count({ where: operationListWhere(ctx, args, env.id) }),
    resolve: (query, env, args, ctx) => ctx.deps.db.operation.findMany({ ...query, where: operationListWhere(ctx, args, env.id), orderBy: { id: 'desc' } }),
  }),
}));

builder.queryFields((t) => ({
  operations: t.prismaConnection({
    type: 'Operation',
    cursor: 'id',
    authScopes: { read: true },
    description: 'Operations visible to this key, newest first; e.g. filter { statuses: [QUEUED, RUNNING] } for the work under way.',
    args: { filter: t.arg({ type: OperationFilter }) },
    totalCount: (_c, args, ctx) => ctx.deps.db.operation.count({ where: operationListWhere(ctx, args.filter) }),
    resolve: (query, _root, args, ctx) => ctx.deps.db.operation.findMany({ ...query, where: operationListWhere(ctx, args.filter), orderBy: { id: 'desc' } }),
  }),
  operation: t.prismaField({
    type: 'Operation',
    nullable: true,
    authScopes: { read: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      let opId: string;
      try {
        opId = parseId(String(id), 'Operation', ['id']);
        await getOperation(ctx.deps, viewerOf(ctx), opId);
      } catch {
        return null;
      }
      return ctx.deps.db.operation.findUnique({ ...query, where: { id: opId } });
    },
  }),
}));

const CancelOperationInput = builder.inputType('CancelOperationInput', { fields: (t) => ({ id: t.id({ required: true }) }) });

/**
 * What every mutation that starts work answers with: the operation to watch. Payloads that also
 * name what the work is about (a snapshot, a restore log) add it beside `operation`.
 */
export const OperationStarted = builder.interfaceRef<{ operationId: string }>('OperationStarted').implement({
  description: 'A mutation started a job: `operation` is the one to watch (subscription operation(id))',
  fields: (t) => ({
    operation: t.prismaField({ type: 'Operation', resolve: (query, p, _a, ctx) => ctx.deps.db.operation.findUniqueOrThrow({ ...query, where: { id: p.operationId } }) }),
  }),
});

export const OperationPayload = builder.objectRef<{ operationId: string }>('OperationPayload').implement({
  interfaces: [OperationStarted],
  fields: () => ({}),
});

builder.mutationFields((t) => ({
  cancelOperation: t.field({
    type: OperationPayload,
    authScopes: { write: true },
    description: 'Stops a queued or running snapshot or restore; the environment is left as it was.',
    errors: { types: allErrors, directResult: true, union: { name: 'CancelOperationResult' } },
    args: { input: t.arg({ type: CancelOperationInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      operationId: await cancelOperation(ctx.deps, viewerOf(ctx), parseId(String(input.id), 'Operation', ['input', 'id'])),
    }),
  }),
}));

builder.subscriptionFields((t) => ({
  operation: t.field({
    type: Operation,
    authScopes: { read: true },
    description: 'The operation now, then after every change, until it ends.',
    args: { id: t.arg.id({ required: true }) },
    subscribe: (_root, { id }, ctx) => endsPromptly(async function* (track) {
      let opId: string;
      try {
        opId = parseId(String(id), 'Operation', ['id']);
      } catch (err) {
        throw new GraphQLError((err as Error).message, { extensions: { code: 'BAD_USER_INPUT' } });
      }
      // Listen first, then read: a change between the two is seen either way. Each event re-reads
      // the operation, so progress that waited behind newer progress would only show an older
      // state; a change of status is never skipped (a takeover's QUEUED, the terminal state).
      const events = liveEvents(ctx, track, 'operation', opId, { replaces: (unread, next) => unread.status === next.status });
      try {
        let op: OperationRow = await getOperation(ctx.deps, viewerOf(ctx), opId).catch(() => {
          throw new GraphQLError('Operation not found', { extensions: { code: 'OPERATION_NOT_FOUND' } });
        });
        yield op;
        while (!isTerminal(op.status)) {
          const next = await events.next();
          if (next.done) return;
          const now = await readOnce(next.value.payload, 'operation', () => operationForWatchers(ctx, opId));
          // Deleted with its environment: nothing more will happen to it.
          if (!now) return;
          events.assertLive();
          op = now;
          yield op;
        }
      } finally {
        await events.return?.();
      }
    }),
    resolve: (op) => op,
  }),
}));

/**
 * An operation as every watcher of an event sees it, read once per event (readOnce) and unfiltered:
 * each watcher's ACCESS rule decides on the row, which carries its environment's project so that
 * the rule's `fast` form can (a key limited to projects would otherwise cost a query per watcher).
 */
function operationForWatchers(ctx: Context, id: string) {
  return ctx.deps.db.operation.findUnique({ where: { id }, include: { environment: { select: { projectId: true } } } });
}

builder.objectFields(EnvironmentActivityEvent, (t) => ({
  operation: t.field({
    type: Operation,
    nullable: true,
    description: 'For OPERATION events: the operation as it is now',
    resolve: async (e, _a, ctx) => {
      if (e.kind !== 'OPERATION') return null;
      const op = await readOnce(e.event, 'operation', () => operationForWatchers(ctx, e.subjectId));
      return op && (await isVisible(ctx, 'Operation', op)) ? op : null;
    },
  }),
}));
