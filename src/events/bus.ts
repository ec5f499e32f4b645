/**
 * Events: small JSON messages that cross processes through PostgreSQL LISTEN/NOTIFY.
 *
 * A topic names a kind of event; a key routes it (an environment id, an operation id, an
 * organization id). Payloads carry ids and small state only — NOTIFY caps them at 8000 bytes, and
 * subscribers re-read what they show. Each process holds one LISTEN connection and fans messages
 * out to its local subscribers, handing each the same payload object (schema/live.ts reads once
 * per event on it).
 */
import pg from 'pg';
import type { Logger } from '../app/logger.ts';

/** The typed topic map: topic name → payload. */
export interface Topics {
  environmentActivity: {
    kind: 'ENVIRONMENT_UPDATED' | 'ENVIRONMENT_DELETED' | 'SNAPSHOT' | 'RESTORE' | 'OPERATION' | 'RECOVERY_INSTANCE';
    environmentId: string;
    /** The entity the event is about (environment, snapshot, restore log, operation, recovery instance). */
    subjectId: string;
  };
  operation: { operationId: string; status: string };
  alertCreated: { organizationId: string; alertId: string };
  /** Keyed by ALL: every process forgets the key at once (see services/api-keys.ts). */
  apiKeyRevoked: { apiKeyId: string };
  /**
   * Keyed by ALL: a process has forgotten a revoked key; `listener` is the backend pid of its LISTEN
   * connection, which the revoking process matches against the listeners it sees (services/api-keys.ts).
   */
  apiKeyForgotten: { apiKeyId: string; listener: number };
  /** Keyed by ALL: a worker's figures after each job, for the /metrics of every API process (app/metrics.ts). */
  workerMetrics: {
    jobs: { task: string; outcome: 'success' | 'error' | 'handed_back'; seconds: number }[];
    io: { destinationId: string; read: number; written: number }[];
  };
}

/** The key of topics every process hears whole. */
export const ALL = '*';
export type Topic = keyof Topics;

export const CHANNEL = 'backplane_events';

interface Envelope {
  t: Topic;
  k: string;
  p: unknown;
  /** When the event was published (ms since the epoch, the publisher's clock): subscribers report it, and lag is measured from it. */
  at: number;
}

/** An event as a subscriber receives it: its payload and the moment it was published. */
export interface Published<T extends Topic> {
  payload: Topics[T];
  at: Date;
}

export interface SubscribeOptions<T extends Topic> {
  replaces?: (unread: Topics[T], next: Topics[T]) => boolean;
}

/** Something that can run a parameterised SQL statement: a pool, a client, or a Prisma transaction adapter. */
export type SqlRunner = (sql: string, params: unknown[]) => Promise<unknown>;

export interface EventBus {
  /** Publishes now (outside any transaction). */
  publish<T extends Topic>(topic: T, key: string, payload: Topics[T]): Promise<void>;
  /** Events of one topic and key, from the moment of the call, until the signal aborts or return() is called. */
  subscribe<T extends Topic>(topic: T, key: string, signal?: AbortSignal): AsyncIterableIterator<Topics[T]>;
  /**
   * As subscribe, with each event's publication time (for subscriptions that show when something
   * happened). `replaces(unread, next)`: the last unread event is dropped when it says the next one
   * replaces it, for a subscriber that re-reads the current state on each event (an operation's
   * watcher, for progress of the same status): a slow one then skips states already past instead
   * of working through them.
   */
  subscribePublished<T extends Topic>(topic: T, key: string, signal?: AbortSignal, opts?: SubscribeOptions<T>): AsyncIterableIterator<Published<T>>;
  /** Live local subscriptions, of one topic or all (for /metrics, and for tests to know a subscriber is in place). */
  subscriberCount(topic?: Topic): number;
  /** The backend pid of the LISTEN connection (null while it reconnects). */
  listenerPid(): number | null;
  /** Stops listening and ends every subscription. */
  close(): Promise<void>;
}

/** application_name of every process's LISTEN connection: how one process finds the others' listeners. */
export const LISTENER_APPLICATION = 'backplane-events';

/** SQL and parameters that publish an event. */
export function notifyStatement<T extends Topic>(topic: T, key: string, payload: Topics[T]): [string, unknown[]] {
  // Stamped when the statement is made: inside a transaction that is before the commit, so the
  // time covers the commit and the delivery (what a watcher waits for).
  const body = JSON.stringify({ t: topic, k: key, p: payload, at: Date.now() } satisfies Envelope);
  // Wrapped so the statement returns a plain row: drivers cannot decode pg_notify's void result.
  return ['SELECT count(*)::int AS sent FROM (SELECT pg_notify($1, $2)) AS n', [CHANNEL, body]];
}

/**
 * SQL that publishes one event per row of `rows` (a CTE, e.g. an UPDATE … RETURNING): the payload
 * is built by the SQL expression `payload` over the row, the key by `key`, the time is the
 * parameter `$<atParam>` (ms since the epoch). For a write whose watchers should hear of it in the
 * same statement, so with no round trip of the writer's between the change and its event.
 */
export function notifyRowsSql(topic: Topic, rows: string, key: string, payload: string, atParam: number): string {
  const envelope = `json_build_object('t', '${topic}', 'k', ${key}, 'p', ${payload}, 'at', $${atParam}::bigint)::text`;
  return `SELECT count(*)::int AS sent FROM (SELECT pg_notify('${CHANNEL}', ${envelope}) FROM ${rows}) AS n`;
}

