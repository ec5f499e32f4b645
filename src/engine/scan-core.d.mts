/** Types for scan-core.mjs (see there). */

/** An entry's lstat, as the thread reports it. */
export interface ScanStat {
  kind: 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'dev';
  mode: number;
  /** RFC 3339, as trees store them (formatTime). */
  mtime: string;
  atime: string;
  ctime: string;
  uid: number;
  gid: number;
  ino: number;
  dev: number;
  nlink: number;
  size: number;
  rdev: number;
}

/** What the parent snapshot recorded for a file, to skip reading it when unchanged. */
export interface ScanParent {
  size: number;
  ino: number;
  dev: number;
  mtimeNs: bigint;
}

export interface ScanJob {
  dir: string;
  names: string[];
  parents: (ScanParent | null)[];
  params: { min: number; avg: number; max: number };
}

export type ScanMessage =
  | {
      type: 'blob';
      index: number;
      id: string;
      len: number;
      uncompressedLength: number | undefined;
      plainLength: number;
      /** The stored bytes, or their place in the thread's ring (off, taking cost bytes). */
      data?: Uint8Array;
      off?: number;
      cost?: number;
    }
  | {
      type: 'entry';
      index: number;
      stat?: ScanStat;
      content?: string[];
      size?: number;
      unchanged?: boolean;
      linktarget?: string;
      gone?: boolean;
      error?: { code?: string; message: string };
    };

export declare class Scanner {
  constructor(
    encKey: Uint8Array,
    macK: Uint8Array,
    macR: Uint8Array,
    compression: boolean,
    alloc: (n: number) => { view: Uint8Array; off?: number; cost?: number },
  );
  scanBatch(job: ScanJob, emit: (m: ScanMessage, transfer?: ArrayBuffer[]) => void): void;
}

/** Most stream chunks a thread holds unanswered. */
export declare const MAX_UNANSWERED: number;

/** The fields of a bigint lstat result that a tree node records. */
export declare function statFields(st: import('node:fs').BigIntStats): ScanStat;

/** Total size of the regular files under the given paths. */
export declare function diskUsage(paths: string[]): number;
