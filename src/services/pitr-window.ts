import { ConflictError, ErrorCode, NotFoundError } from '../domain/errors.ts';
import type { BaseBackup, PitrGapReason, PitrTimelineSwitch } from '../generated/prisma/client.ts';
import type { Deps } from './deps.ts';
import type { RecoveryWindow as RepositoryWindow } from './pitr-archive.ts';

/**
 * The recovery window of an environment, from the catalog alone (never the repository): from the
 * end of the oldest READY base backup to the time up to which every destination holds the WAL
 * (the cluster's `coveredUntil`), minus the gaps. A gap runs from the last recoverable moment
 * before WAL went missing to the end of the first base backup after it; one still open (no base
 * backup since) ends the window at its start.
 */

export type PitrStatus = 'OFF' | 'STARTING' | 'ARCHIVING' | 'LAGGING';

export interface RecoveryGap {
  reason: PitrGapReason;
  from: Date;
  /** null: open until the next base backup finishes. */
  to: Date | null;
  detail: string | null;
}

export interface RecoveryWindow {
  enabled: boolean;
  status: PitrStatus;
  clusterId: string | null;
  systemIdentifier: string | null;
  earliest: Date | null;
  latest: Date | null;
  lagSeconds: number | null;
  /** Logical bytes of WAL files archived (summed over destinations). */
  archivedBytes: bigint;
  baseBackups: BaseBackup[];
  gaps: RecoveryGap[];
  /** New timelines of the server the archive followed (recovery crosses them), oldest first. */
  timelineSwitches: PitrTimelineSwitch[];
}

/** The environment's columns the window depends on. */
export type WindowSettings = { walEnabled: boolean; pitrClusterId: string | null; walArchiveIntervalSeconds: number };

/**
 * The window of an environment whose WAL no cluster archives (`pitrClusterId` null): nothing to
 * read, so a list of environments answers it without a promise each.
 */
export function windowWithoutArchive(env: WindowSettings): RecoveryWindow {
  return { enabled: env.walEnabled, status: 'OFF', clusterId: env.pitrClusterId, systemIdentifier: null, earliest: null, latest: null, lagSeconds: null, archivedBytes: 0n, baseBackups: [], gaps: [], timelineSwitches: [] };
}

/** What the catalog holds of one cluster's archive: all a window is computed from. */
export interface ClusterArchive {
  cluster: { id: string; systemIdentifier: string; coveredUntil: Date | null };
  baseBackups: BaseBackup[];
  gaps: RecoveryGap[];
  archivedBytes: bigint;
  timelineSwitches: PitrTimelineSwitch[];
}

/**
 * The archives of several clusters in five statements whatever their number: a list of
 * environments (the console's overview) shows each one's window, and many share a cluster.
 */
export async function clusterArchives(deps: Deps, clusterIds: readonly string[]): Promise<Map<string, ClusterArchive>> {
  const ids = [...new Set(clusterIds)];
  const [clusters, baseBackups, gapRows, bytes, timelineSwitches] = await Promise.all([
    deps.db.pitrCluster.findMany({ where: { id: { in: ids } }, select: { id: true, systemIdentifier: true, coveredUntil: true } }),
    deps.db.baseBackup.findMany({ where: { clusterId: { in: ids } }, orderBy: { startedAt: 'desc' } }),
    deps.db.pitrGap.findMany({ where: { clusterId: { in: ids } }, orderBy: { fromTime: 'asc' } }),
    deps.db.walUpload.groupBy({ by: ['clusterId'], where: { clusterId: { in: ids } }, _sum: { bytes: true } }),
    deps.db.pitrTimelineSwitch.findMany({ where: { clusterId: { in: ids } }, orderBy: { timeline: 'asc' } }),
  ]);
  const archives = new Map<string, ClusterArchive>(clusters.map((cluster) => [cluster.id, { cluster, baseBackups: [], gaps: [], archivedBytes: 0n, timelineSwitches: [] }]));
  for (const b of baseBackups) archives.get(b.clusterId)?.baseBackups.push(b);
  for (const g of gapRows) archives.get(g.clusterId)?.gaps.push({ reason: g.reason, from: g.fromTime, to: g.toTime, detail: g.detail });
  for (const s of timelineSwitches) archives.get(s.clusterId)?.timelineSwitches.push(s);
  for (const b of bytes) {
    const a = archives.get(b.clusterId);
    if (a) a.archivedBytes = b._sum.bytes ?? 0n;
  }
  return archives;
}

