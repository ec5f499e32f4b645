import { DestinationProvider, DestinationStatus } from '../generated/prisma/enums.ts';
import {
  createDestination,
  deleteDestination,
  resticLocation,
  revealRepositoryPassword,
  setEnvironmentDestinations,
  testDestination,
  updateDestination,
} from '../services/destinations.ts';
import { inProjectWhere } from '../services/viewer.ts';
import type { ProbeResult } from '../destinations/probe.ts';
import { typeAccess, visibleWhere } from './access.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { parseId, parseIds } from './ids.ts';
import { DeletePayload } from './project.ts';
import { viewerOf } from './viewer-of.ts';

const DestinationProviderEnum = builder.enumType(DestinationProvider, { name: 'DestinationProvider' });
const DestinationStatusEnum = builder.enumType(DestinationStatus, { name: 'DestinationStatus' });
const DestinationErrorKindEnum = builder.enumType('DestinationErrorKind', {
  description: 'Why a destination cannot be used',
  values: {
    AUTH: { description: 'The credentials were refused (wrong access key id or secret)' },
    NO_BUCKET: { description: 'The bucket (or directory) does not exist' },
    UNREACHABLE: { description: 'Nothing answers at the endpoint' },
    IO: { description: 'Anything else: the message says what' },
  } as const,
});
const ProbeStepEnum = builder.enumType('DestinationProbeStep', { values: ['WRITE', 'READ', 'LIST', 'DELETE'] as const });

const config = (key: string) => (d: { config: unknown }) => {
  const v = (d.config as Record<string, unknown> | null)?.[key];
  return typeof v === 'string' ? v : null;
};

const RedactedCredentials = builder.objectRef<{ accessKeyId: string; secretAccessKey: string }>('RedactedCredentials').implement({
  description: 'Credentials as stored, masked; the real ones are never returned.',
  fields: (t) => ({ accessKeyId: t.exposeString('accessKeyId'), secretAccessKey: t.exposeString('secretAccessKey') }),
});

