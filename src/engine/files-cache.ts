/**
 * Files cache: what the last backup of one disk source found there, kept outside the
 * repository (as borg's and kopia's are), so that the next backup of it neither reads the files
 * that did not change nor encodes again the trees of directories that did not change, and does
 * not load the parent snapshot's trees to find out.
 *
 * Words: an *entry* is one directory entry as the last backup stored it: its *signature*
 * (scan-core.mjs statSignature: every lstat field its tree node is made of, times in ns, and a
 * symlink's target) and its content ids (a file) or subtree id (a directory). A file is
 * *unchanged* when its size, inode, device, mtime and ctime are those of its entry; it is *racy*
 * when its mtime or ctime is not older than the *racy limit*, the start of the backup that
 * recorded it rounded down to 2 s (a write just after that backup lstat-ed the file can leave
 * both times as they were on a filesystem with coarse timestamps, git's "racy" files), and a
 * racy file is read again even when unchanged. A directory whose entries all kept their
 * signatures (and subtrees, and contents) keeps the tree the entry names.
 *
 * Where: `<cache dir>/<repository id>/files/<sha256 of "vpath NUL disk path">`, one file per
 * disk source of a backup (restic keeps its cache in ~/.cache/restic/<repository id> too).
 * Format: one line of JSON header (format, version, repository id, virtual and disk path, the
 * snapshot it describes, the racy limit, the bytes of files, and the SHA-256 of the body), then
 * the body: one line of JSON, the table `[[vpath of a directory, record bytes, file bytes], ...]`,
 * then each directory's record in the table's order, `[treeId, [name, signature, ...ids], ...]`
 * as JSON of the given length. A record is parsed only when the backup reaches its directory,
 * and one kept as it was is written back as the same bytes: a cache of 25,000 files parsed
 * whole on opening was 150,000 long-lived objects, whose promotion and marking took more of an
 * unchanged backup's main thread than anything else.
 *
 * A cache that is missing, unreadable, corrupt (its checksum does not match) or made for another
 * repository or source is ignored: the backup reads every file, as without one. It is replaced
 * only after a snapshot was saved, through a temporary file (`<name>.tmp-<pid>`) renamed over
 * it, so an interrupted backup leaves the previous cache; temporary files of processes that no
 * longer run are removed at the next save. Blob ids taken from it are used only while the
 * repository's index still lists them (a prune may have removed them).
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Id } from './ids.ts';

const FORMAT = 'backplane-files-cache';
/** Bumped whenever signatures (scan-core.mjs statSignature), nodes made from them, or the body's layout change. */
const VERSION = 2;

/**
 * Filesystems with coarse timestamps (2 s on FAT, 1 s on ext3 and HFS+, a clock tick elsewhere)
 * never record a write as later than it happened, so the start rounded down to this step is a
 * time that any write after the start reaches or passes.
 */
const RACY_STEP_MS = 2000;

/** The racy limit of a backup that started at `startMs` (ms since the epoch), in ns. */
export function racyLimitNs(startMs: number): bigint {
  return BigInt(Math.floor(startMs / RACY_STEP_MS) * RACY_STEP_MS) * 1_000_000n;
}

/** One entry as recorded: name, signature, then content ids (a file) or the subtree id (a directory). */
export type CachedEntry = [name: string, sig: string, ...ids: Id[]];

/** One directory's record in the body: its tree id, then its entries in tree order. */
type DirRecord = [Id, ...CachedEntry[]];

/** One directory as the last backup stored it. */
export class CachedDir {
  /** [signature, ...ids] by name. */
  private readonly entries = new Map<string, CachedEntry>();

  constructor(
    readonly record: DirRecord,
    /** The record as stored, with the bytes of its regular files: a writer keeps these. */
    readonly stored?: StoredRecord,
  ) {
    for (let i = 1; i < record.length; i++) {
      const e = record[i] as CachedEntry;
      this.entries.set(e[0], e);
    }
  }

  /** The id of the tree it was stored as. */
  get tree(): Id {
    return this.record[0];
  }

  /** How many entries it had. */
  get size(): number {
    return this.entries.size;
  }

  /** The entry of this name. */
  entry(name: string): CachedEntry | undefined {
    return this.entries.get(name);
  }

