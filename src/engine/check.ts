/**
 * Check: verifies a repository. The *structure* check confirms that every pack an index lists
 * exists with the size its blobs imply, and that every tree and data blob reachable from a
 * snapshot is indexed (loading and hash-checking every tree on the way). With `readData`, every
 * indexed pack is read in full: its file hash, its header against the index, and every blob's
 * MAC and content hash. Problems name the pack and blob concerned.
 */
import { CodecPool } from './codec-pool.ts';
import { throwIfAborted } from './errors.ts';
import { hashId, type Id } from './ids.ts';
import { withLock } from './lock.ts';
import { expectedPackSize, parsePack, type PackedBlobInfo } from './pack.ts';
import type { Repository } from './repository.ts';
import { listSnapshots } from './snapshot.ts';

/** One thing check found wrong (or, for warnings, worth knowing). */
export interface CheckProblem {
  kind:
    | 'pack-missing'
    | 'pack-size'
    | 'pack-unindexed'
    | 'pack-hash'
    | 'pack-header'
    | 'blob-corrupt'
    | 'blob-missing'
    | 'tree-unreadable'
    | 'tree-invalid'
    | 'snapshot-unreadable';
  message: string;
  packId?: Id;
  blobId?: Id;
  treeId?: Id;
  snapshotId?: Id;
}

/** Options for check(). */
export interface CheckOptions {
  /** Read every pack and verify every blob (slow: reads the whole repository). */
  readData?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: { packsDone: number; packsTotal: number }) => void;
  /** Take a shared lock (default true). */
  lock?: boolean;
}

/** What check found. ok is false when there is any error (warnings do not count). */
export interface CheckResult {
  ok: boolean;
  errors: CheckProblem[];
  warnings: CheckProblem[];
  snapshots: number;
  trees: number;
  packs: number;
  packsRead: number;
}

