import { monitorEventLoopDelay } from 'node:perf_hooks';

/** A few process counters in Prometheus' text format; enough to graph traffic and latency. */
export function createMetrics(gauges: Record<string, () => number> = {}) {
  // How long callbacks waited for the event loop, which every request shares: the first thing
  // to look at when API latency rises while jobs run in the same process.
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const counts = new Map<string, number>();
  const buckets = [5, 10, 25, 50, 100, 250, 500, 1000, 5000];
  const hist = new Map<string, { le: number[]; sum: number; count: number }>();
  return {
    observe(route: string, status: number, ms: number) {
      const k = `route="${route}",status="${status}"`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
      const h = hist.get(route) ?? { le: buckets.map(() => 0), sum: 0, count: 0 };
      buckets.forEach((b, i) => ms <= b && h.le[i]++);
      h.sum += ms;
      h.count++;
      hist.set(route, h);
    },
    render(): string {
      const lines = ['# TYPE backplane_http_requests_total counter'];
      for (const [k, v] of counts) lines.push(`backplane_http_requests_total{${k}} ${v}`);
      lines.push('# TYPE backplane_http_request_duration_ms histogram');
      for (const [route, h] of hist) {
        buckets.forEach((b, i) => lines.push(`backplane_http_request_duration_ms_bucket{route="${route}",le="${b}"} ${h.le[i]}`));
        lines.push(`backplane_http_request_duration_ms_bucket{route="${route}",le="+Inf"} ${h.count}`);
        lines.push(`backplane_http_request_duration_ms_sum{route="${route}"} ${h.sum}`, `backplane_http_request_duration_ms_count{route="${route}"} ${h.count}`);
      }
      for (const [name, read] of Object.entries(gauges)) lines.push(`# TYPE ${name} gauge`, `${name} ${read()}`);
      lines.push('# TYPE backplane_event_loop_delay_seconds summary');
      for (const q of [0.5, 0.99, 1]) {
        const ns = q === 1 ? loop.max : loop.percentile(q * 100);
        lines.push(`backplane_event_loop_delay_seconds{quantile="${q}"} ${ns / 1e9}`);
      }
      lines.push(`backplane_event_loop_delay_seconds_count ${loop.count}`);
      const mem = process.memoryUsage();
      lines.push('# TYPE backplane_process_resident_bytes gauge', `backplane_process_resident_bytes ${mem.rss}`);
      return lines.join('\n') + '\n';
    },
    /** Stops the event loop monitor (its sampling timer). */
    close() {
      loop.disable();
    },
  };
}
