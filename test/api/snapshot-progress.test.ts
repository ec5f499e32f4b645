/**
 * Progress a person can trust: the percent of a snapshot never goes backwards, ends at 100, and
 * its total is estimated from what pg_dump really writes (the last snapshot's dump, else the table
 * data without indexes), not from the database's size on disk, which counts indexes and dead space.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestApp } from '../harness/app.ts';
import { makeLiveEnvironment, sql, type LiveEnvironment } from '../harness/live-environment.ts';
import { follow, startSnapshot, startWorkerSuite, type OpState } from '../harness/snapshot-helpers.ts';

let app: TestApp;
let key: string;
let env: LiveEnvironment;

beforeAll(async () => {
  let orgId: string;
  ({ app, key, orgId } = await startWorkerSuite());
  env = await makeLiveEnvironment(app, { organizationId: orgId, rows: 100 });
  // Tens of megabytes of dump, so a snapshot lasts long enough for several progress updates, and
  // an index that makes the size on disk far from the size of the dump.
  await sql(env.databaseUrl, `
    CREATE TABLE events (id int PRIMARY KEY, body text NOT NULL);
    INSERT INTO events SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) FROM generate_series(1, 400000) g;
    CREATE INDEX events_body ON events (body);
  `);
}, 180_000);
afterAll(() => app?.stop());

async function snapshotStates(): Promise<{ states: OpState[]; snapshotId: string }> {
  const { operationId, snapshotId } = await startSnapshot(app, key, env.id, { includes: ['DB'] });
  const states = await follow(app, key, operationId);
  expect(states.at(-1)).toMatchObject({ status: 'SUCCEEDED', percent: 100 });
  return { states, snapshotId };
}

function expectSteady(states: OpState[]) {
  const percents = states.map((s) => s.percent).filter((p): p is number => p !== null && p !== undefined);
  for (let i = 1; i < percents.length; i++) expect(percents[i], `percent ${i} of ${percents.join(', ')}`).toBeGreaterThanOrEqual(percents[i - 1]);
  expect(percents.at(-1)).toBe(100);
  // 100 only once the work is over: while the dump runs, it stays below.
  for (const s of states) if (s.phase === 'dumping' && s.percent != null) expect(s.percent).toBeLessThan(100);
}

describe('snapshot progress', () => {
  it('is monotonic and ends at 100; the first estimate is the table data, the next one the last dump', async () => {
    const onDisk = Number((await sql(env.databaseUrl, 'SELECT pg_database_size(current_database()) AS n')).rows[0].n);

    const first = await snapshotStates();
    expectSteady(first.states);
    const firstRow = await app.runtime.db.snapshot.findUniqueOrThrow({ where: { id: decodeId(first.snapshotId) } });
    const dump1 = Number(firstRow.dumpBytes);
    expect(dump1).toBeGreaterThan(10_000_000);
    expect(dump1).toBe(Number(firstRow.sizeBytes)); // a DB-only snapshot is its dump
    const during1 = first.states.filter((s) => s.phase === 'dumping' && s.bytesTotal);
    expect(during1.length).toBeGreaterThan(0);
    // The table data is close to the dump; the size on disk (indexes, catalogs) is not.
    const estimate1 = Number(during1[0].bytesTotal);
    expect(Math.abs(estimate1 - dump1) / dump1).toBeLessThan(0.35);
    expect(onDisk).toBeGreaterThan(dump1 * 1.5);

    // New content of the same size: a dump that deduplicated whole could end before its first
    // progress update, and this checks the updates while it runs.
    await sql(env.databaseUrl, 'UPDATE events SET body = reverse(body)');
    const second = await snapshotStates();
    expectSteady(second.states);
    const during2 = second.states.filter((s) => s.phase === 'dumping' && s.bytesTotal && Number(s.bytesDone) < dump1 * 0.99);
    expect(during2.length).toBeGreaterThan(0);
    for (const s of during2) expect(Number(s.bytesTotal)).toBe(dump1);
  }, 300_000);
});

function decodeId(globalId: string): string {
  return Buffer.from(globalId, 'base64').toString().split(':').slice(1).join(':');
}
