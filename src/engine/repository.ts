/**
 * Repository: one restic repository (format version 2) in a backend. `config` (encrypted, not
 * compressed) names the format version, the repository id and the chunker; `keys/` holds key
 * files, each the master key encrypted with a password-derived user key; every other file is an
 * *unpacked file* (encrypted, compressed JSON named by the hash of its stored bytes) or a pack.
 *
 * The Repository object opens or creates a repository, loads and saves unpacked files, looks
 * blobs up in the master index, loads blobs, and writes new blobs into packs (one open pack per
 * blob type, like restic), saving packs with bounded concurrency and indexing them on flush().
 */
import { hostname as osHostname, userInfo } from 'node:os';
import { randomBytes } from 'node:crypto';
import { BackendNotFoundError, type Backend, type FileType } from '../destinations/backend.ts';
import { decrypt, encrypt, keyFromJson, keyToJson, newRandomKey, type Key, type KeyJson } from './crypto.ts';
import { compressUnpacked, decompressUnpacked } from './compress.ts';
import { DEFAULT_KDF_PARAMS, deriveKey, deriveKeyCached, type KdfParams } from './kdf.ts';
import { chunkerName, DEFAULT_CHUNKER_PARAMS, parseChunkerName, type ChunkerParams } from './chunker.ts';
import { hashId, randomId, type Id } from './ids.ts';
import {
  BlobNotIndexedError,
  IntegrityError,
  RepositoryExistsError,
  RepositoryNotFoundError,
  UnsupportedFormatError,
  WrongPasswordError,
} from './errors.ts';
import { DEFAULT_PACK_SIZE, PackWriter, keepPackBuffer, packBufferBytes, takePackBuffer, type BlobType, type EncodedBlob, type FinishedPack } from './pack.ts';
import { MasterIndex, indexFromJson, indexToJson, type IndexEntry, type PackList } from './master-index.ts';
import { decodeBlob, encodeBlob } from './blob-codec.ts';
import { decodeTree, encodeTree, formatTime, type Tree } from './tree.ts';
import type { LockWait } from './lock.ts';

/** The repository config as stored (JSON). */
export interface RepoConfig {
  version: number;
  id: Id;
  chunker_polynomial: string;
  /** Our content-defined chunker, by name; restic ignores the field. */
  backplane_chunker?: string;
}

/** A key file (plain JSON in `keys/`). */
export interface KeyFile {
  created: string;
  username: string;
  hostname: string;
  kdf: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string;
  data: string;
}

/** Options for creating a repository. */
export interface InitOptions {
  /** scrypt cost for the first key; defaults to restic's. */
  kdf?: KdfParams;
  /** Chunk sizes; defaults to 512 KiB / 1 MiB / 8 MiB. Only tests should change this. */
  chunker?: ChunkerParams;
  /** Options used for the returned open repository. */
  open?: OpenOptions;
}

/** Options for opening a repository. */
export interface OpenOptions {
  /** Target pack size in bytes (default 16 MiB). */
  packSize?: number;
  /** Packs uploaded at the same time (default 2). */
  uploadConcurrency?: number;
  /**
   * Of those, how many may still hold their pack's bytes (a buffer of the pack's size each,
   * besides the one being filled). Default: 1 for a backend of local files (`localPath`), whose
   * save is done with the bytes once they are written, before its fsync, so a second buffer
   * would rarely be in use yet always be allocated; uploadConcurrency for others (S3 reads them
   * until the upload ends). Only the caller that finished a pack waits: another caller adding
   * blobs meanwhile (a second source of the same backup) opens a new pack, and its buffer.
   */
  heldUploads?: number;
  signal?: AbortSignal;
}

/** Unused in restic for our chunker but required in the config: a fixed irreducible polynomial. */
const CHUNKER_POLYNOMIAL = '3da3358b4dc173';
/** Write a partial index file after this many new packs, so a long backup's work is indexed. */
const INDEX_EVERY_PACKS = 64;
/** ... or after this many new blobs: restic keeps index files below about 50 000 blobs. */
export const INDEX_MAX_BLOBS = 50_000;

/** Statistics of what one writer session added. */
export interface WriteStats {
  blobsAdded: number;
  /** Of blobsAdded, how many were data (file content) blobs. */
  dataBlobsAdded: number;
  packsAdded: number;
  /** Stored (compressed, encrypted) bytes of new blobs. */
  bytesAdded: number;
  /**
   * Bytes of the files saved: packs whole (blobs, header, its encryption), index and snapshot
   * files. What the repository grew by, where bytesAdded counts the blobs alone.
   */
  bytesStored: number;
}

