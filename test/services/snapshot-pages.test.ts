/**
 * The newest snapshots of many environments in one statement (src/services/snapshot-pages.ts):
 * whole rows read by raw SQL must be the rows the Prisma client returns, column for column, and
 * the same snapshots as each environment's own query: newest first, `take` of them, DELETED only
 * when asked for, and only the projects a limited key may see; and each environment's count of
 * them is what the client's count says.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Prisma } from '../../src/generated/prisma/client.ts';
import { newestSnapshotIds, newestSnapshots, snapshotCounts, snapshotCountsStatement } from '../../src/services/snapshot-pages.ts';
import { makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { startServiceRuntime, viewerOf } from '../harness/service-runtime.ts';

let runtime: Awaited<ReturnType<typeof startServiceRuntime>>;
let orgId: string;
let projectIds: string[];
const envIds: string[] = [];

const orderedId = (n: number) => `01930000-0000-7000-8000-${String(n).padStart(12, '0')}`;

beforeAll(async () => {
  runtime = await startServiceRuntime('snapshot-pages');
  const db = runtime.db;
  const org = await makeOrganization(db);
  orgId = org.id;
  const projects = [await makeProject(db, org.id, { name: 'a' }), await makeProject(db, org.id, { name: 'b' })];
  projectIds = projects.map((p) => p.id);
  const statuses = [[], ['READY', 'DELETED'], ['READY', 'FAILED', 'READY', 'DELETED', 'READY'], ['READY', 'READY']] as const;
  for (const [i, list] of statuses.entries()) {
    const env = await makeEnvironment(db, runtime.deps.secrets, projects[i % 2], { name: `env-${i}` });
    envIds.push(env.id);
    const schedule = await db.schedule.create({ data: { environmentId: env.id, dbCron: '0 3 * * *', dbRetention: {}, fullRetention: {} } });
    for (const [n, status] of list.entries()) {
      // Every column set, in both orders of an enum array, so a column the raw read returned in
      // another form (text for an enum array, a string for JSON) would differ below.
      await db.snapshot.create({
        data: {
          id: orderedId(i * 10 + n), organizationId: org.id, projectId: env.projectId, environmentId: env.id, status, kind: n % 2 ? 'MANUAL' : 'SCHEDULED',
          // One left out: the column holds NULL, which the client reads as [].
          includes: i === 3 && n === 1 ? undefined : n % 2 ? ['FILES', 'DB'] : ['DB'], label: `${i}-${n}`, error: n % 2 ? 'it broke' : null, sizeBytes: 2n ** 40n + BigInt(n), addedBytes: 12345n, fileCount: n,
          databaseSizeBytes: 2n ** 33n, dumpBytes: 2n ** 34n, durationMs: 1000 + n, metadata: { appVersion: `1.${n}`, nested: { list: [1, 'two', null] } },
          pinned: n === 0, pinLabel: n === 0 ? 'keep' : null, pinnedAt: n === 0 ? new Date('2026-01-02T03:04:05.678Z') : null, expiresAt: new Date('2027-01-01T00:00:00.001Z'),
          scheduleId: schedule.id, createdAt: new Date(Date.UTC(2026, 0, 1, i, n)), completedAt: new Date(Date.UTC(2026, 0, 1, i, n, 30)),
        },
      });
    }
  }
});
afterAll(() => runtime?.close());

/** What each environment's own query returns: the reference. */
async function each(viewerProjects: string[] | null, take: number, statuses?: ('READY' | 'DELETED' | 'FAILED')[]) {
  const out = new Map<string, object[]>();
  for (const environmentId of envIds) {
    out.set(environmentId, await runtime.db.snapshot.findMany({
      where: { environmentId, organizationId: orgId, status: statuses ? { in: statuses } : { not: 'DELETED' }, ...(viewerProjects ? { projectId: { in: viewerProjects } } : {}) },
      orderBy: { id: 'desc' },
      take,
    }));
  }
  return out;
}

