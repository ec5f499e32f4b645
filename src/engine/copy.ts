/**
 * Copy: transfers one snapshot into another repository, sending only the blobs the destination
 * lacks. Blobs are decrypted with the source's key and re-encrypted with the destination's; ids
 * stay the same (they hash plaintext), so the copied trees are identical. A tree already in the
 * destination is taken as complete, as restic assumes.
 */
import { throwIfAborted } from './errors.ts';
import type { Id } from './ids.ts';
import { withLock } from './lock.ts';
import type { Repository } from './repository.ts';
import { findSnapshot, saveSnapshot, type Snapshot, type SnapshotJson } from './snapshot.ts';

/** Options for copySnapshot(). */
export interface CopyOptions {
  signal?: AbortSignal;
  onProgress?: (p: { blobsCopied: number; bytesCopied: number }) => void;
}

/** What a copy transferred. */
export interface CopyResult {
  /** The snapshot's id in the destination. */
  snapshotId: Id;
  blobsCopied: number;
  /** Plaintext bytes of copied blobs. */
  bytesCopied: number;
}

/** Copies a snapshot (`latest`, id, prefix or loaded Snapshot) from src into dst. */
export async function copySnapshot(src: Repository, dst: Repository, snapshot: string | Snapshot, opts: CopyOptions = {}): Promise<CopyResult> {
  const { signal } = opts;
  return dst.serializeWrites(() => withLock(src, false, () =>
    withLock(dst, false, async () => {
      await src.refreshIndex(signal);
      await dst.refreshIndex(signal);
      const sn = typeof snapshot === 'string' ? await findSnapshot(src, snapshot, undefined, signal) : snapshot;
      let blobsCopied = 0;
      let bytesCopied = 0;
      const seen = new Set<Id>();
      const copyTree = async (treeId: Id): Promise<void> => {
        throwIfAborted(signal);
        if (seen.has(treeId) || dst.knowsBlob('tree', treeId)) return;
        seen.add(treeId);
        const plain = await src.loadBlob('tree', treeId, signal);
        const tree = await src.loadTree(treeId, signal);
        for (const node of tree.nodes) {
          if (node.type === 'dir' && node.subtree) await copyTree(node.subtree);
          for (const id of node.type === 'file' ? node.content ?? [] : []) {
            if (dst.knowsBlob('data', id)) continue;
            const data = await src.loadBlob('data', id, signal);
            await dst.saveBlob('data', data, id);
            blobsCopied++;
            bytesCopied += data.length;
            opts.onProgress?.({ blobsCopied, bytesCopied });
          }
        }
        // Trees after their children: a tree in dst always has its subtrees and data complete.
        await dst.saveBlob('tree', plain, treeId);
        blobsCopied++;
        bytesCopied += plain.length;
      };
      try {
        await copyTree(sn.tree);
        await dst.flush();
      } catch (err) {
        await dst.discardWrites();
        throw err;
      }
      const { id, ...json } = sn;
      const copy: SnapshotJson = { ...json, original: json.original ?? id };
      const snapshotId = await saveSnapshot(dst, copy, signal);
      return { snapshotId, blobsCopied, bytesCopied };
    }, signal),
  signal));
}
