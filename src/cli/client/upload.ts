/**
 * A GraphQL multipart request (operations, map, one file) with the file streamed from disk: a
 * dump of gigabytes is never in the client's memory, and the bytes sent are reported as they go.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type FormattedExecutionResult } from 'graphql';
import { ApiError, AuthError, ConnectionError } from './api.ts';

/**
 * Sends `doc` with `variables`, the file at `file` taking the place of the variable at
 * `filePath` (dotted, e.g. "input.file"). Resolves with the result's data.
 */
export async function uploadRequest<R, V>(opts: {
  url: string;
  token: string;
  doc: TypedDocumentNode<R, V>;
  variables: V;
  filePath: string;
  file: string;
  onProgress?: (sent: number, total: number) => void;
}): Promise<R> {
  const size = (await stat(opts.file)).size;
  const boundary = `----backplane${randomBytes(12).toString('hex')}`;
  const part = (name: string, body: string) => `--${boundary}\r\ncontent-disposition: form-data; name="${name}"\r\ncontent-type: application/json\r\n\r\n${body}\r\n`;
  const head = Buffer.from(
    part('operations', JSON.stringify({ query: print(opts.doc), variables: opts.variables })) +
      part('map', JSON.stringify({ 0: [`variables.${opts.filePath}`] })) +
      `--${boundary}\r\ncontent-disposition: form-data; name="0"; filename="dump"\r\ncontent-type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const url = new URL(opts.url);
  const body = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'POST',
      headers: {
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': String(head.length + size + tail.length),
        accept: 'application/graphql-response+json, application/json',
        authorization: `Bearer ${opts.token}`,
      },
    });
    req.on('error', (err) => reject(new ConnectionError(`could not reach ${url.origin}: ${err.message}`)));
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.write(head);
    let sent = 0;
    const file = createReadStream(opts.file, { highWaterMark: 1 << 20 });
    file.on('data', (chunk) => {
      sent += chunk.length;
      opts.onProgress?.(sent, size);
      if (!req.write(chunk)) {
        file.pause();
        req.once('drain', () => file.resume());
      }
    });
    file.on('error', (err) => {
      req.destroy();
      reject(err);
    });
    file.on('end', () => req.end(tail));
  });
  let result: FormattedExecutionResult<R>;
  try {
    result = JSON.parse(body.text) as FormattedExecutionResult<R>;
  } catch {
    throw new ApiError(`the server answered ${body.status} without a GraphQL result`);
  }
  const first = result.errors?.[0];
  if (first) {
    const code = (first.extensions as { code?: string } | undefined)?.code;
    if (code === 'UNAUTHENTICATED' || code === 'FORBIDDEN') throw new AuthError(`the server refused the API key: ${first.message}`);
    throw new ApiError(first.message, code);
  }
  return result.data as R;
}
