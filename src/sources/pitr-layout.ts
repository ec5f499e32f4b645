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
