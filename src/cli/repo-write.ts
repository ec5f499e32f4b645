/**
 * The `backplane repo` commands that change a repository: init, backup, forget, prune, unlock.
 */
import { lstat } from 'node:fs/promises';
import { homedir, hostname as osHostname } from 'node:os';
import { join, resolve } from 'node:path';
import {
  Repository,
  backup,
  findSnapshot,
  forgetSnapshots,
  listSnapshots,
  prestartCodecThreads,
  prune,
  removeStaleLocks,
  withLock,
  type BackupSource,
  type PruneResult,
  type Snapshot,
} from '../engine/api.ts';
import { int, str, strs, UsageError } from './repo-args.ts';
import { snapshotRef, type Command, type CommandContext } from './repo-context.ts';
import { kdfParams, openBackend, repoLocation, repoPassword } from './repo-open.ts';
import { formatBytes, formatDuration, formatRate, ofTotal } from './repo-progress.ts';

/** `--tag a,b --tag c` → [a, b, c], as restic reads it. */
function tagList(ctx: CommandContext): string[] {
  return strs(ctx.values, 'tag').flatMap((t) => t.split(',')).map((t) => t.trim()).filter((t) => t !== '');
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  const x = [...a].sort();
  const y = [...b].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

export const initCommand: Command = {
  usage: 'init',
  summary: 'create a new repository',
  options: {},
  async run(ctx) {
    if (ctx.positionals.length) throw new UsageError('init takes no arguments');
    const location = repoLocation(ctx.values, ctx.env);
    const password = await repoPassword(ctx.values, ctx.env);
    const backend = await openBackend(location, ctx.values, ctx.env);
    try {
      const repo = await Repository.init(backend, password, { kdf: kdfParams(ctx.env) });
      ctx.print(
        { id: repo.config.id, location: backend.location, version: repo.config.version },
        `created repository ${repo.config.id.slice(0, 10)} at ${backend.location}`,
      );
    } finally {
      await backend.close();
    }
    return 0;
  },
};

/**
 * The cache directory: --cache-dir, else BACKPLANE_CACHE_DIR, else $XDG_CACHE_HOME/backplane or
 * ~/.cache/backplane (restic's is ~/.cache/restic); undefined with --no-cache.
 */
function cacheDir(ctx: CommandContext): string | undefined {
  if (ctx.values['no-cache']) return undefined;
  const given = str(ctx.values, 'cache-dir') ?? ctx.env.BACKPLANE_CACHE_DIR;
  if (given) return resolve(given);
  return join(ctx.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'backplane');
}

/** Where a `--stdin-filename` stream goes in the snapshot: an absolute, normalized path. */
function stdinPath(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.includes('..')) throw new UsageError(`--stdin-filename ${JSON.stringify(name)} is not a usable file name`);
  return '/' + parts.join('/');
}

