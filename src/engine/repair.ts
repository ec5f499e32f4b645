/**
 * Repair: heals a repository whose packs were damaged where they are stored. A pack is *damaged*
 * when it is gone, its bytes no longer hash to its name, its header is unreadable or disagrees
 * with the index, or any blob in it fails its MAC or content hash. One bad blob makes the whole
 * pack damaged (restic reads packs whole in `check`), but its good blobs are *salvaged*: copied,
 * still encrypted, into new packs, as `restic repair packs` does. That costs one read of the pack,
 * which finding the damage already paid, and keeps every blob that can still be read.
 *
 * Then, as `restic repair index` does, one new set of index files that leaves the damaged packs
 * out supersedes every old index file, the old ones are removed, and so are the damaged pack
 * files. A blob that was only in a damaged pack is *lost*: no index lists it any more, so the next
 * backup that meets the same content writes it again (its dedup asks the index), and a snapshot
 * referencing a lost blob is *damaged* until then. The order (salvage packs, new index, old index
 * files, damaged packs) keeps the repository readable at every step, as in prune.
 */
import { BackendNotFoundError } from '../destinations/backend.ts';
import { CodecPool } from './codec-pool.ts';
import { throwIfAborted } from './errors.ts';
import { hashId, type Id } from './ids.ts';
import { withLock } from './lock.ts';
import { indexToJson, type PackList } from './master-index.ts';
import { expectedPackSize, parsePack, type BlobType, type PackedBlobInfo } from './pack.ts';
import { INDEX_MAX_BLOBS, type Repository } from './repository.ts';
import { listSnapshots, loadSnapshot } from './snapshot.ts';

/** One damaged pack and what became of its blobs. */
export interface DamagedPack {
  packId: Id;
  /** Why the pack counts as damaged (the first problem found). */
  reason: string;
  /** Blobs that failed to read and are stored nowhere else: gone from the repository. */
  lost: { type: BlobType; id: Id }[];
  /** Good blobs copied into new packs. */
  salvaged: number;
}

/** Options for repairPacks(). */
export interface RepairOptions {
  /** Only these packs are read (the ones a failed read touched); default: every indexed pack. */
  packs?: Iterable<Id>;
  /** Report damage without changing the repository. */
  dryRun?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: { packsDone: number; packsTotal: number }) => void;
}

/** What repairPacks() found and did. */
export interface RepairResult {
  packsChecked: number;
  damaged: DamagedPack[];
  /** Index files replaced by the new index (0 when nothing was damaged, or on a dry run). */
  indexFilesReplaced: number;
  /** Snapshots that reference a blob no index lists any more, oldest first. */
  damagedSnapshots: Id[];
}

const key = (t: BlobType, id: Id) => (t === 'data' ? 'd' : 't') + id;

/**
 * Reads packs in full and drops the damaged ones from the index, salvaging their good blobs.
 * Takes an exclusive lock (it rewrites the index). A pack that cannot be read for another
 * reason than being absent (an unreachable backend) makes it throw: only proven damage drops a pack.
 */
