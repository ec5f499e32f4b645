/**
 * Trees: a *tree* is one directory, stored as a JSON blob `{"nodes": [...]}` followed by a
 * newline, its nodes sorted by name (byte order). A *node* is one entry: a file (with `content`,
 * the ids of its data blobs in order), a directory (with `subtree`, the id of its tree), a
 * symlink (with `linktarget`), or a special file. Field names, omissions and the Go encoding of
 * `mode` (os.FileMode bits) and times (RFC 3339 with nanoseconds) follow restic's Node, so restic
 * reads our trees and we read restic's. Node names are stored Go-quoted (strconv.Quote without
 * the quotes), as restic does, so that any byte string survives JSON.
 */
import { formatTime } from './time.mjs';
import type { Id } from './ids.ts';

/** Node types restic knows. */
export type NodeType = 'file' | 'dir' | 'symlink' | 'dev' | 'chardev' | 'fifo' | 'socket';

/** One directory entry, with restic's field names. Times are RFC 3339 strings with nanoseconds. */
export interface Node {
  name: string;
  type: NodeType;
  /** Go os.FileMode: permission bits plus type, setuid, setgid and sticky flags. */
  mode?: number;
  mtime: string;
  atime: string;
  ctime: string;
  uid: number;
  gid: number;
  user?: string;
  group?: string;
  inode?: number;
  device_id?: number;
  size?: number;
  links?: number;
  linktarget?: string;
  extended_attributes?: { name: string; value: string }[];
  device?: number;
  /** Data blob ids; `[]` for an empty file, null for anything but files. */
  content: Id[] | null;
  subtree?: Id;
  error?: string;
}

/** A directory: its nodes. */
export interface Tree {
  nodes: Node[];
}

// Go os.FileMode bits.
const GO_MODE_DIR = 2 ** 31;
const GO_MODE_SYMLINK = 2 ** 27;
const GO_MODE_DEVICE = 2 ** 26;
const GO_MODE_NAMED_PIPE = 2 ** 25;
const GO_MODE_SOCKET = 2 ** 24;
const GO_MODE_SETUID = 2 ** 23;
const GO_MODE_SETGID = 2 ** 22;
const GO_MODE_CHAR_DEVICE = 2 ** 21;
const GO_MODE_STICKY = 2 ** 20;

/** Converts a Unix st_mode to Go's os.FileMode as restic stores it. */
export function goModeFromUnix(mode: number): number {
  let m = mode & 0o777;
  if (mode & 0o4000) m += GO_MODE_SETUID;
  if (mode & 0o2000) m += GO_MODE_SETGID;
  if (mode & 0o1000) m += GO_MODE_STICKY;
  switch (mode & 0o170000) {
    case 0o040000: m += GO_MODE_DIR; break;
    case 0o120000: m += GO_MODE_SYMLINK; break;
    case 0o060000: m += GO_MODE_DEVICE; break;
    case 0o020000: m += GO_MODE_DEVICE + GO_MODE_CHAR_DEVICE; break;
    case 0o010000: m += GO_MODE_NAMED_PIPE; break;
    case 0o140000: m += GO_MODE_SOCKET; break;
  }
  return m;
}

/** The permission bits (incl. setuid, setgid, sticky) of a Go os.FileMode, as a Unix mode. */
export function unixPermissions(goMode: number | undefined): number {
  const m = goMode ?? 0;
  let p = m % 512;
  const hi = Math.floor(m / 2 ** 20);
  if (hi & (GO_MODE_SETUID / 2 ** 20)) p |= 0o4000;
  if (hi & (GO_MODE_SETGID / 2 ** 20)) p |= 0o2000;
  if (hi & (GO_MODE_STICKY / 2 ** 20)) p |= 0o1000;
  return p;
}

export { formatTime };

const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** Parses an RFC 3339 time (any offset, up to nanoseconds) into nanoseconds since the epoch. */
export function parseTime(s: string): bigint {
  const m = TIME_RE.exec(s);
  if (!m) throw new Error(`bad time ${s}`);
  const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
  let ns = BigInt(ms) * 1_000_000n + BigInt((m[7] ?? '').padEnd(9, '0') || '0');
  if (m[8] !== 'Z') {
    const sign = m[8][0] === '-' ? -1n : 1n;
    const off = BigInt(+m[8].slice(1, 3) * 60 + +m[8].slice(4, 6)) * 60_000_000_000n;
    ns -= sign * off;
  }
  return ns;
}

