import { setTimeout as delay } from 'node:timers/promises';
import { BackendNotFoundError } from '../destinations/backend.ts';
import { ConflictError, ErrorCode } from '../domain/errors.ts';
import { BlobNotIndexedError, IntegrityError, packsOfSnapshots, repairPacks, RepositoryLockedError, snapshotsMissingBlobs, type DamagedPack, type Repository } from '../engine/api.ts';
import { raiseAlert } from './alerts.ts';
import type { Deps } from './deps.ts';
import { enqueueJob } from './jobs.ts';
import { openRepository } from './repositories.ts';

/**
 * Damage: what the catalog does when a read of a repository (restore, download, verify, copy)
 * meets a damaged pack. The engine's repairPacks reads the packs of the snapshot that failed,
 * drops the damaged ones from the index and salvages their good blobs; here the catalog follows:
 * its blob index cache forgets those packs, every copy on that destination whose snapshot now
 * references a lost blob becomes DAMAGED (and the snapshot too when no READY copy is left), and a
 * PACK_DAMAGED alert names them. Since the index no longer lists the lost blobs, the next backup of
 * the same content writes them again; `reassessDamage` then turns copies that are whole again
 * back to READY.
 */

/** Whether a read failed because stored bytes are bad, a pack is gone or a blob unindexed (not for a network error). */
export function isDamage(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    // A blob no index lists: its pack was dropped by an earlier heal the catalog never heard of.
    if (e instanceof IntegrityError || e instanceof BlobNotIndexedError) return true;
    if (e instanceof BackendNotFoundError && e.handle.type === 'data') return true;
    if (e instanceof AggregateError && e.errors.some(isDamage)) return true;
  }
  return false;
}

/** The typed refusal to read a DAMAGED snapshot (restore, download, verify, copy). */
export function throwIfDamaged(snapshot: { status: string }): void {
  if (snapshot.status === 'DAMAGED') {
    throw new ConflictError(ErrorCode.SNAPSHOT_DAMAGED, 'Snapshot is damaged: a pack holding some of its data was damaged on every destination that holds it');
  }
}

/** What one heal found: the packs dropped and the catalog snapshots that became DAMAGED. */
export interface HealResult {
  packs: DamagedPack[];
  damagedSnapshotIds: string[];
}

/** Lock conflicts (another process writing the repository) are waited out for about this long. */
const LOCK_ATTEMPTS = 10;
const LOCK_RETRY_MS = 3000;

/**
 * Heals a destination's repository after a read of these repository snapshots failed with
 * damage: only their packs are read. Returns null when none of them turned out damaged (the
 * failure was something else). Runs in the job that failed, before its operation ends.
 */
