/**
 * One execution per event for every subscriber that would get the same answer. A subscription
 * resolver yields the same object to all of the process's subscribers of an event (readOnce in
 * schema/live.ts); graphql's subscribe then executes the selection set once per subscriber, which
 * with 1,000 watchers of an operation was most of the API's work per event and made the last of
 * them wait for the other 999. This plugin executes it once per (event, document, variables,
 * viewer, base URL) and hands every subscriber of that group the same result; a subscriber with
 * another viewer gets its own execution, so each answer is the one its own ACCESS rules give.
 * Results are kept with the event object only (a WeakMap), and are never changed after: hooks that
 * adjust a result (error masking) make a new one.
 */
import { createSourceEventStream, execute, GraphQLError, type DocumentNode, type ExecutionArgs, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Viewer } from '../services/viewer.ts';

type Result = ExecutionResult | Promise<ExecutionResult>;

const executions = new WeakMap<object, Map<string, Result>>();
const documentIds = new WeakMap<DocumentNode, string>();
let nextDocumentId = 0;

/** A document's text when the parser kept it (the parse cache hands every subscriber one object anyway), else its identity. */
function documentKey(doc: DocumentNode): string {
  const text = doc.loc?.source.body;
  if (text !== undefined) return text;
  let id = documentIds.get(doc);
  if (!id) documentIds.set(doc, (id = `#${nextDocumentId++}`));
  return id;
}

/** Everything an execution's answer depends on besides the event: the operation, its variables and who asks. */
function groupKey(args: ExecutionArgs): string {
  const ctx = (args.contextValue ?? {}) as { viewer?: Viewer | null; baseUrl?: string };
  const v = ctx.viewer;
  const viewer = v ? [v.organizationId, v.apiKeyId, [...v.scopes].sort(), v.projectIds ? [...v.projectIds].sort() : null] : null;
  return JSON.stringify([documentKey(args.document), args.operationName ?? null, args.variableValues ?? null, viewer, ctx.baseUrl ?? null]);
}

/** As graphql's subscribe maps a source error: the operation's node, the cause kept. */
function sourceError(err: unknown, args: ExecutionArgs): GraphQLError {
  const original = err instanceof Error ? err : new Error(String(err));
  const operation = args.document.definitions.find((d) => d.kind === 'OperationDefinition' && (!args.operationName || d.name?.value === args.operationName));
  return new GraphQLError(original.message, { nodes: operation ? [operation] : undefined, originalError: original });
}

function sharedStream(source: AsyncIterator<unknown>, args: ExecutionArgs): AsyncIterableIterator<ExecutionResult> {
  const key = groupKey(args);
  const run = (payload: unknown): Result => {
    if (typeof payload !== 'object' || payload === null) return execute({ ...args, rootValue: payload });
    let mine = executions.get(payload);
    if (!mine) executions.set(payload, (mine = new Map()));
    let result = mine.get(key);
    if (!result) mine.set(key, (result = execute({ ...args, rootValue: payload })));
    return result;
  };
  // An iterator rather than a generator: return() must reach the source at once, not wait for the next event.
  const it: AsyncIterableIterator<ExecutionResult> = {
    async next() {
      let n: IteratorResult<unknown>;
      try {
        n = await source.next();
      } catch (err) {
        throw sourceError(err, args);
      }
      if (n.done) return { value: undefined, done: true };
      return { value: await run(n.value), done: false };
    },
    async return() {
      await source.return?.();
      return { value: undefined, done: true };
    },
    async throw(err: unknown) {
      await source.return?.();
      throw err;
    },
    [Symbol.asyncIterator]() {
      return it;
    },
  };
  return it;
}

/** The envelop plugin: subscriptions share their per-event executions; anything that fails before a stream exists goes the usual way. */
export const sharedSubscriptionEvents: Plugin = {
  onSubscribe({ subscribeFn, setSubscribeFn }) {
    setSubscribeFn(async (args) => {
      const source = await createSourceEventStream(args);
      // Errors (bad variables, a refused subscribe): the usual path answers them, with its codes.
      if (!(Symbol.asyncIterator in source)) return subscribeFn(args);
      return sharedStream(source[Symbol.asyncIterator](), args);
    });
  },
};