  /** True when the entry of this name has this signature and these ids. */
  matches(name: string, sig: string, ids: readonly Id[]): boolean {
    const e = this.entries.get(name);
    if (!e || e[1] !== sig || e.length - 2 !== ids.length) return false;
    for (let i = 0; i < ids.length; i++) if (e[i + 2] !== ids[i]) return false;
    return true;
  }
}

/** Where one source's cache lives: the cache directory, the repository, and the source. */
export interface FilesCacheKey {
  /** The cache directory (e.g. ~/.cache/backplane). */
  dir: string;
  repoId: Id;
  /** The source's path in the snapshot. */
  vpath: string;
  /** The source's path on disk. */
  path: string;
}

interface Header {
  format: string;
  version: number;
  repo: Id;
  vpath: string;
  path: string;
  snapshot: Id;
  /** ns since the epoch, as a decimal string. */
  racyNs: string;
  bytes: number;
  sha256: string;
}

/** A directory's record as a cache file holds it: its JSON bytes and the bytes of its regular files. */
interface StoredRecord {
  json: Buffer;
  bytes: number;
}

/** One row of the body's table: a directory's vpath, the length of its record, its files' bytes. */
type TableRow = [vpath: string, length: number, bytes: number];

function cacheFile(key: FilesCacheKey): string {
  const name = createHash('sha256').update(`${key.vpath}\0${key.path}`).digest('hex');
  return join(key.dir, key.repoId, 'files', name);
}

/** The last backup of one source, as its files cache recorded it. */
export class FilesCache {
  private constructor(
    /** Each directory's record, not yet parsed, by vpath. */
    private readonly records: Map<string, StoredRecord>,
    /** The body as stored, written again as it is when nothing changed. */
    readonly bodyBytes: Buffer,
    readonly bodySha256: string,
    /** Files whose mtime or ctime is at or after this (ns) are read again even when unchanged. */
    readonly racyNs: bigint,
    /** Bytes of regular files that backup found (an estimate of this one's total). */
    readonly bytes: number,
    /** The snapshot it describes. */
    readonly snapshot: Id,
  ) {}

  /** Loads a source's cache; null when there is none that can be trusted (see the file's comment). */
  static async load(key: FilesCacheKey): Promise<FilesCache | null> {
    let raw: Buffer;
    try {
      raw = await readFile(cacheFile(key));
    } catch {
      return null;
    }
    try {
      const nl = raw.indexOf(0x0a);
      if (nl < 0) return null;
      const header = JSON.parse(raw.subarray(0, nl).toString('utf8')) as Header;
      if (header.format !== FORMAT || header.version !== VERSION) return null;
      if (header.repo !== key.repoId || header.vpath !== key.vpath || header.path !== key.path) return null;
      const bodyBytes = raw.subarray(nl + 1);
      if (createHash('sha256').update(bodyBytes).digest('hex') !== header.sha256) return null;
      const tableEnd = bodyBytes.indexOf(0x0a);
      if (tableEnd < 0) return null;
      const table = JSON.parse(bodyBytes.toString('utf8', 0, tableEnd)) as TableRow[];
      if (!Array.isArray(table)) return null;
      const records = new Map<string, StoredRecord>();
      let at = tableEnd + 1;
      for (const row of table) {
        if (!Array.isArray(row) || typeof row[0] !== 'string' || !Number.isSafeInteger(row[1]) || row[1] < 0 || typeof row[2] !== 'number') return null;
        records.set(row[0], { json: bodyBytes.subarray(at, at + row[1]), bytes: row[2] });
        at += row[1];
      }
      if (at !== bodyBytes.length) return null;
      return new FilesCache(records, bodyBytes, header.sha256, BigInt(header.racyNs), header.bytes, header.snapshot);
    } catch {
      return null;
    }
  }

  /** How many directories it holds. */
  get dirCount(): number {
    return this.records.size;
  }