builder.prismaNode('Destination', {
  authScopes: typeAccess('Destination'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  description: 'Where snapshots are stored: a local directory or a bucket of an S3-compatible provider, holding one restic repository.',
  fields: (t) => ({
    name: t.exposeString('name'),
    provider: t.expose('provider', { type: DestinationProviderEnum }),
    status: t.expose('status', { type: DestinationStatusEnum, description: 'From the last test or use' }),
    lastCheckedAt: t.expose('lastCheckedAt', { type: 'DateTime', nullable: true }),
    lastError: t.exposeString('lastError', { nullable: true }),
    path: t.string({ nullable: true, select: { config: true }, description: 'LOCAL: the directory', resolve: config('path') }),
    bucket: t.string({ nullable: true, select: { config: true }, resolve: config('bucket') }),
    prefix: t.string({ nullable: true, select: { config: true }, resolve: config('prefix') }),
    region: t.string({ nullable: true, select: { config: true }, resolve: config('region') }),
    endpoint: t.string({ nullable: true, select: { config: true }, description: 'As configured; see `location` for the one used', resolve: config('endpoint') }),
    accountId: t.string({ nullable: true, select: { config: true }, description: 'R2: the Cloudflare account id', resolve: config('accountId') }),
    jurisdiction: t.string({ nullable: true, select: { config: true }, description: 'R2: default, eu or fedramp', resolve: config('jurisdiction') }),
    hasCaCertificate: t.boolean({ select: { config: true }, resolve: (d) => config('caCertificate')(d) !== null }),
    location: t.string({
      description: 'The repository as restic names it (`restic -r <location>`)',
      select: { provider: true, config: true },
      resolve: (d) => resticLocation(d),
    }),
    credentials: t.field({
      type: RedactedCredentials,
      nullable: true,
      select: { credentialsRedacted: true },
      resolve: (d) => (d.credentialsRedacted as { accessKeyId: string; secretAccessKey: string } | null) ?? null,
    }),
    isDefault: t.exposeBoolean('isDefault', { description: 'New environments of the organization get this destination (see createEnvironment)' }),
    verifyCron: t.exposeString('verifyCron', { nullable: true, description: 'When the newest snapshot of each environment here is verified (reading the data), 5-field cron in UTC' }),
    repositoryId: t.exposeString('repositoryId', { nullable: true, description: 'The id in the repository config, once the first snapshot created it' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    environments: t.prismaField({
      type: ['Environment'],
      description: 'Environments whose snapshots go here (those visible to this key)',
      select: { id: true },
      resolve: (query, d, _a, ctx) =>
        ctx.deps.db.environment.findMany({ ...query, where: inProjectWhere(viewerOf(ctx), { destinations: { some: { destinationId: d.id } } }), orderBy: { id: 'asc' } }),
    }),
  }),
});

builder.prismaObjectFields('Environment', (t) => ({
  destinations: t.prismaField({
    type: ['Destination'],
    description: 'Where snapshots of this environment go, the first one first',
    resolve: async (query, env, _a, ctx) => {
      const links = await ctx.deps.db.environmentDestination.findMany({ where: { environmentId: env.id }, orderBy: { createdAt: 'asc' } });
      const rows = await ctx.deps.db.destination.findMany({ ...query, where: visibleWhere(ctx, 'Destination', { id: { in: links.map((l) => l.destinationId) } }) });
      return links.map((l) => rows.find((r) => r.id === l.destinationId)!).filter(Boolean);
    },
  }),
}));

builder.queryFields((t) => ({
  destinations: t.prismaConnection({
    type: 'Destination',
    cursor: 'id',
    authScopes: { admin: true },
    description: 'Destinations of the organization, oldest first (for a key limited to projects: those its environments use).',
    totalCount: (_c, _a, ctx) => ctx.deps.db.destination.count({ where: visibleWhere(ctx, 'Destination') }),
    resolve: (query, _root, _args, ctx) => ctx.deps.db.destination.findMany({ ...query, where: visibleWhere(ctx, 'Destination'), orderBy: { id: 'asc' } }),
  }),
  destination: t.prismaField({
    type: 'Destination',
    nullable: true,
    authScopes: { read: true },
    description: 'One destination; null when it does not exist or this key may not see it (keys other than unlimited admins see only where their environments store snapshots).',
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, { id }, ctx) => {
      let destinationId: string;
      try {
        destinationId = parseId(String(id), 'Destination', ['id']);
      } catch {
        return null;
      }
      return ctx.deps.db.destination.findFirst({ ...query, where: visibleWhere(ctx, 'Destination', { id: destinationId }) });
    },
  }),
}));

const settingsFields = (t: Parameters<Parameters<typeof builder.inputType>[1]['fields']>[0]) => ({
  path: t.string({ description: 'LOCAL: absolute directory on the worker machine' }),
  bucket: t.string({ description: 'S3, R2, B2, MINIO, CUSTOM' }),
  prefix: t.string({ description: 'Key prefix inside the bucket (optional)' }),
  region: t.string({ description: 'S3 and B2: required; MINIO/CUSTOM: optional (us-east-1)' }),
  endpoint: t.string({ description: 'MINIO and CUSTOM: required (path-style addressing); S3: optional override' }),
  accountId: t.string({ description: 'R2: the Cloudflare account id' }),
  jurisdiction: t.string({ description: 'R2: default, eu or fedramp' }),
  caCertificate: t.string({ description: 'MINIO and CUSTOM: PEM of a private CA to trust' }),
  accessKeyId: t.string({ description: 'Stored encrypted' }),
  secretAccessKey: t.string({ description: 'Stored encrypted; never returned' }),
  verifyCron: t.string({ description: 'Scheduled verification, 5-field cron in UTC, e.g. "0 3 * * 0"; "" removes it' }),
  isDefault: t.boolean({ description: 'New environments of the organization get every default destination' }),
});

const CreateDestinationInput = builder.inputType('CreateDestinationInput', {
  fields: (t) => ({ name: t.string({ required: true }), provider: t.field({ type: DestinationProviderEnum, required: true }), ...settingsFields(t) }),
});
const UpdateDestinationInput = builder.inputType('UpdateDestinationInput', {
  description: 'Fields left out keep their value; the provider cannot change',
  fields: (t) => ({ id: t.id({ required: true }), name: t.string(), ...settingsFields(t) }),
});
const DeleteDestinationInput = builder.inputType('DeleteDestinationInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    detach: t.boolean({ defaultValue: false, description: 'Delete even while it holds snapshots: the catalog forgets it, the data stays in the bucket' }),
  }),
});
const DestinationIdInput = builder.inputType('DestinationIdInput', { fields: (t) => ({ id: t.id({ required: true }) }) });
const SetEnvironmentDestinationsInput = builder.inputType('SetEnvironmentDestinationsInput', {
  fields: (t) => ({ environmentId: t.id({ required: true }), destinationIds: t.idList({ required: true, description: 'In order: the first receives each snapshot first' }) }),
});

const DestinationPayload = builder.objectRef<{ destinationId: string }>('DestinationPayload').implement({
  fields: (t) => ({
    destination: t.prismaField({ type: 'Destination', resolve: (q, p, _a, ctx) => ctx.deps.db.destination.findUniqueOrThrow({ ...q, where: { id: p.destinationId } }) }),
  }),
});

const EnvironmentDestinationsPayload = builder.objectRef<{ environmentId: string }>('EnvironmentDestinationsPayload').implement({
  fields: (t) => ({
    environment: t.prismaField({ type: 'Environment', resolve: (q, p, _a, ctx) => ctx.deps.db.environment.findUniqueOrThrow({ ...q, where: { id: p.environmentId } }) }),
  }),
});

const ProbeStepResult = builder.objectRef<ProbeResult['steps'][number]>('DestinationProbeStepResult').implement({
  fields: (t) => ({
    step: t.field({ type: ProbeStepEnum, resolve: (s) => s.step }),
    ok: t.exposeBoolean('ok'),
    latencyMs: t.exposeInt('latencyMs'),
    error: t.string({ nullable: true, resolve: (s) => s.error ?? null }),
  }),
});

