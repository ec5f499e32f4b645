/**
 * HTTP byte ranges (RFC 9110, 14) for a body made as it is sent: which one range a request
 * asks for, and that range of a stream.
 */
import type { Readable } from 'node:stream';

/** A byte range to serve, both ends included. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * The one range a `Range` header asks for (`bytes=N-`, `bytes=N-M`, `bytes=-N`: the last N), or
 * null to serve the whole archive: no header, a syntax we do not know, or several ranges (a
 * server may ignore Range; RFC 9110, 14.2). `'unsatisfiable'` when it starts past the end.
 */
export function parseRange(header: string | undefined, length: number): ByteRange | 'unsatisfiable' | null {
  const m = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, length - suffix), end: length - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? Infinity : Number(m[2]);
  if (end < start) return null;
  if (start >= length) return 'unsatisfiable';
  return { start, end: Math.min(end, length - 1) };
}

/** Whether a Range header names one range of bytes we would serve (so the length is worth measuring). */
export function isRangeRequest(header: string | undefined): boolean {
  return parseRange(header, Number.MAX_SAFE_INTEGER) !== null;
}

/**
 * Bytes `range.start`..`range.end` of a stream; the stream is stopped once they are through. Fails
 * when the stream ends first: the archive was not the length the response promised.
 */
export async function* byteWindow(stream: Readable, range: ByteRange): AsyncGenerator<Buffer> {
  let pos = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    const from = Math.max(range.start - pos, 0);
    const to = Math.min(chunk.length, range.end + 1 - pos);
    pos += chunk.length;
    if (to > from) yield chunk.subarray(from, to);
    if (pos > range.end) return;
  }
  throw new Error(`the archive ended at byte ${pos}, before the range's end (${range.end})`);
}