/** An open repository. Create with Repository.init or Repository.open. */
export class Repository {
  /** Blob locations from all index files loaded so far plus packs written by this object. */
  readonly index = new MasterIndex();
  /** Chunker parameters named in the config. */
  readonly chunkerParams: ChunkerParams;
  readonly packSize: number;
  /** How long taking a lock waits for a conflicting one (none by default, as restic). */
  lockWait: LockWait = { ms: 0 };
  private readonly uploadConcurrency: number;
  private readonly heldUploads: number;

  private readonly writers = new Map<BlobType, PackWriter>();
  private readonly pendingBlobs = new Set<string>();
  private readonly uploads = new Set<Promise<void>>();
  /** Of the uploads, those whose backend may still read the pack's bytes: settle once it no longer does. */
  private readonly held = new Set<Promise<void>>();
  private unindexed: PackList[] = [];
  private unindexedBlobs = 0;
  private writeError: unknown = null;
  private readonly stats: WriteStats = { blobsAdded: 0, dataBlobsAdded: 0, packsAdded: 0, bytesAdded: 0, bytesStored: 0 };

  private constructor(
    readonly backend: Backend,
    readonly key: Key,
    readonly config: RepoConfig,
    /** Id of the key file that opened the repository. */
    readonly keyId: Id,
    opts: OpenOptions,
  ) {
    this.chunkerParams = config.backplane_chunker ? parseChunkerName(config.backplane_chunker) : DEFAULT_CHUNKER_PARAMS;
    this.packSize = opts.packSize ?? DEFAULT_PACK_SIZE;
    this.uploadConcurrency = opts.uploadConcurrency ?? 2;
    this.heldUploads = Math.min(this.uploadConcurrency, opts.heldUploads ?? (backend.localPath ? 1 : this.uploadConcurrency));
  }

  /** Creates a new repository in an empty backend and returns it opened. */
  static async init(backend: Backend, password: string, opts: InitOptions = {}): Promise<Repository> {
    if (await backend.stat({ type: 'config', name: 'config' })) throw new RepositoryExistsError(backend.location);
    const create = (backend as { create?: () => Promise<void> }).create;
    if (typeof create === 'function') await create.call(backend);
    const master = newRandomKey();
    const keyId = await writeKeyFile(backend, password, master, opts.kdf ?? DEFAULT_KDF_PARAMS);
    const config: RepoConfig = {
      version: 2,
      id: randomId(),
      chunker_polynomial: CHUNKER_POLYNOMIAL,
      backplane_chunker: chunkerName(opts.chunker ?? DEFAULT_CHUNKER_PARAMS),
    };
    await backend.save({ type: 'config', name: 'config' }, encrypt(master, Buffer.from(JSON.stringify(config))));
    return new Repository(backend, master, config, keyId, opts.open ?? {});
  }

  /** Opens an existing repository: finds a key for the password, reads config and index. */
  static async open(backend: Backend, password: string, opts: OpenOptions = {}): Promise<Repository> {
    const signal = opts.signal;
    let rawConfig: Buffer;
    try {
      rawConfig = await backend.load({ type: 'config', name: 'config' }, { signal });
    } catch (err) {
      if (err instanceof BackendNotFoundError) throw new RepositoryNotFoundError(backend.location, { cause: err });
      throw err;
    }
    const { key, keyId } = await findKey(backend, password, signal);
    let config: RepoConfig;
    try {
      config = JSON.parse(decrypt(key, rawConfig).toString('utf8')) as RepoConfig;
    } catch (cause) {
      throw new IntegrityError('config cannot be read', { cause });
    }
    if (config.version !== 1 && config.version !== 2) throw new UnsupportedFormatError(`repository version ${config.version} is not supported`);
    const repo = new Repository(backend, key, config, keyId, opts);
    await repo.loadIndex(signal);
    return repo;
  }

  /** Adds a key file for another password; returns its id. */
  addKey(password: string, kdf: KdfParams = DEFAULT_KDF_PARAMS): Promise<Id> {
    return writeKeyFile(this.backend, password, this.key, kdf);
  }

  // --- unpacked files -----------------------------------------------------------------------

  /** Loads, verifies and decrypts an unpacked file (snapshot, index, lock). */
  async loadUnpacked(type: FileType, id: Id, signal?: AbortSignal): Promise<Buffer> {
    const raw = await this.backend.load({ type, name: id }, { signal });
    if (hashId(raw) !== id) throw new IntegrityError(`${type}/${id}: content does not match its name`);
    let plain: Buffer;
    try {
      plain = decrypt(this.key, raw);
    } catch (cause) {
      throw new IntegrityError(`${type}/${id}: ${(cause as Error).message}`, { cause });
    }
    return this.config.version >= 2 ? decompressUnpacked(plain) : plain;
  }

