/**
 * The benchmark's data set: deterministic (seeded AES-CTR keystream), realistic rather than
 * friendly. Text-like content is drawn word by word from a skewed vocabulary (compresses about
 * 3-4x with zstd, does not deduplicate across files); binary content is keystream (does not
 * compress at all). Three parts, shares of BENCH_SIZE_MB:
 *
 * - `files/`: many small files (1-64 KiB; source, JSON, logs, thumbnails) in nested directories,
 *   about 40% of the bytes;
 * - `files/media`, `files/archive`: a few large files (8-48 MiB), mostly incompressible, about 35%;
 * - `db-v1.dump` / `db-v2.dump`: a pg_dump-like stream (COPY sections of rows, some with bytea
 *   payloads), about 25%; v2 is the next day's dump: 1% of sections rewritten, one appended.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A deterministic byte source. */
export class Rng {
  private readonly cipher;
  constructor(seed: string) {
    const key = createHash('sha256').update(seed).digest();
    this.cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  }
  bytes(n: number): Buffer {
    return this.cipher.update(Buffer.alloc(n));
  }
  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + (this.bytes(4).readUInt32LE(0) % (hi - lo + 1));
  }
}

const VOCAB: Buffer[] = (() => {
  const rng = new Rng('vocabulary');
  const letters = 'etaoinshrdlucmfwypvbgkjqxz';
  const words: Buffer[] = [];
  for (let i = 0; i < 4096; i++) {
    const r = rng.bytes(16);
    const len = 2 + (r[0] % 9);
    let w = '';
    // Letters skewed towards the frequent ones, so the text has an English-like entropy.
    for (let j = 0; j < len; j++) w += letters[Math.floor(((r[j + 1] / 256) ** 2) * letters.length)];
    words.push(Buffer.from(w));
  }
  return words;
})();

/** n bytes of text: words with a Zipf-like skew, numbers, punctuation and line breaks. */
export function textBytes(rng: Rng, n: number): Buffer {
  const out = Buffer.allocUnsafe(n + 32);
  let off = 0;
  let r = rng.bytes(8192);
  let ri = 0;
  let col = 0;
  while (off < n) {
    if (ri + 4 > r.length) {
      r = rng.bytes(8192);
      ri = 0;
    }
    const u = r.readUInt16LE(ri) / 65536;
    const kind = r[ri + 2];
    ri += 4;
    if (kind < 20) {
      off += out.write(String(Math.floor(u * 1e6)), off, 'latin1');
    } else {
      const w = VOCAB[Math.floor(u * u * VOCAB.length)];
      off += w.copy(out, off);
    }
    col++;
    if (kind > 245 || col > 14) {
      out[off++] = 0x0a;
      col = 0;
    } else {
      out[off++] = kind % 17 === 0 ? 0x2c : 0x20;
    }
  }
  return out.subarray(0, n);
}

/** Text and binary interleaved in blocks of 4-64 KiB; `binaryShare` of the bytes is binary. */
export function mixedBytes(rng: Rng, n: number, binaryShare: number): Buffer {
  const parts: Buffer[] = [];
  let left = n;
  while (left > 0) {
    const size = Math.min(left, rng.int(4 * KiB, 64 * KiB));
    parts.push(rng.int(0, 999) < binaryShare * 1000 ? rng.bytes(size) : textBytes(rng, size));
    left -= size;
  }
  return Buffer.concat(parts);
}

/** The content a file of the given size and kind has, for a given seed. */
function contentFor(kind: FileKind, seed: string, size: number): Buffer {
  const rng = new Rng(seed);
  switch (kind) {
    case 'text':
      return textBytes(rng, size);
    case 'binary':
      return rng.bytes(size);
    case 'mixed':
      return mixedBytes(rng, size, 0.5);
  }
}

type FileKind = 'text' | 'binary' | 'mixed';

/** What was generated, stored beside the data so a second run reuses it. */
export interface DatasetInfo {
  version: number;
  sizeMb: number;
  root: string;
  filesDir: string;
  /** The stream and its next day's version; absent for a data set of files only. */
  dumpV1?: string;
  dumpV2?: string;
  smallFiles: number;
  largeFiles: number;
  filesBytes: number;
  dumpBytes: number;
}

const FORMAT_VERSION = 1;

