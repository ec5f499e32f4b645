import { AUDIT_ACTIONS } from '../services/audit.ts';
import { builder } from './builder.ts';
import { encodeGlobalID } from './ids.ts';
import { typeAccess, visibleWhere } from './access.ts';
import { loadNodeOf } from './node.ts';

// The GraphQL type a target id belongs to, from the action's `<type>.<verb>` prefix.
const TARGET_TYPES: Record<string, string> = { destination: 'Destination' };
const targetTypeOf = (action: string) => TARGET_TYPES[action.split('.')[0]] ?? null;

builder.prismaNode('AuditEvent', {
  id: { field: 'id' },
  findUnique: (id) => ({ id }),
  description: 'A sensitive action (such as revealing a repository password) and the key that did it. Admin scope.',
  // The type's one rule (ACCESS in access.ts), wherever an event is reached: an admin key of the same organization.
  authScopes: typeAccess('AuditEvent'),
  fields: (t) => ({
    action: t.exposeString('action', { description: `<type>.<verb>, one of: ${AUDIT_ACTIONS.join(', ')}` }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    apiKey: t.prismaField({
      type: 'ApiKey',
      nullable: true,
      description: 'The key that did it; null once that key is deleted or when this key may not see it',
      select: { apiKeyId: true },
      resolve: (query, e, _a, ctx) => (e.apiKeyId ? ctx.deps.db.apiKey.findFirst({ ...query, where: visibleWhere(ctx, 'ApiKey', { id: e.apiKeyId }) }) : null),
    }),
    targetId: t.id({
      nullable: true,
      description: 'Global id of what the action was done to (it may since have been deleted)',
      select: { action: true, targetId: true },
      resolve: (e) => {
        const type = targetTypeOf(e.action);
        return e.targetId && type ? encodeGlobalID(type, e.targetId) : null;
      },
    }),
    target: t.field({
      type: builder.nodeInterfaceRef(),
      nullable: true,
      description: 'What the action was done to, when it still exists and this key may see it',
      select: { action: true, targetId: true },
      resolve: (e, _a, ctx) => {
        const type = targetTypeOf(e.action);
        return (e.targetId && type ? loadNodeOf(ctx, type, e.targetId) : null) as never;
      },
    }),
  }),
});

builder.queryFields((t) => ({
  auditEvents: t.prismaConnection({
    type: 'AuditEvent',
    cursor: 'id',
    authScopes: { admin: true },
    description: 'Audit events of the organization (admin scope), newest first',
    args: { actions: t.arg.stringList({ description: 'Only these actions' }) },
    totalCount: (_c, args, ctx) => ctx.deps.db.auditEvent.count({ where: visibleWhere(ctx, 'AuditEvent', args.actions ? { action: { in: args.actions } } : {}) }),
    resolve: (query, _root, args, ctx) =>
      ctx.deps.db.auditEvent.findMany({ ...query, where: visibleWhere(ctx, 'AuditEvent', args.actions ? { action: { in: args.actions } } : {}), orderBy: { id: 'desc' } }),
  }),
}));