  /** Loads an unpacked file and parses its JSON. */
  async loadJson<T>(type: FileType, id: Id, signal?: AbortSignal): Promise<T> {
    return JSON.parse((await this.loadUnpacked(type, id, signal)).toString('utf8')) as T;
  }

  /** Compresses, encrypts and saves an unpacked file; returns its id. */
  async saveUnpacked(type: FileType, plain: Uint8Array, signal?: AbortSignal): Promise<Id> {
    const body = this.config.version >= 2 ? compressUnpacked(plain) : plain;
    const raw = encrypt(this.key, body);
    const id = hashId(raw);
    await this.backend.save({ type, name: id }, raw, { signal });
    // Lock files are removed again; the repository keeps the others.
    if (type === 'index' || type === 'snapshots') this.stats.bytesStored += raw.length;
    return id;
  }

  /** Saves a value as an unpacked JSON file. */
  saveJson(type: FileType, value: unknown, signal?: AbortSignal): Promise<Id> {
    return this.saveUnpacked(type, Buffer.from(JSON.stringify(value), 'utf8'), signal);
  }

  /** Ids of all files of one type. */
  async listIds(type: FileType, signal?: AbortSignal): Promise<Id[]> {
    const out: Id[] = [];
    for await (const f of this.backend.list(type, { signal })) out.push(f.name);
    return out;
  }

  // --- index -------------------------------------------------------------------------------

  /** Index files whose content is in the master index. */
  private readonly loadedIndexIds = new Set<Id>();

  /** Reads every index file into the master index. */
  async loadIndex(signal?: AbortSignal): Promise<void> {
    const ids = await this.listIds('index', signal);
    await mapLimit(ids, 8, async (id) => {
      this.index.addIndexJson(await this.loadJson('index', id, signal));
      this.loadedIndexIds.add(id);
    });
  }

  /** Drops the in-memory index and reads all index files again (after prune or copy). */
  async reloadIndex(signal?: AbortSignal): Promise<void> {
    this.index.clear();
    this.loadedIndexIds.clear();
    await this.loadIndex(signal);
  }

  /**
   * Brings the master index up to date with the repository when another process changed it
   * (a backup added index files, a prune replaced them). Cheap when nothing changed: one list.
   * Backups call it after taking their lock, so they never dedup against pruned blobs.
   */
  async refreshIndex(signal?: AbortSignal): Promise<void> {
    const ids = await this.listIds('index', signal);
    const same = ids.length === this.loadedIndexIds.size && ids.every((id) => this.loadedIndexIds.has(id));
    if (same) return;
    const present = new Set(ids);
    if ([...this.loadedIndexIds].every((id) => present.has(id))) {
      // Only additions: load just the new files.
      await mapLimit(ids.filter((id) => !this.loadedIndexIds.has(id)), 8, async (id) => {
        this.index.addIndexJson(await this.loadJson('index', id, signal));
        this.loadedIndexIds.add(id);
      });
      return;
    }
    await this.reloadIndex(signal);
  }

  /** Every index file with its packs, for maintenance (prune, check). */
  async loadIndexFiles(signal?: AbortSignal): Promise<{ id: Id; packs: PackList[]; supersedes: Id[] }[]> {
    const ids = await this.listIds('index', signal);
    return mapLimit(ids, 8, async (id) => ({ id, ...indexFromJson(await this.loadJson('index', id, signal)) }));
  }

  // --- blobs -------------------------------------------------------------------------------

  /** Whether blobs may be compressed: only from format version 2 on. */
  get compression(): boolean {
    return this.config.version >= 2;
  }

  /** Location of a blob, or undefined when no index lists it. */
  lookupBlob(type: BlobType, id: Id): IndexEntry | undefined {
    return this.index.lookup(type, id);
  }

  /** True when the blob is indexed or already queued for writing by this object. */
  knowsBlob(type: BlobType, id: Id): boolean {
    return this.index.has(type, id) || this.pendingBlobs.has(type[0] + id);
  }

  /** Reads the stored (encrypted) bytes of a blob. */
  async loadRawBlob(type: BlobType, id: Id, signal?: AbortSignal): Promise<{ entry: IndexEntry; bytes: Buffer }> {
    const entry = this.index.lookup(type, id);
    if (!entry) throw new BlobNotIndexedError(type, id);
    const bytes = await this.backend.load({ type: 'data', name: entry.packId }, { offset: entry.offset, length: entry.length, signal });
    if (bytes.length !== entry.length) throw new IntegrityError(`blob ${id} in pack ${entry.packId}: pack is truncated`);
    return { entry, bytes };
  }

