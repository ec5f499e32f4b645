import { CopyStatus, SnapshotInclude, SnapshotKind, SnapshotStatus } from '../generated/prisma/enums.ts';
import type { Prisma } from '../generated/prisma/client.ts';
import { createDownload, DOWNLOAD_VARIANTS } from '../services/downloads.ts';
import { deleteSnapshot, estimateSnapshotSize, pinSnapshot, unpinSnapshot } from '../services/snapshot-lifecycle.ts';
import { createSnapshot } from '../services/snapshots.ts';
import { isSimpleSnapshotFilter, newestSnapshotIds, newestSnapshots, snapshotCounts } from '../services/snapshot-pages.ts';
import { inProjectWhere, restoreLogWhere } from '../services/viewer.ts';
import { typeAccess } from './access.ts';
import { batched } from './batch.ts';
import { builder } from './builder.ts';
import { EnvironmentActivityEvent, EnvironmentTypeEnum } from './environment.ts';
import { ValidationError } from '../domain/errors.ts';
import { allErrors } from './errors.ts';
import { parseId, parseIds } from './ids.ts';
import { OperationPayload, OperationStarted } from './operation.ts';
import { viewerOf } from './viewer-of.ts';

export const SnapshotKindEnum = builder.enumType(SnapshotKind, { name: 'SnapshotKind' });
export const SnapshotIncludeEnum = builder.enumType(SnapshotInclude, { name: 'SnapshotInclude' });
export const SnapshotStatusEnum = builder.enumType(SnapshotStatus, { name: 'SnapshotStatus' });
const CopyStatusEnum = builder.enumType(CopyStatus, { name: 'CopyStatus' });
export const SNAPSHOT_CONTENTS = ['DATABASE_ONLY', 'FILES_ONLY', 'DATABASE_AND_FILES'] as const;
const SnapshotContentsEnum = builder.enumType('SnapshotContents', { values: SNAPSHOT_CONTENTS, description: 'What a snapshot includes, as one choice' });
const DownloadVariantEnum = builder.enumType('DownloadVariant', { values: DOWNLOAD_VARIANTS });

builder.prismaObject('SnapshotCopy', {
  authScopes: typeAccess('SnapshotCopy'),
  description: 'A snapshot as stored on one destination',
  fields: (t) => ({
    destination: t.relation('destination'),
    status: t.expose('status', { type: CopyStatusEnum }),
    sizeBytes: t.expose('sizeBytes', { type: 'BigInt' }),
    addedBytes: t.expose('addedBytes', { type: 'BigInt' }),
    error: t.exposeString('error', { nullable: true }),
    completedAt: t.expose('completedAt', { type: 'DateTime', nullable: true }),
  }),
});

const Download = builder.objectRef<{ url: string; expiresAt: Date; sizeBytes: bigint }>('Download').implement({
  description: 'A short-lived signed link to a tar.zst of the snapshot',
  fields: (t) => ({
    url: t.exposeString('url'),
    expiresAt: t.expose('expiresAt', { type: 'DateTime' }),
    sizeBytes: t.expose('sizeBytes', { type: 'BigInt', description: 'Logical size before compression' }),
  }),
});