describe('newestSnapshots', () => {
  it('returns, per environment, the rows the Prisma client returns: every column in the same form, newest first, DELETED left out', async () => {
    const got = await newestSnapshots(runtime.deps, viewerOf(orgId), envIds, null, 2);
    expect(got).toEqual(await each(null, 2));
    // The comparison covers every column: each is set (not null) on some row read.
    const rows = [...got.values()].flat() as unknown as Record<string, unknown>[];
    for (const column of Object.values(Prisma.SnapshotScalarFieldEnum)) expect(rows.some((r) => r[column] != null), column).toBe(true);
    expect(rows.find((r) => r.label === '2-4')?.sizeBytes).toBe(2n ** 40n + 4n);
  });

  it('applies the status filter, and DELETED rows when it asks for them', async () => {
    expect(await newestSnapshots(runtime.deps, viewerOf(orgId), envIds, { statuses: ['DELETED', 'FAILED'] }, 5)).toEqual(await each(null, 5, ['DELETED', 'FAILED']));
  });

  it("shows a key limited to a project only that project's snapshots, and other environments none", async () => {
    const got = await newestSnapshots(runtime.deps, viewerOf(orgId, [projectIds[1]]), envIds, null, 3);
    expect(got).toEqual(await each([projectIds[1]], 3));
    expect(got.get(envIds[2])).toEqual([]);
    expect(got.get(envIds[3])?.length).toBe(2);
  });

  it('names the same snapshots as newestSnapshotIds', async () => {
    const rows = await newestSnapshots(runtime.deps, viewerOf(orgId), envIds, null, 2);
    const ids = await newestSnapshotIds(runtime.deps, viewerOf(orgId), envIds, null, 2);
    expect(new Map([...rows].map(([env, list]) => [env, list.map((r) => r.id)]))).toEqual(ids);
  });
});

describe('snapshotCounts', () => {
  const count = (environmentId: string, viewerProjects: string[] | null, statuses?: ('READY' | 'DELETED' | 'FAILED')[], kinds?: ('MANUAL' | 'SCHEDULED')[]) =>
    runtime.db.snapshot.count({ where: { environmentId, organizationId: orgId, status: statuses ? { in: statuses } : { not: 'DELETED' }, ...(kinds ? { kind: { in: kinds } } : {}), ...(viewerProjects ? { projectId: { in: viewerProjects } } : {}) } });

  it("counts each environment's snapshots as the client does, with filters and a limited key; an environment with none is absent", async () => {
    const cases: [string[] | null, ('READY' | 'DELETED' | 'FAILED')[] | undefined, ('MANUAL' | 'SCHEDULED')[] | undefined][] = [[null, undefined, undefined], [null, ['DELETED', 'FAILED'], undefined], [null, undefined, ['MANUAL']], [[projectIds[1]], undefined, undefined]];
    for (const [viewerProjects, statuses, kinds] of cases) {
      const got = await snapshotCounts(runtime.deps, viewerOf(orgId, viewerProjects), envIds, { statuses, kinds });
      for (const environmentId of envIds) expect(got.get(environmentId) ?? 0, JSON.stringify({ viewerProjects, statuses, kinds })).toBe(await count(environmentId, viewerProjects, statuses, kinds));
    }
    expect((await snapshotCounts(runtime.deps, viewerOf(orgId), envIds, null)).has(envIds[0])).toBe(false);
  });

  it('lets PostgreSQL estimate a status and kind filter: the columns compared as their enum types, not as text', async () => {
    // Compared as text, the planner had no statistics and guessed one row for the bench's 18,560,
    // then sorted them all to group them.
    const env = await makeEnvironment(runtime.db, runtime.deps.secrets, { id: projectIds[0], organizationId: orgId }, { name: 'many' });
    await runtime.db.snapshot.createMany({
      data: Array.from({ length: 2000 }, (_, n) => ({
        id: orderedId(100_000 + n), organizationId: orgId, projectId: projectIds[0], environmentId: env.id, status: n % 20 === 0 ? ('FAILED' as const) : ('READY' as const), kind: n % 10 === 0 ? ('MANUAL' as const) : ('SCHEDULED' as const), includes: ['DB' as const], createdAt: new Date(Date.UTC(2025, 0, 1, 0, n)),
      })),
    });
    await runtime.db.$executeRawUnsafe('ANALYZE snapshots');
    const filter = { statuses: ['READY'], kinds: ['SCHEDULED'] };
    const actual = await count(env.id, null, ['READY'], ['SCHEDULED']);
    expect(actual).toBe(1800);
    const { sql, params } = snapshotCountsStatement(viewerOf(orgId), [env.id], filter);
    const [{ 'QUERY PLAN': [plan] }] = await runtime.db.$queryRawUnsafe<{ 'QUERY PLAN': { Plan: PlanNode }[] }[]>(`EXPLAIN (FORMAT JSON) ${sql}`, ...params);
    const estimates: number[] = [];
    const walk = (n: PlanNode) => {
      if (n['Relation Name'] === 'snapshots') estimates.push(n['Plan Rows']);
      n.Plans?.forEach(walk);
    };
    walk(plan.Plan);
    expect(estimates.length).toBeGreaterThan(0);
    for (const rows of estimates) expect(rows, JSON.stringify(plan.Plan)).toBeGreaterThan(actual / 10);
    expect((await snapshotCounts(runtime.deps, viewerOf(orgId), [env.id], filter)).get(env.id)).toBe(actual);
  });
});

interface PlanNode { 'Relation Name'?: string; 'Plan Rows': number; Plans?: PlanNode[] }
