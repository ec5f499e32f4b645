/**
 * Walker: the read side of snapshots. Resolves a path inside a snapshot to its node, walks
 * trees depth-first, and streams one file's content blob by blob (with a little read-ahead).
 */
import { Readable, Transform, pipeline } from 'node:stream';
import { BackendNotFoundError } from '../destinations/backend.ts';
import { NotFoundInRepositoryError, throwIfAborted } from './errors.ts';
import type { Id } from './ids.ts';
import type { Repository } from './repository.ts';
import type { Snapshot } from './snapshot.ts';
import type { Node } from './tree.ts';
import { CodecPool, type ThreadBlob } from './codec-pool.ts';

/** Blobs fetched ahead while streaming a file, bounded by count and by plaintext bytes. */
const READ_AHEAD = 4;
const READ_AHEAD_BYTES = 12 * 1024 * 1024;

/** Splits a snapshot path into names; `/` and `` are the root. */
export function splitPath(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}

/**
 * The node at a path in a snapshot. The root (`/`) is returned as a synthetic directory node
 * named '' whose subtree is the snapshot's tree.
 */
export async function resolvePath(repo: Repository, snapshot: Snapshot, path: string, signal?: AbortSignal): Promise<Node> {
  const zero = snapshot.time;
  let node: Node = { name: '', type: 'dir', mtime: zero, atime: zero, ctime: zero, uid: 0, gid: 0, content: null, subtree: snapshot.tree };
  for (const name of splitPath(path)) {
    if (name === '..') throw new NotFoundInRepositoryError(`path ${path} is not normalized`);
    if (node.type !== 'dir' || !node.subtree) throw new NotFoundInRepositoryError(`${path}: not a directory on the way`);
    const tree = await repo.loadTree(node.subtree, signal);
    const next = tree.nodes.find((n) => n.name === name);
    if (!next) throw new NotFoundInRepositoryError(`${path} does not exist in snapshot ${snapshot.id.slice(0, 8)}`);
    node = next;
  }
  return node;
}

/** One entry met by walk(): its path relative to the walk's start, and its node. */
export interface WalkEntry {
  path: string;
  node: Node;
}

/** Depth-first, pre-order walk of a tree (directories before their contents). */
export async function* walk(repo: Repository, treeId: Id, prefix = '', signal?: AbortSignal): AsyncGenerator<WalkEntry> {
  const tree = await repo.loadTree(treeId, signal);
  for (const node of tree.nodes) {
    throwIfAborted(signal);
    const path = prefix === '' ? node.name : `${prefix}/${node.name}`;
    yield { path, node };
    if (node.type === 'dir' && node.subtree) yield* walk(repo, node.subtree, path, signal);
  }
}

/**
 * A data blob as a codec thread takes it: where a local pack holds it (the thread reads it
 * itself, and none of its bytes pass through this thread), else its stored bytes loaded here.
 * `packId` names the pack, for a BackendNotFoundError when the thread finds it gone (ENOPACK).
 */
export async function threadBlob(repo: Repository, id: Id, signal?: AbortSignal): Promise<{ blob: ThreadBlob; packId: string }> {
  const entry = repo.lookupBlob('data', id);
  const local = repo.backend.localPath;
  if (entry && local) {
    const pack = local.call(repo.backend, { type: 'data', name: entry.packId });
    return { blob: { id, pack, offset: entry.offset, length: entry.length, uncompressedLength: entry.uncompressedLength, where: ` in pack ${entry.packId}` }, packId: entry.packId };
  }
  const loaded = await repo.loadRawBlob('data', id, signal);
  return { blob: { id, stored: loaded.bytes, uncompressedLength: loaded.entry.uncompressedLength, where: ` in pack ${loaded.entry.packId}` }, packId: loaded.entry.packId };
}

/** A codec thread's error for a blob of `packId`: its ENOPACK (the local pack is gone) as the backend reports a missing file. */
export function packError(err: unknown, packId: string): unknown {
  return (err as NodeJS.ErrnoException).code === 'ENOPACK' ? new BackendNotFoundError({ type: 'data', name: packId }, { cause: err }) : err;
}

/** Loads one data blob, decoding it in the pool's threads when a pool is given. */
export async function loadDataBlob(repo: Repository, id: Id, pool?: CodecPool, signal?: AbortSignal): Promise<Buffer> {
  if (!pool) return repo.loadBlob('data', id, signal);
  const { entry, bytes } = await repo.loadRawBlob('data', id, signal);
  return pool.decode(id, bytes, entry.uncompressedLength, ` in pack ${entry.packId}`);
}

