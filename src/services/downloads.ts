import { timingSafeEqual } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CompressStream } from 'zstd-napi';
import { ConflictError, ErrorCode, ValidationError } from '../domain/errors.ts';
import { acquireLock, tarStream, type Lock } from '../engine/api.ts';
import { enqueueHeal, isDamage, throwIfDamaged } from './damage.ts';
import type { Deps } from './deps.ts';
import { openReadableCopy } from './copies.ts';
import { getSnapshot } from './snapshot-read.ts';
import type { Viewer } from './viewer.ts';

/**
 * Downloads: a signed, short-lived URL (`/downloads/<token>`) served by Backplane itself, which
 * streams a tar.zst of the snapshot straight from the repository — never whole in memory.
 * The token is `<payload>.<hmac>`; the payload names the snapshot, the variant and the expiry.
 */

export const DOWNLOAD_VARIANTS = ['DATABASE_AND_FILES', 'DATABASE_ONLY', 'FILES_ONLY'] as const;
export type DownloadVariant = (typeof DOWNLOAD_VARIANTS)[number];

export interface TokenPayload {
  s: string;
  v: DownloadVariant;
  /** Expiry, seconds since the epoch. */
  e: number;
}

export async function createDownload(
  deps: Deps,
  viewer: Viewer,
  snapshotId: string,
  opts: { variant: DownloadVariant; ttlSeconds: number; baseUrl?: string },
): Promise<{ url: string; expiresAt: Date; sizeBytes: bigint }> {
  if (!Number.isInteger(opts.ttlSeconds) || opts.ttlSeconds < 60 || opts.ttlSeconds > 86_400) {
    throw ValidationError.field(['ttlSeconds'], 'must be between 60 and 86400 seconds');
  }
  const snapshot = await getSnapshot(deps, viewer, snapshotId);
  throwIfDamaged(snapshot);
  if (snapshot.status !== 'READY') throw new ConflictError(ErrorCode.SNAPSHOT_NOT_READY, 'Only a ready snapshot can be downloaded');
  const needs = opts.variant === 'DATABASE_ONLY' ? 'DB' : opts.variant === 'FILES_ONLY' ? 'FILES' : null;
  if (needs && !snapshot.includes.includes(needs)) throw ValidationError.field(['variant'], `this snapshot holds no ${needs === 'DB' ? 'database' : 'files'}`);
  const expiresAt = new Date(deps.clock.now().getTime() + opts.ttlSeconds * 1000);
  const payload = Buffer.from(JSON.stringify({ s: snapshot.id, v: opts.variant, e: Math.floor(expiresAt.getTime() / 1000) } satisfies TokenPayload)).toString('base64url');
  const token = `${payload}.${deps.secrets.sign('download', payload)}`;
  return { url: `${opts.baseUrl ?? ''}/downloads/${token}`, expiresAt, sizeBytes: snapshot.sizeBytes };
}

/** The token's payload when its signature is right and it has not expired; otherwise null. */
export function verifyDownloadToken(deps: Deps, token: string): TokenPayload | null {
  // Exactly `<payload>.<signature>` in base64url: anything after the signature is not ours.
  const m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(token);
  if (!m) return null;
  const [, payload, sig] = m;
  const expected = Buffer.from(deps.secrets.sign('download', payload));
  const given = Buffer.from(sig);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return null;
  try {
    const p = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as TokenPayload;
    if (typeof p.e !== 'number' || p.e * 1000 <= deps.clock.now().getTime()) return null;
    return p;
  } catch {
    return null;
  }
}

/**
 * What names the bytes of a download in its ETag: bump it when the archive a snapshot gives
 * changes (its tar layout, the zstd settings), so that no client resumes across the change.
 */
const ARCHIVE_FORMAT = 1;

/** A verified download's archive, with what HTTP needs to serve parts of it. */
export interface DownloadArchive {
  filename: string;
  /** Strong ETag: the same snapshot and variant give the same bytes, every time (a test holds to it). */
  etag: string;
  lastModified: Date;
  /** Its length in bytes when this process has made the whole archive before; null otherwise. */
  knownLength: number | null;
  /** The archive from its first byte. */
  open(signal: AbortSignal): Promise<Readable>;
}

/**
 * Archive lengths, by snapshot and variant, measured when an archive was made whole. A snapshot
 * never changes, so a length stays true; a range request needs it before its first byte
 * (Content-Range), and measuring means making the archive once more. Bounded: oldest go first.
 */
const lengths = new Map<string, number>();
const LENGTHS_KEPT = 1000;
const lengthKey = (p: TokenPayload) => `${p.s}:${p.v}`;

function rememberLength(p: TokenPayload, bytes: number): void {
  lengths.delete(lengthKey(p));
  lengths.set(lengthKey(p), bytes);
  if (lengths.size > LENGTHS_KEPT) lengths.delete(lengths.keys().next().value!);
}

/** A link outlives its snapshot's READY state (deleted, damaged): a typed refusal, not a failed stream. */
function throwUnlessReadable(snapshot: { status: string }): void {
  throwIfDamaged(snapshot);
  if (snapshot.status !== 'READY') throw new ConflictError(ErrorCode.SNAPSHOT_NOT_READY, `Snapshot is ${snapshot.status.toLowerCase()}, not ready`);
}

