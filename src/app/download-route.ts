/**
 * `GET /downloads/<token>` (and HEAD): a signed download, streamed as it is made (services/downloads.ts).
 * Resumable: `Range: bytes=N-` (`curl -C -`, a browser resuming) and `bytes=N-M` answer 206 with
 * that part, a range past the end 416, and `If-Range` with the ETag or Last-Modified we sent
 * keeps the range (anything else: the whole archive, 200). The archive is made as it is sent, so
 * its length is known only once made whole: this process remembers it then (a full download
 * that ended, or a range request, which makes the archive once to measure it before answering).
 */
import type http from 'node:http';
import { Readable } from 'node:stream';
import { AppError } from '../domain/errors.ts';
import type { Deps } from '../services/deps.ts';
import { contentDisposition, downloadLength, measuredWhole, prepareDownload, verifyDownloadToken, type DownloadArchive } from '../services/downloads.ts';
import { byteWindow, isRangeRequest, parseRange, type ByteRange } from './http-range.ts';
import type { Logger } from './logger.ts';

export async function serveDownload(deps: Deps, logger: Logger, req: http.IncomingMessage, res: http.ServerResponse, token: string): Promise<void> {
  let decoded: string | null = null;
  try {
    decoded = decodeURIComponent(token);
  } catch {
    // A malformed escape is a bad link like any other, not a server error.
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' }).end(JSON.stringify({ error: 'A download link answers GET and HEAD' }));
    return;
  }
  // HEAD answers what GET would, without the body (Node sends none for HEAD): its Content-Length
  // too, so it measures the archive as a range request does when this process has not yet.
  const head = req.method === 'HEAD';
  const payload = decoded !== null ? verifyDownloadToken(deps, decoded) : null;
  if (!payload) {
    res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'This download link is invalid or has expired' }));
    return;
  }
  const ac = new AbortController();
  res.on('close', () => ac.abort());
  const conflict = (err: unknown) => {
    if (!(err instanceof AppError)) throw err;
    res.writeHead(409, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err.message, code: err.code }));
  };
  let archive: DownloadArchive;
  try {
    archive = await prepareDownload(deps, payload);
  } catch (err) {
    return conflict(err);
  }
  const lastModified = archive.lastModified.toUTCString();
  const headers = {
    'content-type': 'application/zstd',
    'content-disposition': contentDisposition(archive.filename),
    'cache-control': 'no-store',
    'accept-ranges': 'bytes',
    etag: archive.etag,
    'last-modified': lastModified,
  };
  // If-Range: the part only when the client holds these very bytes; else the whole archive.
  const ifRange = req.headers['if-range'];
  const rangeHeader = ifRange === undefined || ifRange === archive.etag || ifRange === lastModified ? req.headers.range : undefined;
  let length = archive.knownLength;
  if (length === null && (head || isRangeRequest(rangeHeader))) {
    try {
      length = await downloadLength(archive, payload, ac.signal);
    } catch (err) {
      if (ac.signal.aborted) return;
      return conflict(err);
    }
  }
  let range: ByteRange | null = null;
  if (length !== null && isRangeRequest(rangeHeader)) {
    const bytes = parseRange(rangeHeader, length);
    if (bytes === 'unsatisfiable') {
      res.writeHead(416, { 'content-range': `bytes */${length}`, 'accept-ranges': 'bytes', etag: archive.etag, 'last-modified': lastModified }).end();
      return;
    }
    range = bytes;
  }
  const [status, sent] = range
    ? [206, { ...headers, 'content-range': `bytes ${range.start}-${range.end}/${length}`, 'content-length': String(range.end - range.start + 1) }]
    : [200, { ...headers, ...(length !== null ? { 'content-length': String(length) } : {}) }];
  if (head) {
    res.writeHead(status, sent).end();
    return;
  }
  let stream: Readable;
  try {
    stream = await archive.open(ac.signal);
  } catch (err) {
    return conflict(err);
  }
  res.writeHead(status, sent);
  const body = Readable.from(range ? byteWindow(stream, range) : measuredWhole(stream, payload), { objectMode: false });
  body.on('error', (err) => {
    // The client leaving aborts the stream too; the request's own line says so.
    if (ac.signal.aborted) logger.debug({ snapshotId: payload.s }, 'download cancelled by the client');
    else logger.error({ err }, 'download stream failed');
    res.destroy(err);
  });
  body.pipe(res);
}