/** Checks the repository; never throws for problems it finds, only for failing to look. */
export async function check(repo: Repository, opts: CheckOptions = {}): Promise<CheckResult> {
  const run = async (): Promise<CheckResult> => {
    const { signal } = opts;
    const errors: CheckProblem[] = [];
    const warnings: CheckProblem[] = [];
    await repo.reloadIndex(signal);

    // Packs as the index files describe them.
    const indexed = new Map<Id, PackedBlobInfo[]>();
    for (const f of await repo.loadIndexFiles(signal)) {
      for (const p of f.packs) if (!indexed.has(p.packId)) indexed.set(p.packId, p.blobs);
    }
    const existing = new Map<Id, number>();
    for await (const f of repo.backend.list('data', { signal })) existing.set(f.name, f.size);
    for (const [packId, blobs] of indexed) {
      const size = existing.get(packId);
      if (size === undefined) {
        errors.push({ kind: 'pack-missing', packId, message: `pack ${packId} is indexed but does not exist` });
      } else if (size !== expectedPackSize(blobs)) {
        errors.push({ kind: 'pack-size', packId, message: `pack ${packId} has size ${size}, index implies ${expectedPackSize(blobs)}` });
      }
    }
    for (const packId of existing.keys()) {
      if (!indexed.has(packId)) warnings.push({ kind: 'pack-unindexed', packId, message: `pack ${packId} is not referenced by any index (prune removes it)` });
    }

    // Everything reachable from snapshots.
    const snapshotIds = await repo.listIds('snapshots', signal);
    let snapshots: Awaited<ReturnType<typeof listSnapshots>> = [];
    try {
      snapshots = await listSnapshots(repo, signal);
    } catch {
      for (const id of snapshotIds) {
        try {
          snapshots.push({ ...(await repo.loadJson('snapshots', id, signal)), id } as (typeof snapshots)[number]);
        } catch (err) {
          errors.push({ kind: 'snapshot-unreadable', snapshotId: id, message: `snapshot ${id}: ${(err as Error).message}` });
        }
      }
    }
    const seenTrees = new Set<Id>();
    const stack: Id[] = snapshots.map((s) => s.tree);
    while (stack.length > 0) {
      throwIfAborted(signal);
      const treeId = stack.pop()!;
      if (seenTrees.has(treeId)) continue;
      seenTrees.add(treeId);
      if (!repo.index.has('tree', treeId)) {
        errors.push({ kind: 'blob-missing', treeId, blobId: treeId, message: `tree ${treeId} is not in the index` });
        continue;
      }
      let tree;
      try {
        tree = await repo.loadTree(treeId, signal);
      } catch (err) {
        errors.push({ kind: 'tree-unreadable', treeId, packId: repo.index.lookup('tree', treeId)?.packId, message: `tree ${treeId}: ${(err as Error).message}` });
        continue;
      }
      for (const node of tree.nodes) {
        if (node.type === 'file') {
          if (!node.content) errors.push({ kind: 'tree-invalid', treeId, message: `file ${node.name} in tree ${treeId} has no content list` });
          for (const id of node.content ?? []) {
            if (!repo.index.has('data', id)) {
              errors.push({ kind: 'blob-missing', treeId, blobId: id, message: `file ${node.name} in tree ${treeId}: data blob ${id} is not in the index` });
            }
          }
        } else if (node.type === 'dir') {
          if (!node.subtree) errors.push({ kind: 'tree-invalid', treeId, message: `directory ${node.name} in tree ${treeId} has no subtree` });
          else stack.push(node.subtree);
        }
      }
    }

    let packsRead = 0;
    if (opts.readData) {
      const packs = [...indexed].filter(([id]) => existing.has(id));
      const load = (packId: Id) => repo.backend.load({ type: 'data', name: packId }, { signal }).then(
        (bytes) => ({ bytes, err: null }),
        (err: unknown) => ({ bytes: null, err }),
      );
      // Blobs are verified in the codec threads while the next pack is being read.
      const pool = new CodecPool(repo.key);
      try {
        let pending = packs.length > 0 ? load(packs[0][0]) : null;
        for (let i = 0; i < packs.length; i++) {
          throwIfAborted(signal);
          const [packId, blobs] = packs[i];
          const { bytes, err } = await pending!;
          pending = i + 1 < packs.length ? load(packs[i + 1][0]) : null;
          packsRead++;
          opts.onProgress?.({ packsDone: packsRead, packsTotal: packs.length });
          if (!bytes) {
            errors.push({ kind: 'pack-missing', packId, message: `pack ${packId} cannot be read: ${(err as Error).message}` });
            continue;
          }
          if (hashId(bytes) !== packId) errors.push({ kind: 'pack-hash', packId, message: `pack ${packId}: content hash does not match its name` });
          try {
            const header = parsePack(repo.key, bytes);
            const want = new Map(blobs.map((b) => [`${b.type}:${b.id}:${b.offset}:${b.length}`, b]));
            const same = header.length === blobs.length && header.every((h) => want.has(`${h.type}:${h.id}:${h.offset}:${h.length}`));
            if (!same) errors.push({ kind: 'pack-header', packId, message: `pack ${packId}: header does not match the index` });
          } catch (e) {
            errors.push({ kind: 'pack-header', packId, message: `pack ${packId}: header unreadable: ${(e as Error).message}` });
          }
          await Promise.all(
            blobs.map((b) => {
              if (b.offset + b.length > bytes.length) {
                errors.push({ kind: 'blob-corrupt', packId, blobId: b.id, message: `pack ${packId}, ${b.type} blob ${b.id}: lies past the end of the pack` });
                return undefined;
              }
              const stored = Buffer.from(bytes.subarray(b.offset, b.offset + b.length));
              return pool.decode(b.id, stored, b.uncompressedLength).then(
                () => undefined,
                (e: unknown) => {
                  errors.push({ kind: 'blob-corrupt', packId, blobId: b.id, message: `pack ${packId}, ${b.type} blob ${b.id}: ${(e as Error).message}` });
                },
              );
            }),
          );
        }
      } finally {
        await pool.close();
      }
    }
    return { ok: errors.length === 0, errors, warnings, snapshots: snapshots.length, trees: seenTrees.size, packs: indexed.size, packsRead };
  };
  return opts.lock === false ? run() : withLock(repo, false, run, opts.signal);
}