export const backupCommand: Command = {
  usage: 'backup [options] <path>...',
  summary: 'make a snapshot of files and directories, or of a stream on stdin',
  description:
    'Paths are stored under their absolute names. With --stdin-filename, stdin is stored as one file,\n' +
    'e.g. `pg_dump -Fc -Z0 app | backplane repo backup --stdin-filename db/app.dump`.\n' +
    'Unless --parent or --force is given, the newest snapshot of the same host and paths is the\n' +
    'parent: files whose size, mtime, ctime and inode did not change are not read again. A files cache\n' +
    'per repository and path (--cache-dir, default ~/.cache/backplane) serves the same purpose without\n' +
    'loading the parent, and also spares re-encoding directories that did not change.',
  options: {
    tag: { type: 'string', multiple: true, arg: 'TAG', help: 'add a tag (comma-separated list allowed)' },
    'stdin-filename': { type: 'string', arg: 'NAME', help: 'read a stream from stdin and store it as NAME' },
    parent: { type: 'string', arg: 'SNAPSHOT', help: 'parent snapshot (id, prefix or latest)' },
    force: { type: 'boolean', short: 'f', help: 'read every file, ignoring any parent and the files cache' },
    'cache-dir': { type: 'string', arg: 'DIR', help: 'files cache directory (default: $BACKPLANE_CACHE_DIR or ~/.cache/backplane)' },
    'no-cache': { type: 'boolean', help: 'neither use nor write a files cache' },
    host: { type: 'string', arg: 'NAME', help: 'host name to record (default: this host)' },
  },
  async run(ctx) {
    const stdinName = str(ctx.values, 'stdin-filename');
    if (ctx.positionals.length === 0 && stdinName === undefined) throw new UsageError('backup needs at least one path, or --stdin-filename NAME');
    if (ctx.values.force && str(ctx.values, 'parent')) throw new UsageError('--force and --parent exclude each other');
    const sources: Record<string, BackupSource> = {};
    for (const p of ctx.positionals) {
      const abs = resolve(p);
      try {
        await lstat(abs);
      } catch (err) {
        throw new Error(`${abs}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
      }
      sources[abs] = abs;
    }
    if (stdinName !== undefined) {
      if (ctx.stdin.isTTY) throw new UsageError('--stdin-filename reads from stdin, but stdin is a terminal');
      const vpath = stdinPath(stdinName);
      if (vpath in sources) throw new UsageError(`${vpath} is given twice`);
      sources[vpath] = { stream: ctx.stdin };
      // The archiver checks the signal between pieces of a stream; a producer that has gone
      // quiet (pg_dump waiting on a lock) would never deliver the next piece, so end it here.
      ctx.signal.addEventListener('abort', () => ctx.stdin.destroy(), { once: true });
    }
    const hostname = str(ctx.values, 'host') ?? osHostname();
    const tags = tagList(ctx);
    // The backup's threads start while the key is derived (scrypt leaves this thread idle).
    prestartCodecThreads();
    const repo = await ctx.open();
    let parent = str(ctx.values, 'parent');
    if (parent !== undefined) snapshotRef(parent);
    if (!parent && !ctx.values.force) {
      const paths = Object.keys(sources);
      const candidates = (await listSnapshots(repo, ctx.signal)).filter((s) => s.hostname === hostname && sameStrings(s.paths, paths));
      parent = candidates.at(-1)?.id;
    }
    const dir = cacheDir(ctx);
    const result = await backup(repo, sources, {
      tags,
      hostname,
      parent,
      filesCache: dir === undefined ? undefined : { dir, use: !ctx.values.force },
      signal: ctx.signal,
      onProgress: (p) =>
        ctx.progress.update(
          (ms) => `[${formatDuration(ms)}] ${ofTotal(p.bytesDone, p.bytesTotal)}  ${p.filesDone} files  ${formatRate(p.bytesDone, ms)}  ${p.currentPath ?? ''}`,
        ),
    });
    ctx.progress.done();
    ctx.print({ ...result, shortId: result.snapshotId.slice(0, 8), paths: Object.keys(sources).sort(), tags, hostname }, () =>
      [
        `snapshot ${result.snapshotId.slice(0, 8)} saved${result.parent ? ` (parent ${result.parent.slice(0, 8)})` : ''}`,
        `  ${result.files} files, ${result.dirs} dirs, ${formatBytes(result.bytesProcessed)} processed in ${(result.durationMs / 1000).toFixed(1)}s (${formatRate(result.bytesProcessed, result.durationMs)})`,
        `  added ${formatBytes(result.bytesAdded)} stored in ${result.blobsAdded} blobs, ${result.packsAdded} packs`,
      ].join('\n'),
    );
    return 0;
  },
};

export const forgetCommand: Command = {
  usage: 'forget [options] [snapshot...]',
  summary: 'remove snapshots (their data stays until prune)',
  description:
    'Removes the snapshots named (ids, prefixes or latest) and, with --keep-last N, all but the N newest\n' +
    'snapshots of each host and set of paths (only among those matching --tag/--host when given).',
  options: {
    'keep-last': { type: 'string', arg: 'N', help: 'keep the N newest snapshots of each host and paths' },
    tag: { type: 'string', multiple: true, arg: 'TAG', help: 'with --keep-last: only consider snapshots with this tag' },
    host: { type: 'string', arg: 'NAME', help: 'with --keep-last: only consider snapshots of this host' },
    'dry-run': { type: 'boolean', short: 'n', help: 'show what would be removed' },
    prune: { type: 'boolean', help: 'run prune afterwards' },
  },
  async run(ctx) {
    const keepLast = int(ctx.values, 'keep-last');
    ctx.positionals.forEach(snapshotRef);
    if (ctx.positionals.length === 0 && keepLast === undefined) throw new UsageError('forget needs snapshot ids or --keep-last N');
    if (keepLast === 0) throw new UsageError('--keep-last 0 would remove every snapshot; forget them by id instead');
    const dryRun = ctx.values['dry-run'] === true;
    const tags = tagList(ctx);
    const host = str(ctx.values, 'host');
    const repo = await ctx.open();
    const { removed, kept } = await withLock(
      repo,
      true,
      async () => {
        const all = await listSnapshots(repo, ctx.signal);
        const remove = new Set<string>();
        for (const ref of ctx.positionals) remove.add((await findSnapshot(repo, ref, undefined, ctx.signal)).id);
        if (keepLast !== undefined) {
          const groups = new Map<string, Snapshot[]>();
          for (const sn of all) {
            if (host && sn.hostname !== host) continue;
            if (!tags.every((t) => sn.tags?.includes(t))) continue;
            const key = JSON.stringify([sn.hostname ?? '', [...sn.paths].sort()]);
            groups.set(key, [...(groups.get(key) ?? []), sn]);
          }
          // listSnapshots is oldest first, so the tail of each group is what stays.
          for (const group of groups.values()) for (const sn of group.slice(0, Math.max(0, group.length - keepLast))) remove.add(sn.id);
        }
        if (!dryRun) await forgetSnapshots(repo, [...remove], ctx.signal, { lock: false });
        return { removed: [...remove], kept: all.filter((s) => !remove.has(s.id)).map((s) => s.id) };
      },
      ctx.signal,
    );
    let pruned: PruneResult | undefined;
    if (ctx.values.prune && !dryRun) pruned = await prune(repo, { signal: ctx.signal });
    ctx.print({ removed, kept, dryRun, ...(pruned ? { prune: pruned } : {}) }, () => {
      const lines = removed.map((id) => `${dryRun ? 'would remove' : 'removed'} snapshot ${id.slice(0, 8)}`);
      if (removed.length === 0) lines.push('no snapshots removed');
      lines.push(`${kept.length} snapshot(s) kept`);
      if (pruned) lines.push(pruneSummary(pruned));
      return lines.join('\n');
    });
    return 0;
  },
};

function pruneSummary(r: PruneResult): string {
  return (
    `prune: ${r.packsDeleted} packs deleted, ${r.packsRepacked} repacked, ${r.packsUnindexedDeleted} unindexed removed, ` +
    `${r.packsKept} kept; ${r.blobsRemoved} blobs removed, ${formatBytes(r.bytesFreed)} freed`
  );
}

export const pruneCommand: Command = {
  usage: 'prune [options]',
  summary: 'delete data that no snapshot needs any more',
  options: {
    'dry-run': { type: 'boolean', short: 'n', help: 'show what would be removed' },
    'repack-threshold': { type: 'string', arg: 'FRACTION', help: 'repack a partly used pack only when at least this fraction is unused (default 0)' },
  },
  async run(ctx) {
    if (ctx.positionals.length) throw new UsageError('prune takes no arguments');
    const thresholdText = str(ctx.values, 'repack-threshold');
    const repackThreshold = thresholdText === undefined ? undefined : Number(thresholdText);
    if (repackThreshold !== undefined && !(repackThreshold >= 0 && repackThreshold <= 1)) throw new UsageError('--repack-threshold wants a number from 0 to 1');
    const repo = await ctx.open();
    const result = await prune(repo, {
      signal: ctx.signal,
      dryRun: ctx.values['dry-run'] === true,
      repackThreshold,
      onProgress: (p) => ctx.progress.update((ms) => `[${formatDuration(ms)}] ${p.phase} ${p.done}/${p.total}`),
    });
    ctx.progress.done();
    ctx.print({ ...result, dryRun: ctx.values['dry-run'] === true }, () => (ctx.values['dry-run'] ? 'dry run: ' : '') + pruneSummary(result));
    return 0;
  },
};

export const unlockCommand: Command = {
  usage: 'unlock [--remove-all]',
  summary: 'remove stale locks (left by crashed processes)',
  options: { 'remove-all': { type: 'boolean', help: 'remove every lock, even live ones' } },
  async run(ctx) {
    if (ctx.positionals.length) throw new UsageError('unlock takes no arguments');
    const repo = await ctx.open();
    const removed = await removeStaleLocks(repo, ctx.values['remove-all'] === true);
    ctx.print({ removed }, `removed ${removed} lock(s)`);
    return 0;
  },
};