  /** Loads, decrypts, decompresses and verifies one blob. */
  async loadBlob(type: BlobType, id: Id, signal?: AbortSignal): Promise<Buffer> {
    const { entry, bytes } = await this.loadRawBlob(type, id, signal);
    return decodeBlob(this.key, id, bytes, entry.uncompressedLength, ` in pack ${entry.packId}`);
  }

  /** Loads a tree. */
  async loadTree(id: Id, signal?: AbortSignal): Promise<Tree> {
    const buf = await this.loadBlob('tree', id, signal);
    try {
      return decodeTree(buf);
    } catch (cause) {
      throw new IntegrityError(`tree ${id} does not parse`, { cause });
    }
  }

  /** Saves a tree (deduplicated); returns its id. */
  async saveTree(tree: Tree): Promise<Id> {
    const buf = encodeTree(tree);
    const id = hashId(buf);
    await this.saveBlob('tree', buf, id);
    return id;
  }

  /**
   * Saves a plaintext blob unless the repository already has it. Encodes on the calling thread;
   * the archiver encodes data blobs in workers and uses addEncodedBlob instead.
   */
  async saveBlob(type: BlobType, plain: Uint8Array, id: Id = hashId(plain)): Promise<{ id: Id; added: boolean }> {
    if (this.knowsBlob(type, id)) return { id, added: false };
    this.reserveBlob(type, id);
    await this.addEncodedBlob(encodeBlob(this.key, type, id, plain, this.compression));
    return { id, added: true };
  }

  /** Marks a blob as about to be written, so concurrent savers do not store it twice. */
  reserveBlob(type: BlobType, id: Id): void {
    this.pendingBlobs.add(type[0] + id);
  }

  /** Forgets a reservation whose blob will not be written after all (e.g. on abort). */
  releaseBlob(type: BlobType, id: Id): void {
    this.pendingBlobs.delete(type[0] + id);
  }

  /**
   * Appends an encoded, reserved blob to the open pack of its type; when the pack is full it is
   * saved in the background. Waits while too many packs are uploading (backpressure).
   */
  async addEncodedBlob(blob: EncodedBlob): Promise<void> {
    this.throwIfWriteFailed();
    // A blob that would overflow the open pack's buffer goes into the next pack: growing the
    // buffer would copy it and double it (and the doubled one would be reused, and kept).
    for (;;) {
      const open = this.writers.get(blob.type);
      if (!open || open.count === 0 || open.fits(blob.data.length)) break;
      this.writers.delete(blob.type);
      await this.startUpload(open.finish(this.key));
    }
    let w = this.writers.get(blob.type);
    if (!w) {
      // Tree packs stay small in practice; do not reserve a full pack for them.
      w = blob.type === 'data' ? new PackWriter(this.packSize, takePackBuffer(packBufferBytes(this.packSize))) : new PackWriter(Math.min(this.packSize, 1024 * 1024));
      this.writers.set(blob.type, w);
    }
    w.add(blob);
    this.stats.blobsAdded++;
    if (blob.type === 'data') this.stats.dataBlobsAdded++;
    this.stats.bytesAdded += blob.data.length;
    if (w.size >= this.packSize) {
      this.writers.delete(blob.type);
      await this.startUpload(w.finish(this.key));
    }
  }

  private async startUpload(pack: FinishedPack): Promise<void> {
    while (this.uploads.size >= this.uploadConcurrency || this.held.size >= this.heldUploads) await Promise.race([...this.uploads, ...this.held]);
    this.throwIfWriteFailed();
    let recycled = false;
    let released!: () => void;
    const held = new Promise<void>((resolve) => (released = resolve));
    const release = () => {
      this.held.delete(held);
      released();
    };
    this.held.add(held);
    // The backend is done with the bytes when it says so (the local one before its fsync), or
    // else when save() resolves: from then on the buffer can take the next pack.
    const recycle = () => {
      if (recycled) return;
      recycled = true;
      if (pack.buffer.length >= this.packSize) keepPackBuffer(pack.buffer);
      release();
    };
    const p = this.backend
      .save({ type: 'data', name: pack.id }, pack.bytes, { dataConsumed: recycle })
      .then(() => {
        this.index.addPack(pack.id, pack.blobs);
        this.unindexed.push({ packId: pack.id, blobs: pack.blobs });
        this.unindexedBlobs += pack.blobs.length;
        for (const b of pack.blobs) this.pendingBlobs.delete(b.type[0] + b.id);
        this.stats.packsAdded++;
        this.stats.bytesStored += pack.bytes.length;
        recycle();
      })
      .catch((err) => {
        this.writeError ??= err;
      })
      .finally(() => {
        release();
        this.uploads.delete(p);
      });
    this.uploads.add(p);
    if (this.unindexed.length >= INDEX_EVERY_PACKS || this.unindexedBlobs >= INDEX_MAX_BLOBS) await this.writeIndex();
  }

