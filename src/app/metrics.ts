import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getOperationAST } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { encodeGlobalID } from '@pothos/plugin-relay';
import { takeIoTally, type IoTally } from '../destinations/io-tally.ts';
import { ALL, type Topics } from '../events/bus.ts';
import type { Deps } from '../services/deps.ts';
import type { Logger } from './logger.ts';

/**
 * /metrics in Prometheus' text format, through prom-client. Three sources:
 * - this process: HTTP requests, GraphQL operations by name, live subscribers, the event loop's
 *   delay, and Node's own process figures;
 * - every worker, over the event bus (`workerMetrics`, one message per job): job durations by task
 *   and bytes read and written per destination. Each API process hears every worker, so these
 *   are the whole deployment's since this process started; do not sum them across API processes;
 * - the catalog, read at each scrape: operations by type and outcome, the job queue's depth and
 *   the age of its oldest due job, and each environment's last successful snapshot. The same in
 *   every API process, whatever restarted.
 */

/** Names GraphQL clients choose; past this many, more are counted as "other" (a label per name is a series per name). */
const MAX_OPERATION_NAMES = 200;

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const JOB_SECONDS = [0.05, 0.25, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200];

export interface Metrics {
  /** One finished HTTP request. */
  observeHttp(route: string, status: number, ms: number): void;
  /** The yoga plugin that times each GraphQL operation by its name. */
  graphqlPlugin: Plugin;
  /** The text a scrape returns. */
  render(): Promise<string>;
  readonly contentType: string;
  /** Stops the event loop monitor and the bus subscription. */
  close(): void;
}

