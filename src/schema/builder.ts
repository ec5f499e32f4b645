import SchemaBuilder from '@pothos/core';
import ErrorsPlugin from '@pothos/plugin-errors';
import PrismaPlugin from '@pothos/plugin-prisma';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin, { AuthScopeFailureType, type AuthFailure } from '@pothos/plugin-scope-auth';
import InputGuardPlugin from './input-guard.ts';
import { GraphQLError } from 'graphql';
import type PrismaTypes from '../generated/pothos-types.ts';
import { getDatamodel } from '../generated/pothos-types.ts';
import type { Db } from '../db/client.ts';
import type { Deps } from '../services/deps.ts';
import type { UploadedDump } from '../services/imports.ts';
import type { Viewer } from '../services/viewer.ts';
import { isVisible, type AccessModel } from './access.ts';

/** What every resolver receives. */
export interface Context {
  deps: Deps;
  viewer: Viewer | null;
  requestId: string;
  /** The Idempotency-Key header, used by mutations that start work when the input has no key. */
  idempotencyKey?: string;
  /** Origin for links the API hands out (downloads): PUBLIC_URL, or the request's own origin. */
  baseUrl?: string;
  /** Files of this multipart request, by the placeholder the Upload variables hold (app/multipart-upload.ts). */
  uploads?: Map<string, UploadedDump>;
}

/** The GraphQL-facing scope names, and the API key scope each one needs. */
const REQUIRED_SCOPE = { authenticated: null, read: 'backups:read', write: 'backups:write', admin: 'admin' } as const;

/** The first plain scope whose absence made a check fail (`visible` failures name none). */
function missingScope(failure: AuthFailure): keyof typeof REQUIRED_SCOPE | 'visible' | null {
  if (failure.kind === AuthScopeFailureType.AuthScope) return failure.scope in REQUIRED_SCOPE || failure.scope === 'visible' ? (failure.scope as never) : null;
  if (failure.kind === AuthScopeFailureType.AllAuthScopes || failure.kind === AuthScopeFailureType.AnyAuthScopes) {
    for (const f of failure.failures) {
      const s = missingScope(f);
      if (s) return s;
    }
  }
  return null;
}

const forbidden = (message: string, extensions: Record<string, unknown> = {}) =>
  new GraphQLError(message, { extensions: { code: 'FORBIDDEN', ...extensions, http: { status: 200 } } });

/**
 * The one Pothos builder. Plugin order matters: scope-auth runs first so an unauthorized caller
 * never reaches a resolver; errors wraps resolvers so thrown AppErrors become typed results; the
 * input guard, inside it, refuses string arguments PostgreSQL cannot store, for every field at once.
 *
 * AUTHORIZATION — how to expose a type safely:
 * - Fields of Query, Mutation and Subscription declare `authScopes` (`read`, `write`, `admin`,
 *   or `authenticated`): what the caller must hold to call them.
 * - Every prismaObject / prismaNode declares `authScopes: typeAccess('Model')` and has its rule
 *   (least scope + visibility `where`) in `ACCESS` (src/schema/access.ts). That check runs for each
 *   object of the type wherever it appears, so a relation or a payload cannot show more than
 *   `node(id)` would. `index.ts` refuses to build a schema where a Prisma type lacks either.
 * - Root fields and list relations filter with `visibleWhere(ctx, 'Model', …)`; `node` loads
 *   through the same rule. Mutation arguments naming objects are read through the services'
 *   viewer filters (`src/services/viewer.ts`), which are the same `where` functions.
 */
export const builder = new SchemaBuilder<{
  Context: Context;
  PrismaTypes: PrismaTypes;
  AuthScopes: { authenticated: boolean; read: boolean; write: boolean; admin: boolean; visible: { model: AccessModel; row: Record<string, unknown> } };
  DefaultFieldNullability: false;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
    BigInt: { Input: bigint; Output: bigint | number };
    JSON: { Input: unknown; Output: unknown };
    Upload: { Input: string; Output: never };
  };
}>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin, ErrorsPlugin, InputGuardPlugin, PrismaPlugin, RelayPlugin],
  scopeAuth: {
    // A subscription is refused when it starts, not at its first event: its subscribe function
    // (listening, reading ids) never runs for a caller without the scope.
    authorizeOnSubscribe: true,
    authScopes: (ctx) => ({
      authenticated: !!ctx.viewer,
      read: !!ctx.viewer?.scopes.has('backups:read'),
      write: !!ctx.viewer?.scopes.has('backups:write'),
      admin: !!ctx.viewer?.scopes.has('admin'),
      visible: ({ model, row }) => isVisible(ctx, model, row),
    }),
    unauthorizedError: (_parent, ctx, info, result) => {
      if (!ctx.viewer) return new GraphQLError('Authentication required: send Authorization: Bearer <api key>', { extensions: { code: 'UNAUTHENTICATED' } });
      const scope = missingScope(result.failure);
      const root = ['Query', 'Mutation', 'Subscription'].includes(info.parentType.name);
      const field = root ? info.fieldName : `${info.parentType.name}.${info.fieldName}`;
      // An object outside the key's projects or organization: said without naming it or its owner.
      if (scope === 'visible') return forbidden(`This ${info.parentType.name} is not visible to this API key`);
      const required = scope ? REQUIRED_SCOPE[scope] : null;
      if (!required) return forbidden(`This API key may not use ${field}`);
      return forbidden(`This API key lacks the scope ${required} needed by ${field}`, { requiredScope: required });
    },
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
