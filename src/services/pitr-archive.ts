import { ConflictError, ErrorCode, ValidationError } from '../domain/errors.ts';
import { listSnapshots, parseTime, resolvePath, type Repository, type Snapshot } from '../engine/api.ts';
import { basePath, clusterTag, parseSegment, PITR_BASE_TAG, PITR_WAL_TAG, tagValue, walPath } from '../sources/pitr-layout.ts';

/**
 * What a repository holds of one cluster's PITR archive (the layout: src/sources/pitr-layout.ts),
 * and whether a point in time can be recovered from it. The answer comes from the repository
 * itself (snapshot times, WAL file names), so it holds wherever the repository goes; the
 * archiving side's catalog window (`recoveryWindow`, with gaps it saw while streaming) is
 * consulted first when there is one (see checkRecoverable's `window`).
 */

export interface BaseBackup {
  snapshotId: string;
  /** When the base backup finished. */
  time: Date;
  timeline: number;
  startWal: string;
  endWal: string;
}

export interface WalSnapshot {
  snapshotId: string;
  /** Up to when the WAL in it (and before it) reaches. */
  time: Date;
  /** Its file names: segments, `<segment>.partial`, `<tli>.history`. */
  files: string[];
}

export interface PitrArchive {
  sysid: string;
  bases: BaseBackup[];
  wal: WalSnapshot[];
}

/** A recovery window as the archiving side's catalog keeps it; null fields when nothing is archived. */
export interface RecoveryWindow {
  earliestRecoveryTime: Date | null;
  latestRecoveryTime: Date | null;
  gaps: { from: Date; to: Date; reason?: string }[];
}

/** What a recovery to `time` uses: the base backup, and the WAL snapshots to restore, in time order. */
export interface RecoveryPlan {
  time: Date;
  base: BaseBackup;
  wal: WalSnapshot[];
  /** First and last WAL segment the recovery may read, for the restore log. */
  firstSegment: string;
  lastSegment: string;
}

const timeOf = (sn: Snapshot) => new Date(Number(parseTime(sn.time) / 1_000_000n));

/** Reads the base and WAL snapshots of cluster `sysid` in `repo`, oldest first. */
export async function readArchive(repo: Repository, sysid: string, signal?: AbortSignal): Promise<PitrArchive> {
  const all = (await listSnapshots(repo, signal)).filter((sn) => sn.tags?.includes(clusterTag(sysid)));
  const bases: BaseBackup[] = [];
  const wal: WalSnapshot[] = [];
  for (const sn of all) {
    if (sn.tags?.includes(PITR_BASE_TAG)) {
      const startWal = tagValue(sn.tags, 'start-wal');
      const endWal = tagValue(sn.tags, 'end-wal');
      // A base snapshot without its WAL range cannot be recovered: not ours, or cut short.
      if (!startWal || !endWal || !parseSegment(startWal)) continue;
      bases.push({ snapshotId: sn.id, time: timeOf(sn), timeline: Number(tagValue(sn.tags, 'timeline') ?? 1), startWal, endWal });
    } else if (sn.tags?.includes(PITR_WAL_TAG)) {
      let files: string[] = [];
      try {
        const dir = await resolvePath(repo, sn, walPath(sysid), signal);
        files = (await repo.loadTree(dir.subtree!, signal)).nodes.filter((n) => n.type === 'file').map((n) => n.name);
      } catch (err) {
        if (signal?.aborted) throw err;
        // A WAL snapshot without the folder holds nothing for this cluster.
      }
      wal.push({ snapshotId: sn.id, time: timeOf(sn), files });
    }
  }
  return { sysid, bases, wal };
}

/** The path of a base snapshot's tar, for the restore. */
export const baseTarPath = basePath;

/**
 * Whether `time` can be recovered from `archive` (and from the catalog's `window`, when the
 * archiving side keeps one), and how. Refusals are typed and name what is there instead:
 * a time in the future (ValidationError), before the first base backup, after the newest
 * archived WAL, or where WAL is missing (ConflictError PITR_*).
 */