/** The window of an environment whose cluster's archive is `archive`, at `now`. */
export function windowOf(env: WindowSettings, archive: ClusterArchive, now: Date): RecoveryWindow {
  const { cluster, baseBackups, gaps } = archive;
  const open = gaps.find((g) => g.to === null);
  const latest = cluster.coveredUntil && open && open.from < cluster.coveredUntil ? open.from : cluster.coveredUntil;
  const ready = baseBackups.filter((b) => b.status === 'READY' && b.finishedAt && latest && b.finishedAt <= latest);
  const earliest = ready.length ? ready.reduce((a, b) => (a.finishedAt! < b.finishedAt! ? a : b)).finishedAt : null;
  const lagMs = cluster.coveredUntil ? Math.max(0, now.getTime() - cluster.coveredUntil.getTime()) : null;
  const lagSeconds = lagMs === null ? null : Math.round(lagMs / 1000);
  const status: PitrStatus = !env.walEnabled
    ? 'OFF'
    : !earliest || lagMs === null
      ? 'STARTING'
      : lagMs > 2 * env.walArchiveIntervalSeconds * 1000
        ? 'LAGGING'
        : 'ARCHIVING';
  return {
    ...windowWithoutArchive(env),
    status,
    systemIdentifier: cluster.systemIdentifier,
    earliest: earliest && latest ? earliest : null,
    latest: earliest ? latest : null,
    lagSeconds,
    archivedBytes: archive.archivedBytes,
    baseBackups,
    gaps,
    timelineSwitches: archive.timelineSwitches,
  };
}

/**
 * `settings`: the environment's row when the caller has it, which spares a read; an environment
 * without PITR then costs nothing.
 */
export async function recoveryWindow(deps: Deps, environmentId: string, settings?: WindowSettings): Promise<RecoveryWindow> {
  const env = settings ?? (await deps.db.environment.findUnique({ where: { id: environmentId }, select: { walEnabled: true, pitrClusterId: true, walArchiveIntervalSeconds: true } }));
  if (!env) throw NotFoundError.environment();
  if (!env.pitrClusterId) return windowWithoutArchive(env);
  const archive = (await clusterArchives(deps, [env.pitrClusterId])).get(env.pitrClusterId);
  if (!archive) throw new Error(`PITR cluster ${env.pitrClusterId} of environment ${environmentId} not found`);
  return windowOf(env, archive, deps.clock.now());
}

/** Refuses a time the archive cannot reach: outside the window, or inside a gap. */
export function assertRecoverable(window: RecoveryWindow, time: Date): void {
  if (!window.earliest || !window.latest) {
    throw new ConflictError(ErrorCode.PITR_TIME_NOT_RECOVERABLE, 'There is no recovery window yet: a base backup and the WAL after it must be archived first');
  }
  if (time < window.earliest || time > window.latest) {
    throw new ConflictError(ErrorCode.PITR_TIME_NOT_RECOVERABLE, `${time.toISOString()} is outside the recovery window (${window.earliest.toISOString()} to ${window.latest.toISOString()})`);
  }
  const gap = window.gaps.find((g) => time > g.from && (g.to === null || time < g.to));
  if (gap) {
    throw new ConflictError(ErrorCode.PITR_TIME_NOT_RECOVERABLE, `${time.toISOString()} falls in a gap of the WAL archive (${gap.reason}, ${gap.from.toISOString()} to ${gap.to?.toISOString() ?? 'the next base backup'})`);
  }
}

/**
 * The catalog's window in the shape `checkRecoverable` (pitr-archive.ts, which reads the
 * repository) takes, so a restore also refuses what only the catalog knows to be lost, such as
 * the streamer down past the slot cap while the files look continuous. Null while archiving is
 * off for the environment (a repository written by hand or by an earlier setup still decides alone).
 */
export async function catalogRecoveryWindow(deps: Deps, environmentId: string): Promise<RepositoryWindow | null> {
  const w = await recoveryWindow(deps, environmentId);
  if (!w.enabled || !w.clusterId) return null;
  const now = deps.clock.now();
  return {
    earliestRecoveryTime: w.earliest,
    latestRecoveryTime: w.latest,
    // A gap still open lasts until the next base backup: up to now, as far as a restore asks.
    gaps: w.gaps.map((g) => ({ from: g.from, to: g.to ?? now, reason: g.to ? g.reason : `${g.reason}, open until the next base backup` })),
  };
}