/** Generates the data set under `dataRoot/<size>mb` unless a complete one is there already. */
export async function ensureDataset(dataRoot: string, sizeMb: number, log: (s: string) => void): Promise<DatasetInfo> {
  const root = join(dataRoot, `${sizeMb}mb`);
  const marker = join(root, 'dataset.json');
  try {
    const info = JSON.parse(await readFile(marker, 'utf8')) as DatasetInfo;
    if (info.version === FORMAT_VERSION && info.sizeMb === sizeMb) return info;
  } catch {
    // not generated yet
  }
  await rm(root, { recursive: true, force: true });
  const total = sizeMb * MiB;
  const filesDir = join(root, 'files');
  const rng = new Rng(`dataset-${sizeMb}`);
  const started = Date.now();

  // Small files: ~40% of the bytes, in directories of up to 100 files, three levels deep.
  let smallBytes = 0;
  let smallFiles = 0;
  const smallTarget = total * 0.4;
  while (smallBytes < smallTarget) {
    const dir = join(filesDir, 'app', `d${Math.floor(smallFiles / 2000)}`, `s${Math.floor(smallFiles / 100) % 20}`);
    if (smallFiles % 100 === 0) await mkdir(dir, { recursive: true });
    // Sizes skewed small, as in real trees: most files are a few KiB.
    const u = rng.int(0, 9999) / 10000;
    const size = Math.floor(1 * KiB + u * u * u * 63 * KiB);
    const pick = rng.int(0, 99);
    const kind: FileKind = pick < 55 ? 'text' : pick < 80 ? 'mixed' : 'binary';
    const ext = kind === 'text' ? 'txt' : kind === 'mixed' ? 'json' : 'png';
    await writeFile(join(dir, `f${smallFiles}.${ext}`), contentFor(kind, `small-${smallFiles}`, size));
    smallBytes += size;
    smallFiles++;
  }
  log(`  ${smallFiles} small files, ${(smallBytes / 1e6).toFixed(0)} MB`);

  // Large files: ~35%, 8-48 MiB each; media incompressible, logs and archives mixed.
  let largeBytes = 0;
  let largeFiles = 0;
  const largeTarget = total * 0.35;
  await mkdir(join(filesDir, 'media'), { recursive: true });
  await mkdir(join(filesDir, 'archive'), { recursive: true });
  while (largeBytes < largeTarget) {
    const size = Math.min(Math.max(MiB, Math.floor(largeTarget - largeBytes)), rng.int(8, 48) * MiB);
    const kind: FileKind = largeFiles % 3 === 2 ? 'mixed' : 'binary';
    const path = kind === 'mixed' ? join(filesDir, 'archive', `export-${largeFiles}.log`) : join(filesDir, 'media', `video-${largeFiles}.mp4`);
    await writeLarge(path, size, (off, n) => contentFor(kind, `large-${largeFiles}-${off}`, n));
    largeBytes += size;
    largeFiles++;
  }
  log(`  ${largeFiles} large files, ${(largeBytes / 1e6).toFixed(0)} MB`);

  // The dump: ~25%, in COPY sections of 256 KiB - 2 MiB.
  const dumpV1 = join(root, 'db-v1.dump');
  const dumpV2 = join(root, 'db-v2.dump');
  const dumpBytes = await writeDumps(dumpV1, dumpV2, Math.floor(total * 0.25));
  log(`  pg_dump-like stream, ${(dumpBytes / 1e6).toFixed(0)} MB (generated in ${((Date.now() - started) / 1000).toFixed(0)}s)`);

  const info: DatasetInfo = {
    version: FORMAT_VERSION,
    sizeMb,
    root,
    filesDir,
    dumpV1,
    dumpV2,
    smallFiles,
    largeFiles,
    filesBytes: smallBytes + largeBytes,
    dumpBytes,
  };
  await writeFile(marker, JSON.stringify(info, null, 2));
  return info;
}

/** Writes a large file in 4 MiB pieces so generation never holds a whole file in memory. */
async function writeLarge(path: string, size: number, piece: (offset: number, n: number) => Buffer): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (let off = 0; off < size; off += 4 * MiB) await fh.write(piece(off, Math.min(4 * MiB, size - off)));
  } finally {
    await fh.close();
  }
}

/** One COPY section of a pg_dump: rows of text, some tables with binary (bytea/TOAST) payloads. */
function dumpSection(seed: string, size: number): Buffer {
  const rng = new Rng(seed);
  const header = Buffer.from(`\nCOPY public.${seed.replace(/\W/g, '_')} (id, created_at, name, payload) FROM stdin;\n`);
  const body = rng.int(0, 9) < 3 ? mixedBytes(rng, size, 0.6) : textBytes(rng, size);
  return Buffer.concat([header, body, Buffer.from('\n\\.\n')]);
}

