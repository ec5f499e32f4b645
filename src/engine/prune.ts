/**
 * Prune: removes data no snapshot needs. Under an exclusive lock it marks every blob reachable
 * from a snapshot as used, then sorts packs: fully used packs stay, packs with no used blob are
 * deleted, and partly used packs are *repacked* (their used blobs copied, still encrypted, into
 * new packs) and deleted. Packs no index lists (left by interrupted backups) are deleted too.
 *
 * Order keeps the repository valid at every step: new packs first, then one new index that
 * supersedes every old index file, then old index files, then unneeded packs.
 */
import { throwIfAborted } from './errors.ts';
import type { Id } from './ids.ts';
import { withLock } from './lock.ts';
import { indexToJson, type PackList } from './master-index.ts';
import { expectedPackSize, parsePack, type BlobType, type PackedBlobInfo } from './pack.ts';
import { INDEX_MAX_BLOBS, type Repository } from './repository.ts';
import { listSnapshots } from './snapshot.ts';

/** Options for prune(). */
export interface PruneOptions {
  signal?: AbortSignal;
  /**
   * Repack a partly used pack only when at least this fraction of its bytes is unused
   * (default 0: repack every partly used pack). Packs under the threshold are kept whole.
   */
  repackThreshold?: number;
  /** Report what would be done without changing anything. */
  dryRun?: boolean;
  onProgress?: (p: { phase: 'mark' | 'repack' | 'delete'; done: number; total: number }) => void;
}

/** What prune did (or would do). */
export interface PruneResult {
  packsKept: number;
  packsDeleted: number;
  packsRepacked: number;
  packsUnindexedDeleted: number;
  blobsRemoved: number;
  /** Stored bytes of removed packs minus stored bytes of the new packs. */
  bytesFreed: number;
  indexFilesReplaced: number;
}

/** Blob ids (type-prefixed) reachable from every snapshot. */
export async function usedBlobs(repo: Repository, signal?: AbortSignal): Promise<Set<string>> {
  const used = new Set<string>();
  const stack: Id[] = (await listSnapshots(repo, signal)).map((s) => s.tree);
  while (stack.length > 0) {
    throwIfAborted(signal);
    const treeId = stack.pop()!;
    if (used.has('t' + treeId)) continue;
    used.add('t' + treeId);
    // A tree no index lists was lost with a damaged pack (repairPacks dropped it): nothing of it
    // can be kept, and refusing would leave every delete failing until each damaged snapshot is gone.
    if (!repo.index.has('tree', treeId)) continue;
    const tree = await repo.loadTree(treeId, signal);
    for (const n of tree.nodes) {
      if (n.type === 'file') for (const id of n.content ?? []) used.add('d' + id);
      else if (n.type === 'dir' && n.subtree) stack.push(n.subtree);
    }
  }
  return used;
}

const key = (t: BlobType, id: Id) => (t === 'data' ? 'd' : 't') + id;

/** Removes unreferenced data. Takes an exclusive lock. */
export async function prune(repo: Repository, opts: PruneOptions = {}): Promise<PruneResult> {
  return repo.serializeWrites(() => withLock(repo, true, async () => {
    const { signal } = opts;
    await repo.flush(); // nothing of ours may be pending while we decide what is unreferenced
    await repo.reloadIndex(signal);
    const used = await usedBlobs(repo, signal);
    opts.onProgress?.({ phase: 'mark', done: 1, total: 1 });

    const indexFiles = await repo.loadIndexFiles(signal);
    const packs = new Map<Id, PackedBlobInfo[]>();
    for (const f of indexFiles) for (const p of f.packs) if (!packs.has(p.packId)) packs.set(p.packId, p.blobs);
    const existing = new Map<Id, number>();
    for await (const f of repo.backend.list('data', { signal })) existing.set(f.name, f.size);

    const keep: PackList[] = [];
    const remove: Id[] = [];
    const repack: { packId: Id; blobs: PackedBlobInfo[] }[] = [];
    const placed = new Set<string>();
    let blobsRemoved = 0;
    let bytesFreed = 0;
    for (const [packId, blobs] of packs) {
      if (!existing.has(packId)) continue; // indexed but missing: drop it from the index
      // A blob stored twice counts as used only in the first pack that keeps it.
      const needed = blobs.filter((b) => used.has(key(b.type, b.id)) && !placed.has(key(b.type, b.id)));
      const unusedBytes = blobs.reduce((s, b) => s + b.length, 0) - needed.reduce((s, b) => s + b.length, 0);
      const total = expectedPackSize(blobs);
      if (needed.length === blobs.length || (needed.length > 0 && unusedBytes / total < (opts.repackThreshold ?? 0))) {
        keep.push({ packId, blobs });
        for (const b of blobs) placed.add(key(b.type, b.id));
        continue;
      }
      blobsRemoved += blobs.length - needed.length;
      remove.push(packId);
      bytesFreed += existing.get(packId)!;
      if (needed.length > 0) {
        repack.push({ packId, blobs: needed });
        for (const b of needed) placed.add(key(b.type, b.id));
      }
    }
    const indexed = new Set(packs.keys());
    const unindexed = [...existing.keys()].filter((id) => !indexed.has(id));
    for (const id of unindexed) bytesFreed += existing.get(id)!;

    const result: PruneResult = {
      packsKept: keep.length,
      packsDeleted: remove.length - repack.length,
      packsRepacked: repack.length,
      packsUnindexedDeleted: unindexed.length,
      blobsRemoved,
      bytesFreed,
      indexFilesReplaced: indexFiles.length,
    };
    if (opts.dryRun) return result;

    // Copy still-needed blobs out of partly used packs, as stored (no re-encryption needed).
    const before = repo.writeStats();
    let done = 0;
    for (const r of repack) {
      throwIfAborted(signal);
      const bytes = await repo.backend.load({ type: 'data', name: r.packId }, { signal });
      parsePack(repo.key, bytes); // refuse to repack from a pack whose header fails its MAC
      for (const b of r.blobs) {
        repo.reserveBlob(b.type, b.id);
        const blob = { id: b.id, type: b.type, data: Buffer.from(bytes.subarray(b.offset, b.offset + b.length)) } as const;
        await repo.addEncodedBlob(b.uncompressedLength !== undefined ? { ...blob, uncompressedLength: b.uncompressedLength } : blob);
      }
      opts.onProgress?.({ phase: 'repack', done: ++done, total: repack.length });
    }
    await repo.flush(); // writes the new packs and an index file for them
    result.bytesFreed -= repo.writeStats().bytesAdded - before.bytesAdded;

    const oldIndexIds = indexFiles.map((f) => f.id);
    let part: PackList[] = [];
    let partBlobs = 0;
    for (const p of keep) {
      part.push(p);
      partBlobs += p.blobs.length;
      if (partBlobs >= INDEX_MAX_BLOBS) {
        await repo.saveJson('index', indexToJson(part, oldIndexIds), signal);
        part = [];
        partBlobs = 0;
      }
    }
    if (part.length > 0) await repo.saveJson('index', indexToJson(part, oldIndexIds), signal);
    let deleted = 0;
    const toDelete = [...remove, ...unindexed];
    for (const id of oldIndexIds) await repo.backend.remove({ type: 'index', name: id }, { signal });
    for (const id of toDelete) {
      await repo.backend.remove({ type: 'data', name: id }, { signal });
      opts.onProgress?.({ phase: 'delete', done: ++deleted, total: toDelete.length });
    }
    await repo.reloadIndex(signal);
    return result;
  }, opts.signal));
}