const DestinationTestPayload = builder.objectRef<ProbeResult & { destinationId: string }>('DestinationTestPayload').implement({
  description: 'What writing, reading, listing and deleting a probe object found',
  fields: (t) => ({
    ok: t.exposeBoolean('ok'),
    errorKind: t.field({ type: DestinationErrorKindEnum, nullable: true, resolve: (r) => r.errorKind ?? null }),
    error: t.string({ nullable: true, resolve: (r) => r.error ?? null }),
    steps: t.field({ type: [ProbeStepResult], resolve: (r) => r.steps }),
    destination: t.prismaField({ type: 'Destination', resolve: (q, p, _a, ctx) => ctx.deps.db.destination.findUniqueOrThrow({ ...q, where: { id: p.destinationId } }) }),
  }),
});

const RepositoryPasswordPayload = builder
  .objectRef<{ destinationId: string; password: string; repository: string; repositoryId: string | null }>('RepositoryPasswordPayload')
  .implement({
    description: 'Everything restic needs besides the storage credentials: `restic -r <repository>` with RESTIC_PASSWORD=<password>',
    fields: (t) => ({
      password: t.exposeString('password'),
      repository: t.exposeString('repository'),
      repositoryId: t.exposeString('repositoryId', { nullable: true }),
      destination: t.prismaField({ type: 'Destination', resolve: (q, p, _a, ctx) => ctx.deps.db.destination.findUniqueOrThrow({ ...q, where: { id: p.destinationId } }) }),
    }),
  });

/** GraphQL passes absent optional fields as null; the services validate absent as undefined. */
function defined<T extends Record<string, unknown>>(o: T): Partial<{ [K in keyof T]: Exclude<T[K], null> }> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null && v !== undefined)) as never;
}

builder.mutationFields((t) => ({
  createDestination: t.field({
    type: DestinationPayload,
    authScopes: { admin: true },
    description: 'Adds a destination. Settings are checked per provider; credentials are stored encrypted.',
    errors: { types: allErrors, directResult: true, union: { name: 'CreateDestinationResult' } },
    args: { input: t.arg({ type: CreateDestinationInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({ destinationId: await createDestination(ctx.deps, viewerOf(ctx), defined(input)) }),
  }),
  updateDestination: t.field({
    type: DestinationPayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'UpdateDestinationResult' } },
    args: { input: t.arg({ type: UpdateDestinationInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const { id, ...changes } = input;
      return { destinationId: await updateDestination(ctx.deps, viewerOf(ctx), parseId(String(id), 'Destination', ['input', 'id']), defined(changes)) };
    },
  }),
  deleteDestination: t.field({
    type: DeletePayload,
    authScopes: { admin: true },
    description: 'Deletes a destination; one that holds snapshots is refused (DESTINATION_IN_USE) unless detach is true.',
    errors: { types: allErrors, directResult: true, union: { name: 'DeleteDestinationResult' } },
    args: { input: t.arg({ type: DeleteDestinationInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      await deleteDestination(ctx.deps, viewerOf(ctx), parseId(String(input.id), 'Destination', ['input', 'id']), { detach: input.detach ?? false });
      return { deletedId: String(input.id) };
    },
  }),
  setEnvironmentDestinations: t.field({
    type: EnvironmentDestinationsPayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'SetEnvironmentDestinationsResult' } },
    args: { input: t.arg({ type: SetEnvironmentDestinationsInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      environmentId: await setEnvironmentDestinations(
        ctx.deps,
        viewerOf(ctx),
        parseId(String(input.environmentId), 'Environment', ['input', 'environmentId']),
        parseIds(input.destinationIds.map(String), 'Destination', ['input', 'destinationIds']),
      ),
    }),
  }),
  testDestination: t.field({
    type: DestinationTestPayload,
    authScopes: { admin: true },
    description: 'Writes, reads, lists and deletes a probe object, timing each step; records the destination status.',
    errors: { types: allErrors, directResult: true, union: { name: 'TestDestinationResult' } },
    args: { input: t.arg({ type: DestinationIdInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const destinationId = parseId(String(input.id), 'Destination', ['input', 'id']);
      return { ...(await testDestination(ctx.deps, viewerOf(ctx), destinationId)), destinationId };
    },
  }),
  revealRepositoryPassword: t.field({
    type: RepositoryPasswordPayload,
    authScopes: { admin: true },
    description: 'The repository password of a destination, for disaster recovery with restic. Recorded as an audit event.',
    errors: { types: allErrors, directResult: true, union: { name: 'RevealRepositoryPasswordResult' } },
    args: { input: t.arg({ type: DestinationIdInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const destinationId = parseId(String(input.id), 'Destination', ['input', 'id']);
      return { ...(await revealRepositoryPassword(ctx.deps, viewerOf(ctx), destinationId)), destinationId };
    },
  }),
}));

