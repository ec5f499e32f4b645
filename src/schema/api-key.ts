import { ApiScope } from '../generated/prisma/enums.ts';
import { apiKeyWhere, createApiKey, revokeApiKey } from '../services/api-keys.ts';
import { scopeFromDb } from '../domain/scopes.ts';
import { typeAccess } from './access.ts';
import { builder } from './builder.ts';
import { allErrors } from './errors.ts';
import { parseId, parseIds } from './ids.ts';
import { viewerOf } from './viewer-of.ts';

export const ApiScopeEnum = builder.enumType(ApiScope, {
  name: 'ApiScope',
  description: 'BACKUPS_READ (backups:read), BACKUPS_WRITE (backups:write, includes read), ADMIN (includes both)',
});

export const ApiKey = builder.prismaNode('ApiKey', {
  authScopes: typeAccess('ApiKey'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  fields: (t) => ({
    name: t.exposeString('name'),
    prefix: t.exposeString('prefix', { description: 'The public part of the key, for telling keys apart' }),
    scopes: t.expose('scopes', { type: [ApiScopeEnum] }),
    projects: t.prismaField({
      type: ['Project'],
      description: 'Projects this key is limited to; empty when it may use every project',
      select: { projects: { select: { projectId: true } } },
      resolve: (query, key, _args, ctx) =>
        ctx.deps.db.project.findMany({ ...query, where: { id: { in: key.projects.map((p) => p.projectId) } }, orderBy: { id: 'asc' } }),
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
  }),
});

builder.queryFields((t) => ({
  apiKeys: t.prismaConnection({
    type: 'ApiKey',
    cursor: 'id',
    authScopes: { admin: true },
    description: 'API keys of the organization (admin scope), oldest first',
    totalCount: (_c, _a, ctx) => ctx.deps.db.apiKey.count({ where: apiKeyWhere(viewerOf(ctx)) }),
    resolve: (query, _root, _args, ctx) => ctx.deps.db.apiKey.findMany({ ...query, where: apiKeyWhere(viewerOf(ctx)), orderBy: { id: 'asc' } }),
  }),
}));

const CreateApiKeyInput = builder.inputType('CreateApiKeyInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    scopes: t.field({ type: [ApiScopeEnum], required: true }),
    projectIds: t.idList({ description: 'Limit the key to these projects; omit for every project' }),
    expiresAt: t.field({ type: 'DateTime' }),
  }),
});

const CreateApiKeyPayload = builder.objectRef<{ apiKeyId: string; secret: string }>('CreateApiKeyPayload').implement({
  fields: (t) => ({
    secret: t.exposeString('secret', { description: 'The whole key. Shown only this once: store it now.' }),
    apiKey: t.prismaField({ type: 'ApiKey', resolve: (query, p, _a, ctx) => ctx.deps.db.apiKey.findUniqueOrThrow({ ...query, where: { id: p.apiKeyId } }) }),
  }),
});

const RevokeApiKeyInput = builder.inputType('RevokeApiKeyInput', { fields: (t) => ({ id: t.id({ required: true }) }) });
const RevokeApiKeyPayload = builder.objectRef<{ apiKeyId: string }>('RevokeApiKeyPayload').implement({
  fields: (t) => ({
    apiKey: t.prismaField({ type: 'ApiKey', resolve: (query, p, _a, ctx) => ctx.deps.db.apiKey.findUniqueOrThrow({ ...query, where: { id: p.apiKeyId } }) }),
  }),
});

builder.mutationFields((t) => ({
  createApiKey: t.field({
    type: CreateApiKeyPayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'CreateApiKeyResult' } },
    args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const projectIds = input.projectIds ? parseIds(input.projectIds.map(String), 'Project', ['input', 'projectIds']) : undefined;
      const issued = await createApiKey(ctx.deps, viewerOf(ctx), {
        name: input.name,
        scopes: input.scopes.map((s) => scopeFromDb[s]),
        projectIds,
        expiresAt: input.expiresAt ?? null,
      });
      return { apiKeyId: issued.id, secret: issued.secret };
    },
  }),
  revokeApiKey: t.field({
    type: RevokeApiKeyPayload,
    authScopes: { admin: true },
    errors: { types: allErrors, directResult: true, union: { name: 'RevokeApiKeyResult' } },
    args: { input: t.arg({ type: RevokeApiKeyInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      apiKeyId: await revokeApiKey(ctx.deps, viewerOf(ctx), parseId(String(input.id), 'ApiKey', ['input', 'id'])),
    }),
  }),
}));
