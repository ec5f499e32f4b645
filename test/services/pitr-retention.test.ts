/**
 * The PITR retention plan on a migrated catalog, across timeline switches: which WAL snapshots go
 * is decided by (timeline, segment number) against the oldest kept base backup's start, never by
 * comparing file names. (The plan applied to real repositories: test/api/pitr-archive.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Runtime } from '../../src/app/runtime.ts';
import { planPitrRetention } from '../../src/services/pitr-retention.ts';
import { createSecretBox, makeEnvironment, makeOrganization, makeProject } from '../harness/factories.ts';
import { startServiceRuntime } from '../harness/service-runtime.ts';

let rt: Runtime;
const NOW = new Date('2026-06-15T12:00:00Z');
const DAY = 86_400_000;
const secrets = createSecretBox(Buffer.alloc(32, 9));
const seg = (tli: number, n: number) => [tli, Math.floor(n / 256), n % 256].map((x) => x.toString(16).toUpperCase().padStart(8, '0')).join('');

beforeAll(async () => {
  rt = await startServiceRuntime('pitr_retention');
});
afterAll(() => rt?.close());

describe('planPitrRetention across timelines', () => {
  it('drops WAL snapshots holding only what the oldest kept base backup (timeline 3, segment 9) never reads, and keeps the rest', async () => {
    const org = await makeOrganization(rt.db);
    const env = await makeEnvironment(rt.db, secrets, await makeProject(rt.db, org.id));
    const cluster = await rt.db.pitrCluster.create({ data: { systemIdentifier: '7001', slotName: 'backplane_7001', timeline: 3 } });
    await rt.db.environment.update({ where: { id: env.id }, data: { walEnabled: true, walRetentionDays: 7, pitrClusterId: cluster.id } });
    const base = (daysAgo: number, startWal: string) =>
      rt.db.baseBackup.create({ data: { clusterId: cluster.id, status: 'READY', startWal, endWal: startWal, startedAt: new Date(NOW.getTime() - daysAgo * DAY), finishedAt: new Date(NOW.getTime() - daysAgo * DAY + 60_000) } });
    await base(30, seg(1, 2));
    const oldestKept = await base(20, seg(3, 9));
    await base(1, seg(3, 20));
    const uploads = new Map<string, string[]>([
      ['timeline 1 before the switches', [seg(1, 2), seg(1, 3)]],
      ['the switch to timeline 2', ['00000002.history', `${seg(2, 4)}.partial`]],
      ['timeline 1 past its fork, numbered past the start', [seg(1, 10)]],
      ['the switch to timeline 3, before the start', ['00000003.history', seg(3, 8)]],
      ['timeline 2 past its fork', [seg(2, 12)]],
      ['from the start on', [seg(3, 9), `${seg(3, 10)}.partial`]],
      ['a later timeline', ['00000004.history', `${seg(4, 5)}.partial`]],
    ]);
    const ids = new Map<string, string>();
    for (const [what, files] of uploads) {
      const u = await rt.db.walUpload.create({
        data: { clusterId: cluster.id, destinationId: 'd', repoSnapshotId: what, files, timeline: 1, coversUntil: NOW, createdAt: new Date(oldestKept.startedAt.getTime() - 3_600_000) },
      });
      ids.set(u.id, what);
    }

    const plan = await planPitrRetention(rt.deps, cluster.id, NOW);
    expect(plan.walBefore).toBe(seg(3, 9));
    expect(plan.baseBackups.map((b) => b.startWal)).toEqual([seg(1, 2)]);
    expect(plan.walUploads.map((u) => ids.get(u.id)).sort()).toEqual(
      ['timeline 1 before the switches', 'the switch to timeline 2', 'timeline 1 past its fork, numbered past the start', 'timeline 2 past its fork'].sort(),
    );
  });
});