export function checkRecoverable(archive: PitrArchive, time: Date, now: Date, window?: RecoveryWindow | null): RecoveryPlan {
  if (time.getTime() > now.getTime()) throw ValidationError.field(['input', 'pointInTime'], `${time.toISOString()} is in the future`);
  // The archiving side's gaps include what the repository cannot show (the streamer down past
  // the slot cap while the files look continuous after a new base backup).
  const gap = window?.gaps.find((g) => time >= g.from && time <= g.to);
  if (gap) throw inGap(`${gap.from.toISOString()} to ${gap.to.toISOString()}${gap.reason ? ` (${gap.reason})` : ''}`);
  // The catalog knows how far every destination holds the WAL; a repository snapshot alone
  // cannot say whether another destination lags or an upload is still on its way.
  if (window && (!window.earliestRecoveryTime || !window.latestRecoveryTime || time < window.earliestRecoveryTime || time > window.latestRecoveryTime)) {
    throw new ConflictError(
      ErrorCode.PITR_TIME_NOT_RECOVERABLE,
      window.earliestRecoveryTime && window.latestRecoveryTime
        ? `${time.toISOString()} is outside the recovery window (${window.earliestRecoveryTime.toISOString()} to ${window.latestRecoveryTime.toISOString()})`
        : 'There is no recovery window yet: a base backup and the WAL after it must be archived first',
    );
  }
  if (!archive.bases.length) {
    throw new ConflictError(ErrorCode.PITR_NO_ARCHIVE, `The repository holds no base backup of this database's cluster (${archive.sysid}): nothing to recover a point in time from`);
  }
  const base = archive.bases.filter((b) => b.time.getTime() < time.getTime()).at(-1);
  if (!base) {
    throw new ConflictError(ErrorCode.PITR_BEFORE_FIRST_BASE_BACKUP, `${time.toISOString()} is before the first base backup, which finished at ${archive.bases[0].time.toISOString()}`);
  }
  const newestWal = archive.wal.at(-1);
  // The catalog's window may end past the newest WAL snapshot: an upload that finds every file
  // already in the repository (nothing written since: an idle server) stores no snapshot, yet
  // moves the window's end, and the WAL there holds every commit up to it.
  const catalogCovers = !!window?.latestRecoveryTime && time.getTime() <= window.latestRecoveryTime.getTime();
  if (!newestWal || (newestWal.time.getTime() < time.getTime() && !catalogCovers)) {
    throw new ConflictError(
      ErrorCode.PITR_AFTER_ARCHIVED_WAL,
      newestWal ? `${time.toISOString()} is after the newest archived WAL, which reaches ${newestWal.time.toISOString()}` : 'No WAL is archived yet',
    );
  }
  // WAL up to the first snapshot that reaches `time` is all the recovery may need.
  const upTo = archive.wal.findIndex((w) => w.time.getTime() >= time.getTime());
  const wal = upTo === -1 ? archive.wal : archive.wal.slice(0, upTo + 1);
  // Segment numbers continue across a timeline switch, so continuity is checked on the numbers.
  const names = new Map<number, string>();
  for (const w of wal) for (const f of w.files) {
    const s = parseSegment(f);
    if (s) names.set(s.number, f.replace(/\.partial$/, ''));
  }
  const numbers = new Set(names.keys());
  const first = parseSegment(base.startWal)!.number;
  const last = Math.max(first, ...numbers);
  for (let n = first; n <= last; n++) {
    if (!numbers.has(n)) throw inGap(`WAL segment ${segmentName(base.timeline, n)} is missing from the archive`);
  }
  return { time, base, wal, firstSegment: base.startWal, lastSegment: names.get(last) ?? segmentName(base.timeline, last) };
}

function inGap(what: string): ConflictError {
  return new ConflictError(ErrorCode.PITR_IN_GAP, `The point in time falls in a gap of the archive: ${what}`);
}

/** A missing segment's name from its number, on the base backup's timeline (for the message). */
function segmentName(timeline: number, n: number): string {
  const perLog = 0x100;
  return [timeline, Math.floor(n / perLog), n % perLog].map((x) => x.toString(16).toUpperCase().padStart(8, '0')).join('');
}
