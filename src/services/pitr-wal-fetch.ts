import { parseSegment } from '../sources/pitr-layout.ts';
import type { RecoveryPlan } from './pitr-archive.ts';

/**
 * Which files of a recovery plan's WAL snapshots the recovery reads, per snapshot, in the plan's
 * order. The plan holds every WAL snapshot up to the time, and at an archive interval of seconds
 * most of them hold only the current `.partial`, which a later snapshot's copy (or the completed
 * segment) replaces: fetching them all cost the restore most of its time (bench:pitr: 24 of 37 s
 * for 145 MiB of WAL from 40 snapshots). Kept, from the last snapshot holding each name:
 * history files; segments from the base backup's start on; and the newest `.partial` whose
 * segment is not there complete, which the recovery reads under its segment's name (recoveryWalName). Segments before the base
 * backup's start are never read by its recovery. A snapshot none of whose files are kept is left out.
 */
export function walFilesToFetch(plan: Pick<RecoveryPlan, 'base' | 'wal'>): { snapshotId: string; files: string[] }[] {
  const start = parseSegment(plan.base.startWal)?.number ?? 0;
  const lastHolder = new Map<string, number>();
  plan.wal.forEach((w, i) => {
    for (const f of w.files) lastHolder.set(f, i);
  });
  const names = [...lastHolder.keys()];
  const complete = new Set(names.filter((n) => parseSegment(n)?.partial === false));
  const partial = names
    .filter((n) => {
      const s = parseSegment(n);
      return s?.partial && s.number >= start && !complete.has(n.slice(0, -'.partial'.length));
    })
    .sort()
    .at(-1);
  const keep = (n: string) => {
    const s = parseSegment(n);
    if (!s) return true;
    return s.number >= start && (!s.partial || n === partial);
  };
  return plan.wal
    .map((w, i) => ({ snapshotId: w.snapshotId, files: w.files.filter((f) => lastHolder.get(f) === i && keep(f)) }))
    .filter((w) => w.files.length > 0);
}