/** A verified download: names and validators from the catalog; the bytes only when opened. */
export async function prepareDownload(deps: Deps, p: TokenPayload): Promise<DownloadArchive> {
  const snapshot = await deps.db.snapshot.findUniqueOrThrow({ where: { id: p.s }, include: { environment: true } });
  throwUnlessReadable(snapshot);
  return {
    filename: downloadFileName(snapshot.environment.name, snapshot.createdAt, p.v),
    etag: `"${snapshot.id}.${VARIANT_SUFFIX[p.v]}.${ARCHIVE_FORMAT}"`,
    lastModified: snapshot.createdAt,
    knownLength: lengths.get(lengthKey(p)) ?? null,
    open: (signal) => openDownload(deps, p, snapshot, signal),
  };
}

/** The archive's length: known, or measured by making it (and remembered). */
export async function downloadLength(archive: DownloadArchive, p: TokenPayload, signal: AbortSignal): Promise<number> {
  if (archive.knownLength !== null) return archive.knownLength;
  let n = 0;
  for await (const chunk of await archive.open(signal)) n += (chunk as Buffer).length;
  rememberLength(p, n);
  return n;
}

/** The archive as it passes, counted: once it has ended whole, its length is remembered. */
export async function* measuredWhole(stream: Readable, p: TokenPayload): AsyncGenerator<Buffer> {
  let n = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    n += chunk.length;
    yield chunk;
  }
  rememberLength(p, n);
}

/**
 * The tar.zst stream of a verified download, reading from the first copy that opens. It holds the
 * repository's shared lock while it reads, as a restore does: a delete's forget and prune (which
 * take the exclusive lock) wait until the stream has ended, failed or been cancelled, instead of
 * taking packs away from under it. Meeting a prune's lock, it waits as a restore does.
 */
async function openDownload(deps: Deps, p: TokenPayload, snapshot: { id: string; environmentId: string; includes: string[] }, signal: AbortSignal): Promise<Readable> {
  const { opened, repoSnapshotId, destinationId } = await openReadableCopy(deps, p.s, signal);
  let reading: Lock | null = null;
  const done = async () => {
    await reading?.release().catch((e: unknown) => deps.logger.warn({ err: e }, 'could not release the repository lock'));
    await opened.close().catch((e: unknown) => deps.logger.warn({ err: e }, 'could not close the repository'));
  };
  try {
    reading = await acquireLock(opened.repo, false, opened.repo.lockWait, signal);
    // Deleted (or being deleted: its forget may be done) before the lock was ours: nothing to read.
    throwUnlessReadable(await deps.db.snapshot.findUniqueOrThrow({ where: { id: snapshot.id }, select: { status: true } }));
  } catch (err) {
    await done();
    throw err;
  }
  const paths = p.v === 'DATABASE_ONLY' ? ['/db'] : p.v === 'FILES_ONLY' ? ['/files'] : snapshot.includes.map((i) => (i === 'DB' ? '/db' : '/files'));
  const tar = tarStream(opened.repo, repoSnapshotId, '/', signal, { only: paths });
  const out = new PassThrough();
  // Ends however the response ends: read whole, failed, or stopped by the client leaving (the
  // signal) or by a reader that took what it needed and destroyed `out` (a range).
  void pipeline(tar, new CompressStream(), out, { signal })
    .catch(async (err: unknown) => {
      out.destroy(err as Error);
      // The heal rewrites the index: a job does it, not the process answering requests.
      if (isDamage(err)) {
        await enqueueHeal(deps, { destinationId, snapshotId: snapshot.id, environmentId: snapshot.environmentId }).catch((e: unknown) => deps.logger.error({ err: e }, 'could not enqueue a repository heal'));
      }
    })
    .finally(done);
  return out;
}

const VARIANT_SUFFIX: Record<DownloadVariant, string> = { DATABASE_AND_FILES: 'full', DATABASE_ONLY: 'db', FILES_ONLY: 'files' };

/**
 * `<environment>-<snapshot time, UTC>-<db|files|full>.tar.zst`, e.g.
 * `production-20261206T235253Z-db.tar.zst`: several downloads of one environment sit side by side
 * in a downloads folder without overwriting each other. Every variant is a zstd-compressed tar.
 */
export function downloadFileName(environmentName: string, createdAt: Date, variant: DownloadVariant): string {
  const stamp = createdAt.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');
  // Names may hold spaces and any letter; a file name keeps letters, digits, '.', '_' and '-'.
  const env = environmentName.trim().replace(/[^\p{L}\p{N}._-]+/gu, '-').replace(/^[.-]+|-+$/g, '') || 'environment';
  return `${env}-${stamp}-${VARIANT_SUFFIX[variant]}.tar.zst`;
}

/**
 * A Content-Disposition header for any file name: an ASCII `filename` for old clients and the
 * exact UTF-8 name in `filename*` (RFC 6266, 5987); a raw non-Latin-1 header would make Node throw.
 */
export function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  const encoded = encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}