export async function repairPacks(repo: Repository, opts: RepairOptions = {}): Promise<RepairResult> {
  const { signal } = opts;
  return repo.serializeWrites(() =>
    withLock(repo, true, async () => {
      await repo.flush(); // nothing of ours may be pending while the index is rewritten
      await repo.reloadIndex(signal);
      const indexFiles = await repo.loadIndexFiles(signal);
      const packs = new Map<Id, PackedBlobInfo[]>();
      for (const f of indexFiles) for (const p of f.packs) if (!packs.has(p.packId)) packs.set(p.packId, p.blobs);
      const wanted = opts.packs ? [...new Set(opts.packs)].filter((id) => packs.has(id)) : [...packs.keys()];

      const damaged: DamagedPack[] = [];
      const damagedIds = new Set<Id>();
      const bad = new Set<string>();
      const sound = new Set<Id>();
      const checking = new Set(wanted);
      let done = 0;
      // Blobs are verified in the codec threads, as check does.
      const pool = new CodecPool(repo.key);
      try {
        for (const packId of wanted) {
          throwIfAborted(signal);
          const blobs = packs.get(packId)!;
          const found = await inspectPack(repo, pool, packId, blobs, signal);
          opts.onProgress?.({ packsDone: ++done, packsTotal: wanted.length });
          if (!found) {
            sound.add(packId);
            continue;
          }
          damagedIds.add(packId);
          for (const b of found.bad) bad.add(key(b.type, b.id));
          const entry: DamagedPack = { packId, reason: found.reason, lost: [], salvaged: 0 };
          damaged.push(entry);
          if (opts.dryRun) continue;
          for (const b of found.good) {
            // A blob indexed in a pack known to be sound needs no second copy.
            const elsewhere = repo.lookupBlob(b.type, b.id);
            if (elsewhere && elsewhere.packId !== packId && (sound.has(elsewhere.packId) || !checking.has(elsewhere.packId))) continue;
            repo.reserveBlob(b.type, b.id);
            const blob = { id: b.id, type: b.type, data: Buffer.from(found.bytes!.subarray(b.offset, b.offset + b.length)) } as const;
            await repo.addEncodedBlob(b.uncompressedLength !== undefined ? { ...blob, uncompressedLength: b.uncompressedLength } : blob);
            entry.salvaged++;
          }
        }
      } finally {
        await pool.close();
      }
      if (damaged.length === 0) return { packsChecked: wanted.length, damaged, indexFilesReplaced: 0, damagedSnapshots: [] };

      let indexFilesReplaced = 0;
      if (!opts.dryRun) {
        await repo.flush(); // the salvaged blobs' packs and an index file for them
        const oldIndexIds = indexFiles.map((f) => f.id);
        const keep: PackList[] = [...packs].filter(([id]) => !damagedIds.has(id)).map(([packId, blobs]) => ({ packId, blobs }));
        let part: PackList[] = [];
        let partBlobs = 0;
        const writePart = async () => {
          await repo.saveJson('index', indexToJson(part, oldIndexIds), signal);
          part = [];
          partBlobs = 0;
        };
        for (const p of keep) {
          part.push(p);
          partBlobs += p.blobs.length;
          if (partBlobs >= INDEX_MAX_BLOBS) await writePart();
        }
        // Even an empty index is written: it is what supersedes the old files.
        if (part.length > 0 || keep.length === 0) await writePart();
        for (const id of oldIndexIds) await repo.backend.remove({ type: 'index', name: id }, { signal });
        indexFilesReplaced = oldIndexIds.length;
        for (const id of damagedIds) await repo.backend.remove({ type: 'data', name: id }, { signal }).catch(() => undefined);
        await repo.reloadIndex(signal);
      }
      // Lost: failed here and not indexed anywhere else (on a dry run: in no healthy pack).
      for (const d of damaged) {
        for (const b of packs.get(d.packId)!) {
          if (!bad.has(key(b.type, b.id))) continue;
          const at = repo.lookupBlob(b.type, b.id);
          if (!at || damagedIds.has(at.packId)) d.lost.push({ type: b.type, id: b.id });
        }
      }
      const missing = (type: BlobType, id: Id) => {
        const at = repo.lookupBlob(type, id);
        return !at || (Boolean(opts.dryRun) && damagedIds.has(at.packId) && bad.has(key(type, id)));
      };
      return { packsChecked: wanted.length, damaged, indexFilesReplaced, damagedSnapshots: await snapshotsMissingBlobs(repo, signal, missing) };
    }, signal),
  );
}