async function writeDumps(v1: string, v2: string, target: number): Promise<number> {
  const a = createWriteStream(v1);
  const b = createWriteStream(v2);
  const write = async (s: NodeJS.WritableStream, buf: Buffer) => {
    if (!s.write(buf)) await once(s, 'drain');
  };
  const rng = new Rng('dump-layout');
  const head = Buffer.from('PGDMP\x01\x0e\x00\x04\x08\x08\x01\x00\x00\x00\x00backplane bench dump\n');
  await write(a, head);
  await write(b, head);
  let written = head.length;
  let i = 0;
  while (written < target) {
    const size = rng.int(256 * KiB, 2 * MiB);
    const s = dumpSection(`table_${i}`, size);
    await write(a, s);
    // The next day: every 100th section has other rows.
    await write(b, i % 100 === 50 ? dumpSection(`table_${i}_day2`, size) : s);
    written += s.length;
    i++;
  }
  await write(b, dumpSection('table_new_day2', 512 * KiB));
  a.end();
  b.end();
  await Promise.all([once(a, 'finish'), once(b, 'finish')]);
  return written;
}

/**
 * A deterministic 32-bit generator (mulberry32) for the small-files data set: a generator of
 * another kind than the first data set's AES keystream, so the two sets share no content.
 */
export class Mulberry {
  private s: number;
  constructor(seed: string) {
    this.s = createHash('sha256').update(seed).digest().readUInt32LE(0);
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + (this.next() % (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.next() % xs.length];
  }
  /** n incompressible bytes. */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n + 3);
    for (let i = 0; i < n; i += 4) out.writeUInt32LE(this.next(), i);
    return out.subarray(0, n);
  }
}

const IDENTS = ['user', 'order', 'item', 'cart', 'token', 'session', 'config', 'payload', 'result', 'buffer', 'index', 'count', 'value', 'handler', 'request', 'response', 'cache', 'queue', 'worker', 'event'];
const KEYWORDS = ['const', 'let', 'return', 'if', 'for', 'await', 'export function', 'import', 'throw new Error', 'switch'];
const LEVELS = ['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR'];
const ROUTES = ['/v1/users', '/v1/orders', '/v1/items/search', '/healthz', '/v2/carts', '/graphql', '/v1/tokens/refresh'];

/** A source-code-like text file of about n bytes: lines built from templates, identifiers and numbers. */
function codeText(rng: Mulberry, n: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  let depth = 0;
  while (size < n) {
    const a = rng.pick(IDENTS);
    const b = rng.pick(IDENTS);
    let line: string;
    switch (rng.int(0, 5)) {
      case 0:
        line = `${rng.pick(KEYWORDS)} ${a}${rng.int(0, 999)} = ${b}.${rng.pick(IDENTS)}(${rng.int(0, 65535)});`;
        break;
      case 1:
        line = `// ${a} ${b} ${rng.pick(IDENTS)} when ${rng.pick(IDENTS)} is ${rng.int(0, 1) ? 'ready' : 'missing'} (#${rng.int(100, 9999)})`;
        break;
      case 2:
        line = `if (${a}.${b} > ${rng.int(0, 4096)}) {`;
        depth++;
        break;
      case 3:
        line = depth > 0 ? '}' : `${a}.${b} = "${rng.next().toString(36)}";`;
        if (depth > 0) depth--;
        break;
      default:
        line = `${a}[${rng.int(0, 64)}] = ${b}(${rng.next().toString(16)}, '${rng.pick(IDENTS)}');`;
    }
    line = '  '.repeat(depth) + line + '\n';
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, n);
}

