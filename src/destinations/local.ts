/**
 * The local-disk backend: a restic repository in a directory, laid out exactly as restic lays it
 * out (`data/<first two hex digits>/<id>`), so `restic -r <dir>` reads it directly.
 *
 * Writes go to a temporary name in the same directory, are fsynced, and are renamed into place;
 * the directory is fsynced after the rename, so a crash leaves either the whole file or nothing.
 */
import { constants as fsc } from 'node:fs';
import { mkdir, open, readdir, realpath, rename, rm, stat, unlink } from 'node:fs/promises';
import { join, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import {
  BackendAccessError,
  BackendNotFoundError,
  FILE_TYPES,
  type Backend,
  type CallOptions,
  type SaveOptions,
  type FileInfo,
  type FileType,
  type Handle,
  type LoadOptions,
  objectKeyProblem,
} from './backend.ts';

/** Options for the local backend. */
export interface LocalBackendOptions {
  /** fsync files and directories after writing (default true); tests may turn it off for speed. */
  fsync?: boolean;
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

function ioError(what: string, err: unknown): BackendAccessError {
  return new BackendAccessError('IO', `${what}: ${(err as Error).message}`, { cause: err });
}

/** A Backend on the local file system. */
export class LocalBackend implements Backend {
  readonly location: string;
  private readonly fsync: boolean;
  private readonly madeDirs = new Set<string>();

  constructor(readonly root: string, opts: LocalBackendOptions = {}) {
    this.location = root;
    this.fsync = opts.fsync ?? true;
  }

  /** Creates the directory skeleton (`keys/`, `data/00..ff`, ...) as `restic init` does. */
  async create(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    for (const t of FILE_TYPES) {
      if (t !== 'config') await mkdir(join(this.root, t), { recursive: true });
    }
    for (let i = 0; i < 256; i++) {
      await mkdir(join(this.root, 'data', i.toString(16).padStart(2, '0')), { recursive: true });
    }
  }

  /** The file system path of a handle (Backend.localPath). */
  async openObject(key: string, opts?: CallOptions): Promise<{ stream: Readable; size: number | null }> {
    const problem = objectKeyProblem(key);
    if (problem) throw new BackendAccessError('IO', `invalid key ${JSON.stringify(key)}: ${problem}`);
    // A symbolic link inside the root may point anywhere: the real path must stay under the real root.
    let file: string;
    try {
      const root = await realpath(this.root);
      file = await realpath(join(this.root, key));
      if (!file.startsWith(root + sep)) throw new BackendAccessError('IO', `key ${JSON.stringify(key)} leads outside the destination`);
    } catch (err) {
      if (isNotFound(err)) throw new BackendNotFoundError({ type: 'data', name: key }, { cause: err });
      throw err instanceof BackendAccessError ? err : ioError(`open ${key}`, err);
    }
    const fh = await open(file, fsc.O_RDONLY).catch((err: unknown) => {
      throw isNotFound(err) ? new BackendNotFoundError({ type: 'data', name: key }, { cause: err }) : ioError(`open ${key}`, err);
    });
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new BackendAccessError('IO', `key ${JSON.stringify(key)} is not a file`);
    }
    return { stream: fh.createReadStream({ highWaterMark: 1 << 20, signal: opts?.signal }), size: st.size };
  }

  localPath(h: Handle): string {
    if (h.type === 'config') return join(this.root, 'config');
    if (!/^[0-9a-zA-Z._-]+$/.test(h.name) || h.name.startsWith('.')) {
      throw new BackendAccessError('IO', `invalid file name ${JSON.stringify(h.name)}`);
    }
    if (h.type === 'data') return join(this.root, 'data', h.name.slice(0, 2), h.name);
    return join(this.root, h.type, h.name);
  }

  async save(h: Handle, data: Uint8Array, opts?: SaveOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    const final = this.localPath(h);
    const dir = join(final, '..');
    if (!this.madeDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.madeDirs.add(dir);
    }
    const tmp = join(dir, `.tmp-${randomBytes(8).toString('hex')}`);
    let fh;
    try {
      fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await fh.write(data, off, data.length - off);
        off += bytesWritten;
      }
      opts?.dataConsumed?.();
      if (this.fsync) await fh.sync();
      await fh.close();
      fh = undefined;
      await rename(tmp, final);
      if (this.fsync) await this.syncDir(dir);
    } catch (err) {
      await fh?.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw ioError(`save ${h.type}/${h.name}`, err);
    }
  }

  private async syncDir(dir: string): Promise<void> {
    const d = await open(dir, fsc.O_RDONLY);
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }

  async load(h: Handle, opts?: LoadOptions): Promise<Buffer> {
    opts?.signal?.throwIfAborted();
    let fh;
    try {
      fh = await open(this.localPath(h), fsc.O_RDONLY);
    } catch (err) {
      if (isNotFound(err)) throw new BackendNotFoundError(h, { cause: err });
      throw ioError(`load ${h.type}/${h.name}`, err);
    }
    try {
      const offset = opts?.offset ?? 0;
      let length = opts?.length;
      if (length === undefined) {
        const st = await fh.stat();
        length = Math.max(0, st.size - offset);
      }
      const buf = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === length ? buf : buf.subarray(0, got);
    } catch (err) {
      throw ioError(`load ${h.type}/${h.name}`, err);
    } finally {
      await fh.close();
    }
  }

  async stat(h: Handle, opts?: CallOptions): Promise<FileInfo | null> {
    opts?.signal?.throwIfAborted();
    try {
      const st = await stat(this.localPath(h));
      return { name: h.name, size: st.size };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw ioError(`stat ${h.type}/${h.name}`, err);
    }
  }

  async *list(type: FileType, opts?: CallOptions): AsyncIterable<FileInfo> {
    if (type === 'config') {
      const st = await this.stat({ type, name: 'config' }, opts);
      if (st) yield st;
      return;
    }
    const dirs: string[] = [];
    if (type === 'data') {
      let subs: string[];
      try {
        subs = await readdir(join(this.root, 'data'));
      } catch (err) {
        if (isNotFound(err)) return;
        throw ioError('list data', err);
      }
      for (const s of subs) if (/^[0-9a-f]{2}$/.test(s)) dirs.push(join(this.root, 'data', s));
    } else {
      dirs.push(join(this.root, type));
    }
    for (const dir of dirs) {
      opts?.signal?.throwIfAborted();
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (err) {
        if (isNotFound(err)) continue;
        throw ioError(`list ${type}`, err);
      }
      for (const name of names) {
        if (name.startsWith('.')) continue;
        try {
          const st = await stat(join(dir, name));
          if (st.isFile()) yield { name, size: st.size };
        } catch (err) {
          if (!isNotFound(err)) throw ioError(`list ${type}`, err);
        }
      }
    }
  }

  async remove(h: Handle, opts?: CallOptions): Promise<void> {
    opts?.signal?.throwIfAborted();
    try {
      await rm(this.localPath(h), { force: true });
    } catch (err) {
      throw ioError(`remove ${h.type}/${h.name}`, err);
    }
  }

  async close(): Promise<void> {}
}
