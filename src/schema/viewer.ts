import { typeAccess } from './access.ts';
import { builder } from './builder.ts';
import { viewerOf } from './viewer-of.ts';

export const Organization = builder.prismaNode('Organization', {
  authScopes: typeAccess('Organization'),
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  fields: (t) => ({
    name: t.exposeString('name'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

const ViewerType = builder.objectRef<{ organizationId: string; apiKeyId: string; scopes: string[]; limitedToProjects: boolean }>('Viewer').implement({
  description: 'Who is calling: the API key and its organization',
  fields: (t) => ({
    scopes: t.stringList({ resolve: (v) => v.scopes, description: 'Effective scopes, e.g. ["backups:read", "backups:write"]' }),
    limitedToProjects: t.exposeBoolean('limitedToProjects'),
    organization: t.prismaField({
      type: 'Organization',
      resolve: (query, v, _a, ctx) => ctx.deps.db.organization.findUniqueOrThrow({ ...query, where: { id: v.organizationId } }),
    }),
    apiKey: t.prismaField({
      type: 'ApiKey',
      resolve: (query, v, _a, ctx) => ctx.deps.db.apiKey.findUniqueOrThrow({ ...query, where: { id: v.apiKeyId } }),
    }),
  }),
});

builder.queryFields((t) => ({
  viewer: t.field({
    type: ViewerType,
    authScopes: { authenticated: true },
    resolve: (_root, _args, ctx) => {
      const v = viewerOf(ctx);
      return { organizationId: v.organizationId, apiKeyId: v.apiKeyId, scopes: [...v.scopes].sort(), limitedToProjects: v.projectIds !== null };
    },
  }),
  organization: t.prismaField({
    type: 'Organization',
    authScopes: { authenticated: true },
    description: "The caller's organization",
    resolve: (query, _root, _args, ctx) => ctx.deps.db.organization.findUniqueOrThrow({ ...query, where: { id: viewerOf(ctx).organizationId } }),
  }),
}));
