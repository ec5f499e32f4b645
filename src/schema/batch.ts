/**
 * Per-request batching for fields of list items: calls made in the same turn of the event loop
 * (the items of one list resolve together) with the same `group` are answered by one `load` of
 * all their keys, as VisibilityBatch does for access checks (src/schema/access.ts).
 */
import type { Context } from './builder.ts';

type Pending = { keys: Set<string>; loaded: Promise<Map<string, unknown>> };

const requests = new WeakMap<Context, Map<string, Pending>>();

/**
 * The value of `key` from a load of every key asked for in this turn under `group`. `group` must
 * name everything the load depends on besides the keys (the field, its arguments, the selection).
 */
export function batched<V>(ctx: Context, group: string, key: string, load: (keys: string[]) => Promise<Map<string, V>>): Promise<V | undefined> {
  let groups = requests.get(ctx);
  if (!groups) requests.set(ctx, (groups = new Map()));
  let pending = groups.get(group);
  if (!pending) {
    const keys = new Set<string>();
    const loaded = new Promise<void>((r) => setImmediate(r)).then(() => {
      groups.delete(group);
      return load([...keys]) as Promise<Map<string, unknown>>;
    });
    pending = { keys, loaded };
    groups.set(group, pending);
  }
  pending.keys.add(key);
  return pending.loaded.then((m) => m.get(key) as V | undefined);
}

/** A Pothos `query` (select or include) that also selects `id`, so rows loaded for a batch can be matched to their keys. */
export function withId<Q extends object>(query: Q): Q {
  const q = query as { select?: Record<string, unknown> };
  return (q.select ? { ...query, select: { ...q.select, id: true } } : query) as Q;
}

/** Rows by their id. */
export function byId<R extends { id: string }>(rows: R[]): Map<string, R> {
  return new Map(rows.map((r) => [r.id, r]));
}
