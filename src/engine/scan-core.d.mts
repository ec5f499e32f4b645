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

/** What the last backup recorded for a file, to skip reading it when unchanged. */
export interface ScanParent {
  size: number;
  ino: number;
  dev: number;
  /** As trees store them (formatTime). */
  mtime: string;
  ctime: string;
}

export interface ScanJob {
  dir: string;
  names: string[];
  parents: (ScanParent | null)[];
  /** Signatures in the files cache (statSignature), null where none; an entry matching its own is reported `same`. */
  sigs?: (string | null)[];
  /** Files whose mtime or ctime is at or after this (ns since the epoch) are read even when they match their parent; absent, every file is read. */
  racyNs?: bigint;
  params: { min: number; avg: number; max: number };
  /** Forced cut points (ascending byte offsets) per name, null where none: see cutChunks in chunker-core.mjs. */
  cuts?: (readonly number[] | null)[];
  /** Bytes of files a batch reads at most; a file past them (not the first read) is reported `later`. */
  maxBytes?: number;
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
      /** Its signature is the one given in the job's sigs: nothing else is sent. */
      same?: boolean;
      /** Its signature (statSignature), with stat. */
      sig?: string;
      linktarget?: string;
      gone?: boolean;
      /** Not read, to keep the batch within maxBytes: its size, for the caller to scan it in another batch. */
      later?: number;
      error?: { code?: string; message: string };
    };

export declare class Scanner {
  constructor(
    encKey: Uint8Array,
    macK: Uint8Array,
    macR: Uint8Array,
    /** false, true (ZSTD_LEVEL) or a zstd level. */
    compression: boolean | number,
    alloc: (n: number) => { view: Uint8Array; off?: number; cost?: number },
  );
  scanBatch(job: ScanJob, emit: (m: ScanMessage, transfer?: ArrayBuffer[]) => void): void;
}

/** Most stream chunks a thread holds unanswered. */
export declare const MAX_UNANSWERED: number;

/** The fields of a bigint lstat result that a tree node records. */
/** An entry's signature for the files cache: its lstat fields (times in ns) and symlink target in one string. */
export declare function statSignature(st: import('node:fs').BigIntStats, linktarget?: string): string;
/** The lstat fields and symlink target ('' for none) a signature holds. */
export declare function signatureStat(sig: string): { stat: ScanStat; linktarget: string };
export declare function statFields(st: import('node:fs').BigIntStats): ScanStat;

/** Total size of the regular files under the given paths. */
export declare function diskUsage(paths: string[]): number;