/**
 * Publishes from inside a Prisma transaction: PostgreSQL delivers NOTIFY only on commit, so a
 * subscriber never hears of a change that was rolled back.
 */
export async function publishInTransaction<T extends Topic>(
  tx: { $queryRawUnsafe(sql: string, ...values: unknown[]): Promise<unknown> },
  topic: T,
  key: string,
  payload: Topics[T],
): Promise<void> {
  const [sql, params] = notifyStatement(topic, key, payload);
  await tx.$queryRawUnsafe(sql, ...params);
}

type Listener = (payload: unknown, at: number) => void;

/** Starts the process's LISTEN connection; resolves once it is listening. */
export async function createEventBus(databaseUrl: string, logger: Logger): Promise<EventBus> {
  const listeners = new Map<string, Set<Listener>>();
  const closers = new Set<() => void>();
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  let closed = false;
  let client: pg.Client | null = null;

  const dispatch = (raw: string | undefined) => {
    if (!raw) return;
    let env: Envelope;
    try {
      env = JSON.parse(raw) as Envelope;
    } catch (err) {
      logger.warn({ err }, 'ignoring malformed event');
      return;
    }
    // An envelope from a process of an older version has no time: it counts as heard now.
    const at = typeof env.at === 'number' ? env.at : Date.now();
    for (const l of listeners.get(`${env.t}:${env.k}`) ?? []) l(env.p, at);
  };

  const connect = async (): Promise<void> => {
    const c = new pg.Client({ connectionString: databaseUrl, application_name: LISTENER_APPLICATION });
    c.on('notification', (msg) => dispatch(msg.payload));
    c.on('error', (err) => {
      if (closed) return;
      logger.error({ err }, 'event listener connection lost; reconnecting');
      client = null;
      void reconnect();
    });
    await c.connect();
    await c.query(`LISTEN ${CHANNEL}`);
    client = c;
  };

  const reconnect = async (): Promise<void> => {
    for (let delay = 200; !closed; delay = Math.min(delay * 2, 5000)) {
      try {
        await connect();
        return;
      } catch (err) {
        logger.warn({ err, delay }, 'event listener reconnect failed');
        await new Promise((r) => setTimeout(r, delay).unref());
      }
    }
  };

  await connect();

  const subscribePublished = <T extends Topic>(topic: T, key: string, signal?: AbortSignal, opts: SubscribeOptions<T> = {}): AsyncIterableIterator<Published<T>> => {
    const id = `${topic}:${key}`;
    const queue: Published<T>[] = [];
    let wake: (() => void) | null = null;
    let done = false;
    const listener: Listener = (p, at) => {
      const event = { payload: p as Topics[T], at: new Date(at) };
      const unread = queue.at(-1);
      if (unread && opts.replaces?.(unread.payload, event.payload)) queue[queue.length - 1] = event;
      else queue.push(event);
      wake?.();
    };
    const finish = () => {
      if (done) return;
      done = true;
      const set = listeners.get(id);
      set?.delete(listener);
      if (set?.size === 0) listeners.delete(id);
      wake?.();
    };
    if (!listeners.has(id)) listeners.set(id, new Set());
    listeners.get(id)!.add(listener);
    signal?.addEventListener('abort', finish, { once: true });
    closers.add(finish);

    const iterator: AsyncIterableIterator<Published<T>> = {
      async next() {
        while (queue.length === 0 && !done) await new Promise<void>((r) => (wake = r));
        wake = null;
        if (queue.length > 0) return { value: queue.shift()!, done: false };
        closers.delete(finish);
        return { value: undefined, done: true };
      },
      async return() {
        finish();
        closers.delete(finish);
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  };

  return {
    async publish(topic, key, payload) {
      const [sql, params] = notifyStatement(topic, key, payload);
      await pool.query(sql, params);
    },

    subscribe<T extends Topic>(topic: T, key: string, signal?: AbortSignal): AsyncIterableIterator<Topics[T]> {
      const published = subscribePublished(topic, key, signal);
      const iterator: AsyncIterableIterator<Topics[T]> = {
        async next() {
          const n = await published.next();
          return n.done ? { value: undefined, done: true } : { value: n.value.payload, done: false };
        },
        async return() {
          await published.return?.();
          return { value: undefined, done: true };
        },
        [Symbol.asyncIterator]() {
          return iterator;
        },
      };
      return iterator;
    },

    subscribePublished,

    listenerPid() {
      return (client as (pg.Client & { processID?: number }) | null)?.processID ?? null;
    },

    subscriberCount(topic?: Topic) {
      let n = 0;
      for (const [id, set] of listeners) if (!topic || id.startsWith(`${topic}:`)) n += set.size;
      return n;
    },

    async close() {
      closed = true;
      for (const f of [...closers]) f();
      await client?.end().catch(() => undefined);
      await pool.end();
    },
  };
}

/**
 * Runs a subscription resolver's async generator so that closing it lets go of its bus
 * subscriptions at once. return() on an async generator waits until the generator reaches a
 * yield, and one waiting in a bus iterator's next() reaches none until the next event for its
 * key: the listener of a closed subscription stayed until then, or forever. `track` registers
 * the iterators to end first, which wakes that pending next().
 */
export function endsPromptly<T>(body: (track: <I extends AsyncIterator<unknown>>(it: I) => I) => AsyncGenerator<T>): AsyncGenerator<T> {
  const tracked: AsyncIterator<unknown>[] = [];
  const gen = body((it) => (tracked.push(it), it));
  const original = gen.return.bind(gen);
  gen.return = (value) => {
    for (const it of tracked) void it.return?.();
    return original(value);
  };
  return gen;
}