export async function healRepository(
  deps: Deps,
  input: { destinationId: string; repo: Repository; repoSnapshotIds: string[]; operationId?: string | null },
  signal?: AbortSignal,
): Promise<HealResult | null> {
  const { repo, destinationId } = input;
  const packs = await packsOfSnapshots(repo, input.repoSnapshotIds, signal);
  let result;
  for (let attempt = 1; ; attempt++) {
    try {
      result = await repairPacks(repo, { packs, signal });
      break;
    } catch (err) {
      // Rewriting the index needs the repository to ourselves; backups of other environments end.
      if (!(err instanceof RepositoryLockedError) || attempt >= LOCK_ATTEMPTS) throw err;
      await delay(LOCK_RETRY_MS, undefined, { signal });
    }
  }
  let damagedRepoIds = result.damagedSnapshots;
  if (result.damaged.length === 0) {
    // No damaged pack left, yet the read failed: a heal that stopped (crash) between rewriting
    // the index and marking the catalog, or `repo repair` run by hand. The catalog catches up.
    damagedRepoIds = await snapshotsMissingBlobs(repo, signal);
    if (!input.repoSnapshotIds.some((id) => damagedRepoIds.includes(id))) return null;
  }
  const packIds = result.damaged.map((d) => d.packId);
  await deps.db.$transaction([
    deps.db.blob.deleteMany({ where: { destinationId, packId: { in: packIds } } }),
    deps.db.pack.deleteMany({ where: { destinationId, packId: { in: packIds } } }),
  ]);
  const { damaged } = await syncDamage(deps, destinationId, damagedRepoIds);
  const destination = await deps.db.destination.findUniqueOrThrow({ where: { id: destinationId } });
  const lost = result.damaged.reduce((n, d) => n + d.lost.length, 0);
  const packText = packIds.length
    ? `${packIds.length} damaged pack(s) (${packIds.map((id) => id.slice(0, 12)).join(', ')}) dropped from the index of ${destination.name}, ${lost} blob(s) lost`
    : `blobs missing from the index of ${destination.name} (damaged packs were dropped from it earlier)`;
  deps.logger.warn({ destinationId, packs: result.damaged, repoSnapshots: damagedRepoIds }, 'damaged packs dropped from the index');
  // One alert per environment, so a key limited to some projects sees its own snapshots named.
  const byEnvironment = new Map<string, typeof damaged>();
  for (const s of damaged) byEnvironment.set(s.environmentId, [...(byEnvironment.get(s.environmentId) ?? []), s]);
  for (const [environmentId, snaps] of byEnvironment) {
    const names = snaps.map((s) => `${s.id} (${s.kind.toLowerCase()}${s.label ? ` "${s.label}"` : ''}, ${s.createdAt.toISOString()})`);
    await raiseAlert(deps, {
      organizationId: snaps[0].organizationId,
      environmentId,
      operationId: input.operationId ?? null,
      type: 'PACK_DAMAGED',
      severity: 'CRITICAL',
      message: `${packText}; damaged snapshot(s): ${names.join(', ')}`.slice(0, 4000),
    });
  }
  if (byEnvironment.size === 0) {
    await raiseAlert(deps, { organizationId: destination.organizationId, operationId: input.operationId ?? null, type: 'PACK_DAMAGED', severity: 'WARNING', message: `${packText}; no snapshot lost data` });
  }
  return { packs: result.damaged, damagedSnapshotIds: damaged.map((s) => s.id) };
}

/**
 * healRepository for the job that met the damage. When the heal cannot run now (other writers
 * keep the repository locked, the backend fails), a `repository_heal` job retries it later on
 * the environment's queue, and this returns 'deferred'.
 */
export async function healInJob(
  deps: Deps,
  input: { destinationId: string; repo: Repository; repoSnapshotId: string; snapshotId: string; environmentId: string; operationId: string; alsoRead?: string[] },
  signal?: AbortSignal,
): Promise<HealResult | null | 'deferred'> {
  try {
    const repoSnapshotIds = [input.repoSnapshotId, ...(input.alsoRead ?? [])];
    return await healRepository(deps, { destinationId: input.destinationId, repo: input.repo, repoSnapshotIds, operationId: input.operationId }, signal);
  } catch (err) {
    if (signal?.aborted) throw err;
    deps.logger.error({ err, operationId: input.operationId, destinationId: input.destinationId }, 'healing the repository failed; a repository_heal job retries');
    await enqueueHeal(deps, input);
    return 'deferred';
  }
}

/**
 * Brings the catalog in line with the repository's own view: copies on the destination whose
 * repository snapshot is in `damagedRepoIds` become DAMAGED, DAMAGED ones not in it READY again;
 * a snapshot is DAMAGED while it has a damaged copy and no READY one. Returns the snapshots that
 * changed either way.
 */