/** n bytes of application log lines from a seed (timestamps advance from `t0` ms). */
function logText(rng: Mulberry, n: number, t0: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  let t = t0;
  while (size < n) {
    t += rng.int(0, 250);
    const line = `${new Date(t).toISOString()} ${rng.pick(LEVELS)} svc=${rng.pick(IDENTS)} req=${rng.next().toString(16).padStart(8, '0')} ${rng.pick(ROUTES)} status=${rng.int(0, 9) < 8 ? 200 : rng.pick([301, 404, 500, 503])} dur=${rng.int(1, 900)}ms bytes=${rng.int(0, 1 << 20)}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, n);
}

const SMALL_FORMAT_VERSION = 1;

/**
 * The small-files-heavy data set (about 800 MB): 20,000 small text files (source-like, 1-40
 * KiB) in 200 folders, large application logs and random blobs, all from seeded mulberry32
 * (another generator than the first data set's). No stream: it measures the files steps.
 */
export async function ensureSmallFilesDataset(dataRoot: string, log: (s: string) => void): Promise<DatasetInfo> {
  const root = join(dataRoot, 'small-files');
  const marker = join(root, 'dataset.json');
  try {
    const info = JSON.parse(await readFile(marker, 'utf8')) as DatasetInfo;
    if (info.version === SMALL_FORMAT_VERSION) return info;
  } catch {
    // not generated yet
  }
  await rm(root, { recursive: true, force: true });
  const filesDir = join(root, 'files');
  const started = Date.now();
  const rng = new Mulberry('small-files-layout');
  let smallBytes = 0;
  let smallFiles = 0;
  for (let d = 0; d < 200; d++) {
    const dir = join(filesDir, 'src', `pkg-${String(d).padStart(3, '0')}`);
    await mkdir(dir, { recursive: true });
    for (let f = 0; f < 100; f++) {
      // Mostly a few KiB, some up to 40 KiB.
      const u = rng.int(0, 9999) / 10000;
      const size = Math.floor(KiB + u * u * 39 * KiB);
      await writeFile(join(dir, `mod-${f}.${rng.pick(['ts', 'js', 'md', 'json', 'txt'])}`), codeText(new Mulberry(`code-${d}-${f}`), size));
      smallBytes += size;
      smallFiles++;
    }
  }
  log(`  ${smallFiles} small files, ${(smallBytes / 1e6).toFixed(0)} MB`);
  let largeBytes = 0;
  let largeFiles = 0;
  await mkdir(join(filesDir, 'logs'), { recursive: true });
  await mkdir(join(filesDir, 'blobs'), { recursive: true });
  // Logs: 10 files of 24-40 MiB (compressible); blobs: 8 of 12-28 MiB (incompressible).
  for (let i = 0; i < 10; i++) {
    const size = rng.int(24, 40) * MiB;
    const gen = new Mulberry(`log-${i}`);
    await writeLarge(join(filesDir, 'logs', `app-${i}.log`), size, (off, n) => logText(gen, n, Date.UTC(2026, 0, 1) + i * 86_400_000 + off));
    largeBytes += size;
    largeFiles++;
  }
  for (let i = 0; i < 8; i++) {
    const size = rng.int(12, 28) * MiB;
    const gen = new Mulberry(`blob-${i}`);
    await writeLarge(join(filesDir, 'blobs', `blob-${i}.bin`), size, (_off, n) => gen.bytes(n));
    largeBytes += size;
    largeFiles++;
  }
  log(`  ${largeFiles} large files, ${(largeBytes / 1e6).toFixed(0)} MB (generated in ${((Date.now() - started) / 1000).toFixed(0)}s)`);
  const info: DatasetInfo = {
    version: SMALL_FORMAT_VERSION,
    sizeMb: Math.round((smallBytes + largeBytes) / MiB),
    root,
    filesDir,
    smallFiles,
    largeFiles,
    filesBytes: smallBytes + largeBytes,
    dumpBytes: 0,
  };
  await writeFile(marker, JSON.stringify(info, null, 2));
  return info;
}

/** Every regular file under dir, sorted (so choices made from the list are deterministic). */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await visit(p);
      else if (e.isFile()) out.push(p);
    }
  };
  await visit(dir);
  return out.sort();
}

/**
 * Changes 1% of the files (every 100th in sorted order): small files are rewritten whole with
 * new content of the same size, large ones get 256 KiB overwritten in the middle. Returns an
 * undo function that puts the original bytes back.
 */
export async function changeOnePercent(filesDir: string, round: string): Promise<{ changed: number; bytes: number; undo: () => Promise<void> }> {
  const files = (await listFiles(filesDir)).filter((_, i) => i % 100 === 37);
  const saved: { path: string; offset: number; data: Buffer }[] = [];
  let bytes = 0;
  for (const path of files) {
    const size = (await stat(path)).size;
    const fh = await open(path, 'r+');
    try {
      const offset = size > MiB ? Math.floor(size / 2) : 0;
      const n = size > MiB ? 256 * KiB : size;
      const old = Buffer.alloc(n);
      await fh.read(old, 0, n, offset);
      saved.push({ path, offset, data: old });
      await fh.write(contentFor('mixed', `change-${round}-${path}`, n), 0, n, offset);
      bytes += n;
    } finally {
      await fh.close();
    }
  }
  return {
    changed: files.length,
    bytes,
    async undo() {
      for (const s of saved) {
        const fh = await open(s.path, 'r+');
        try {
          await fh.write(s.data, 0, s.data.length, s.offset);
        } finally {
          await fh.close();
        }
      }
    },
  };
}

/** Apparent size of everything under dir (what the repository occupies, without block rounding). */
export async function treeSize(dir: string): Promise<number> {
  let total = 0;
  const visit = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await visit(p);
      else total += (await stat(p)).size;
    }
  };
  await visit(dir);
  return total;
}