/** Yields a file's blobs in order, loading (and decoding) a few ahead. */
export async function* fileBlobs(repo: Repository, node: Node, signal?: AbortSignal, pool?: CodecPool): AsyncGenerator<Buffer> {
  const ids = node.content ?? [];
  const queue: { p: Promise<Buffer>; size: number }[] = [];
  let queued = 0;
  let next = 0;
  const fill = () => {
    while (queue.length < READ_AHEAD && next < ids.length) {
      const entry = repo.lookupBlob('data', ids[next]);
      const size = entry ? (entry.uncompressedLength ?? entry.length) : 0;
      // Always keep one blob in flight; beyond that, stay under the byte budget (chunks reach 8 MiB).
      if (queue.length > 0 && queued + size > READ_AHEAD_BYTES) break;
      const p = loadDataBlob(repo, ids[next++], pool, signal);
      p.catch(() => {}); // handled when awaited; avoid unhandled rejections for read-ahead
      queue.push({ p, size });
      queued += size;
    }
  };
  fill();
  while (queue.length > 0) {
    const head = queue.shift()!;
    const buf = await head.p;
    queued -= head.size;
    fill();
    yield buf;
  }
}

/** A Readable of one file's content. */
export function fileStream(repo: Repository, node: Node, signal?: AbortSignal): Readable {
  if (node.type !== 'file') throw new NotFoundInRepositoryError(`${node.name} is not a file`);
  // Large files are decoded in worker threads; the pool lives as long as the stream.
  const pool = (node.content?.length ?? 0) > 4 ? new CodecPool(repo.key, 1) : undefined;
  async function* gen(): AsyncGenerator<Buffer> {
    try {
      yield* fileBlobs(repo, node, signal, pool);
    } finally {
      await pool?.close();
    }
  }
  return Readable.from(gen(), { objectMode: false });
}

/**
 * A file's content that writes itself into a descriptor (a pipe to pg_restore) from a codec
 * thread, so that neither the decoded bytes nor the pipe's writes pass through this thread; or,
 * where no such pipe can be made, gives itself as a stream.
 */
export interface ContentWriter {
  /**
   * Writes the whole content into `fd`, which the caller closes once this settles (no write of
   * it is under way then). Rejects with the first failure: a blob that does not verify
   * (IntegrityError), a missing pack, a reader gone (code EPIPE), or an abort.
   */
  writeTo(fd: number): Promise<void>;
  /** The same bytes as a stream, for where the writer cannot be used. */
  stream(): Readable;
  /** Stops writing: later blobs are not written, and writeTo rejects. */
  destroy(): void;
}

let writers = 0;

/** A ContentWriter of one file; `onBytes` hears of the bytes as they are written, in either form. */
export function contentWriter(repo: Repository, node: Node, opts: { signal?: AbortSignal; onBytes?: (n: number) => void } = {}): ContentWriter {
  if (node.type !== 'file') throw new NotFoundInRepositoryError(`${node.name} is not a file`);
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const onBytes = opts.onBytes ?? (() => {});
  return {
    async writeTo(fd) {
      const writer = ++writers;
      // At normal priority, like pg_restore itself (priority.ts): the thread relays the dump to
      // PostgreSQL's backend, and at the background niceness it kept pg_restore waiting on the
      // pipe for about half of its waits (a raw `zstd -d | pg_restore` hardly ever does).
      const pool = new CodecPool(repo.key, 1, true, undefined, 0);
      const inFlight: { done: Promise<number>; size: number; packId: string }[] = [];
      let queued = 0;
      const settle = async (part: (typeof inFlight)[number]) => {
        try {
          onBytes(await part.done);
        } catch (err) {
          throw packError(err, part.packId);
        }
      };
      try {
        for (const id of node.content ?? []) {
          throwIfAborted(signal);
          const entry = repo.lookupBlob('data', id);
          const size = entry ? (entry.uncompressedLength ?? entry.length) : 0;
          // One part always in flight; beyond that, stay under the byte budget (chunks reach 8 MiB).
          while (inFlight.length > 0 && queued + size > READ_AHEAD_BYTES) {
            const head = inFlight.shift()!;
            queued -= head.size;
            await settle(head);
          }
          const { blob, packId } = await threadBlob(repo, id, signal);
          const done = pool.writeTo(fd, writer, [blob]);
          done.catch(() => {}); // settled in order below
          inFlight.push({ done, size, packId });
          queued += size;
        }
        while (inFlight.length > 0) await settle(inFlight.shift()!);
        throwIfAborted(signal);
      } finally {
        // No write of this content may still be under way once the caller may close fd.
        await Promise.allSettled(inFlight.map((p) => p.done));
        await pool.close();
      }
    },
    stream() {
      const counter = new Transform({
        transform(chunk: Buffer, _enc, done) {
          onBytes(chunk.length);
          done(null, chunk);
        },
      });
      // pipeline, not pipe: a read error must reach the reader as an error, not as a quiet end.
      return pipeline(fileStream(repo, node, signal), counter, () => undefined);
    },
    destroy() {
      stop.abort(new Error('content writer destroyed'));
    },
  };
}
