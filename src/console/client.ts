/**
 * The console's GraphQL client: urql with graphcache (a normalized cache, so a Snapshot or an
 * Operation updated by a mutation or a subscription event is updated everywhere it is shown),
 * queries and mutations over HTTP, subscriptions over graphql-ws.
 */
import { Client, fetchExchange, mapExchange, subscriptionExchange, type CombinedError } from '@urql/core';
import { cacheExchange, type Cache } from '@urql/exchange-graphcache';
import { createClient as createWsClient } from 'graphql-ws';
import schema from 'backplane:introspection';

/** Types without an id are kept inside their parent instead of as entities of their own. */
const EMBEDDED = [
  'Viewer', 'AlertCounts', 'SnapshotCopy', 'Download', 'RetentionPolicy', 'RetentionPreview', 'RetentionDecision', 'CronPreset',
  'DestinationProbeStepResult', 'DestinationTestPayload', 'EnvironmentActivityEvent', 'SnapshotOperationPayload', 'SnapshotPayload',
  'RestorePayload', 'OperationPayload', 'AlertPayload', 'SchedulePayload', 'ConflictError', 'NotFoundError', 'ValidationError',
  'FieldError', 'SnapshotSizeEstimate', 'PageInfo', 'RedactedCredentials', 'PointInTimeRecovery',
];

function invalidateField(cache: Cache, entity: { __typename: string; id: string } | 'Query', field: string) {
  for (const f of cache.inspectFields(entity)) if (f.fieldName === field) cache.invalidate(entity, f.fieldName, f.arguments ?? undefined);
}

function environmentOf(args: Record<string, unknown>): string | undefined {
  const input = args.input as { environmentId?: string } | undefined;
  return input?.environmentId;
}

export interface ClientEvents {
  /** The API refused the key (expired, revoked, unknown): back to sign-in with its words. */
  unauthenticated(message: string): void;
  /** graphql-ws connected again after losing its socket: views re-read what may have moved meanwhile. */
  reconnected(): void;
}

export function createConsoleClient(key: string, events: ClientEvents) {
  const authorization = `Bearer ${key}`;
  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`;
  let connectedBefore = false;
  const ws = createWsClient({
    url: wsUrl,
    connectionParams: { authorization },
    lazy: true,
    // A control plane's console stays open for hours: keep trying, with graphql-ws' own backoff.
    retryAttempts: Number.MAX_SAFE_INTEGER,
    shouldRetry: () => true,
    on: {
      connected: () => {
        if (connectedBefore) events.reconnected();
        connectedBefore = true;
      },
    },
  });

  const isUnauthenticated = (error: CombinedError) =>
    error.response?.status === 401 || error.graphQLErrors.some((e) => e.extensions?.code === 'UNAUTHENTICATED');

  const client = new Client({
    url: '/graphql',
    requestPolicy: 'cache-and-network',
    fetchOptions: () => ({ headers: { authorization } }),
    exchanges: [
      mapExchange({
        onError(error) {
          if (isUnauthenticated(error)) events.unauthenticated(error.graphQLErrors[0]?.message ?? 'The API key was refused');
        },
      }),
      cacheExchange({
        schema,
        keys: Object.fromEntries(EMBEDDED.map((t) => [t, () => null])),
        updates: {
          Mutation: {
            createSnapshot(_r, args, cache) {
              const env = environmentOf(args);
              if (env) invalidateField(cache, { __typename: 'Environment', id: env }, 'snapshots');
            },
            restoreSnapshot(_r, _args, cache) {
              for (const f of cache.inspectFields('Query')) if (f.fieldName === 'environment') cache.invalidate('Query', f.fieldName, f.arguments ?? undefined);
            },
            upsertSchedule(_r, _args, cache) {
              invalidateField(cache, 'Query', 'schedule');
            },
            dismissAlert(_r, _args, cache) {
              invalidateField(cache, 'Query', 'alertCounts');
            },
            markAlertRead(_r, _args, cache) {
              invalidateField(cache, 'Query', 'alertCounts');
            },
          },
          Subscription: {
            alertCreated(_r, _args, cache) {
              invalidateField(cache, 'Query', 'alertCounts');
              invalidateField(cache, 'Query', 'alerts');
            },
            environmentActivity(result, args, cache) {
              const event = result.environmentActivity as { kind: string; snapshot?: { status: string } | null } | null;
              const env = { __typename: 'Environment', id: args.environmentId as string };
              // A snapshot that appears, ends or goes changes lists (pages, counts, filters by status);
              // its other changes update it in place.
              if (event?.kind === 'SNAPSHOT' && ['CREATING', 'READY', 'FAILED', 'DELETED'].includes(event.snapshot?.status ?? '')) invalidateField(cache, env, 'snapshots');
              if (event?.kind === 'RESTORE') invalidateField(cache, env, 'restoreLogs');
            },
          },
        },
      }),
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query ?? '' };
          return {
            subscribe(sink) {
              const unsubscribe = ws.subscribe(input, sink as never);
              return { unsubscribe };
            },
          };
        },
      }),
      fetchExchange,
    ],
  });
  return { client, dispose: () => void ws.dispose() };
}