export const Snapshot = builder.prismaNode('Snapshot', {
  authScopes: typeAccess('Snapshot'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  fields: (t) => ({
    kind: t.expose('kind', { type: SnapshotKindEnum }),
    includes: t.expose('includes', { type: [SnapshotIncludeEnum] }),
    label: t.exposeString('label', { nullable: true }),
    status: t.expose('status', { type: SnapshotStatusEnum }),
    error: t.exposeString('error', { nullable: true }),
    sizeBytes: t.expose('sizeBytes', { type: 'BigInt', description: 'Logical size of everything captured' }),
    addedBytes: t.expose('addedBytes', { type: 'BigInt', description: 'New, unique bytes this snapshot added (after dedup and compression)' }),
    fileCount: t.exposeInt('fileCount'),
    databaseSizeBytes: t.expose('databaseSizeBytes', { type: 'BigInt', nullable: true }),
    durationMs: t.exposeInt('durationMs', { nullable: true }),
    metadata: t.expose('metadata', { type: 'JSON', nullable: true, description: 'What code the data belonged to: appVersion, deploymentId…' }),
    pinned: t.exposeBoolean('pinned'),
    pinLabel: t.exposeString('pinLabel', { nullable: true }),
    pinnedAt: t.expose('pinnedAt', { type: 'DateTime', nullable: true }),
    expiresAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: "When retention deletes it: safety snapshots after safetyRetentionDays, manual and pre-deploy ones after the environment's retentionDays; null while pinned",
      select: { expiresAt: true, pinned: true },
      resolve: (s) => (s.pinned ? null : s.expiresAt),
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    completedAt: t.expose('completedAt', { type: 'DateTime', nullable: true }),
    environment: t.relation('environment'),
    copies: t.relation('copies', { query: { orderBy: { createdAt: 'asc' } } }),
    restoreLogs: t.relatedConnection('restoreLogs', {
      cursor: 'id',
      totalCount: true,
      query: (_args, ctx) => ({ where: restoreLogWhere(viewerOf(ctx)), orderBy: { id: 'desc' } }),
      description: 'Restores of this snapshot, newest first',
    }),
    download: t.field({
      type: Download,
      authScopes: { read: true },
      errors: { types: allErrors, directResult: true, union: { name: 'SnapshotDownloadResult' } },
      args: {
        variant: t.arg({ type: DownloadVariantEnum, defaultValue: 'DATABASE_AND_FILES' }),
        ttlSeconds: t.arg.int({ defaultValue: 900, description: '60 to 86400' }),
      },
      select: { id: true },
      resolve: (s, args, ctx) => createDownload(ctx.deps, viewerOf(ctx), s.id, { variant: args.variant ?? 'DATABASE_AND_FILES', ttlSeconds: args.ttlSeconds ?? 900, baseUrl: ctx.baseUrl }),
    }),
  }),
});

export const SnapshotFilter = builder.inputType('SnapshotFilter', {
  fields: (t) => ({
    kinds: t.field({ type: [SnapshotKindEnum] }),
    statuses: t.field({ type: [SnapshotStatusEnum] }),
    pinned: t.boolean(),
    includes: t.field({ type: SnapshotContentsEnum, description: 'Only snapshots with exactly this content' }),
    labelContains: t.string(),
    environmentTypes: t.field({ type: [EnvironmentTypeEnum] }),
    createdAfter: t.field({ type: 'DateTime' }),
    createdBefore: t.field({ type: 'DateTime' }),
  }),
});

type Filter = typeof SnapshotFilter.$inferInput;

/** Prisma `where` for a snapshot filter; DELETED snapshots are listed only when asked for. */
export function snapshotFilterWhere(f: Filter | null | undefined): Prisma.SnapshotWhereInput {
  return {
    status: f?.statuses?.length ? { in: f.statuses } : { not: 'DELETED' },
    ...(f?.kinds?.length ? { kind: { in: f.kinds } } : {}),
    ...(f?.pinned != null ? { pinned: f.pinned } : {}),
    ...(f?.includes ? includesWhere(f.includes) : {}),
    ...(f?.labelContains ? { label: { contains: f.labelContains, mode: 'insensitive' } } : {}),
    ...(f?.environmentTypes?.length ? { environment: { type: { in: f.environmentTypes } } } : {}),
    ...(f?.createdAfter || f?.createdBefore ? { createdAt: { ...(f.createdAfter ? { gte: f.createdAfter } : {}), ...(f.createdBefore ? { lt: f.createdBefore } : {}) } } : {}),
  };
}

/** `includes` is a set stored as an array in no fixed order: match by membership, not equality. */
function includesWhere(contents: (typeof SNAPSHOT_CONTENTS)[number]): Prisma.SnapshotWhereInput {
  const has = (i: 'DB' | 'FILES', yes: boolean) => (yes ? { includes: { has: i } } : { NOT: { includes: { has: i } } });
  const db = contents !== 'FILES_ONLY';
  const files = contents !== 'DATABASE_ONLY';
  return { AND: [has('DB', db), has('FILES', files)] };
}

/** Whether a Pothos query (`include` or `select`) asks for a relation or a count besides the row's columns. */
function readsRelations(query: { include?: object; select?: object }): boolean {
  if (query.include && Object.keys(query.include).length > 0) return true;
  return !!query.select && Object.values(query.select).some((v) => v !== true);
}

builder.prismaObjectFields('Environment', (t) => ({
  snapshots: t.prismaConnection({
    type: 'Snapshot',
    cursor: 'id',
    description: 'Snapshots of this environment, newest first. Cursors stay valid while new snapshots arrive.',
    args: { filter: t.arg({ type: SnapshotFilter }) },
    // A list of environments (the console's overview) counts and reads every environment's
    // snapshots in one statement each, not one per environment.
    totalCount: (env, args, ctx) =>
      batched(ctx, `Environment.snapshots.totalCount ${JSON.stringify(args.filter ?? null)}`, env.id, async (ids) => {
        if (isSimpleSnapshotFilter(args.filter)) return snapshotCounts(ctx.deps, viewerOf(ctx), ids, args.filter);
        const rows = await ctx.deps.db.snapshot.groupBy({ by: ['environmentId'], where: inProjectWhere(viewerOf(ctx), { AND: [{ environmentId: { in: ids } }, snapshotFilterWhere(args.filter)] }), _count: { _all: true } });
        return new Map(rows.map((r) => [r.environmentId, r._count._all]));
      }).then((n) => n ?? 0),
    resolve: (query, env, args, ctx) => {
      const one = () => ctx.deps.db.snapshot.findMany({ ...query, where: inProjectWhere(viewerOf(ctx), { AND: [{ environmentId: env.id }, snapshotFilterWhere(args.filter)] }), orderBy: { id: 'desc' } });
      const firstPage = args.after == null && args.before == null && args.last == null && !query.cursor && !query.skip && query.take > 0;
      if (!firstPage || !isSimpleSnapshotFilter(args.filter)) return one();
      return batched(ctx, `Environment.snapshots ${JSON.stringify(args.filter ?? null)} ${JSON.stringify(query)}`, env.id, async (ids) => {
        if (ids.length === 1) return new Map([[ids[0], await one()]]);
        const { take: _take, skip: _skip, cursor: _cursor, ...shape } = query;
        // Rows without relations (the overview's latest snapshot): whole rows from the one LATERAL statement.
        if (!readsRelations(shape)) return newestSnapshots(ctx.deps, viewerOf(ctx), ids, args.filter, query.take);
        const newest = await newestSnapshotIds(ctx.deps, viewerOf(ctx), ids, args.filter, query.take);
        // The rows are grouped by environment below, whatever the selection asked for.
        const selection = 'select' in shape && shape.select ? { ...shape, select: { ...shape.select, environmentId: true } } : shape;
        // environmentId changes no answer but PostgreSQL's estimate: with ids alone (1,000 for the overview) it read all 100,000 rows of the bench's catalog (42 ms), with both the primary key (5.7 ms).
        const rows = await ctx.deps.db.snapshot.findMany({ ...selection, where: inProjectWhere(viewerOf(ctx), { environmentId: { in: ids }, id: { in: [...newest.values()].flat() } }), orderBy: { id: 'desc' } });
        const byEnvironment = new Map<string, typeof rows>(ids.map((id) => [id, []]));
        for (const r of rows) byEnvironment.get(r.environmentId)?.push(r);
        return byEnvironment;
      }).then((rows) => rows ?? []);
    },
  }),
}));

builder.prismaObjectFields('Project', (t) => ({
  snapshots: t.prismaConnection({
    type: 'Snapshot',
    cursor: 'id',
    description: 'Snapshots of every environment of this project, newest first.',
    args: { filter: t.arg({ type: SnapshotFilter }) },
    totalCount: (p, args, ctx) => ctx.deps.db.snapshot.count({ where: inProjectWhere(viewerOf(ctx), { AND: [{ projectId: p.id }, snapshotFilterWhere(args.filter)] }) }),
    resolve: (query, p, args, ctx) =>
      ctx.deps.db.snapshot.findMany({ ...query, where: inProjectWhere(viewerOf(ctx), { AND: [{ projectId: p.id }, snapshotFilterWhere(args.filter)] }), orderBy: { id: 'desc' } }),
  }),
}));

const SizeEstimate = builder.objectRef<{ databaseBytes: bigint; filesBytes: bigint; fileCount: number }>('SnapshotSizeEstimate').implement({
  fields: (t) => ({
    databaseBytes: t.expose('databaseBytes', { type: 'BigInt' }),
    filesBytes: t.expose('filesBytes', { type: 'BigInt' }),
    fileCount: t.exposeInt('fileCount'),
  }),
});

builder.queryFields((t) => ({
  snapshot: t.prismaField({
    type: 'Snapshot',
    nullable: true,
    authScopes: { read: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, { id }, ctx) => {
      let snapshotId: string;
      try {
        snapshotId = parseId(String(id), 'Snapshot', ['id']);
      } catch {
        return null;
      }
      return ctx.deps.db.snapshot.findFirst({ ...query, where: inProjectWhere(viewerOf(ctx), { id: snapshotId }) });
    },
  }),
  estimateSnapshotSize: t.field({
    type: SizeEstimate,
    authScopes: { read: true },
    description: 'Database bytes, files bytes and file count of an environment now, without taking a snapshot.',
    errors: { types: allErrors, directResult: true, union: { name: 'EstimateSnapshotSizeResult' } },
    args: { environmentId: t.arg.id({ required: true }) },
    resolve: (_root, { environmentId }, ctx) => estimateSnapshotSize(ctx.deps, viewerOf(ctx), parseId(String(environmentId), 'Environment', ['environmentId'])),
  }),
}));

const SnapshotMetadataInput = builder.inputType('SnapshotMetadataInput', {
  description: 'Identifies the code the data belonged to',
  fields: (t) => ({
    appVersion: t.string(),
    deploymentId: t.string(),
    gitCommit: t.string(),
  }),
});

const CreateSnapshotInput = builder.inputType('CreateSnapshotInput', {
  fields: (t) => ({
    environmentId: t.id({ required: true }),
    includes: t.field({ type: [SnapshotIncludeEnum], description: 'Default: [DB, FILES]' }),
    label: t.string(),
    kind: t.field({ type: SnapshotKindEnum, description: 'MANUAL (default) or PRE_DEPLOY' }),
    metadata: t.field({ type: SnapshotMetadataInput }),
    destinationIds: t.idList({ description: "Where this snapshot goes; left out or empty: the environment's destinations" }),
    idempotencyKey: t.string({ description: 'Same key and input: the same operation back. Also read from the Idempotency-Key header.' }),
  }),
});

/** The answer of every mutation that starts work on one snapshot: create, copy, verify, delete. */
export const SnapshotOperationPayload = builder.objectRef<{ operationId: string; snapshotId: string }>('SnapshotOperationPayload').implement({
  interfaces: [OperationStarted],
  fields: (t) => ({
    snapshot: t.prismaField({ type: 'Snapshot', resolve: (q, p, _a, ctx) => ctx.deps.db.snapshot.findUniqueOrThrow({ ...q, where: { id: p.snapshotId } }) }),
  }),
});

const SnapshotIdInput = builder.inputType('SnapshotIdInput', { fields: (t) => ({ id: t.id({ required: true }) }) });
const PinSnapshotInput = builder.inputType('PinSnapshotInput', { fields: (t) => ({ id: t.id({ required: true }), label: t.string() }) });

const SnapshotPayload = builder.objectRef<{ snapshotId: string }>('SnapshotPayload').implement({
  fields: (t) => ({
    snapshot: t.prismaField({ type: 'Snapshot', resolve: (q, p, _a, ctx) => ctx.deps.db.snapshot.findUniqueOrThrow({ ...q, where: { id: p.snapshotId } }) }),
  }),
});

builder.mutationFields((t) => ({
  createSnapshot: t.field({
    type: SnapshotOperationPayload,
    authScopes: { write: true },
    description: 'Starts a snapshot; returns at once with the operation to watch and the snapshot in CREATING.',
    errors: { types: allErrors, directResult: true, union: { name: 'CreateSnapshotResult' } },
    args: { input: t.arg({ type: CreateSnapshotInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const environmentId = parseId(String(input.environmentId), 'Environment', ['input', 'environmentId']);
      const metadata = input.metadata ? Object.fromEntries(Object.entries(input.metadata).filter(([, v]) => v != null)) : undefined;
      if (input.kind === 'SCHEDULED' || input.kind === 'SAFETY' || input.kind === 'IMPORT') {
        throw ValidationError.field(['input', 'kind'], 'only MANUAL or PRE_DEPLOY snapshots can be requested');
      }
      return createSnapshot(ctx.deps, viewerOf(ctx), {
        environmentId,
        includes: input.includes ?? undefined,
        label: input.label,
        kind: input.kind ?? undefined,
        metadata: metadata as Record<string, string> | undefined,
        destinationIds: input.destinationIds ? parseIds(input.destinationIds.map(String), 'Destination', ['input', 'destinationIds']) : undefined,
        idempotencyKey: input.idempotencyKey ?? ctx.idempotencyKey ?? undefined,
      });
    },
  }),
  deleteSnapshot: t.field({
    type: SnapshotOperationPayload,
    authScopes: { write: true },
    description: 'Deletes a snapshot from every destination (a job); pinned snapshots are refused.',
    errors: { types: allErrors, directResult: true, union: { name: 'DeleteSnapshotResult' } },
    args: { input: t.arg({ type: SnapshotIdInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const snapshotId = parseId(String(input.id), 'Snapshot', ['input', 'id']);
      return { ...(await deleteSnapshot(ctx.deps, viewerOf(ctx), snapshotId)), snapshotId };
    },
  }),
  pinSnapshot: t.field({
    type: SnapshotPayload,
    authScopes: { write: true },
    errors: { types: allErrors, directResult: true, union: { name: 'PinSnapshotResult' } },
    args: { input: t.arg({ type: PinSnapshotInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      snapshotId: await pinSnapshot(ctx.deps, viewerOf(ctx), parseId(String(input.id), 'Snapshot', ['input', 'id']), { label: input.label }),
    }),
  }),
  unpinSnapshot: t.field({
    type: SnapshotPayload,
    authScopes: { write: true },
    errors: { types: allErrors, directResult: true, union: { name: 'UnpinSnapshotResult' } },
    args: { input: t.arg({ type: SnapshotIdInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      snapshotId: await unpinSnapshot(ctx.deps, viewerOf(ctx), parseId(String(input.id), 'Snapshot', ['input', 'id'])),
    }),
  }),
}));

builder.objectFields(EnvironmentActivityEvent, (t) => ({
  snapshot: t.prismaField({
    type: 'Snapshot',
    nullable: true,
    description: 'For SNAPSHOT events: the snapshot as it is now',
    resolve: (query, e, _a, ctx) => (e.kind === 'SNAPSHOT' ? ctx.deps.db.snapshot.findFirst({ ...query, where: inProjectWhere(viewerOf(ctx), { id: e.subjectId }) }) : null),
  }),
}));
