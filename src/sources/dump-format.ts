/**
 * Dumps brought from outside (importDump): which kind a file is, told by its content, never by
 * its name, and a stream of it ready for the tool that loads it.
 *
 * Words used here:
 * - *compression*: `none`, `gzip` (magic 1f 8b) or `zstd` (magic 28 b5 2f fd), around the dump.
 * - *format*: `custom` (pg_dump -Fc, starts with "PGDMP"), `tar` (pg_dump -Ft: a ustar archive
 *   whose first member is toc.dat), or `plain` (SQL text: valid UTF-8 without NUL bytes).
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { pipeline, Transform, type Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import { DecompressStream } from 'zstd-napi';

export type DumpCompression = 'none' | 'gzip' | 'zstd';
export type DumpFormat = 'custom' | 'tar' | 'plain';

/** How much of the decompressed start is looked at: a tar header, and enough text to trust as SQL. */
const SAMPLE_BYTES = 64 * 1024;

/** The file's start could not be read as any dump (or its compression is broken right at the start). */
export class DumpFormatError extends Error {
  constructor(
    readonly reason: 'unknown' | 'broken',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DumpFormatError';
  }
}

/** The compression a file's first bytes announce. */
export function compressionOf(head: Uint8Array): DumpCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

/** The dump format of a decompressed start, or null. `whole` says the sample is the entire dump. */
export function formatOf(sample: Buffer, whole: boolean): DumpFormat | null {
  if (sample.length >= 5 && sample.subarray(0, 5).toString('latin1') === 'PGDMP') return 'custom';
  if (sample.length >= 512 && sample.subarray(257, 262).toString('latin1') === 'ustar') {
    // pg_dump's tar always starts with its table of contents; any other tar is not a dump.
    const name = sample.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '');
    return name === 'toc.dat' ? 'tar' : null;
  }
  if (sample.length === 0 || sample.includes(0)) return null;
  // A multi-byte character cut at the sample's end is not an error in the text.
  let text = sample;
  if (!whole) {
    let cut = text.length;
    for (let i = 1; i <= 3 && i <= text.length; i++) {
      const b = text[text.length - i];
      if ((b & 0xc0) === 0xc0) {
        cut = text.length - i;
        break;
      }
      if ((b & 0x80) === 0) break;
    }
    text = text.subarray(0, cut);
  }
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(text);
  } catch {
    return null;
  }
  return 'plain';
}

/** The file's bytes, decompressed as its compression says. Errors of any stage end the returned stream. */
export function openDecompressed(file: string, compression: DumpCompression, opts: { signal?: AbortSignal; onRawBytes?: (n: number) => void } = {}): Readable {
  const raw = createReadStream(file, { highWaterMark: 1 << 20, signal: opts.signal });
  const stages: (Readable | Transform)[] = [raw];
  // Counted as they pass, not with a 'data' listener, which would set the file flowing before anyone reads.
  const onRawBytes = opts.onRawBytes;
  if (onRawBytes) stages.push(new Transform({ transform: (chunk: Buffer, _e, done) => (onRawBytes(chunk.length), done(null, chunk)) }));
  if (compression === 'gzip') stages.push(createGunzip());
  if (compression === 'zstd') stages.push(new DecompressStream() as unknown as Transform);
  if (stages.length === 1) return raw;
  return (pipeline as (...args: unknown[]) => Readable)(...stages, () => {});
}

/** Detects the compression and format of the dump in `file`; throws DumpFormatError. */
export async function detectDump(file: string): Promise<{ compression: DumpCompression; format: DumpFormat }> {
  const head = await readStart(createReadStream(file, { start: 0, end: 7 }), 8);
  const compression = compressionOf(head.bytes);
  let sample: { bytes: Buffer; whole: boolean };
  try {
    sample = await readStart(openDecompressed(file, compression), SAMPLE_BYTES);
  } catch (err) {
    throw new DumpFormatError('broken', `the ${compression} compression of the file is broken: ${(err as Error).message}`, { cause: err });
  }
  const format = formatOf(sample.bytes, sample.whole);
  if (!format) {
    const what = compression === 'none' ? 'The file' : `The ${compression}-compressed file`;
    throw new DumpFormatError('unknown', `${what} is not a PostgreSQL dump: expected plain SQL, pg_dump's custom format (PGDMP) or its tar format`);
  }
  return { compression, format };
}

/** Reads up to `n` bytes from the stream's start, then stops it. */
async function readStart(stream: Readable, n: number): Promise<{ bytes: Buffer; whole: boolean }> {
  const parts: Buffer[] = [];
  let size = 0;
  let whole = true;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      parts.push(chunk);
      size += chunk.length;
      if (size >= n) {
        whole = false;
        break;
      }
    }
  } finally {
    stream.destroy();
  }
  return { bytes: Buffer.concat(parts).subarray(0, n), whole };
}

/**
 * Plain SQL for psql with its meta-commands disabled: a dump from outside must not run `\!`
 * (a shell), `\o |…`, `\copy … program` or read the server's files. psql's `\restrict <key>`
 * (PostgreSQL 13.22/14.19/15.14/16.10/17.6 and later) refuses every meta-command but
 * `\unrestrict <key>` until the end, and nobody else knows the key. The dump's own
 * `\restrict`/`\unrestrict` lines, which pg_dump writes around a plain dump since those
 * versions, are dropped (outside COPY data, where psql would read them as commands).
 */
export function restrictedSql(sql: Readable): Readable {
  const key = randomBytes(24).toString('hex');
  let pending = '';
  let inCopy = false;
  let started = false;
  const own = /^\\(un)?restrict [A-Za-z0-9]+\r?$/;
  const line = (l: string): string => {
    if (inCopy) {
      if (l === '\\.' || l === '\\.\r') inCopy = false;
      return l + '\n';
    }
    if (/^COPY .* FROM stdin;\s*$/i.test(l)) inCopy = true;
    return own.test(l) ? '\n' : l + '\n';
  };
  const decoder = new StringDecoder('utf8');
  const prefix = () => {
    if (started) return '';
    started = true;
    return `\\restrict ${key}\n`;
  };
  const out = new Transform({
    transform(chunk: Buffer, _enc, done) {
      const text = pending + decoder.write(chunk);
      const last = text.lastIndexOf('\n');
      pending = text.slice(last + 1);
      const lines = last >= 0 ? text.slice(0, last).split('\n') : [];
      done(null, prefix() + lines.map(line).join(''));
    },
    flush(done) {
      const rest = pending + decoder.end();
      done(null, prefix() + (rest ? line(rest) : ''));
    },
  });
  return pipeline(sql, out, () => {}) as unknown as Readable;
}
