/**
 * PITR retention's superseded partial segments: which uploads go (only `.partial` copies of
 * segments the same destination holds complete), and, in a real repository filled as the
 * streamer fills it (the growing current segment sent again and again, then complete), that
 * forgetting them and pruning gives their stored bytes back while the complete segment still
 * restores byte for byte, checked by restic as the outside reader.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forgetSnapshots, prune } from '../../src/engine/api.ts';
import { supersededPartialUploads } from '../../src/services/pitr-retention.ts';
import { cleanupTempDirs, newRepo, restic, tempDir } from '../engine/helpers.ts';
import { sql } from '../harness/live-environment.ts';
import { startPitrCluster, startWorkload, type PitrCluster } from '../harness/pitr-fixture.ts';

const seg = (n: number) => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, '0')}`;

describe('supersededPartialUploads', () => {
  it('takes uploads of only partials whose segment the same destination holds complete; keeps the rest whole', () => {
    const u = (id: string, files: string[], destinationId = 'd1') => ({ id, destinationId, files });
    const uploads = [
      u('a', [`${seg(3)}.partial`]),
      u('b', [`${seg(3)}.partial`]),
      u('c', [seg(3), `${seg(4)}.partial`]),
      u('d', [`${seg(4)}.partial`, '00000002.history']),
      u('e', [`${seg(4)}.partial`]),
      u('f', [`${seg(3)}.partial`], 'd2'),
      u('g', []),
    ];
    // c holds a complete segment, d a history file, e the current segment (not complete anywhere),
    // f a partial whose segment only another destination holds complete.
    expect(supersededPartialUploads(uploads).map((x) => x.id)).toEqual(['a', 'b']);
  });
});

describe('forgetting superseded partials in a repository', () => {
  let cluster: PitrCluster;
  beforeAll(async () => {
    cluster = await startPitrCluster();
    await sql(cluster.url(), 'CREATE DATABASE shop');
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await cleanupTempDirs();
  });

  const dataBytes = async (dir: string) => {
    let n = 0;
    for (const sub of await fs.readdir(path.join(dir, 'data'))) {
      for (const f of await fs.readdir(path.join(dir, 'data', sub))) n += (await fs.stat(path.join(dir, 'data', sub, f))).size;
    }
    return n;
  };

  it('gives back what the repeated partial copies stored, and the complete segment still restores whole', { timeout: 300_000 }, async () => {
    const { repo, dir } = await newRepo();
    const workload = startWorkload(cluster.url('shop'), { intervalMs: 5 });
    const uploads: { id: string; destinationId: string; files: string[]; snapshotId: string }[] = [];
    try {
      await cluster.archiveWal(repo, { switchSegment: true });
      for (let i = 0; i < 8; i++) {
        const from = workload.committed();
        while (workload.committed() < from + 20) await new Promise((r) => setTimeout(r, 10));
        const w = await cluster.archiveWal(repo);
        uploads.push({ id: w.snapshotId, destinationId: 'd', files: w.files, snapshotId: w.snapshotId });
      }
    } finally {
      await workload.stop();
    }
    const w = await cluster.archiveWal(repo, { switchSegment: true });
    uploads.push({ id: w.snapshotId, destinationId: 'd', files: w.files, snapshotId: w.snapshotId });
    const superseded = supersededPartialUploads(uploads);
    // The eight copies of the growing segment, all superseded by the complete one.
    expect(superseded.length).toBeGreaterThanOrEqual(7);
    const completed = w.files.find((f) => !f.endsWith('.partial'))!;
    expect(superseded.every((u) => u.files.every((f) => f === `${completed}.partial`))).toBe(true);

    const before = await dataBytes(dir);
    await forgetSnapshots(repo, superseded.map((u) => u.snapshotId));
    await prune(repo);
    const after = await dataBytes(dir);
    expect(after).toBeLessThan(before);

    const out = await tempDir('bp-pitr-retention-');
    await restic(dir, ['restore', w.snapshotId, '--target', out]);
    const restored = await fs.readFile(path.join(out, 'pitr', cluster.sysid, 'wal', completed));
    expect(restored.equals(await fs.readFile(path.join(cluster.walDir, completed)))).toBe(true);
    await restic(dir, ['check', '--read-data']);
  });
});
