/**
 * The client side of the GraphQL API: one query or mutation over HTTP, subscriptions over
 * graphql-ws. Failures come out as three kinds the command line maps to exit codes: the server
 * could not be reached (ConnectionError), it refused the key (AuthError), or it answered with an
 * error (ApiError).
 */
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type FormattedExecutionResult } from 'graphql';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

/** Bad command line input: exit code 2. */
export class ClientUsageError extends Error {
  override name = 'UsageError';
}
export class ConnectionError extends Error {
  override name = 'ConnectionError';
}
export class AuthError extends Error {
  override name = 'AuthError';
}
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

type ErrorResult = { __typename: string; code?: string; message?: string; fields?: Array<{ path: string[]; message: string }> };

/** A typed error result (NotFoundError, ValidationError…) becomes an ApiError with its code and field messages. */
export function refusedBy(p: ErrorResult): never {
  const fields = p.fields?.map((f) => `${f.path.join('.')}: ${f.message}`).join('; ');
  throw new ApiError(`${p.message ?? p.__typename}${fields ? ` (${fields})` : ''}`, p.code);
}

export interface ApiClient {
  readonly url: string;
  request<R, V>(doc: TypedDocumentNode<R, V>, variables: V): Promise<R>;
  /** The subscription's data, one value per event, until it completes or the connection drops. */
  subscribe<R, V>(doc: TypedDocumentNode<R, V>, variables: V): AsyncGenerator<R>;
}

/** `--url` may be the server's base URL or its /graphql endpoint. */
export function graphqlUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ApiError(`not a URL: ${raw}`);
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/graphql';
  return url;
}

function errorsOf(result: FormattedExecutionResult<unknown, unknown>): void {
  const first = result.errors?.[0];
  if (!first) return;
  const code = (first.extensions as { code?: string } | undefined)?.code;
  if (code === 'UNAUTHENTICATED' || code === 'FORBIDDEN') throw new AuthError(`the server refused the API key: ${first.message}`);
  throw new ApiError(first.message, code);
}

export function createApiClient(opts: { url: string; token: string }): ApiClient {
  const http = graphqlUrl(opts.url);
  const ws = new URL(http);
  ws.protocol = http.protocol === 'https:' ? 'wss:' : 'ws:';
  const authorization = `Bearer ${opts.token}`;

  return {
    url: http.toString(),
    async request(doc, variables) {
      let res: Response;
      try {
        res = await fetch(http, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', authorization },
          body: JSON.stringify({ query: print(doc), variables }),
        });
      } catch (err) {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw new ConnectionError(`cannot reach ${http}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
      }
      let body: FormattedExecutionResult<never>;
      try {
        body = (await res.json()) as FormattedExecutionResult<never>;
      } catch {
        if (res.status === 401) throw new AuthError('the server refused the API key');
        throw new ConnectionError(`${http} answered ${res.status} ${res.statusText}, not GraphQL`);
      }
      errorsOf(body);
      if (!body.data) throw new ApiError(`${http} answered ${res.status} without data`);
      return body.data;
    },
    async *subscribe(doc, variables) {
      // No retries inside graphql-ws: the caller re-reads the state after a reconnect, which the
      // library's own retry would skip.
      const client = createClient({
        url: ws.toString(),
        webSocketImpl: WebSocket,
        connectionParams: { Authorization: authorization },
        retryAttempts: 0,
        lazy: true,
      });
      try {
        const events = client.iterate({ query: print(doc), variables: variables as Record<string, unknown> });
        for (;;) {
          let next: IteratorResult<FormattedExecutionResult<Record<string, unknown>, unknown>>;
          try {
            next = await events.next();
          } catch (err) {
            // graphql-ws rejects with the server's errors (an array) or with the socket's close or error event.
            if (Array.isArray(err)) {
              errorsOf({ errors: err });
              throw new ApiError('the subscription failed');
            }
            const close = err as { code?: number; reason?: string; message?: string };
            const why = close.code ? ` (${close.code}${close.reason ? ` ${close.reason}` : ''})` : close.message ? `: ${close.message}` : '';
            throw new ConnectionError(`connection to ${ws} lost${why}`);
          }
          if (next.done) return;
          errorsOf(next.value);
          yield next.value.data as never;
        }
      } finally {
        await client.dispose();
      }
    },
  };
}
