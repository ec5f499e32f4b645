/**
 * The `backplane repo` commands that read a repository: snapshots, ls, restore, dump, check.
 */
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  check,
  fileStream,
  findSnapshot,
  listSnapshots,
  resolvePath,
  restore,
  tarStream,
  unixPermissions,
  walk,
  withLock,
  type Node,
  type Repository,
  type Snapshot,
} from '../engine/api.ts';
import { str, strs, UsageError } from './repo-args.ts';
import { snapshotJson, snapshotRef, type Command, type CommandContext } from './repo-context.ts';
import { formatBytes, formatDuration, formatRate, ofTotal } from './repo-progress.ts';
import { withArticle } from '../domain/text.ts';

/** Names of a snapshot path, without empty and `.` parts (`/a//b/.` → [a, b]). */
function pathParts(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}

function absolute(parts: string[]): string {
  return '/' + parts.join('/');
}

/** `2026-01-02 03:04:05` from a snapshot's RFC 3339 time. */
function shortTime(time: string): string {
  return time.slice(0, 19).replace('T', ' ');
}

async function snapshotArg(ctx: CommandContext, repo: Repository, what: string): Promise<Snapshot> {
  const ref = ctx.positionals[0];
  if (!ref) throw new UsageError(`${what} needs a snapshot (id, prefix or latest)`);
  return findSnapshot(repo, snapshotRef(ref), undefined, ctx.signal);
}

export const snapshotsCommand: Command = {
  usage: 'snapshots [options]',
  summary: 'list snapshots, oldest first',
  options: {
    tag: { type: 'string', multiple: true, arg: 'TAG', help: 'only snapshots with this tag' },
    host: { type: 'string', arg: 'NAME', help: 'only snapshots of this host' },
  },
  async run(ctx) {
    if (ctx.positionals.length) throw new UsageError('snapshots takes no arguments');
    const tags = strs(ctx.values, 'tag').flatMap((t) => t.split(','));
    const host = str(ctx.values, 'host');
    const repo = await ctx.open();
    const list = (await listSnapshots(repo, ctx.signal)).filter(
      (s) => (!host || s.hostname === host) && tags.every((t) => s.tags?.includes(t)),
    );
    ctx.print(list.map(snapshotJson), () => {
      const rows = list.map((s) => [s.id.slice(0, 8), shortTime(s.time), s.hostname ?? '', (s.tags ?? []).join(','), s.paths.join(' ')]);
      const head = ['ID', 'Time', 'Host', 'Tags', 'Paths'];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
      const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
      return [fmt(head), '-'.repeat(fmt(head.map((_, i) => '-'.repeat(widths[i]))).length), ...rows.map(fmt), `${list.length} snapshot(s)`].join('\n');
    });
    return 0;
  },
};

const TYPE_CHAR: Record<string, string> = { dir: 'd', symlink: 'l', file: '-', fifo: 'p', socket: 's', dev: 'b', chardev: 'c' };

