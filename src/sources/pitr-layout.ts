/**
 * The PITR repository layout: the contract between the archiving side (base backups and WAL
 * written into the repositories) and the recovery side (Backplane's own restore to a time, and
 * the README's recovery with stock restic). A *cluster* is a PostgreSQL cluster named by its
 * system identifier (`sysid`, decimal); a *base snapshot* holds `/pitr/<sysid>/base.tar` (the
 * stdout of `pg_basebackup -D - -F tar -X none`), its time the moment the base backup finished;
 * a *WAL snapshot* holds `/pitr/<sysid>/wal/<name>` for the WAL files new or changed since the
 * previous WAL snapshot of that cluster in that repository, its time the moment up to which the
 * WAL in it reaches. A *segment* name is 24 hex digits: timeline, then the segment number as two
 * 8-digit halves (log, seg); the current segment is stored as `<segment>.partial`.
 */

export const PITR_BASE_TAG = 'pitr-base';
export const PITR_WAL_TAG = 'pitr-wal';
export const clusterTag = (sysid: string) => `cluster:${sysid}`;
export const basePath = (sysid: string) => `/pitr/${sysid}/base.tar`;
export const walPath = (sysid: string) => `/pitr/${sysid}/wal`;

/** PostgreSQL's default WAL segment size; the layout's segment arithmetic assumes it. */
export const WAL_SEGMENT_BYTES = 16 * 1024 * 1024;
const SEGMENTS_PER_LOG = 0x1_0000_0000 / WAL_SEGMENT_BYTES;

const SEGMENT_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$/;

/** The segment name holding `lsn` ("0/3000028") on timeline `tli`. */
export function segmentOfLsn(tli: number, lsn: string): string {
  const [hi, lo] = lsn.split('/').map((h) => parseInt(h, 16));
  const seg = Math.floor(lo / WAL_SEGMENT_BYTES);
  return [tli, hi, seg].map((n) => n.toString(16).toUpperCase().padStart(8, '0')).join('');
}

/** A WAL file name taken apart; null for anything else (history files included). */
export function parseSegment(name: string): { timeline: number; number: number; partial: boolean } | null {
  const m = SEGMENT_RE.exec(name);
  if (!m) return null;
  return { timeline: parseInt(m[1], 16), number: parseInt(m[2], 16) * SEGMENTS_PER_LOG + parseInt(m[3], 16), partial: Boolean(m[4]) };
}

/** The value of a `name:value` tag, if the snapshot has one. */
export function tagValue(tags: readonly string[] | undefined, name: string): string | undefined {
  const prefix = `${name}:`;
  return tags?.find((t) => t.startsWith(prefix))?.slice(prefix.length);
}

/** A timeline history file's entries: each parent timeline and where its child left it. */
export function parseHistory(text: string): { parent: number; switchLsn: string }[] {
  const entries: { parent: number; switchLsn: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (m) entries.push({ parent: Number(m[1]), switchLsn: m[2].toUpperCase() });
  }
  return entries;
}

/**
 * The highest segment number among `segments` that a recovery replaying them to their end reads
 * (`recovery_target_timeline` latest): the newest timeline with a history file in `histories`
 * (timeline → its file's text), else the segments' oldest, and the ancestors its history names,
 * each only up to the segment where its child left it. Segments of an ancestor past that point
 * (commits the new timeline never had) and of other branches are never replayed, so they are not
 * WAL the recovery stopped short of.
 */
export function lastSegmentOnPath(segments: string[], histories: Map<number, string>): number {
  const parsed = segments.map(parseSegment).filter((s) => s !== null);
  const target = histories.size ? Math.max(...histories.keys()) : Math.min(...parsed.map((s) => s.timeline));
  const upTo = new Map<number, number>([[target, Infinity]]);
  for (const e of parseHistory(histories.get(target) ?? '')) upTo.set(e.parent, parseSegment(segmentOfLsn(e.parent, e.switchLsn))!.number);
  return parsed.filter((s) => s.number <= (upTo.get(s.timeline) ?? -1)).reduce((last, s) => Math.max(last, s.number), 0);
}
