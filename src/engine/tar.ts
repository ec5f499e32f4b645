/**
 * Tar: streams a snapshot, or a path inside it, as a POSIX tar archive (ustar headers, with PAX
 * extended headers for long or non-ASCII names and link targets, large sizes and sub-second
 * mtimes). Entry names are relative to the chosen path; a file path yields one entry.
 */
import { Readable } from 'node:stream';
import { throwIfAborted } from './errors.ts';
import type { Repository } from './repository.ts';
import { findSnapshot, type Snapshot } from './snapshot.ts';
import { parseTime, unixPermissions, type Node } from './tree.ts';
import { fileBlobs, resolvePath, walk } from './walker.ts';
import { CodecPool } from './codec-pool.ts';

const BLOCK = 512;
const MAX_OCTAL_SIZE = 8 ** 11 - 1;

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  // The length prefix counts its own digits.
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return Buffer.from(`${len}${body}`, 'utf8');
}

function isPlainAscii(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}

interface Entry {
  name: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  linkname: string;
  uname: string;
  gname: string;
}

function header(e: Entry): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(e.name, 0, 100, 'utf8');
  b.write(octal(e.mode & 0o7777, 8), 100, 'ascii');
  b.write(octal(Math.min(e.uid, 0o7777777), 8), 108, 'ascii');
  b.write(octal(Math.min(e.gid, 0o7777777), 8), 116, 'ascii');
  b.write(octal(Math.min(e.size, MAX_OCTAL_SIZE), 12), 124, 'ascii');
  const secs = Number(e.mtimeNs / 1_000_000_000n);
  b.write(octal(Math.max(0, Math.min(secs, MAX_OCTAL_SIZE)), 12), 136, 'ascii');
  b.write('        ', 148, 'ascii');
  b.write(e.typeflag, 156, 'ascii');
  b.write(e.linkname, 157, 100, 'utf8');
  b.write('ustar\0', 257, 'ascii');
  b.write('00', 263, 'ascii');
  b.write(e.uname, 265, 32, 'utf8');
  b.write(e.gname, 297, 32, 'utf8');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i];
  b.write(octal(sum, 7) + ' ', 148, 'ascii');
  return b;
}

function padding(size: number): Buffer {
  const r = size % BLOCK;
  return Buffer.alloc(r === 0 ? 0 : BLOCK - r);
}

/** Header blocks for one entry, with a PAX header first when ustar cannot hold it. */
export function entryHeaders(e: Entry): Buffer[] {
  const records: Buffer[] = [];
  if (Buffer.byteLength(e.name) > 100 || !isPlainAscii(e.name)) records.push(paxRecord('path', e.name));
  if (Buffer.byteLength(e.linkname) > 100 || !isPlainAscii(e.linkname)) records.push(paxRecord('linkpath', e.linkname));
  if (e.size > MAX_OCTAL_SIZE) records.push(paxRecord('size', String(e.size)));
  if (e.mtimeNs % 1_000_000_000n !== 0n) {
    const s = e.mtimeNs / 1_000_000_000n;
    const f = (e.mtimeNs % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
    records.push(paxRecord('mtime', `${s}.${f}`));
  }
  if (e.uname && !isPlainAscii(e.uname)) records.push(paxRecord('uname', e.uname));
  const main = header({ ...e, name: asciiPrefix(e.name), linkname: asciiPrefix(e.linkname) });
  if (records.length === 0) return [main];
  const body = Buffer.concat(records);
  const pax = header({ ...e, name: asciiPrefix(`PaxHeaders/${e.name}`), typeflag: 'x', size: body.length, linkname: '' });
  return [pax, body, padding(body.length), main];
}

/** A stand-in that fits a ustar field; readers take the PAX value instead. */
function asciiPrefix(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, 100);
}

function entryFor(node: Node, name: string): Entry {
  const base = { name, mode: unixPermissions(node.mode), uid: node.uid, gid: node.gid, mtimeNs: parseTime(node.mtime), uname: node.user ?? '', gname: node.group ?? '' };
  if (node.type === 'dir') return { ...base, name: name.endsWith('/') ? name : name + '/', typeflag: '5', size: 0, linkname: '' };
  if (node.type === 'symlink') return { ...base, typeflag: '2', size: 0, linkname: node.linktarget ?? '' };
  return { ...base, typeflag: '0', size: node.size ?? 0, linkname: '' };
}

/** Options of tarStream(). */
export interface TarOptions {
  /** Only these absolute snapshot paths (and what is below them), e.g. ['/db']; names stay relative to `path`. */
  only?: string[];
}

function selected(only: string[] | undefined, rel: string): boolean {
  if (!only) return true;
  const abs = '/' + rel;
  // A directory on the way to a selected path is kept too, so the archive has its parents.
  return only.some((o) => abs === o || abs.startsWith(o + '/') || o.startsWith(abs + '/'));
}

async function* tarChunks(repo: Repository, snapshot: string | Snapshot, path: string, signal?: AbortSignal, opts: TarOptions = {}): AsyncGenerator<Buffer> {
  await repo.refreshIndex(signal);
  const sn = typeof snapshot === 'string' ? await findSnapshot(repo, snapshot, undefined, signal) : snapshot;
  const top = await resolvePath(repo, sn, path, signal);
  // One decoder thread: the consumer of a tar stream (HTTP, a pipe) is usually the limit.
  const pool = new CodecPool(repo.key, 1);
  const emit = async function* (node: Node, name: string): AsyncGenerator<Buffer> {
    if (node.type !== 'file' && node.type !== 'dir' && node.type !== 'symlink') return;
    throwIfAborted(signal);
    const e = entryFor(node, name);
    yield* entryHeaders(e);
    if (node.type === 'file') {
      let written = 0;
      for await (const buf of fileBlobs(repo, node, signal, pool)) {
        // The header promised node.size bytes; never write more than that.
        const part = buf.subarray(0, Math.max(0, e.size - written));
        written += part.length;
        if (part.length) yield part;
      }
      if (written < e.size) yield Buffer.alloc(e.size - written);
      yield padding(e.size);
    }
  };
  if (top.type === 'dir') {
    const base = path.replace(/\/+$/, '');
    if (top.subtree) {
      for await (const { path: p, node } of walk(repo, top.subtree, '', signal)) {
        if (selected(opts.only, base ? `${base.slice(1)}/${p}` : p)) yield* emit(node, p);
      }
    }
  } else {
    yield* emit(top, top.name);
  }
  yield Buffer.alloc(BLOCK * 2);
}

/** A Readable tar of a snapshot (or of `path` inside it). */
export function tarStream(repo: Repository, snapshot: string | Snapshot, path = '/', signal?: AbortSignal, opts: TarOptions = {}): Readable {
  return Readable.from(tarChunks(repo, snapshot, path, signal, opts), { objectMode: false });
}