/** Reads one pack whole; undefined when it is sound, else the reason and its good and bad blobs. */
async function inspectPack(
  repo: Repository,
  pool: CodecPool,
  packId: Id,
  blobs: PackedBlobInfo[],
  signal?: AbortSignal,
): Promise<{ reason: string; good: PackedBlobInfo[]; bad: PackedBlobInfo[]; bytes: Buffer | null } | undefined> {
  let bytes: Buffer;
  try {
    bytes = await repo.backend.load({ type: 'data', name: packId }, { signal });
  } catch (err) {
    if (err instanceof BackendNotFoundError) return { reason: 'the pack file is missing', good: [], bad: blobs, bytes: null };
    throw err;
  }
  const checked = await Promise.all(
    blobs.map(async (b): Promise<string | null> => {
      if (b.offset + b.length > bytes.length) return `${b.type} blob ${b.id} lies past the end of the pack (${bytes.length} bytes)`;
      try {
        await pool.decode(b.id, Buffer.from(bytes.subarray(b.offset, b.offset + b.length)), b.uncompressedLength);
        return null;
      } catch (err) {
        return (err as Error).message;
      }
    }),
  );
  const good = blobs.filter((_, i) => checked[i] === null);
  const badBlobs = blobs.filter((_, i) => checked[i] !== null);
  let reason: string | null = checked.find((c) => c !== null) ?? null;
  if (bytes.length !== expectedPackSize(blobs)) reason ??= `the pack has ${bytes.length} bytes, its index entries imply ${expectedPackSize(blobs)}`;
  if (!reason) {
    try {
      const header = parsePack(repo.key, bytes);
      const want = new Set(blobs.map((b) => `${b.type}:${b.id}:${b.offset}:${b.length}`));
      if (header.length !== blobs.length || !header.every((h) => want.has(`${h.type}:${h.id}:${h.offset}:${h.length}`))) reason = 'the pack header does not match the index';
    } catch (err) {
      reason = `the pack header is unreadable: ${(err as Error).message}`;
    }
  }
  if (!reason && hashId(bytes) !== packId) reason = 'the pack content does not match its name';
  return reason ? { reason, good, bad: badBlobs, bytes } : undefined;
}

/**
 * Snapshots that reference a tree or data blob the index does not list (or that `missing`
 * says is gone), oldest first. Each tree is looked at once, however many snapshots share it.
 */
export async function snapshotsMissingBlobs(
  repo: Repository,
  signal?: AbortSignal,
  missing: (type: BlobType, id: Id) => boolean = (type, id) => !repo.lookupBlob(type, id),
): Promise<Id[]> {
  const whole = new Map<Id, boolean>();
  const treeWhole = async (treeId: Id): Promise<boolean> => {
    const known = whole.get(treeId);
    if (known !== undefined) return known;
    throwIfAborted(signal);
    let ok = !missing('tree', treeId);
    if (ok) {
      try {
        const tree = await repo.loadTree(treeId, signal);
        for (const n of tree.nodes) {
          if (n.type === 'file' && (n.content ?? []).some((id) => missing('data', id))) ok = false;
          else if (n.type === 'dir' && n.subtree && !(await treeWhole(n.subtree))) ok = false;
          if (!ok) break;
        }
      } catch (err) {
        if (signal?.aborted) throw err;
        ok = false; // a tree that cannot be read damages whatever holds it
      }
    }
    whole.set(treeId, ok);
    return ok;
  };
  const out: Id[] = [];
  for (const sn of await listSnapshots(repo, signal)) if (!(await treeWhole(sn.tree))) out.push(sn.id);
  return out;
}

/**
 * Every pack holding a tree or data blob of these snapshots: what to hand repairPacks() after a
 * read of them failed. Trees that cannot be read are skipped (their own pack is still named).
 */
export async function packsOfSnapshots(repo: Repository, snapshotIds: Id[], signal?: AbortSignal): Promise<Set<Id>> {
  const packs = new Set<Id>();
  const seen = new Set<Id>();
  const stack: Id[] = [];
  for (const id of snapshotIds) {
    try {
      stack.push((await loadSnapshot(repo, id, signal)).tree);
    } catch (err) {
      if (signal?.aborted) throw err;
    }
  }
  while (stack.length > 0) {
    throwIfAborted(signal);
    const treeId = stack.pop()!;
    if (seen.has(treeId)) continue;
    seen.add(treeId);
    const at = repo.lookupBlob('tree', treeId);
    if (!at) continue;
    packs.add(at.packId);
    let tree;
    try {
      tree = await repo.loadTree(treeId, signal);
    } catch (err) {
      if (signal?.aborted) throw err;
      continue;
    }
    for (const n of tree.nodes) {
      if (n.type === 'dir' && n.subtree) stack.push(n.subtree);
      if (n.type === 'file') for (const id of n.content ?? []) {
        const e = repo.lookupBlob('data', id);
        if (e) packs.add(e.packId);
      }
    }
  }
  return packs;
}
