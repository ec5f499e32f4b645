import SchemaBuilder from '@pothos/core';
import ErrorsPlugin from '@pothos/plugin-errors';
import PrismaPlugin from '@pothos/plugin-prisma';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import InputGuardPlugin from './input-guard.ts';
import { GraphQLError } from 'graphql';
import type PrismaTypes from '../generated/pothos-types.ts';
import { getDatamodel } from '../generated/pothos-types.ts';
import type { Db } from '../db/client.ts';
import type { Deps } from '../services/deps.ts';
import type { Viewer } from '../services/viewer.ts';

/** What every resolver receives. */
export interface Context {
  deps: Deps;
  viewer: Viewer | null;
  requestId: string;
  /** The Idempotency-Key header, used by mutations that start work when the input has no key. */
  idempotencyKey?: string;
  /** Origin for links the API hands out (downloads): PUBLIC_URL, or the request's own origin. */
  baseUrl?: string;
}

/**
 * The one Pothos builder. Plugin order matters: scope-auth runs first so an unauthorized caller
 * never reaches a resolver; errors wraps resolvers so thrown AppErrors become typed results; the
 * input guard, inside it, refuses string arguments PostgreSQL cannot store, for every field at once.
 */
export const builder = new SchemaBuilder<{
  Context: Context;
  PrismaTypes: PrismaTypes;
  AuthScopes: { authenticated: boolean; read: boolean; write: boolean; admin: boolean };
  DefaultFieldNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    BigInt: { Input: bigint; Output: bigint | number };
    JSON: { Input: unknown; Output: unknown };
  };
}>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin, ErrorsPlugin, InputGuardPlugin, PrismaPlugin, RelayPlugin],
  scopeAuth: {
    authScopes: (ctx) => ({
      authenticated: !!ctx.viewer,
      read: !!ctx.viewer?.scopes.has('backups:read'),
      write: !!ctx.viewer?.scopes.has('backups:write'),
      admin: !!ctx.viewer?.scopes.has('admin'),
    }),
    unauthorizedError: (_parent, ctx) =>
      ctx.viewer
        ? new GraphQLError('This API key lacks the scope this field needs', { extensions: { code: 'FORBIDDEN', http: { status: 200 } } })
        : new GraphQLError('Authentication required: send Authorization: Bearer <api key>', { extensions: { code: 'UNAUTHENTICATED' } }),
  },
  prisma: {
    // Resolved per request: tests and processes may run several databases.
    client: (ctx: Context): Db => ctx.deps.db,
    dmmf: getDatamodel(),
    filterConnectionTotalCount: true,
    onUnusedQuery: process.env.NODE_ENV === 'production' ? null : 'warn',
  },
  relay: {
    cursorType: 'String',
    clientMutationId: 'omit',
    nodeQueryOptions: false,
    nodesQueryOptions: false,
  },
  errors: {},
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
