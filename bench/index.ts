/**
 * Index benchmark (`npm run bench:index`; not a test): what the in-memory master index costs per
 * blob, and how fast it answers, on a synthetic repository index of BENCH_INDEX_BLOBS blobs
 * (default 5,000,000: about a 5 TB repository at restic's ~1 MiB average chunk).
 *
 * The blobs arrive as index files would: JSON text of 50,000 blobs each (restic's size), parsed
 * with JSON.parse and added by the same call Repository.loadIndex makes. Packs hold 16 data blobs
 * (9 in 10) or 64 tree blobs. Measured, each implementation in a child process of its own (run
 * with --expose-gc):
 *   bytesPerBlob  (heapUsed + arrayBuffers) after gc, minus the same before the first file
 *   load          blobs per second through JSON.parse + add, and through the add alone
 *   lookups       per second: 1,000,000 present ids in random order, then 1,000,000 absent ones,
 *                 each a fresh string (as ids parsed from a tree are), then the present ones
 *                 again (same strings: a Map reuses their cached hashes)
 * Implementations: `compact` (src/engine/master-index.ts, what the engine uses) and `map` (the
 * index as it was before: one Map of objects per blob type, kept in bench/index-map-reference.ts
 * as the yardstick).
 *
 * Settings: BENCH_INDEX_BLOBS, BENCH_INDEX_IMPLS (default compact,map). Output: a table on
 * stdout and bench/results/index.json (with the load average at start and end).
 */
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MasterIndex } from '../src/engine/master-index.ts';
import { MapIndex } from './index-map-reference.ts';

const BENCH = dirname(fileURLToPath(import.meta.url));
const BLOBS = Number(process.env.BENCH_INDEX_BLOBS ?? 5_000_000);
const IMPLS = (process.env.BENCH_INDEX_IMPLS ?? 'compact,map').split(',');
const BLOBS_PER_FILE = 50_000;
const LOOKUPS = 1_000_000;

interface ImplResult {
  impl: string;
  blobs: number;
  packs: number;
  bytesPerBlob: number;
  heapBytesPerBlob: number;
  arrayBufferBytesPerBlob: number;
  loadBlobsPerSecond: number;
  addBlobsPerSecond: number;
  hitLookupsPerSecond: number;
  missLookupsPerSecond: number;
  repeatHitLookupsPerSecond: number;
}

/** A small fast generator (xorshift128), seeded, so ids can be made again without keeping them. */
class Ids {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    this.a = Math.imul(seed, 0x9e3779b1) ^ 0x5bd1e995;
    this.b = seed;
    this.c = 0x243f6a88;
    this.d = 0xb7e15162;
    for (let i = 0; i < 16; i++) this.word();
  }
  private word(): number {
    let t = this.d;
    const s = this.a;
    this.d = this.c;
    this.c = this.b;
    this.b = s;
    t ^= t << 11;
    t ^= t >>> 8;
    this.a = t ^ s ^ (s >>> 19);
    return this.a >>> 0;
  }
  next(): string {
    let s = '';
    for (let i = 0; i < 8; i++) s += this.word().toString(16).padStart(8, '0');
    return s;
  }
}

/** Index file number f as JSON text, and its blob count. Data packs of 16 blobs, tree packs of 64. */
function indexFileText(f: number, blobs: number): { text: string; packs: number } {
  const ids = new Ids(f + 1);
  const packIds = new Ids(1_000_000 + f);
  const packs: string[] = [];
  let made = 0;
  let p = 0;
  while (made < blobs) {
    const tree = p++ % 10 === 9;
    const n = Math.min(tree ? 64 : 16, blobs - made);
    const entries: string[] = [];
    let offset = 0;
    for (let i = 0; i < n; i++) {
      const length = tree ? 2_000 + ((i * 37) % 3_000) : 700_000 + ((i * 7919) % 700_000);
      entries.push(`{"id":"${ids.next()}","type":"${tree ? 'tree' : 'data'}","offset":${offset},"length":${length},"uncompressed_length":${length + 100}}`);
      offset += length;
    }
    packs.push(`{"id":"${packIds.next()}","blobs":[${entries.join(',')}]}`);
    made += n;
  }
  return { text: `{"packs":[${packs.join(',')}]}`, packs: packs.length };
}

interface Index {
  load(json: unknown): void;
  has(type: 'data' | 'tree', id: string): boolean;
  readonly size: number;
}

function makeIndex(impl: string): Index {
  if (impl === 'compact') {
    const index = new MasterIndex();
    return { load: (j) => index.addIndexJson(j), has: (t, id) => index.has(t, id), get size() { return index.size; } };
  }
  if (impl === 'map') {
    const index = new MapIndex();
    return { load: (j) => index.load(j), has: (t, id) => index.has(t, id), get size() { return index.size; } };
  }
  throw new Error(`unknown implementation ${impl}`);
}

function measured(): { heap: number; arrayBuffers: number } {
  (globalThis as { gc?: () => void }).gc!();
  (globalThis as { gc?: () => void }).gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, arrayBuffers: m.arrayBuffers };
}

