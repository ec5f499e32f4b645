/**
 * Walker: the read side of snapshots. Resolves a path inside a snapshot to its node, walks
 * trees depth-first, and streams one file's content blob by blob (with a little read-ahead).
 */
import { Readable } from 'node:stream';
import { NotFoundInRepositoryError, throwIfAborted } from './errors.ts';
import type { Id } from './ids.ts';
import type { Repository } from './repository.ts';
import type { Snapshot } from './snapshot.ts';
import type { Node } from './tree.ts';
import { CodecPool } from './codec-pool.ts';

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
