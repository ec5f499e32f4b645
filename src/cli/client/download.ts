/**
 * `backplane snapshot download`: a snapshot as one .tar.zst file, with progress, resumable.
 *
 * Bytes go to `<file>.part`, renamed to `<file>` once complete, so a file under the final name is
 * always whole. A later run (or a retry after a lost connection) resumes from the part: with
 * `Range` and `If-Range` (the archive's ETag, kept in `<file>.part.etag`) when the server honours
 * it (206), otherwise by reading the stream again up to the
 * part's length and comparing it with what is on disk; bytes that differ mean the server produced
 * another archive, and the download starts over rather than splicing two.
 */
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { ApiError, ConnectionError, refusedBy, type ApiClient } from './api.ts';
import { ClientSnapshotDownloadDocument, type DownloadVariant } from './generated/graphql.ts';
import { formatBytes } from './progress.ts';

export interface DownloadOptions {
  snapshotId: string;
  variant?: DownloadVariant;
  /** The file to write; default: the server's file name in the current directory. */
  output?: string;
  out: NodeJS.WritableStream & { isTTY?: boolean };
  err: NodeJS.WritableStream;
  json: boolean;
  giveUpAfterMs?: number;
}

function fileNameOf(disposition: string | null): string | undefined {
  const star = disposition && /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (star) return decodeURIComponent(star[1]!);
  const plain = disposition && /filename="([^"]+)"/i.exec(disposition);
  return plain ? plain[1] : undefined;
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

/** Reads `n` bytes of `body` and says whether they equal the first `n` bytes of `file`. */
async function samePrefix(body: AsyncIterator<Uint8Array>, file: string, n: number): Promise<{ same: boolean; rest: Uint8Array[] }> {
  const disk = createReadStream(file, { end: n - 1 })[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let diskBuf = Buffer.alloc(0);
  let read = 0;
  while (read < n) {
    const next = await body.next();
    if (next.done) return { same: false, rest: [] };
    let chunk = Buffer.from(next.value);
    const take = Math.min(chunk.length, n - read);
    while (diskBuf.length < take) {
      const d = await disk.next();
      if (d.done) return { same: false, rest: [] };
      diskBuf = Buffer.concat([diskBuf, d.value]);
    }
    if (!chunk.subarray(0, take).equals(diskBuf.subarray(0, take))) return { same: false, rest: [] };
    diskBuf = diskBuf.subarray(take);
    read += take;
    chunk = chunk.subarray(take);
    if (read === n) return { same: true, rest: chunk.length ? [chunk] : [] };
  }
  return { same: true, rest: [] };
}

export async function downloadSnapshot(api: ApiClient, o: DownloadOptions): Promise<string> {
  const giveUpAfterMs = o.giveUpAfterMs ?? 120_000;
  let failingSince: number | undefined;
  let delay = 250;
  let target = o.output;
  let shownAt = 0;
  const started = Date.now();
  const show = (bytes: number, final = false) => {
    const now = Date.now();
    if (!final && now - shownAt < 200) return;
    shownAt = now;
    const rate = now > started ? (bytes * 1000) / (now - started) : 0;
    if (o.json) o.out.write(`${JSON.stringify({ event: 'download', bytes, done: final })}\n`);
    else if (o.out.isTTY) o.out.write(`\r\x1b[2Kdownloading  ${formatBytes(bytes)}  ${formatBytes(rate)}/s${final ? '\n' : ''}`);
    else if (final) o.out.write(`downloaded ${formatBytes(bytes)}\n`);
  };
  for (;;) {
    try {
      const { snapshot } = await api.request(ClientSnapshotDownloadDocument, { id: o.snapshotId, variant: o.variant });
      if (!snapshot) throw new ApiError(`snapshot ${o.snapshotId} not found (or not visible to this key)`, 'SNAPSHOT_NOT_FOUND');
      const link = snapshot.download;
      if (link.__typename !== 'Download') refusedBy(link);
      const url = new URL(link.url, api.url);
      const have = target ? await sizeOf(`${target}.part`) : 0;
      // A range only with the ETag of the archive the part came from (If-Range): another archive
      // comes whole, and its first bytes are compared with the part's below.
      const etag = have && target ? await fs.readFile(`${target}.part.etag`, 'utf8').catch(() => null) : null;
      let res: Response;
      try {
        res = await fetch(url, { headers: etag ? { range: `bytes=${have}-`, 'if-range': etag } : {} });
      } catch (err) {
        throw new ConnectionError(`download from ${url.origin} failed: ${(err as Error).message}`);
      }
      if (res.status === 416 && target) {
        // The part holds the whole archive already: a run stopped before renaming it.
        await res.body?.cancel();
        if (res.headers.get('content-range') === `bytes */${have}`) {
          await fs.rename(`${target}.part`, target);
          await fs.rm(`${target}.part.etag`, { force: true });
          show(have, true);
          return path.resolve(target);
        }
        await fs.rm(`${target}.part.etag`, { force: true });
        continue;
      }
      if (res.status !== 200 && res.status !== 206) {
        const body = (await res.json().catch(() => ({}))) as { error?: string; code?: string };
        throw new ApiError(`download refused (${res.status}): ${body.error ?? res.statusText}`, body.code);
      }
      target ??= fileNameOf(res.headers.get('content-disposition')) ?? `snapshot-${o.snapshotId}.tar.zst`;
      const part = `${target}.part`;
      const stream = Readable.fromWeb(res.body as never);
      const body = (stream as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
      let pending: Uint8Array[] = [];
      let offset = await sizeOf(part);
      if (offset > 0 && res.status === 206) {
        o.err.write(`backplane: resuming ${part} at ${formatBytes(offset)}\n`);
      } else if (offset > 0) {
        const check = await samePrefix(body, part, offset);
        if (check.same) {
          o.err.write(`backplane: resuming ${part} at ${formatBytes(offset)} (the server sends from the start: the first bytes were compared, not written)\n`);
          pending = check.rest;
        } else {
          o.err.write(`backplane: ${part} does not match the archive the server sends now; starting over\n`);
          await fs.truncate(part, 0);
          offset = 0;
          stream.destroy();
          continue;
        }
      }
      const served = res.headers.get('etag');
      if (served) await fs.writeFile(`${part}.etag`, served);
      else await fs.rm(`${part}.etag`, { force: true });
      const file = await fs.open(part, 'a');
      try {
        for (const chunk of pending) {
          await file.write(chunk);
          offset += chunk.length;
        }
        for (;;) {
          let next: IteratorResult<Uint8Array>;
          try {
            next = await body.next();
          } catch (err) {
            throw new ConnectionError(`download interrupted at ${formatBytes(offset)}: ${(err as Error).message}`);
          }
          if (next.done) break;
          await file.write(next.value);
          offset += next.value.length;
          failingSince = undefined;
          show(offset);
        }
      } finally {
        stream.destroy();
        await file.close();
      }
      await fs.rename(part, target);
      await fs.rm(`${part}.etag`, { force: true });
      show(offset, true);
      return path.resolve(target);
    } catch (err) {
      if (!(err instanceof ConnectionError)) throw err;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > giveUpAfterMs) throw err;
      if (o.out.isTTY && !o.json) o.out.write('\r\x1b[2K');
      o.err.write(`backplane: ${err.message}; retrying in ${(delay / 1000).toFixed(2)}s\n`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5_000);
    }
  }
}