/** `drwxr-xr-x` from a node type and its permission bits. */
function modeString(type: Node['type'], perm: number): string {
  let s = TYPE_CHAR[type] ?? '?';
  for (let shift = 6; shift >= 0; shift -= 3) {
    const bits = (perm >> shift) & 7;
    s += (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (bits & 1 ? 'x' : '-');
  }
  return s;
}

interface LsEntry {
  path: string;
  name: string;
  type: Node['type'];
  size?: number;
  mode: number;
  mtime: string;
  uid: number;
  gid: number;
  linktarget?: string;
}

function lsEntry(path: string, node: Node): LsEntry {
  const e: LsEntry = { path, name: node.name, type: node.type, mode: unixPermissions(node.mode), mtime: node.mtime, uid: node.uid, gid: node.gid };
  if (node.type === 'file') e.size = node.size ?? 0;
  if (node.type === 'symlink') e.linktarget = node.linktarget ?? '';
  return e;
}

export const lsCommand: Command = {
  usage: 'ls [options] <snapshot> [path]',
  summary: 'list the entries of a snapshot (under path), recursively',
  options: { long: { type: 'boolean', short: 'l', help: 'show mode, size and mtime' } },
  async run(ctx) {
    if (ctx.positionals.length > 2) throw new UsageError('ls takes a snapshot and at most one path');
    const repo = await ctx.open();
    const sn = await snapshotArg(ctx, repo, 'ls');
    const parts = pathParts(ctx.positionals[1] ?? '/');
    const top = await resolvePath(repo, sn, absolute(parts), ctx.signal);
    const entries: LsEntry[] = [];
    if (parts.length > 0) entries.push(lsEntry(absolute(parts), top));
    if (top.type === 'dir' && top.subtree) {
      for await (const { path, node } of walk(repo, top.subtree, '', ctx.signal)) entries.push(lsEntry(absolute([...parts, ...pathParts(path)]), node));
    }
    ctx.print({ snapshot: snapshotJson(sn), path: absolute(parts), entries }, () => {
      if (!ctx.values.long) return entries.map((e) => e.path).join('\n');
      return entries
        .map((e) => {
          const mode = modeString(e.type, e.mode);
          const link = e.linktarget !== undefined ? ` -> ${e.linktarget}` : '';
          return `${mode} ${String(e.uid).padStart(5)} ${String(e.gid).padStart(5)} ${String(e.size ?? 0).padStart(12)} ${shortTime(e.mtime)} ${e.path}${link}`;
        })
        .join('\n');
    });
    return 0;
  },
};

export const restoreCommand: Command = {
  usage: 'restore [options] <snapshot> --target DIR',
  summary: 'write a snapshot (or parts of it) into a directory',
  description:
    'As with restic, an --include path keeps its place: `--include /files/a --target /t` writes /t/files/a.\n' +
    'Existing files in the way are overwritten.',
  options: {
    target: { type: 'string', short: 't', arg: 'DIR', help: 'directory to restore into (created if missing)' },
    include: { type: 'string', multiple: true, short: 'i', arg: 'PATH', help: 'restore only this path of the snapshot' },
  },
  async run(ctx) {
    const target = str(ctx.values, 'target');
    if (!target) throw new UsageError('restore needs --target DIR');
    if (ctx.positionals.length !== 1) throw new UsageError('restore takes exactly one snapshot');
    const repo = await ctx.open();
    const sn = await snapshotArg(ctx, repo, 'restore');
    const includes = strs(ctx.values, 'include').map(pathParts);
    if (includes.length === 0) includes.push([]);
    const started = Date.now();
    const plan: { parts: string[]; node: Node }[] = [];
    for (const parts of includes) plan.push({ parts, node: await resolvePath(repo, sn, absolute(parts), ctx.signal) });
    const sum = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
    await withLock(
      repo,
      false,
      async () => {
        for (const [i, { parts, node }] of plan.entries()) {
          const base = { ...sum };
          const dest = join(target, ...(node.type === 'dir' ? parts : parts.slice(0, -1)));
          const step = plan.length > 1 ? `${i + 1}/${plan.length} ` : '';
          const r = await restore(repo, sn, dest, {
            path: absolute(parts),
            lock: false,
            signal: ctx.signal,
            // Only when drawn: the engine walks the whole tree first to know the total.
            onProgress: ctx.progress.active
              ? (p) =>
                  ctx.progress.update(
                    (ms) =>
                      `[${formatDuration(ms)}] ${step}${ofTotal(p.bytesDone, p.bytesTotal)}  ${base.files + p.filesDone} files  ${formatRate(base.bytes + p.bytesDone, ms)}  ${p.currentPath ?? ''}`,
                  )
              : undefined,
          });
          sum.files += r.files;
          sum.dirs += r.dirs;
          sum.symlinks += r.symlinks;
          sum.bytes += r.bytes;
        }
      },
      ctx.signal,
    );
    ctx.progress.done();
    const durationMs = Date.now() - started;
    ctx.print(
      { snapshotId: sn.id, target, includes: includes.map(absolute), ...sum, durationMs },
      `restored snapshot ${sn.id.slice(0, 8)} to ${target}: ${sum.files} files, ${sum.dirs} dirs, ${sum.symlinks} symlinks, ${formatBytes(sum.bytes)} in ${(durationMs / 1000).toFixed(1)}s`,
    );
    return 0;
  },
};

/** 128 + SIGPIPE, the status a shell shows for a writer whose reader closed the pipe. */
const EXIT_PIPE_CLOSED = 141;

export const dumpCommand: Command = {
  usage: 'dump [options] <snapshot> <path>',
  summary: 'write one file of a snapshot to stdout, or a directory as a tar archive',
  options: { archive: { type: 'string', arg: 'FORMAT', help: 'archive format for directories: tar (the default; forces a tar for a file too)' } },
  async run(ctx) {
    if (ctx.positionals.length !== 2) throw new UsageError('dump takes a snapshot and a path');
    const archive = str(ctx.values, 'archive');
    if (archive !== undefined && archive !== 'tar') throw new UsageError(`unknown --archive ${JSON.stringify(archive)}; only tar is supported`);
    const repo = await ctx.open();
    const sn = await snapshotArg(ctx, repo, 'dump');
    const path = absolute(pathParts(ctx.positionals[1]));
    return withLock(
      repo,
      false,
      async () => {
        const node = await resolvePath(repo, sn, path, ctx.signal);
        const asTar = archive === 'tar' || node.type === 'dir';
        if (!asTar && node.type !== 'file') throw new Error(`${path} is ${withArticle(node.type)}, not a file; use --archive tar`);
        await pipeline(asTar ? tarStream(repo, sn, path, ctx.signal) : fileStream(repo, node, ctx.signal), ctx.stdout);
        return 0;
      },
      ctx.signal,
    ).catch((err: NodeJS.ErrnoException) => {
      // The reader went away (`dump … | head`): what a tool killed by SIGPIPE would do, quietly.
      if (err.code === 'EPIPE') return EXIT_PIPE_CLOSED;
      throw err;
    });
  },
};

export const checkCommand: Command = {
  usage: 'check [--read-data]',
  summary: 'verify the repository structure, and with --read-data every stored byte',
  options: { 'read-data': { type: 'boolean', help: 'read and verify every pack (reads the whole repository)' } },
  async run(ctx) {
    if (ctx.positionals.length) throw new UsageError('check takes no arguments');
    const repo = await ctx.open();
    const result = await check(repo, {
      readData: ctx.values['read-data'] === true,
      signal: ctx.signal,
      onProgress: (p) => ctx.progress.update((ms) => `[${formatDuration(ms)}] read ${p.packsDone}/${p.packsTotal} packs (${((p.packsDone / p.packsTotal) * 100).toFixed(1)}%)`),
    });
    ctx.progress.done();
    ctx.print(result, () =>
      [
        `checked ${result.snapshots} snapshots, ${result.trees} trees, ${result.packs} packs${ctx.values['read-data'] ? ` (${result.packsRead} read)` : ''}`,
        ...result.warnings.map((w) => `warning: ${w.message}`),
        ...result.errors.map((e) => `error: ${e.message}`),
        result.ok ? 'no errors were found' : `${result.errors.length} error(s) found`,
      ].join('\n'),
    );
    if (!result.ok) throw new Error(`repository contains ${result.errors.length} error(s)`);
    return 0;
  },
};