  /** The directory at this path in the snapshot, if the last backup stored it (its record parsed now). */
  dir(vpath: string): CachedDir | null {
    const stored = this.records.get(vpath);
    if (!stored) return null;
    let rec: DirRecord;
    try {
      rec = JSON.parse(stored.json.toString('utf8')) as DirRecord;
    } catch {
      return null;
    }
    if (!Array.isArray(rec) || typeof rec[0] !== 'string') return null;
    for (let i = 1; i < rec.length; i++) {
      const e = rec[i];
      if (!Array.isArray(e) || e.length < 2 || typeof e[0] !== 'string' || typeof e[1] !== 'string') return null;
    }
    return new CachedDir(rec, stored);
  }
}

/** Collects what a backup stores of one source and saves it as that source's files cache. */
export class FilesCacheWriter {
  /** Each directory's record by vpath: built by this backup, or kept as the cache read stored it. */
  private readonly records = new Map<string, DirRecord | StoredRecord>();
  private bytes = 0;
  private dirs = 0;
  /** Directories recorded exactly as the cache read had them. */
  private kept = 0;

  constructor(
    private readonly key: FilesCacheKey,
    /** The racy limit of this backup (racyLimitNs of its start). */
    private readonly racyNs: bigint,
    /** The cache this backup read, if any. */
    private readonly read: FilesCache | null,
  ) {}

  /**
   * Records a directory's stored tree and its entries. Entries left out (whose signature is
   * not known) make the directory differ next time, so its tree is encoded again then.
   */
  record(vpath: string, tree: Id, entries: CachedEntry[]): void {
    this.records.set(vpath, [tree, ...entries]);
    this.dirs++;
    this.bytes += recordBytes(entries);
  }

  /** Records a directory exactly as the cache read had it (its stored bytes, when it has them). */
  keep(vpath: string, dir: CachedDir): void {
    if (!dir.stored) {
      this.record(vpath, dir.tree, dir.record.slice(1) as CachedEntry[]);
    } else {
      this.records.set(vpath, dir.stored);
      this.dirs++;
      this.bytes += dir.stored.bytes;
    }
    this.kept++;
  }

  /** The body: the table, then every record (see the file's comment). */
  private encodeBody(): Buffer {
    const table: TableRow[] = [];
    const parts: Buffer[] = [];
    for (const [vpath, r] of this.records) {
      const json = Array.isArray(r) ? Buffer.from(JSON.stringify(r)) : r.json;
      table.push([vpath, json.length, Array.isArray(r) ? recordBytes(r.slice(1) as CachedEntry[]) : r.bytes]);
      parts.push(json);
    }
    return Buffer.concat([Buffer.from(JSON.stringify(table) + '\n'), ...parts]);
  }

  /**
   * Replaces the source's cache with what was recorded, for the snapshot just saved. A failure
   * here costs the next backup its speed, not its correctness: the caller may ignore it.
   */
  async save(snapshot: Id): Promise<void> {
    const file = cacheFile(this.key);
    const dir = join(file, '..');
    await mkdir(dir, { recursive: true });
    // Every directory as it was: the stored body serves again, without encoding it.
    const same = this.read !== null && this.kept === this.dirs && this.read.dirCount === this.dirs;
    const body = same ? this.read!.bodyBytes : this.encodeBody();
    const header: Header = {
      format: FORMAT,
      version: VERSION,
      repo: this.key.repoId,
      vpath: this.key.vpath,
      path: this.key.path,
      snapshot,
      racyNs: this.racyNs.toString(),
      bytes: this.bytes,
      sha256: same ? this.read!.bodySha256 : createHash('sha256').update(body).digest('hex'),
    };
    await removeDeadTemporaries(dir);
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      await writeFile(tmp, Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), body]));
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}

/** Bytes of the regular files among a directory's entries. */
function recordBytes(entries: readonly CachedEntry[]): number {
  let bytes = 0;
  for (const e of entries) if (e[1].startsWith('file\x1f')) bytes += signatureSize(e[1]);
  return bytes;
}

/** The size field of a signature. */
export function signatureSize(sig: string): number {
  let at = 0;
  for (let i = 0; i < 10; i++) at = sig.indexOf('\x1f', at) + 1;
  return Number(sig.slice(at, sig.indexOf('\x1f', at)));
}

/** Removes temporary cache files left by processes that no longer run. */
async function removeDeadTemporaries(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = /\.tmp-(\d+)$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isRunning(pid)) continue;
    await rm(join(dir, name), { force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