export async function syncDamage(deps: Deps, destinationId: string, damagedRepoIds: string[]) {
  const ids = new Set(damagedRepoIds);
  const copies = await deps.db.snapshotCopy.findMany({ where: { destinationId, status: { in: ['READY', 'DAMAGED'] }, repoSnapshotId: { not: null } } });
  const toDamaged = copies.filter((c) => c.status === 'READY' && ids.has(c.repoSnapshotId!));
  const toReady = copies.filter((c) => c.status === 'DAMAGED' && !ids.has(c.repoSnapshotId!));
  if (toDamaged.length) {
    await deps.db.snapshotCopy.updateMany({ where: { id: { in: toDamaged.map((c) => c.id) } }, data: { status: 'DAMAGED', error: 'A pack holding some of its data was damaged and dropped from the index' } });
  }
  if (toReady.length) await deps.db.snapshotCopy.updateMany({ where: { id: { in: toReady.map((c) => c.id) } }, data: { status: 'READY', error: null } });
  const touched = [...new Set([...toDamaged, ...toReady].map((c) => c.snapshotId))];
  const snapshots = await deps.db.snapshot.findMany({ where: { id: { in: touched }, status: { in: ['READY', 'DAMAGED'] } }, include: { copies: true } });
  const damaged = snapshots.filter((s) => s.status === 'READY' && !s.copies.some((c) => c.status === 'READY'));
  const healed = snapshots.filter((s) => s.status === 'DAMAGED' && s.copies.some((c) => c.status === 'READY'));
  if (damaged.length) await deps.db.snapshot.updateMany({ where: { id: { in: damaged.map((s) => s.id) }, status: 'READY' }, data: { status: 'DAMAGED' } });
  if (healed.length) await deps.db.snapshot.updateMany({ where: { id: { in: healed.map((s) => s.id) }, status: 'DAMAGED' }, data: { status: 'READY' } });
  for (const s of [...damaged, ...healed]) await deps.events.publish('environmentActivity', s.environmentId, { kind: 'SNAPSHOT', environmentId: s.environmentId, subjectId: s.id });
  return { damaged, healed };
}

/**
 * After a backup into a repository that lost blobs: snapshots it made whole again (it wrote the
 * same content) are READY again. Walks every snapshot's trees, so only called after a heal.
 */
export async function reassessDamage(deps: Deps, destinationId: string, repo: Repository, signal?: AbortSignal) {
  await repo.refreshIndex(signal);
  return syncDamage(deps, destinationId, await snapshotsMissingBlobs(repo, signal));
}

/**
 * After a snapshot was written to a destination that has DAMAGED copies: it may have stored the
 * lost blobs again. Costs one count query when the destination has none; never throws.
 */
export async function reassessAfterBackup(deps: Deps, destinationId: string, repo: Repository, signal?: AbortSignal): Promise<void> {
  if ((await deps.db.snapshotCopy.count({ where: { destinationId, status: 'DAMAGED' } })) === 0) return;
  try {
    await reassessDamage(deps, destinationId, repo, signal);
  } catch (err) {
    // The snapshot is READY already; the next backup tries again.
    deps.logger.error({ err, destinationId }, 'could not reassess damaged snapshots');
  }
}

/**
 * For readers that cannot heal where they run (a download streams from an API process): the
 * heal runs as a job on the snapshot environment's queue.
 */
export async function enqueueHeal(deps: Deps, input: { destinationId: string; snapshotId: string; environmentId: string }): Promise<void> {
  await enqueueJob(deps.db, 'repository_heal', { destinationId: input.destinationId, snapshotId: input.snapshotId }, {
    queueName: input.environmentId,
    jobKey: `repository-heal:${input.destinationId}:${input.snapshotId}`,
    maxAttempts: 5,
  });
}

/** The `repository_heal` job: heals after a download met damage. Throws for what a retry can fix. */
export async function runRepositoryHeal(deps: Deps, input: { destinationId: string; snapshotId: string }, signal?: AbortSignal): Promise<HealResult | null> {
  const copy = await deps.db.snapshotCopy.findUnique({ where: { snapshotId_destinationId: { snapshotId: input.snapshotId, destinationId: input.destinationId } } });
  if (!copy?.repoSnapshotId) return null;
  const opened = await openRepository(deps, input.destinationId, signal);
  try {
    return await healRepository(deps, { destinationId: input.destinationId, repo: opened.repo, repoSnapshotIds: [copy.repoSnapshotId] }, signal);
  } finally {
    await opened.close().catch(() => undefined);
  }
}