export function createMetrics(deps: Pick<Deps, 'db' | 'events'>, logger: Logger): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const httpRequests = new Counter({ name: 'backplane_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'], registers: [registry] });
  const httpSeconds = new Histogram({ name: 'backplane_http_request_duration_seconds', help: 'HTTP request duration by route', labelNames: ['route'], buckets: SECONDS, registers: [registry] });
  const graphqlSeconds = new Histogram({
    name: 'backplane_graphql_operation_duration_seconds',
    help: 'Execution time of GraphQL queries and mutations by operation name',
    labelNames: ['operation_name', 'operation_type', 'outcome'],
    buckets: SECONDS,
    registers: [registry],
  });
  const jobSeconds = new Histogram({ name: 'backplane_job_duration_seconds', help: 'Duration of worker jobs by task and outcome', labelNames: ['task', 'outcome'], buckets: JOB_SECONDS, registers: [registry] });
  const bytesRead = new Counter({ name: 'backplane_destination_read_bytes_total', help: 'Bytes read from each destination', labelNames: ['destination_id'], registers: [registry] });
  const bytesWritten = new Counter({ name: 'backplane_destination_written_bytes_total', help: 'Bytes written to each destination', labelNames: ['destination_id'], registers: [registry] });
  const countIo = (io: IoTally[]) => {
    for (const t of io) {
      const destination_id = encodeGlobalID('Destination', t.destinationId);
      if (t.read > 0) bytesRead.inc({ destination_id }, t.read);
      if (t.written > 0) bytesWritten.inc({ destination_id }, t.written);
    }
  };

  new Gauge({
    name: 'backplane_event_subscribers',
    help: 'Live GraphQL subscriptions (graphql-ws and SSE) served by this process',
    registers: [registry],
    collect() {
      // Each subscription also follows key revocations (schema/live.ts), as the process itself does.
      this.set(deps.events.subscriberCount() - deps.events.subscriberCount('workerMetrics') - deps.events.subscriberCount('apiKeyRevoked'));
    },
  });

  // How long callbacks waited for the event loop, which every request shares: the first thing
  // to look at when API latency rises while jobs run in the same process. Since the last scrape,
  // so a spike shows in the scrape after it and not forever.
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  new Gauge({
    name: 'backplane_event_loop_delay_seconds',
    help: 'Event loop delay since the previous scrape: p50, p99 and max (quantile="1")',
    labelNames: ['quantile'],
    registers: [registry],
    collect() {
      if (loop.count === 0) return;
      for (const q of [0.5, 0.99, 1]) this.set({ quantile: String(q) }, (q === 1 ? loop.max : loop.percentile(q * 100)) / 1e9);
      loop.reset();
    },
  });

  // From the catalog at each scrape; a failed read is logged and leaves the previous figures.
  const fromCatalog = <T>(what: string, read: () => Promise<T>, apply: (rows: T) => void) =>
    read().then(apply, (err: unknown) => logger.warn({ err }, `metrics: could not read ${what}`));

  new Counter({
    name: 'backplane_operations_total',
    help: 'Operations that ended, by type and outcome (SUCCEEDED, FAILED, CANCELLED), from the catalog',
    labelNames: ['type', 'outcome'],
    registers: [registry],
    async collect() {
      await fromCatalog(
        'operations',
        () => deps.db.operation.groupBy({ by: ['type', 'status'], where: { status: { in: ['SUCCEEDED', 'FAILED', 'CANCELLED'] } }, _count: { _all: true } }),
        (rows) => {
          this.reset();
          for (const r of rows) this.inc({ type: r.type, outcome: r.status }, r._count._all);
        },
      );
    },
  });

  // One query for both; the registry writes metrics in the order they were made, and runs each
  // one's collect just before writing it: the first sets the second.
  const oldestJob = new Gauge({ name: 'backplane_job_queue_oldest_age_seconds', help: 'How long the oldest job due to run has waited (0 when none waits)', registers: [] });
  new Gauge({
    name: 'backplane_job_queue_depth',
    help: 'Jobs due to run that no worker has taken yet',
    registers: [registry],
    async collect() {
      await fromCatalog(
        'the job queue',
        () =>
          deps.db.$queryRawUnsafe<{ depth: number; age: number | null }[]>(
            `SELECT count(*)::int AS depth, extract(epoch FROM now() - min(run_at))::float8 AS age
             FROM graphile_worker.jobs WHERE locked_at IS NULL AND run_at <= now() AND attempts < max_attempts`,
          ),
        ([row]) => {
          this.set(row.depth);
          oldestJob.set(Math.max(0, row.age ?? 0));
        },
      );
    },
  });
  registry.registerMetric(oldestJob);

  new Gauge({
    name: 'backplane_snapshot_last_success_timestamp_seconds',
    help: 'When the newest READY snapshot of each environment completed (Unix time); environments without one are absent',
    labelNames: ['environment_id'],
    registers: [registry],
    async collect() {
      await fromCatalog(
        'snapshots',
        () => deps.db.snapshot.groupBy({ by: ['environmentId'], where: { status: 'READY' }, _max: { completedAt: true } }),
        (rows) => {
          this.reset();
          for (const r of rows) if (r._max.completedAt) this.set({ environment_id: encodeGlobalID('Environment', r.environmentId) }, r._max.completedAt.getTime() / 1000);
        },
      );
    },
  });

  // Every worker's figures, from the moment this process listens.
  const heard = deps.events.subscribe('workerMetrics', ALL);
  void (async () => {
    for await (const m of heard as AsyncIterable<Topics['workerMetrics']>) {
      for (const j of m.jobs) jobSeconds.observe({ task: j.task, outcome: j.outcome }, j.seconds);
      countIo(m.io);
    }
  })().catch((err: unknown) => logger.error({ err }, 'metrics: the worker figures stopped'));

  const names = new Set<string>();
  const labelOf = (name: string | undefined) => {
    if (!name) return 'anonymous';
    if (names.has(name)) return name;
    if (names.size >= MAX_OPERATION_NAMES) return 'other';
    names.add(name);
    return name;
  };

  const graphqlPlugin: Plugin = {
    onExecute({ args }) {
      const started = performance.now();
      const op = getOperationAST(args.document, args.operationName);
      return {
        onExecuteDone({ result }) {
          const failed = 'errors' in result && !!result.errors?.length;
          graphqlSeconds.observe(
            { operation_name: labelOf(op?.name?.value), operation_type: op?.operation ?? 'unknown', outcome: failed ? 'error' : 'ok' },
            (performance.now() - started) / 1000,
          );
        },
      };
    },
  };

  return {
    observeHttp(route, status, ms) {
      httpRequests.inc({ route, status: String(status) });
      httpSeconds.observe({ route }, ms / 1000);
    },
    graphqlPlugin,
    contentType: registry.contentType,
    async render() {
      // What this thread read and wrote outside jobs (downloads, and jobs when a worker shares the thread).
      countIo(takeIoTally());
      return registry.metrics();
    },
    close() {
      loop.disable();
      void heard.return?.();
    },
  };
}
