/**
 * Fields of list items that are read for the whole list at once (src/schema/batch.ts):
 * environments' snapshots(first: n) with totalCount, restoreDrillStats, pointInTimeRecovery, and
 * restore logs' snapshot and sourceEnvironment. A list must answer, item for item, what each item asked alone
 * answers — newest first, DELETED only when asked for, filters applied per environment, and a key
 * limited to a project sees only that project's rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../harness/app.ts';
import { gid, makeApiKey, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';

let app: TestApp;
let key: string;
let limitedKey: string;
const envIds: string[] = [];

const orderedId = (n: number) => `01930000-0000-7000-8000-${String(n).padStart(12, '0')}`;

async function query<T>(q: string, variables: Record<string, unknown> = {}, k = key): Promise<T> {
  const res = (await (await app.post({ query: q, variables }, { key: k })).json()) as { data?: T; errors?: unknown };
  if (res.errors || !res.data) throw new Error(JSON.stringify(res.errors ?? res));
  return res.data;
}

beforeAll(async () => {
  app = await startTestApp();
  const db = app.runtime.db;
  const org = await makeOrganization(db);
  const projects = [await makeProject(db, org.id, { name: 'a' }), await makeProject(db, org.id, { name: 'b' })];
  key = (await makeApiKey(db, org.id)).secret;
  limitedKey = (await makeApiKey(db, org.id, { projectIds: [projects[1].id] })).secret;
  // Four environments over two projects with different histories: none, one DELETED only, a mix.
  const statuses: string[][] = [[], ['DELETED'], ['READY', 'FAILED', 'READY', 'DELETED', 'READY'], ['READY', 'READY', 'FAILED']];
  for (const [i, list] of statuses.entries()) {
    const env = await makeEnvironment(db, app.runtime.deps.secrets, projects[i % 2], { name: `env-${i}` });
    envIds.push(env.id);
    for (const [n, status] of list.entries()) {
      // Ids in creation order, explicitly: two rows made in one millisecond could sort either way.
      await db.snapshot.create({ data: { id: orderedId(i * 10 + n), organizationId: org.id, projectId: env.projectId, environmentId: env.id, status: status as never, kind: n % 2 ? 'MANUAL' : 'SCHEDULED', label: `${i}-${n}` } });
    }
    for (const [n, rtoMs] of [[0, 4000], [1, 2000], [2, null]] as const) {
      if (n > i) break;
      const op = await db.operation.create({ data: { organizationId: org.id, environmentId: env.id, type: 'RESTORE_DRILL', status: rtoMs === null ? 'FAILED' : 'SUCCEEDED' } });
      await db.restoreDrill.create({ data: { organizationId: org.id, environmentId: env.id, operationId: op.id, status: rtoMs === null ? 'FAILED' : 'SUCCEEDED', rtoMs } });
    }
  }
  // Restores into env-3 from env-2 and from itself.
  for (const source of [envIds[2], envIds[3]]) {
    const snapshot = await db.snapshot.findFirstOrThrow({ where: { environmentId: source, status: 'READY' }, orderBy: { id: 'asc' } });
    const op = await db.operation.create({ data: { organizationId: org.id, environmentId: envIds[3], type: 'RESTORE', status: 'SUCCEEDED' } });
    await db.restoreLog.create({ data: { id: orderedId(100 + envIds.indexOf(source)), organizationId: org.id, snapshotId: snapshot.id, sourceEnvironmentId: source, targetEnvironmentId: envIds[3], operationId: op.id, status: 'SUCCEEDED' } });
  }
});
afterAll(() => app?.stop());

const LIST = `query($filter: SnapshotFilter) { environments(first: 10) { edges { node { id
  snapshots(first: 2, filter: $filter) { totalCount edges { node { id label status kind includes sizeBytes createdAt expiresAt metadata } } }
  restoreDrillStats { count failures medianRtoSeconds lastRtoSeconds } } } } }`;
const ONE = `query($id: ID!, $filter: SnapshotFilter) { environment(id: $id) { id
  snapshots(first: 2, filter: $filter) { totalCount edges { node { id label status kind includes sizeBytes createdAt expiresAt metadata } } }
  restoreDrillStats { count failures medianRtoSeconds lastRtoSeconds } } }`;

type Env = { id: string; snapshots: { totalCount: number; edges: { node: { label: string; status: string } }[] } };

describe('fields read for a whole list at once', () => {
  for (const filter of [null, { statuses: ['READY'] }, { statuses: ['DELETED', 'FAILED'] }, { kinds: ['MANUAL'] }, { labelContains: '2-' }]) {
    it(`environments' snapshots and drill stats match each environment read alone (filter ${JSON.stringify(filter)})`, async () => {
      const list = await query<{ environments: { edges: { node: Env }[] } }>(LIST, { filter });
      const nodes = list.environments.edges.map((e) => e.node);
      expect(nodes.map((n) => n.id).sort()).toEqual(envIds.map((id) => gid('Environment', id)).sort());
      for (const node of nodes) {
        const alone = await query<{ environment: Env }>(ONE, { id: node.id, filter });
        expect(node).toEqual(alone.environment);
      }
    });
  }

  it('pages newest first, DELETED left out unless asked for, counted per environment', async () => {
    const list = await query<{ environments: { edges: { node: Env }[] } }>(LIST, { filter: null });
    const byId = new Map(list.environments.edges.map((e) => [e.node.id, e.node.snapshots]));
    expect(byId.get(gid('Environment', envIds[0]))).toEqual({ totalCount: 0, edges: [] });
    expect(byId.get(gid('Environment', envIds[1]))).toEqual({ totalCount: 0, edges: [] });
    expect(byId.get(gid('Environment', envIds[2]))!.totalCount).toBe(4);
    expect(byId.get(gid('Environment', envIds[2]))!.edges.map((e) => e.node.label)).toEqual(['2-4', '2-2']);
    expect(byId.get(gid('Environment', envIds[3]))!.edges.map((e) => e.node.label)).toEqual(['3-2', '3-1']);
  });

  it('a key limited to one project sees only its environments, snapshots and counts', async () => {
    const list = await query<{ environments: { edges: { node: Env }[] } }>(LIST, { filter: null }, limitedKey);
    expect(list.environments.edges.map((e) => e.node.id).sort()).toEqual([envIds[1], envIds[3]].map((id) => gid('Environment', id)).sort());
    expect(list.environments.edges.find((e) => e.node.id === gid('Environment', envIds[3]))!.node.snapshots.totalCount).toBe(3);
  });

  it("environments' point-in-time recovery windows match each environment read alone, clusters shared or not", async () => {
    const db = app.runtime.db;
    const now = Date.now();
    const at = (secondsAgo: number) => new Date(now - secondsAgo * 1000);
    // Cluster a (env-0 and env-2): archiving, a closed gap, a timeline switch, WAL uploaded twice. Cluster b (env-3): nothing archived yet.
    const a = await db.pitrCluster.create({ data: { systemIdentifier: '7101', slotName: 'backplane_7101', timeline: 2, coveredUntil: at(5) } });
    const b = await db.pitrCluster.create({ data: { systemIdentifier: '7102', slotName: 'backplane_7102' } });
    await db.baseBackup.create({ data: { clusterId: a.id, status: 'READY', startWal: '000000010000000000000002', startedAt: at(3600), finishedAt: at(3500) } });
    await db.baseBackup.create({ data: { clusterId: a.id, status: 'READY', startWal: '000000020000000000000009', startedAt: at(600), finishedAt: at(550) } });
    await db.baseBackup.create({ data: { clusterId: b.id, status: 'CREATING', startedAt: at(60) } });
    await db.pitrGap.create({ data: { clusterId: a.id, reason: 'SLOT_DROPPED', fromTime: at(2000), toTime: at(550), detail: 'slot over the cap' } });
    await db.pitrTimelineSwitch.create({ data: { clusterId: a.id, timeline: 2, parentTimeline: 1, switchLsn: '0/9000000', seenAt: at(900) } });
    for (const bytes of [1000n, 2500n]) await db.walUpload.create({ data: { clusterId: a.id, destinationId: 'd', repoSnapshotId: `wal-${bytes}`, files: ['000000020000000000000009'], timeline: 2, bytes, coversUntil: at(5) } });
    for (const [i, cluster] of [[0, a], [2, a], [3, b]] as const) await db.environment.update({ where: { id: envIds[i] }, data: { walEnabled: true, pitrClusterId: cluster.id } });

    const fields = `pointInTimeRecovery { enabled status systemIdentifier earliestRecoveryTime latestRecoveryTime archivedBytes baseBackups { id status finishedAt } gaps { reason from to detail } timelineSwitches { timeline parentTimeline } }`;
    type Pitr = { id: string; pointInTimeRecovery: { status: string; systemIdentifier: string | null; earliestRecoveryTime: string | null; archivedBytes: string; baseBackups: unknown[]; gaps: unknown[] } };
    const list = await query<{ environments: { edges: { node: Pitr }[] } }>(`{ environments(first: 10) { edges { node { id ${fields} } } } }`);
    const nodes = new Map(list.environments.edges.map((e) => [e.node.id, e.node]));
    for (const node of nodes.values()) {
      const alone = await query<{ environment: Pitr }>(`query($id: ID!) { environment(id: $id) { id ${fields} } }`, { id: node.id });
      expect(node).toEqual(alone.environment);
    }
    const env0 = nodes.get(gid('Environment', envIds[0]))!.pointInTimeRecovery;
    expect(env0).toMatchObject({ status: 'ARCHIVING', systemIdentifier: '7101', earliestRecoveryTime: at(3500).toISOString(), archivedBytes: '3500' });
    expect(env0.baseBackups).toHaveLength(2);
    expect(env0.gaps).toHaveLength(1);
    expect(nodes.get(gid('Environment', envIds[2]))!.pointInTimeRecovery).toEqual(env0);
    expect(nodes.get(gid('Environment', envIds[3]))!.pointInTimeRecovery).toMatchObject({ status: 'STARTING', systemIdentifier: '7102', earliestRecoveryTime: null, archivedBytes: '0', gaps: [] });
    expect(nodes.get(gid('Environment', envIds[1]))!.pointInTimeRecovery).toMatchObject({ status: 'OFF', systemIdentifier: null, baseBackups: [] });
  });

  it("a page of restore logs names each log's own snapshot and source environment, and hides those of a project the key may not see", async () => {
    const q = `query($id: ID!) { environment(id: $id) { restoreLogs(first: 10) { edges { node { snapshot { label } sourceEnvironment { name } } } } } }`;
    type Logs = { environment: { restoreLogs: { edges: { node: { snapshot: { label: string } | null; sourceEnvironment: { name: string } | null } }[] } } };
    const all = await query<Logs>(q, { id: gid('Environment', envIds[3]) });
    expect(all.environment.restoreLogs.edges.map((e) => e.node)).toEqual([
      { snapshot: { label: '3-0' }, sourceEnvironment: { name: 'env-3' } },
      { snapshot: { label: '2-0' }, sourceEnvironment: { name: 'env-2' } },
    ]);
    const limited = await query<Logs>(q, { id: gid('Environment', envIds[3]) }, limitedKey);
    expect(limited.environment.restoreLogs.edges.map((e) => e.node)).toEqual([
      { snapshot: { label: '3-0' }, sourceEnvironment: { name: 'env-3' } },
      { snapshot: null, sourceEnvironment: null },
    ]);
  });
});
