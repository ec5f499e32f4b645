/** How a restore's id appears in the names of the databases and directories it makes. */
import { createHash } from 'node:crypto';

/** Infix of the database or directory a restore fills before the swap. */
export const RESTORE_INFIX = '__bp_restore_';
/** Infix of the database a SWAP restore moves the old target to. */
export const PREVIOUS_INFIX = '__bp_pre_';

/** Prefix of a restore drill's scratch database (`bp_drill_<id>`) and infix of its scratch folder. */
export const DRILL_PREFIX = 'bp_drill_';

/** Cuts a UTF-8 string to at most `maxBytes` bytes without splitting a character. */
export function truncateBytes(text: string, maxBytes: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > maxBytes) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/**
 * The restore id as it appears in database and directory names: the id itself when it is short
 * and plain, else 12 hex digits of its SHA-256 (a prefix of a time-ordered id such as a cuid
 * would repeat between restores started close together).
 */
export function restoreSuffix(restoreId: string): string {
  if (/^[a-z0-9]{1,12}$/.test(restoreId)) return restoreId;
  return createHash('sha256').update(restoreId).digest('hex').slice(0, 12);
}

