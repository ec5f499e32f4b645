import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SnapshotDownloadDocument } from '../generated/graphql.ts';
import type { TestApp } from '../harness/app.ts';
import { gid } from '../harness/factories.ts';
import type { LiveEnvironment } from '../harness/live-environment.ts';
import { until } from '../harness/process.ts';
import { follow, startSnapshot, startSnapshotSuite } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;

// No worker at first: the snapshot's job has to wait in the queue, where the figures see it.
beforeAll(async () => {
  ({ app, key, env } = await startSnapshotSuite({ worker: false }));
});
afterAll(() => app?.stop());

interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

async function scrape(): Promise<Series[]> {
  const res = await fetch(app.url.replace('/graphql', '/metrics'));
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  const series: Series[] = [];
  for (const line of (await res.text()).split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    series.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return series;
}

/** The sum of the series of that name whose labels include these (0 when there is none). */
function figure(all: Series[], name: string, labels: Record<string, string> = {}): number {
  return all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);
}

describe('/metrics', () => {
  it('moves with a snapshot: its queued job, its run, its bytes, its operation, its request and its environment', async () => {
    const destination = { destination_id: gid('Destination', env.destinationId) };
    const snapshotJob = { task: 'snapshot_create', outcome: 'success' };
    const succeeded = { type: 'SNAPSHOT', outcome: 'SUCCEEDED' };
    const createRequest = { operation_name: 'CreateSnapshot', operation_type: 'mutation', outcome: 'ok' };
    const before = await scrape();
    expect(figure(before, 'backplane_job_queue_depth')).toBe(0);
    expect(figure(before, 'backplane_snapshot_last_success_timestamp_seconds', { environment_id: gid('Environment', env.id) })).toBe(0);

    const { operationId, snapshotId } = await startSnapshot(app, key, env.id);
    const queued = await until(scrape, (m) => figure(m, 'backplane_job_queue_oldest_age_seconds') > 0, 'the queued job to show');
    expect(figure(queued, 'backplane_job_queue_depth')).toBe(1);
    expect(figure(queued, 'backplane_graphql_operation_duration_seconds_count', createRequest)).toBe(figure(before, 'backplane_graphql_operation_duration_seconds_count', createRequest) + 1);
    expect(figure(queued, 'backplane_http_requests_total', { route: '/graphql', status: '200' })).toBeGreaterThan(figure(before, 'backplane_http_requests_total', { route: '/graphql', status: '200' }));

    await app.startWorker();
    expect((await follow(app, key, operationId)).at(-1)?.status).toBe('SUCCEEDED');
    // The job's figures come from the worker over the event bus, just after the job ends.
    const after = await until(scrape, (m) => figure(m, 'backplane_job_duration_seconds_count', snapshotJob) > figure(before, 'backplane_job_duration_seconds_count', snapshotJob), 'the job figures', 60_000);
    expect(figure(after, 'backplane_job_duration_seconds_count', snapshotJob)).toBe(figure(before, 'backplane_job_duration_seconds_count', snapshotJob) + 1);
    expect(figure(after, 'backplane_job_duration_seconds_sum', snapshotJob)).toBeGreaterThan(figure(before, 'backplane_job_duration_seconds_sum', snapshotJob));
    expect(figure(after, 'backplane_job_queue_depth')).toBe(0);
    expect(figure(after, 'backplane_operations_total', succeeded)).toBe(figure(before, 'backplane_operations_total', succeeded) + 1);

    const snapshot = await app.runtime.db.snapshot.findFirstOrThrow({ where: { environmentId: env.id, status: 'READY' } });
    // Packs, index and snapshot file written into a repository made by this snapshot.
    expect(figure(after, 'backplane_destination_written_bytes_total', destination) - figure(before, 'backplane_destination_written_bytes_total', destination)).toBeGreaterThan(100_000);
    expect(figure(after, 'backplane_snapshot_last_success_timestamp_seconds', { environment_id: gid('Environment', env.id) })).toBe(snapshot.completedAt!.getTime() / 1000);

    // A download reads the snapshot back, in the API process itself.
    const download = (await app.gql(SnapshotDownloadDocument, { id: snapshotId }, { key })).data?.snapshot?.download;
    if (download?.__typename !== 'Download') throw new Error(JSON.stringify(download));
    const body = await fetch(download.url);
    expect(body.status).toBe(200);
    const downloaded = (await body.arrayBuffer()).byteLength;
    const read = await scrape();
    expect(downloaded).toBeGreaterThan(0);
    expect(figure(read, 'backplane_destination_read_bytes_total', destination)).toBeGreaterThan(figure(after, 'backplane_destination_read_bytes_total', destination));
    expect(figure(read, 'backplane_http_requests_total', { route: '/downloads', status: '200' })).toBe(1);
  });
});
