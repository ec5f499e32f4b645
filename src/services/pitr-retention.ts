import { forgetSnapshots, prune } from '../engine/api.ts';
import type { BaseBackup, WalUpload } from '../generated/prisma/client.ts';
import { parseSegment } from '../sources/pitr-layout.ts';
import { HISTORY_NAME } from '../sources/wal.ts';
import type { Deps } from './deps.ts';
import { openRepository } from './repositories.ts';

/**
 * PITR retention: a cluster keeps every base backup that finished within the longest
 * `walRetentionDays` of its environments, plus the newest one before that (recovery to the start
 * of the period starts from it); older base backups go, and so do WAL snapshots that hold only
 * segments before the oldest kept base backup's start-wal and history files of timelines before
 * its own (the newer history files list them): `walFileBefore`. An environment without
 * `walRetentionDays` keeps the cluster's whole archive. The plan is pure catalog reading, so
 * previewRetention shows exactly what applying removes of it; applying also forgets superseded
 * partial segments (supersededPartialUploads), which no recovery reads, whatever the days.
 */

export interface PitrRetentionPlan {
  baseBackups: BaseBackup[];
  walUploads: WalUpload[];
  /** WAL before this segment goes (the oldest kept base backup's start-wal); null: none. */
  walBefore: string | null;
}

const EMPTY: PitrRetentionPlan = { baseBackups: [], walUploads: [], walBefore: null };

/**
 * WAL uploads holding nothing but `.partial` copies of segments that an upload into the same
 * destination holds complete. The streamer sends the growing current segment every archive
 * interval, and each copy stores its changed tail (the chunk that ran into the zeros) anew;
 * once the segment is complete no recovery reads them (walFilesToFetch takes the segment), so
 * they go, and prune gives their tails back. An upload that also holds a complete segment or a
 * history file stays whole.
 */
export function supersededPartialUploads<U extends Pick<WalUpload, 'destinationId' | 'files'>>(uploads: U[]): U[] {
  const complete = new Set(uploads.flatMap((u) => u.files.filter((f) => !f.endsWith('.partial')).map((f) => `${u.destinationId}/${f}`)));
  return uploads.filter((u) => u.files.length > 0 && u.files.every((f) => f.endsWith('.partial') && complete.has(`${u.destinationId}/${f.slice(0, -'.partial'.length)}`)));
}

export async function planPitrRetention(deps: Deps, clusterId: string, now: Date): Promise<PitrRetentionPlan> {
  const envs = await deps.db.environment.findMany({ where: { pitrClusterId: clusterId, walEnabled: true }, select: { walRetentionDays: true } });
  if (!envs.length || envs.some((e) => e.walRetentionDays === null)) return EMPTY;
  const days = Math.max(...envs.map((e) => e.walRetentionDays!));
  const cutoff = new Date(now.getTime() - days * 86_400_000);
  const ready = await deps.db.baseBackup.findMany({ where: { clusterId, status: 'READY', finishedAt: { not: null } }, orderBy: { finishedAt: 'desc' } });
  const older = ready.filter((b) => b.finishedAt! < cutoff);
  if (older.length <= 1) return EMPTY;
  const oldestKept = older[0];
  const walBefore = oldestKept.startWal!;
  const uploads = await deps.db.walUpload.findMany({ where: { clusterId, createdAt: { lt: oldestKept.startedAt } } });
  const walUploads = uploads.filter((u) => u.files.length > 0 && u.files.every((f) => walFileBefore(f, walBefore)));
  return { baseBackups: older.slice(1), walUploads, walBefore };
}

/**
 * Whether no recovery from the base backup starting at segment `startWal` (or a later one) reads
 * WAL file `name`, by (timeline, segment number), never by name: segment numbers go on across a
 * timeline switch, and the names sort by timeline first. A segment (or `.partial`) is before when
 * its number is lower, or when it is of a timeline older than the base backup's, which replaced it
 * from the switch on, before the base backup began (as names, `000000020000000000000003` sorted
 * after `000000010000000000000009` and stayed, and the old timeline's segments numbered past the
 * start went only by luck of the digits). A history file lists every ancestor of its timeline, so
 * one of a timeline older than the base backup's is superseded; newer ones stay.
 */
export function walFileBefore(name: string, startWal: string): boolean {
  const start = parseSegment(startWal);
  if (!start) return false;
  if (HISTORY_NAME.test(name)) return parseInt(name.slice(0, 8), 16) < start.timeline;
  const s = parseSegment(name);
  return s !== null && (s.timeline < start.timeline || s.number < start.number);
}

/**
 * Forgets and prunes what the plan names, and the superseded partial segments
 * (supersededPartialUploads), in every repository holding them; then the catalog.
 */
export async function applyPitrRetention(deps: Deps, clusterId: string, signal?: AbortSignal): Promise<PitrRetentionPlan & { partialUploads: WalUpload[] }> {
  const plan = await planPitrRetention(deps, clusterId, deps.clock.now());
  const aged = new Set(plan.walUploads.map((u) => u.id));
  const partialUploads = supersededPartialUploads(await deps.db.walUpload.findMany({ where: { clusterId } })).filter((u) => !aged.has(u.id));
  const byDestination = new Map<string, string[]>();
  const add = (d: string, id: string) => byDestination.set(d, [...(byDestination.get(d) ?? []), id]);
  for (const b of plan.baseBackups) for (const c of b.copies as { destinationId: string; repoSnapshotId: string }[]) add(c.destinationId, c.repoSnapshotId);
  for (const u of [...plan.walUploads, ...partialUploads]) add(u.destinationId, u.repoSnapshotId);
  for (const [destinationId, ids] of byDestination) {
    const opened = await openRepository(deps, destinationId, signal);
    try {
      await forgetSnapshots(opened.repo, ids, signal);
      // Forgotten is enough for recovery to ignore them; the space comes back with prune, which
      // waits for no one (the streamer's uploads wait behind it): a repository busy now is pruned next time.
      opened.repo.lockWait = { ms: 0 };
      await prune(opened.repo, { signal }).catch((err) => deps.logger.warn({ err, destinationId }, 'PITR retention: prune postponed'));
    } finally {
      await opened.close().catch(() => undefined);
    }
  }
  await deps.db.$transaction([
    deps.db.walUpload.deleteMany({ where: { id: { in: [...plan.walUploads, ...partialUploads].map((u) => u.id) } } }),
    deps.db.baseBackup.updateMany({ where: { id: { in: plan.baseBackups.map((b) => b.id) } }, data: { status: 'DELETED' } }),
  ]);
  return { ...plan, partialUploads };
}