function child(impl: string): ImplResult {
  const files = Math.ceil(BLOBS / BLOBS_PER_FILE);
  const before = measured();
  const index = makeIndex(impl);
  let loadMs = 0;
  let addMs = 0;
  let packs = 0;
  for (let f = 0; f < files; f++) {
    const file = indexFileText(f, Math.min(BLOBS_PER_FILE, BLOBS - f * BLOBS_PER_FILE));
    packs += file.packs;
    const t0 = performance.now();
    const json: unknown = JSON.parse(file.text);
    const t1 = performance.now();
    index.load(json);
    const t2 = performance.now();
    loadMs += t2 - t0;
    addMs += t2 - t1;
  }
  const after = measured();
  if (index.size !== BLOBS) throw new Error(`${impl}: ${index.size} blobs indexed, expected ${BLOBS}`);

  // Present ids: made again from the files' seeds (their tree/data type known by position), shuffled.
  const present: { id: string; tree: boolean }[] = [];
  const per = Math.ceil(LOOKUPS / files);
  for (let f = 0; f < files && present.length < LOOKUPS; f++) {
    const json = JSON.parse(indexFileText(f, Math.min(BLOBS_PER_FILE, BLOBS - f * BLOBS_PER_FILE)).text) as { packs: { blobs: { id: string; type: string }[] }[] };
    let taken = 0;
    for (const p of json.packs) {
      for (const b of p.blobs) {
        if (taken++ < per && present.length < LOOKUPS) present.push({ id: b.id, tree: b.type === 'tree' });
      }
    }
  }
  const shuffle = new Ids(42);
  for (let i = present.length - 1; i > 0; i--) {
    const j = parseInt(shuffle.next().slice(0, 8), 16) % (i + 1);
    [present[i], present[j]] = [present[j], present[i]];
  }
  const absentIds = new Ids(777);
  const absent = Array.from({ length: LOOKUPS }, () => absentIds.next());

  let t = performance.now();
  let found = 0;
  for (const { id, tree } of present) if (index.has(tree ? 'tree' : 'data', id)) found++;
  const hitMs = performance.now() - t;
  if (found !== present.length) throw new Error(`${impl}: ${present.length - found} present ids not found`);
  t = performance.now();
  for (const id of absent) if (index.has('data', id)) found++;
  const missMs = performance.now() - t;
  if (found !== present.length) throw new Error(`${impl}: an absent id was found`);
  // The same strings again: V8 keeps a string's hash once computed, which a Map then reuses.
  t = performance.now();
  for (const { id, tree } of present) if (index.has(tree ? 'tree' : 'data', id)) found++;
  const againMs = performance.now() - t;

  const heap = after.heap - before.heap;
  const arrayBuffers = after.arrayBuffers - before.arrayBuffers;
  return {
    impl,
    blobs: BLOBS,
    packs,
    bytesPerBlob: round((heap + arrayBuffers) / BLOBS, 1),
    heapBytesPerBlob: round(heap / BLOBS, 1),
    arrayBufferBytesPerBlob: round(arrayBuffers / BLOBS, 1),
    loadBlobsPerSecond: Math.round(BLOBS / (loadMs / 1000)),
    addBlobsPerSecond: Math.round(BLOBS / (addMs / 1000)),
    hitLookupsPerSecond: Math.round(present.length / (hitMs / 1000)),
    missLookupsPerSecond: Math.round(absent.length / (missMs / 1000)),
    repeatHitLookupsPerSecond: Math.round(present.length / (againMs / 1000)),
  };
}

function round(n: number, digits: number): number {
  return Math.round(n * 10 ** digits) / 10 ** digits;
}

const M = (n: number) => `${(n / 1e6).toFixed(2)} M/s`;

async function main(): Promise<void> {
  const childImpl = process.argv[2] === '--child' ? process.argv[3] : undefined;
  if (childImpl) {
    process.stdout.write(JSON.stringify(child(childImpl)) + '\n');
    return;
  }
  const loadStart = loadavg()[0];
  const results: ImplResult[] = [];
  for (const impl of IMPLS) {
    const out = execFileSync(process.execPath, ['--expose-gc', '--max-old-space-size=4096', '--import', 'tsx', fileURLToPath(import.meta.url), '--child', impl], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const r = JSON.parse(out.trim().split('\n').pop()!) as ImplResult;
    results.push(r);
    process.stdout.write(
      `${impl.padEnd(8)} ${r.bytesPerBlob.toFixed(1).padStart(6)} B/blob (heap ${r.heapBytesPerBlob}, buffers ${r.arrayBufferBytesPerBlob})` +
        `  load ${M(r.loadBlobsPerSecond)} (add ${M(r.addBlobsPerSecond)})  hits ${M(r.hitLookupsPerSecond)}  misses ${M(r.missLookupsPerSecond)}  hits again ${M(r.repeatHitLookupsPerSecond)}\n`,
    );
  }
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    blobs: BLOBS,
    loadAverage1m: { start: round(loadStart, 2), end: round(loadavg()[0], 2) },
    results,
  };
  await writeFile(join(BENCH, 'results', 'index.json'), JSON.stringify(report, null, 2) + '\n');
}

await main();
