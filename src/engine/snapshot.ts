/**
 * Snapshots: a *snapshot* is one unpacked JSON file in `snapshots/` naming the root tree of a
 * backup, when it was taken, of which paths, by which host, with which tags, and its parent.
 * A snapshot's id is the id of its file.
 */
import { hostname as osHostname } from 'node:os';
import type { Id } from './ids.ts';
import { currentOwner } from './owner.ts';
import { NotFoundInRepositoryError } from './errors.ts';
import { withLock } from './lock.ts';
import { mapLimit, type Repository } from './repository.ts';
import { parseTime } from './tree.ts';

/** A snapshot file's JSON, with restic's field names. */
export interface SnapshotJson {
  time: string;
  parent?: Id;
  tree: Id;
  paths: string[];
  hostname?: string;
  username?: string;
  uid?: number;
  gid?: number;
  excludes?: string[];
  tags?: string[];
  original?: Id;
  program_version?: string;
}

/** A snapshot together with its id. */
export interface Snapshot extends SnapshotJson {
  id: Id;
}

/** Fills in host, user and time for a new snapshot. */
export function newSnapshotJson(tree: Id, paths: string[], opts: { time: string; tags?: string[]; parent?: Id; hostname?: string }): SnapshotJson {
  const { username, uid, gid } = currentOwner();
  const sn: SnapshotJson = { time: opts.time, tree, paths, hostname: opts.hostname ?? osHostname(), username };
  if (opts.parent) sn.parent = opts.parent;
  if (uid) sn.uid = uid;
  if (gid) sn.gid = gid;
  if (opts.tags?.length) sn.tags = opts.tags;
  sn.program_version = 'backplane';
  return sn;
}

/** Writes a snapshot file; returns its id. */
export function saveSnapshot(repo: Repository, sn: SnapshotJson, signal?: AbortSignal): Promise<Id> {
  return repo.saveJson('snapshots', sn, signal);
}

/** Loads one snapshot by its full id. */
export async function loadSnapshot(repo: Repository, id: Id, signal?: AbortSignal): Promise<Snapshot> {
  return { ...(await repo.loadJson<SnapshotJson>('snapshots', id, signal)), id };
}

/** Every snapshot, oldest first. */
export async function listSnapshots(repo: Repository, signal?: AbortSignal): Promise<Snapshot[]> {
  const ids = await repo.listIds('snapshots', signal);
  const all = await mapLimit(ids, 8, (id) => loadSnapshot(repo, id, signal));
  return all.sort((a, b) => {
    const d = parseTime(a.time) - parseTime(b.time);
    return d < 0n ? -1 : d > 0n ? 1 : a.id < b.id ? -1 : 1;
  });
}

/** Filter for finding snapshots. */
export interface SnapshotFilter {
  /** Every one of these tags must be present. */
  tags?: string[];
  hostname?: string;
}

function matches(sn: Snapshot, f?: SnapshotFilter): boolean {
  if (f?.hostname && sn.hostname !== f.hostname) return false;
  for (const t of f?.tags ?? []) if (!sn.tags?.includes(t)) return false;
  return true;
}

/**
 * Finds a snapshot by `latest` (newest matching the filter), full id or unique id prefix.
 * Throws NotFoundInRepositoryError when none or several match.
 */
export async function findSnapshot(repo: Repository, ref: string, filter?: SnapshotFilter, signal?: AbortSignal): Promise<Snapshot> {
  if (ref === 'latest') {
    const all = (await listSnapshots(repo, signal)).filter((s) => matches(s, filter));
    if (all.length === 0) throw new NotFoundInRepositoryError('no snapshot found');
    return all[all.length - 1];
  }
  const ids = (await repo.listIds('snapshots', signal)).filter((id) => id.startsWith(ref));
  if (ids.length !== 1) throw new NotFoundInRepositoryError(ids.length === 0 ? `snapshot ${ref} not found` : `snapshot prefix ${ref} is ambiguous`);
  return loadSnapshot(repo, ids[0], signal);
}

/**
 * Deletes snapshot files; their data stays until prune. Under the repository's exclusive lock, as
 * restic's `forget` takes it: a restore, backup, copy or check holds a shared lock while it reads
 * snapshots, and the one it reads must not vanish under it (nor its packs, in the prune that
 * usually follows), so forgetting waits for them (the repository's lockWait).
 */
export async function forgetSnapshots(repo: Repository, ids: Id[], signal?: AbortSignal, opts: { /** false: the caller holds the exclusive lock already. */ lock?: boolean } = {}): Promise<void> {
  if (ids.length === 0) return;
  const run = async () => {
    for (const id of ids) await repo.backend.remove({ type: 'snapshots', name: id }, { signal });
  };
  await (opts.lock === false ? run() : withLock(repo, true, run, signal));
}
