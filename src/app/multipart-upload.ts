/**
 * GraphQL multipart requests (the "GraphQL multipart request spec": an `operations` field, a
 * `map` field, then the files) received before graphql-yoga sees them. Yoga's fetch layer
 * (@whatwg-node) collects each file part in memory; a dump may be gigabytes, so here each file
 * streams to `BACKPLANE_HOME/imports/upload-<pid>-<random>.part` (a name the crash sweep in
 * services/import-files.ts recognises) under IMPORT_MAX_BYTES, and the operations go on to
 * yoga as a plain JSON request whose file variables hold a placeholder. Only the placeholders of
 * this request resolve (Context.uploads), so a JSON request cannot name another's file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import type http from 'node:http';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Busboy, type BusboyInstance } from '@fastify/busboy';
import { uploadFile } from '../services/import-files.ts';
import type { UploadedDump } from '../services/imports.ts';

/** Most files in one request: importDump takes one. */
const MAX_FILES = 1;

/** A request that is not a valid multipart GraphQL request; `status` is the HTTP answer. */
export class MultipartError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'MultipartError';
  }
}

export interface ReceivedMultipart {
  /** The `operations` field with each mapped path set to its upload's placeholder. */
  body: unknown;
  /** Placeholder → the file received. */
  uploads: Map<string, UploadedDump>;
  /** Removes every file that was not moved away (the import moves what it keeps); idempotent. */
  cleanup(): Promise<void>;
}

export function isMultipart(req: http.IncomingMessage): boolean {
  return req.method === 'POST' && /^multipart\/form-data\b/i.test(req.headers['content-type'] ?? '');
}

/** Sets `value` at a dotted path ("variables.input.file", "0.variables.file") in `root`. */
function setPath(root: unknown, dotted: string, value: unknown): boolean {
  const parts = dotted.split('.');
  let at = root as Record<string, unknown>;
  for (const p of parts.slice(0, -1)) {
    if (at === null || typeof at !== 'object' || !(p in at)) return false;
    at = at[p] as Record<string, unknown>;
  }
  const last = parts[parts.length - 1];
  if (at === null || typeof at !== 'object' || !(last in at) || ['__proto__', 'constructor', 'prototype'].includes(last)) return false;
  at[last] = value;
  return true;
}

/**
 * Reads a multipart request: fields up to `fieldLimit` bytes each, files streamed into `dir`,
 * each cut at `maxFileBytes` (then marked tooLarge and emptied: the mutation refuses it).
 */
export async function receiveMultipart(req: http.IncomingMessage, opts: { dir: string; fieldLimit: number; maxFileBytes: number }): Promise<ReceivedMultipart> {
  await mkdir(opts.dir, { recursive: true });
  const files = new Map<string, UploadedDump>();
  const fields = new Map<string, string>();
  const writing: Promise<void>[] = [];
  const cleanup = async () => {
    await Promise.allSettled(writing);
    await Promise.all([...files.values()].map((f) => rm(f.path, { force: true })));
  };
  try {
    await new Promise<void>((resolve, reject) => {
      let bb: BusboyInstance;
      try {
        bb = Busboy({ headers: req.headers as never, limits: { fieldSize: opts.fieldLimit, fields: 10, files: MAX_FILES, fileSize: opts.maxFileBytes, parts: MAX_FILES + 10 } });
      } catch (err) {
        return reject(new MultipartError(400, 'BAD_REQUEST', `not a multipart request: ${(err as Error).message}`));
      }
      const fail = (err: Error) => {
        req.unpipe(bb);
        req.resume();
        reject(err);
      };
      bb.on('field', (name: string, value: string, _nameTruncated: boolean, valueTruncated: boolean) => {
        if (valueTruncated) return fail(new MultipartError(413, 'PAYLOAD_TOO_LARGE', `multipart field ${JSON.stringify(name)} is larger than ${opts.fieldLimit} bytes`));
        fields.set(name, value);
      });
      bb.on('file', (name: string, stream: NodeJS.ReadableStream & { truncated?: boolean }) => {
        if (!fields.has('operations') || !fields.has('map')) {
          stream.resume();
          return fail(new MultipartError(400, 'BAD_REQUEST', 'the operations and map fields must come before the files'));
        }
        const path = uploadFile(opts.dir);
        const hash = createHash('sha256');
        const entry: UploadedDump = { path, size: 0, sha256: '', tooLarge: false };
        files.set(name, entry);
        let cut = false;
        stream.on('limit', () => (cut = true));
        const counter = new Transform({
          transform(chunk: Buffer, _e, done) {
            entry.size += chunk.length;
            hash.update(chunk);
            done(null, chunk);
          },
        });
        writing.push(
          pipeline(stream, counter, createWriteStream(path)).then(async () => {
            entry.sha256 = hash.digest('hex');
            if (cut || stream.truncated) {
              entry.tooLarge = true;
              // Nothing of a refused upload is kept, not even its first IMPORT_MAX_BYTES.
              await rm(path, { force: true });
            }
          }),
        );
      });
      bb.on('filesLimit', () => fail(new MultipartError(400, 'BAD_REQUEST', `at most ${MAX_FILES} file per request`)));
      bb.on('error', (err: Error) => fail(new MultipartError(400, 'BAD_REQUEST', `malformed multipart request: ${err.message}`)));
      bb.on('finish', resolve);
      req.on('error', reject);
      req.pipe(bb);
    });
    await Promise.all(writing);
    let body: unknown;
    let map: Record<string, string[]>;
    try {
      body = JSON.parse(fields.get('operations') ?? '');
      map = JSON.parse(fields.get('map') ?? '{}') as Record<string, string[]>;
    } catch {
      throw new MultipartError(400, 'BAD_REQUEST', 'the operations and map fields must be JSON');
    }
    const uploads = new Map<string, UploadedDump>();
    for (const [name, paths] of Object.entries(map)) {
      const file = files.get(name);
      if (!file) throw new MultipartError(400, 'BAD_REQUEST', `map names file ${JSON.stringify(name)}, which the request does not hold`);
      const placeholder = `upload:${randomBytes(12).toString('hex')}`;
      uploads.set(placeholder, file);
      for (const p of Array.isArray(paths) ? paths : []) {
        if (!setPath(body, p, placeholder)) throw new MultipartError(400, 'BAD_REQUEST', `map path ${JSON.stringify(p)} names no variable in operations (set it to null)`);
      }
    }
    return { body, uploads, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
