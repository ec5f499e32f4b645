/**
 * Chunker parameters: content-defined chunking with FastCDC, whose cutting runs on the codec
 * threads (chunker-core.mjs). A *chunk* is a run of bytes whose end is chosen by the content
 * itself, so inserting bytes early in a file moves only the chunks around the edit and later
 * chunks keep their boundaries (and so their blob ids).
 *
 * The algorithm is named `fastcdc-v1-<min>-<avg>-<max>` in the repository config; the gear table
 * comes from a fixed seed and must never change for a given name.
 */
import { GEAR } from './chunker-core.mjs';

export { GEAR };

/** Chunk size limits in bytes. avg must be a power of two. */
export interface ChunkerParams {
  min: number;
  avg: number;
  max: number;
}

/** The default: 512 KiB minimum, 1 MiB average, 8 MiB maximum. */
export const DEFAULT_CHUNKER_PARAMS: ChunkerParams = { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 };

function sizeName(n: number): string {
  if (n % (1024 * 1024) === 0) return `${n / (1024 * 1024)}m`;
  if (n % 1024 === 0) return `${n / 1024}k`;
  return String(n);
}

/** The name recorded in the repository config, e.g. `fastcdc-v1-512k-1m-8m`. */
export function chunkerName(p: ChunkerParams): string {
  return `fastcdc-v1-${sizeName(p.min)}-${sizeName(p.avg)}-${sizeName(p.max)}`;
}

function parseSize(s: string): number {
  const m = /^(\d+)([km]?)$/.exec(s);
  if (!m) throw new Error(`bad chunker size ${s}`);
  return Number(m[1]) * (m[2] === 'm' ? 1024 * 1024 : m[2] === 'k' ? 1024 : 1);
}

/** Parses a chunker name back into parameters; throws on names this version does not know. */
export function parseChunkerName(name: string): ChunkerParams {
  const m = /^fastcdc-v1-(\w+)-(\w+)-(\w+)$/.exec(name);
  if (!m) throw new Error(`unknown chunker ${name}`);
  const p = { min: parseSize(m[1]), avg: parseSize(m[2]), max: parseSize(m[3]) };
  validateParams(p);
  return p;
}

function validateParams(p: ChunkerParams): void {
  if (!(p.min > 64 && p.min < p.avg && p.avg < p.max) || (p.avg & (p.avg - 1)) !== 0) {
    throw new Error(`invalid chunker parameters ${JSON.stringify(p)}`);
  }
}