/** A Date from nanoseconds (millisecond precision). */
export function dateFromNs(ns: bigint): Date {
  return new Date(Number(ns / 1_000_000n));
}

const SIMPLE_ESC: Record<string, string> = { '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v', '"': '\\"', '\\': '\\\\' };
const NEEDS_QUOTE = /[\\"\p{C}\p{Z}]/u;

/** Go's strconv.Quote without the surrounding quotes (for valid UTF-8 strings). */
export function goQuote(s: string): string {
  if (!NEEDS_QUOTE.test(s)) return s;
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (SIMPLE_ESC[ch]) out += SIMPLE_ESC[ch];
    else if (ch === ' ') out += ch;
    else if (/[\p{C}\p{Z}]/u.test(ch)) {
      if (cp < 0x80) out += '\\x' + cp.toString(16).padStart(2, '0');
      else if (cp < 0x10000) out += '\\u' + cp.toString(16).padStart(4, '0');
      else out += '\\U' + cp.toString(16).padStart(8, '0');
    } else out += ch;
  }
  return out;
}

const UNESC: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '"': '"', "'": "'", '\\': '\\' };

/**
 * Inverse of goQuote. Byte escapes (`\xNN`, octal) that do not form valid UTF-8 are decoded
 * as UTF-8 with replacement, the best a JS string can hold.
 */
export function goUnquote(s: string): string {
  if (!s.includes('\\')) return s;
  const bytes: number[] = [];
  const pushStr = (t: string) => bytes.push(...Buffer.from(t, 'utf8'));
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== '\\') {
      const cp = s.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      pushStr(ch);
      i += ch.length - 1;
      continue;
    }
    const e = s[++i];
    if (UNESC[e] !== undefined) pushStr(UNESC[e]);
    else if (e === 'x') { bytes.push(parseInt(s.slice(i + 1, i + 3), 16)); i += 2; }
    else if (e === 'u') { pushStr(String.fromCodePoint(parseInt(s.slice(i + 1, i + 5), 16))); i += 4; }
    else if (e === 'U') { pushStr(String.fromCodePoint(parseInt(s.slice(i + 1, i + 9), 16))); i += 8; }
    else if (e >= '0' && e <= '7') { bytes.push(parseInt(s.slice(i, i + 3), 8)); i += 2; }
    else throw new Error(`bad escape in name ${s}`);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Byte-wise comparison of names, as Go compares strings. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Serializes a tree as restic does: nodes sorted, restic's field order and omissions, newline. */
export function encodeTree(tree: Tree): Buffer {
  const nodes = tree.nodes.slice().sort((a, b) => compareNames(a.name, b.name));
  const parts = nodes.map((n) => {
    const o: Record<string, unknown> = { name: goQuote(n.name), type: n.type };
    if (n.mode) o.mode = n.mode;
    o.mtime = n.mtime;
    o.atime = n.atime;
    o.ctime = n.ctime;
    o.uid = n.uid;
    o.gid = n.gid;
    if (n.user) o.user = n.user;
    if (n.group) o.group = n.group;
    if (n.inode) o.inode = n.inode;
    if (n.device_id) o.device_id = n.device_id;
    if (n.size) o.size = n.size;
    if (n.links) o.links = n.links;
    if (n.linktarget) o.linktarget = n.linktarget;
    if (n.extended_attributes?.length) o.extended_attributes = n.extended_attributes;
    if (n.device) o.device = n.device;
    o.content = n.content;
    if (n.subtree) o.subtree = n.subtree;
    if (n.error) o.error = n.error;
    return o;
  });
  return Buffer.from(JSON.stringify({ nodes: parts }) + '\n', 'utf8');
}

/** Parses a tree blob. */
export function decodeTree(buf: Buffer): Tree {
  const j = JSON.parse(buf.toString('utf8')) as { nodes: Node[] | null };
  const nodes = (j.nodes ?? []).map((n) => ({ ...n, name: goUnquote(n.name), content: n.content ?? null }));
  return { nodes };
}
