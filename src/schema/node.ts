import { brandWithType } from '@pothos/core';
import { GraphQLError } from 'graphql';
import { builder, type Context } from './builder.ts';
import { tryDecodeId } from './ids.ts';
import { loadVisibleNode } from './access.ts';

/**
 * `node(id)` loads every type through its one rule in `ACCESS` (access.ts): an id of another
 * organization or project, of a type the key lacks the scope for, or of a type that is not a
 * node, resolves to null, exactly like an id that never existed.
 */
async function loadNode(ctx: Context, globalId: string): Promise<object | null> {
  const decoded = tryDecodeId(globalId);
  return decoded ? loadNodeOf(ctx, decoded.typename, decoded.id) : null;
}

/** An object of a node type by its database id, through the same rule as `node(id)`. */
export async function loadNodeOf(ctx: Context, typename: string, id: string): Promise<object | null> {
  const obj = await loadVisibleNode(ctx, typename, id);
  if (obj) brandWithType(obj, typename as never);
  return obj;
}

builder.queryFields((t) => ({
  node: t.field({
    type: builder.nodeInterfaceRef(),
    nullable: true,
    description: 'Any object by its global id; null when it does not exist or is not visible to this key.',
    authScopes: { read: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, ctx) => loadNode(ctx, String(id)) as never,
  }),
  nodes: t.field({
    type: [builder.nodeInterfaceRef()],
    nullable: { list: false, items: true },
    description: 'Several objects by global id, in the order asked; null for each one not found.',
    authScopes: { read: true },
    args: { ids: t.arg.idList({ required: true }) },
    resolve: async (_root, { ids }, ctx) => {
      if (ids.length > 100) throw new GraphQLError('nodes takes at most 100 ids', { extensions: { code: 'BAD_USER_INPUT' } });
      return Promise.all(ids.map((id) => loadNode(ctx, String(id)))) as never;
    },
  }),
}));
