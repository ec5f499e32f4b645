/**
 * What subscriptions share. The bus hands one event to every subscriber of its topic and key in
 * this process as the same payload object: `readOnce` makes the catalog read an event needs once
 * for all of them (an environment watched by 1,000 clients costs one read per event, not 1,000),
 * and each subscriber's own ACCESS rule then decides on that row what it may see (`isVisible`,
 * which takes the decision from the row when the rule's `fast` can). `liveEvents` ends a
 * subscription with UNAUTHENTICATED as soon as its key is revoked.
 */
import { GraphQLError } from 'graphql';
import { ALL, type Published, type SubscribeOptions, type Topic } from '../events/bus.ts';
import type { Context } from './builder.ts';
import { viewerOf } from './viewer-of.ts';

const reads = new WeakMap<object, Map<string, unknown>>();

/**
 * The result of `read` for this event, read once for every subscriber that asks under `what`.
 * Read after the event arrived, so it shows at least the change the event announced; kept only as
 * long as the event object lives.
 */
export function readOnce<T>(event: object, what: string, read: () => T): T {
  let mine = reads.get(event);
  if (!mine) reads.set(event, (mine = new Map()));
  let answer = mine.get(what) as T;
  if (!mine.has(what)) mine.set(what, (answer = read()));
  return answer;
}

export interface LiveEvents<T extends Topic> extends AsyncIterableIterator<Published<T>> {
  /** Throws UNAUTHENTICATED once the subscriber's key has been revoked: called again before yielding what was read for an event. */
  assertLive(): void;
}

type Track = <I extends AsyncIterator<unknown>>(it: I) => I;

const revokedError = () => new GraphQLError('API key has been revoked', { extensions: { code: 'UNAUTHENTICATED' } });

/**
 * A subscription's events of one topic and key, registered with `track` (endsPromptly). When the
 * viewer's key is revoked (through any process: the revocation is published on the bus as it
 * commits) the iterator throws UNAUTHENTICATED, before the events that were still queued.
 * `opts`: see EventBus.subscribePublished.
 */
export function liveEvents<T extends Topic>(ctx: Context, track: Track, topic: T, key: string, opts: SubscribeOptions<T> = {}): LiveEvents<T> {
  const viewer = viewerOf(ctx);
  const stop = new AbortController();
  let revoked = false;
  const revocations = ctx.deps.events.subscribe('apiKeyRevoked', ALL, stop.signal);
  void (async () => {
    for await (const r of revocations) {
      if (r.apiKeyId !== viewer.apiKeyId) continue;
      revoked = true;
      stop.abort();
    }
  })();
  const events = ctx.deps.events.subscribePublished(topic, key, stop.signal, opts);
  const assertLive = () => {
    if (revoked) throw revokedError();
  };
  const it: LiveEvents<T> = {
    async next() {
      const n = await events.next();
      assertLive();
      return n;
    },
    async return() {
      stop.abort();
      await events.return?.();
      return { value: undefined, done: true };
    },
    assertLive,
    [Symbol.asyncIterator]() {
      return it;
    },
  };
  return track(it);
}