  private throwIfWriteFailed(): void {
    if (this.writeError) throw this.writeError;
  }

  /** Saves the open packs, waits for all uploads and writes an index file for the new packs. */
  async flush(): Promise<void> {
    for (const [type, w] of [...this.writers]) {
      this.writers.delete(type);
      if (w.count > 0) await this.startUpload(w.finish(this.key));
    }
    while (this.uploads.size > 0) await Promise.race(this.uploads);
    this.throwIfWriteFailed();
    await this.writeIndex();
  }

  /**
   * Drops the open packs without saving them and waits for running uploads. Packs already
   * uploaded and not yet indexed stay unreferenced; prune removes them.
   */
  async discardWrites(): Promise<void> {
    this.writers.clear();
    while (this.uploads.size > 0) await Promise.race(this.uploads);
    this.pendingBlobs.clear();
    // Their blobs must not count as stored: no index file will ever list these packs.
    for (const p of this.unindexed) this.index.removePack(p.packId, p.blobs);
    this.unindexed = [];
    this.unindexedBlobs = 0;
    this.writeError = null;
  }

  private async writeIndex(): Promise<void> {
    if (this.unindexed.length === 0) return;
    const packs = this.unindexed;
    this.unindexed = [];
    this.unindexedBlobs = 0;
    this.loadedIndexIds.add(await this.saveJson('index', indexToJson(packs)));
  }

  private writeQueue: Promise<unknown> = Promise.resolve();

  /**
   * Runs fn after every earlier writer on this object has finished. Writers share the open
   * packs (and one writer's abort discards them), so backups, copies and prunes through one
   * Repository object take turns; separate objects (or processes) may write concurrently.
   */
  serializeWrites<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writeQueue.then(fn, fn);
    this.writeQueue = run.catch(() => {});
    return run;
  }

  /** What this object has written so far. */
  writeStats(): WriteStats {
    return { ...this.stats };
  }

  /** Releases the backend. */
  async close(): Promise<void> {
    await this.backend.close();
  }
}

async function writeKeyFile(backend: Backend, password: string, master: Key, kdf: KdfParams): Promise<Id> {
  const salt = randomBytes(64);
  const user = await deriveKey(password, salt, kdf);
  const data = encrypt(user, Buffer.from(JSON.stringify(keyToJson(master))));
  let username = '';
  try {
    username = userInfo().username;
  } catch {
    // No passwd entry for this uid (e.g. in containers): leave it empty as restic does.
  }
  const file: KeyFile = {
    created: formatTime(BigInt(Date.now()) * 1_000_000n),
    username,
    hostname: osHostname(),
    kdf: 'scrypt',
    N: kdf.N,
    r: kdf.r,
    p: kdf.p,
    salt: salt.toString('base64'),
    data: data.toString('base64'),
  };
  const raw = Buffer.from(JSON.stringify(file));
  const id = hashId(raw);
  await backend.save({ type: 'keys', name: id }, raw);
  return id;
}

async function findKey(backend: Backend, password: string, signal?: AbortSignal): Promise<{ key: Key; keyId: Id }> {
  const names: string[] = [];
  for await (const f of backend.list('keys', { signal })) names.push(f.name);
  // restic tries at most 20 keys: each try costs a full scrypt run.
  for (const name of names.slice(0, 20)) {
    const raw = await backend.load({ type: 'keys', name }, { signal });
    let file: KeyFile;
    try {
      file = JSON.parse(raw.toString('utf8')) as KeyFile;
    } catch {
      continue;
    }
    if (file.kdf !== 'scrypt') continue;
    const user = await deriveKeyCached(password, Buffer.from(file.salt, 'base64'), { N: file.N, r: file.r, p: file.p });
    let plain: Buffer;
    try {
      plain = decrypt(user, Buffer.from(file.data, 'base64'));
    } catch {
      continue;
    }
    return { key: keyFromJson(JSON.parse(plain.toString('utf8')) as KeyJson), keyId: name };
  }
  throw new WrongPasswordError();
}

/** Runs fn over items with at most `limit` running at once; keeps the order of results. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const run = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
  return out;
}
